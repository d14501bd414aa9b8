"""metahpo: meta-learning the hyperparameters of deep learning.

The main entry points are importable from here (loaded on first use, so ``import metahpo_utils``
stays light): ``tune``, ``compare_tuning``, ``MetaLearnedSampler``, ``from_optuna``, ``to_optuna``,
``save_strategy``, ``load_strategy``, ``make_strategy``, ``default_metadataset``.
"""
from __future__ import annotations

import os
import platform
from typing import Any

__version__ = "0.1.0"

# Same numbers on every x86 machine: torch picks its vectorised CPU kernels (AVX2 or AVX-512) by
# the processor, and the two sum floats in different orders, which sends unstable trainings (high
# learning rates) elsewhere. metahpo pins AVX2 unless the caller chose (ATEN_CPU_CAPABILITY) or opts
# out (METAHPO_NATIVE_KERNELS=1). torch reads the variable when it first runs an operation.
if platform.machine().lower() in ("x86_64", "amd64") and os.environ.get("METAHPO_NATIVE_KERNELS") != "1":
    os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")

_LAZY = {
    "tune": "tuning", "compare_tuning": "tuning", "TuneResult": "tuning",
    "MetaLearnedSampler": "optuna_interop", "from_optuna": "optuna_interop", "to_optuna": "optuna_interop",
    "save_strategy": "strategies.persist", "load_strategy": "strategies.persist",
    "make_strategy": "strategies", "default_metadataset": "metadataset",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'metahpo_utils' has no attribute '{name}'")


__all__ = ["__version__", *_LAZY]
