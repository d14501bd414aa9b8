"""Optuna samplers behind the ask/tell :class:`Strategy` interface.

* ``tpe``      -- ``TPESampler`` over the space's native optuna distributions.
* ``cmaes``    -- ``CmaEsSampler`` over the unit cube (one ``FloatDistribution(0, 1)`` per
  dimension, so integer and categorical hyperparameters are searched by CMA-ES too and decoded
  with :meth:`SearchSpace.decode`).
* ``ws-cmaes`` -- warm-starting CMA-ES (Nomura et al., AAAI 2021): ``CmaEsSampler(source_trials=...)``
  over the same cube, its initial Gaussian estimated from the best configurations of the most
  similar meta-train tasks.

Each session keeps an in-memory ``optuna`` study (``direction="maximize"``). ``suggest`` asks
trials; ``observe`` marks the asked trial failed and adds a completed trial with the configuration
that was actually evaluated (on a table that is the nearest open candidate, not the sampler's point),
carrying over the asked trial's system attributes so CMA-ES keeps its generation bookkeeping.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler, CmaEsSampler, TPESampler
from optuna.trial import FrozenTrial, TrialState, create_trial

from ..space import SearchSpace
from .base import Explanation, Session, Strategy


@contextmanager
def optuna_quiet() -> Iterator[None]:
    """Optuna's per-trial INFO logging off inside the block (a stricter level is kept); the caller's
    own verbosity is restored after."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(level, optuna.logging.WARNING))
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


def unit_cube(space: SearchSpace) -> dict[str, FloatDistribution]:
    """One ``FloatDistribution(0, 1)`` per dimension of ``space``, named like its hyperparameters."""
    return {name: FloatDistribution(0.0, 1.0) for name in space.names}


def native_params(space: SearchSpace, config: Mapping[str, Any]) -> dict[str, Any]:
    """A configuration in the space's native optuna parameterisation (values inside the distributions:
    categoricals as the choice object itself, integers rounded, numbers clipped to their bounds)."""
    u = space.encode(config)  # validates names and categorical choices
    out: dict[str, Any] = {}
    for x, (name, dist) in zip(u, space.params.items()):
        v = config[name]
        if isinstance(dist, CategoricalDistribution):
            k = len(dist.choices)
            out[name] = dist.choices[min(int(x * k), k - 1)]
        elif isinstance(dist, IntDistribution):
            out[name] = int(min(max(round(float(v)), dist.low), dist.high))
        else:
            out[name] = float(min(max(float(v), dist.low), dist.high))
    return out


class _FixedSpaceCmaEsSampler(CmaEsSampler):
    """``CmaEsSampler`` whose relative search space is the fixed unit cube from the first trial on.

    Optuna's sampler infers the space from completed trials, so its very first trial is always drawn
    by the independent (random) sampler; a warm-started CMA-ES should draw it from the transferred
    distribution instead (used with ``n_startup_trials=0``).
    """

    def __init__(self, distributions: Mapping[str, BaseDistribution], **kwargs: Any):
        super().__init__(**kwargs)
        self._fixed_space = dict(distributions)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self._fixed_space)


# ---------------------------------------------------------------- session
class OptunaSession(Session):
    """Ask/tell bridge to one optuna study.

    Args:
        space: the search space.
        sampler: the optuna sampler (seeded).
        distributions: the study's parameterisation (native or unit cube).
        native: ``True`` if ``distributions`` are ``space.params`` (trial params are configurations),
            ``False`` for the unit cube (trial params are the encoded coordinates).
    """

    def __init__(self, space: SearchSpace, sampler: BaseSampler, distributions: Mapping[str, BaseDistribution],
                 native: bool, candidates: Any = None, seed: int = 0):
        super().__init__(space, candidates, seed)
        self.distributions = dict(distributions)
        self.native = native
        with optuna_quiet():
            self.study = optuna.create_study(direction="maximize", sampler=sampler)
        self._pending: list[tuple[optuna.trial.Trial, np.ndarray]] = []  # asked, not yet observed
        self._asked: list[optuna.trial.Trial] = []

    # ---- parameterisation
    def _point(self, params: Mapping[str, Any]) -> np.ndarray:
        if self.native:
            return self.space.encode(params)
        return np.clip(np.array([float(params[n]) for n in self.space.names]), 0.0, 1.0)

    def _params(self, config: Mapping[str, Any]) -> dict[str, Any]:
        if self.native:
            return native_params(self.space, config)
        return {n: float(u) for n, u in zip(self.space.names, self.space.encode(config))}

    # ---- ask
    def suggest(self, n: int = 1) -> list[dict[str, Any]]:
        self._asked = []
        out = super().suggest(n)
        # One trial per returned configuration, in order (the base loop stops before asking when
        # the candidates run out).
        for trial, config in zip(self._asked, out):
            self._pending.append((trial, self.space.encode(config)))
        self._asked = []
        return out

    def _propose(self) -> np.ndarray:
        with optuna_quiet():
            trial = self.study.ask(self.distributions)
        self._asked.append(trial)
        return self._point(trial.params)

    # ---- tell
    def observe(self, config: Mapping[str, Any], value: float) -> None:
        with optuna_quiet():
            self._observe(config, value)

    def _observe(self, config: Mapping[str, Any], value: float) -> None:
        prior = [v for v in self.y_obs if math.isfinite(v)]
        super().observe(config, value)
        v = self.y_obs[-1]
        if not math.isfinite(v):
            v = min(prior) if prior else 0.0
        x = self.X_obs[-1]
        system_attrs: dict[str, Any] = {}
        for j, (trial, xp) in enumerate(self._pending):
            if np.allclose(xp, x, atol=1e-9):
                del self._pending[j]
                # The sampler's bookkeeping (CMA-ES generation, pickled optimizer state) lives in the
                # asked trial's system attributes; the completed trial must carry it.
                asked = self.study.get_trials(deepcopy=False)[trial.number]
                system_attrs = dict(asked.system_attrs)
                self.study.tell(trial, state=TrialState.FAIL)
                break
        self.study.add_trial(create_trial(params=self._params(config), distributions=self.distributions,
                                          value=float(v), system_attrs=system_attrs))


# ---------------------------------------------------------------- strategies
class TPEStrategy(Strategy):
    """Optuna's TPE over the native distributions (10 random start-up trials, optuna's default)."""

    name = "tpe"
    meta_learned = False

    def start(self, space: SearchSpace, task_features: Any = None, candidates: Any = None, seed: int = 0) -> Session:
        return OptunaSession(space, TPESampler(seed=seed), space.params, native=True, candidates=candidates, seed=seed)


class CmaEsStrategy(Strategy):
    """Optuna's CMA-ES over the unit cube (first trial random, then mean 0.5, sigma 1/6)."""

    name = "cmaes"
    meta_learned = False

    def start(self, space: SearchSpace, task_features: Any = None, candidates: Any = None, seed: int = 0) -> Session:
        return OptunaSession(space, CmaEsSampler(seed=seed), unit_cube(space), native=False,
                             candidates=candidates, seed=seed)


class WarmStartCmaEsStrategy(Strategy):
    """Warm-starting CMA-ES (Nomura, Watanabe, Akimoto, Ozaki, Onishi; AAAI 2021).

    The source trials are configurations of the ``k`` meta-train tasks nearest in meta-features
    (all tasks, equally weighted, without meta-features) with their normalized values; CMA-ES
    starts from the Gaussian fitted to their top 10% (``cmaes.get_warm_start_mgd``). Each source task
    contributes about ``max_source * weight`` configurations (at least ``min_per_task``), a
    rank-stratified subsample that always includes its best ones.

    Args:
        k: number of most similar tasks used when task meta-features are given.
        max_source: about how many source trials in all.
        min_per_task: least number of source trials per source task.
    """

    name = "ws-cmaes"
    meta_learned = True

    def __init__(self, k: int = 3, max_source: int = 300, min_per_task: int = 10):
        super().__init__()
        self.k = k
        self.max_source = max_source
        self.min_per_task = min_per_task

    def source_weights(self, task_features: Any = None) -> np.ndarray:
        """Weights of the meta-train tasks as sources (zero outside the ``k`` nearest)."""
        meta = self._require_fit()
        w = meta.feature_weights(task_features, k=self.k) if task_features is not None else None
        if w is None:
            w = np.full(meta.n_tasks, 1.0 / meta.n_tasks)
        return w

    def source_points(self, task_features: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Encoded source configurations ``(n, d)`` and their normalized values ``(n,)``."""
        meta = self._require_fit()
        w = self.source_weights(task_features)
        X, y = [], []
        for t in np.flatnonzero(w > 0):
            n_t = len(meta.yn[t])
            q = max(self.min_per_task, round(self.max_source * w[t]))
            order = np.argsort(-meta.yn[t], kind="stable")
            if n_t > q:  # rank-stratified: keeps the best and the task's value distribution
                order = order[np.unique(np.round(np.linspace(0, n_t - 1, q)).astype(int))]
            X.append(meta.X[t][order])
            y.append(meta.yn[t][order])
        return np.vstack(X), np.concatenate(y)

    def source_trials(self, space: SearchSpace, task_features: Any = None) -> list[FrozenTrial]:
        """The ``source_trials`` handed to ``CmaEsSampler`` (unit-cube parameters)."""
        X, y = self.source_points(task_features)
        if len(y) < 10:  # get_warm_start_mgd takes the top 10% and needs at least one
            reps = math.ceil(10 / len(y))
            X, y = np.tile(X, (reps, 1)), np.tile(y, reps)
        dists = unit_cube(space)
        return [create_trial(params={n: float(u) for n, u in zip(space.names, x)}, distributions=dists,
                             value=float(v)) for x, v in zip(X, y)]

    def start(self, space: SearchSpace, task_features: Any = None, candidates: Any = None, seed: int = 0) -> Session:
        self._require_fit(space)
        dists = unit_cube(space)
        with warnings.catch_warnings():  # source_trials is an experimental argument of optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = _FixedSpaceCmaEsSampler(dists, seed=seed, n_startup_trials=0,
                                              source_trials=self.source_trials(space, task_features))
        session = _WarmStartSession(space, sampler, dists, native=False, candidates=candidates, seed=seed)
        session.source_weights = self.source_weights(task_features)
        return session


class _WarmStartSession(OptunaSession):
    """A CMA-ES study warm-started from weighted meta-train tasks (``source_weights``)."""

    source_weights: np.ndarray

    def explain(self) -> Explanation:
        return Explanation(self.source_weights,
                           "source weights: the tasks whose configurations seeded CMA-ES's initial Gaussian")


__all__ = ["CmaEsStrategy", "OptunaSession", "TPEStrategy", "WarmStartCmaEsStrategy", "native_params", "unit_cube"]
