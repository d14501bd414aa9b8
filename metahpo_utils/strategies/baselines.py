"""Baselines that learn nothing from other tasks: random, grid, and the TaskSet list
(Metz et al. 2020), a list learned once on other tasks and replayed in order."""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from optuna.distributions import CategoricalDistribution

from ..space import SearchSpace
from .base import Session, Strategy

TASKSET_FILE = Path(__file__).resolve().parents[1] / "resources" / "taskset" / "opt_list.json"


class OrderSession(Session):
    """Plays a precomputed order of encoded points (mapped to open candidates on a table);
    uniform points once the order is exhausted. In a continuous space a point whose configuration
    was already observed (told from outside: a resumed study, another worker's trial) is skipped
    rather than played as a near copy."""

    def __init__(self, points: np.ndarray, space: SearchSpace, candidates: Any, seed: int):
        super().__init__(space, candidates, seed)
        self.points = points
        self.i = 0

    def _propose(self) -> np.ndarray:
        while self.candidates is None and self.i < len(self.points) and self.was_observed(self.points[self.i]):
            self.i += 1
        if self.i < len(self.points):
            p = self.points[self.i]
            self.i += 1
            return p
        return self.rng.random(self.space.dim)  # order exhausted: uniform


class RandomSession(Session):
    """Uniform without replacement on a table; scrambled Sobol in a continuous space."""

    def __init__(self, space: SearchSpace, candidates: Any = None, seed: int = 0):
        super().__init__(space, candidates, seed)
        if self.candidates is not None:
            self.order = list(self.rng.permutation(len(self.candidates)))
        else:
            from scipy.stats import qmc

            self.sobol = qmc.Sobol(space.dim, scramble=True, seed=seed)

    def _propose(self) -> np.ndarray:
        if self.candidates is not None:
            while not self.open[self.order[0]]:
                self.order.pop(0)
            return self._pick(self.order.pop(0))
        return self.sobol.random(1)[0]


class RandomStrategy(Strategy):
    name = "random"

    def start(self, space: SearchSpace, task_features: Any = None, candidates: Any = None, seed: int = 0) -> Session:
        return RandomSession(space, candidates, seed)


#: A grid of at most this many points is listed and shuffled; a larger one is sampled (:class:`GridStrategy`).
GRID_ENUMERATE = 100_000
#: Points drawn from a grid too large to list (far more than any budget).
GRID_SAMPLE = 10_000


class GridStrategy(Strategy):
    """A full-factorial grid (``levels`` per dimension, or as many as a budget of ``size`` points
    needs), visited in a seeded random order (lexicographic order would be needlessly poor
    at small budgets). Categorical dimensions use all their choices."""

    name = "grid"

    def __init__(self, size: int = 64):
        super().__init__()
        self.size = size

    def start(self, space: SearchSpace, task_features: Any = None, candidates: Any = None, seed: int = 0) -> Session:
        n_cat = [len(d.choices) for d in space.params.values() if isinstance(d, CategoricalDistribution)]
        n_num = space.dim - len(n_cat)
        rest = max(1.0, self.size / max(1, math.prod(n_cat)))
        levels = max(2, int(math.ceil(rest ** (1.0 / n_num)))) if n_num else 1
        axes = []
        for d in space.params.values():
            k = len(d.choices) if isinstance(d, CategoricalDistribution) else levels
            axes.append((np.arange(k) + 0.5) / k)
        rng = np.random.default_rng(seed)
        if math.prod(len(a) for a in axes) <= GRID_ENUMERATE:
            grid = np.array(list(itertools.product(*axes)))  # (prod levels, d)
            return OrderSession(grid[rng.permutation(len(grid))], space, candidates, seed)
        # too many points to list (the RL space's nine categoricals alone make a million): the start of a
        # random order of the grid, drawn point by point, a point drawn twice kept once
        idx = np.stack([rng.integers(len(a), size=GRID_SAMPLE) for a in axes], axis=1)  # (GRID_SAMPLE, d)
        _, first = np.unique(idx, axis=0, return_index=True)
        idx = idx[np.sort(first)]
        return OrderSession(np.stack([a[idx[:, j]] for j, a in enumerate(axes)], axis=1), space, candidates, seed)


# ---------------------------------------------------------------- TaskSet (Metz et al. 2020)
LR_NAMES = ("lr", "learning_rate", "learning_rate_init")
WD_NAMES = ("weight_decay", "alpha", "l2", "wd")
BETA1_NAMES = ("momentum", "beta1")
#: Defaults of the built-in space's other hyperparameters (used when the space has them).
DEFAULTS = {"batch_size": 32, "width": 64, "depth": 2, "dropout": 0.0, "optimizer": "adamw"}


def taskset_list() -> list[dict[str, float]]:
    """The 1,000 NAdamW configurations of Metz et al. 2020 in their learned order (Apache-2.0;
    see ``resources/taskset/NOTICE``)."""
    return json.loads(TASKSET_FILE.read_text())


def taskset_point(entry: Mapping[str, float], space: SearchSpace) -> np.ndarray:
    """Map one TaskSet entry onto a space: learning rate, weight decay and beta1/momentum where the
    space has them (clipped to its bounds); other hyperparameters at :data:`DEFAULTS` or the
    middle of their range."""
    u = np.full(space.dim, 0.5)
    values = {"lr": entry["learning_rate"], "wd": entry["adamw_weight_decay"] + entry["l2_weight_decay"], "b1": entry["beta1"]}
    for i, (name, dist) in enumerate(space.params.items()):
        lname = name.lower()
        v: Any = None
        if lname in LR_NAMES:
            v = values["lr"]
        elif lname in WD_NAMES:
            v = values["wd"]
        elif lname in BETA1_NAMES:
            v = values["b1"]
        elif name in DEFAULTS:
            v = DEFAULTS[name]
        if v is None:
            continue
        if isinstance(dist, CategoricalDistribution):
            if v in dist.choices:
                u[i] = space.encode({**space.decode(u), name: v})[i]
            continue
        lo, hi = dist.low, dist.high
        v = float(min(max(v, lo), hi))
        if getattr(dist, "log", False):
            u[i] = (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo)) if v > 0 else 0.0
        else:
            u[i] = (v - lo) / (hi - lo)
    return np.clip(u, 0, 1)


class TaskSetStrategy(Strategy):
    """Replay the TaskSet learned list in order, mapped onto the optimiser part of the space."""

    name = "taskset"

    def start(self, space: SearchSpace, task_features: Any = None, candidates: Any = None, seed: int = 0) -> Session:
        pts = np.stack([taskset_point(e, space) for e in taskset_list()])
        return OrderSession(pts, space, candidates, seed)
