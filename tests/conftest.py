"""Tiny fixtures built in code: a 4-task digits suite, a 3-hyperparameter space."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


@pytest.fixture(scope="session")
def tiny_suite():
    from metahpo_utils.data import build_suite

    return build_suite("digits", n_tasks=4, seed=3)


@pytest.fixture(scope="session")
def small_space():
    from optuna.distributions import CategoricalDistribution

    from metahpo_utils.space import SearchSpace, float_param

    return SearchSpace({"lr": float_param(1e-3, 0.3, log=True),
                        "batch_size": CategoricalDistribution([32, 64]),
                        "optimizer": CategoricalDistribution(["sgd", "adamw"])})


@pytest.fixture
def cli_env():
    """Environment for CLI subprocesses: the package importable, single-threaded torch."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def legends_clear_of_axes(fig) -> bool:  # noqa: ANN001
    """Whether no legend of ``fig`` (axes or figure legends) overlaps the data area of any Axes."""
    fig.canvas.draw()
    legends = [a.get_legend() for a in fig.axes if a.get_legend() is not None] + list(fig.legends)
    boxes = [a.get_window_extent() for a in fig.axes]
    return all(not leg.get_window_extent().overlaps(box) for leg in legends for box in boxes)
