"""The ask/tell Strategy interface of DESIGN.md and what every strategy shares.

    strategy.fit(meta_table, task_features=None)      # meta-train tasks only
    session = strategy.start(space, task_features=None, candidates=None, seed=0)
    configs = session.suggest(n)                       # list of dicts
    session.observe(config, value)                     # higher is better

Values are maximised. With ``candidates`` (replay on a table) every suggestion is one of
them, never twice; a continuous proposal maps to the nearest not-yet-chosen candidate in
the encoded unit cube.
"""
from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from ..errors import MetahpoError
from ..space import SearchSpace


class StrategyError(MetahpoError, ValueError):
    """Misuse of a strategy (not fitted, no candidates left, bad input)."""


# ---------------------------------------------------------------- meta-train data
#: How a meta-train task values a configuration (see :meth:`MetaData.values_at`).
UTILITIES = ("regret", "rank", "mixed")


class MetaData:
    """Meta-train tasks in the form strategies use.

    Attributes:
        tasks: task names (sorted).
        X: per task, encoded configurations ``(n_t, d)``.
        y: per task, raw objective values ``(n_t,)`` (higher is better).
        yn: per task, min-max normalized values in [0, 1] (1 = the task's best).
        pct: per task, percentile ranks in [0, 1] (1 = the task's best, ties averaged).
        pool: union of the tasks' configurations, encoded ``(m, d)``.
        Y: normalized value of every pool configuration on every task ``(T, m)``; where a task
            lacks a configuration, the value of its nearest evaluated configuration.
        features: standardized task meta-features ``(T, f)`` or ``None``; ``feature_names`` and the
            standardization (``feature_mean``, ``feature_scale``) are kept to place new tasks.
    """

    def __init__(self, table: pd.DataFrame, space: SearchSpace, task_features: pd.DataFrame | None = None):
        ok = table[table["objective"].notna() & np.isfinite(table["objective"].astype(float))]
        if ok.empty:
            raise StrategyError("fit: the meta-train table has no finite objective values")
        tasks: list[str] = sorted(ok["task"].astype(str).unique())
        enc = space.encode_table(ok)  # (rows, d)
        task_col = ok["task"].astype(str).to_numpy()
        vals = ok["objective"].astype(float).to_numpy()
        features = None
        if task_features is not None:
            tf = task_features.reindex(tasks)
            if tf.isna().all(axis=1).any():
                missing = [t for t, row in tf.iterrows() if row.isna().all()]
                raise StrategyError(f"fit: no meta-features for task(s) {missing[:5]}")
            tf = tf.astype(float)
            std = tf.std(ddof=0)
            # a constant meta-feature (its spread at float rounding, e.g. log(64) summed and divided) has no scale
            constant = std <= 1e-9 * np.maximum(1.0, tf.mean().abs())
            scale = std.mask(constant, 1.0).fillna(1).to_numpy()
            features = (list(tf.columns), tf.to_numpy(), tf.mean().to_numpy(), scale)
        self._build(space, tasks, [enc[task_col == t] for t in tasks], [vals[task_col == t] for t in tasks], features)

    def _build(self, space: SearchSpace, tasks: list[str], X: list[np.ndarray], y: list[np.ndarray],
               features: tuple[list[str], np.ndarray, np.ndarray, np.ndarray] | None) -> None:
        """Everything derived from the per-task encoded configurations and values (and the raw
        meta-features ``(names, (T, f) values, mean, scale)``)."""
        self.space, self.tasks, self.X, self.y = space, tasks, X, y
        self.yn, self.pct = [], []
        for v in y:
            span = v.max() - v.min()
            self.yn.append((v - v.min()) / span if span > 0 else np.ones_like(v))
            self.pct.append((rankdata(v) - 1) / (len(v) - 1) if len(v) > 1 else np.ones_like(v))
        self._index: dict[int, dict[bytes, int]] = {}  # per task: encoded row -> position (exact lookups)
        self.pool = np.unique(np.round(np.concatenate(X), 9), axis=0)  # (m, d)
        self.Y = self.values_matrix(self.pool)  # (T, m)
        self.features = self.feature_names = self.feature_mean = self.feature_scale = None
        self._raw_features = None if features is None else features[1]
        if features is not None:
            self.feature_names, raw, self.feature_mean, self.feature_scale = features
            self.features = np.nan_to_num((raw - self.feature_mean) / self.feature_scale)

    # ---- persistence (plain tensors: loadable with torch.load(weights_only=True))
    def state_dict(self) -> dict[str, Any]:
        """The meta-train data as tensors: ``meta.task`` (rows,), ``meta.X`` (rows, d), ``meta.y``
        (rows,) and, with meta-features, ``meta.features`` (T, f), ``meta.feature_mean``, ``meta.feature_scale``."""
        import torch

        state = {"meta.task": torch.as_tensor(np.concatenate([np.full(len(x), t) for t, x in enumerate(self.X)])),
                 "meta.X": torch.as_tensor(np.concatenate(self.X)), "meta.y": torch.as_tensor(np.concatenate(self.y))}
        if self.feature_names is not None:
            state.update({"meta.features": torch.tensor(self._raw_features),
                          "meta.feature_mean": torch.tensor(self.feature_mean),
                          "meta.feature_scale": torch.tensor(self.feature_scale)})
        return state

    @classmethod
    def from_state(cls, space: SearchSpace, tasks: list[str], feature_names: list[str] | None,
                   state: Mapping[str, Any]) -> "MetaData":
        """Rebuild from :meth:`state_dict` (shapes checked; a mismatch is a :class:`StrategyError`)."""
        try:
            tid, X, y = (state[k].numpy() for k in ("meta.task", "meta.X", "meta.y"))
        except KeyError as err:
            raise StrategyError(f"saved strategy: state lacks {err}") from None
        T = len(tasks)
        if X.ndim != 2 or X.shape[1] != space.dim or len(y) != len(X) or len(tid) != len(X) \
                or (len(tid) and (tid.min() < 0 or tid.max() >= T)) or len(np.unique(tid)) != T:
            raise StrategyError(f"saved strategy: meta-train arrays do not fit {T} tasks x {space.dim} hyperparameters")
        features = None
        if feature_names is not None:
            try:
                raw, mean, scale = (state[k].numpy() for k in ("meta.features", "meta.feature_mean", "meta.feature_scale"))
            except KeyError as err:
                raise StrategyError(f"saved strategy: state lacks {err}") from None
            n = len(feature_names)
            if raw.shape != (T, n) or mean.shape != (n,) or scale.shape != (n,):
                raise StrategyError("saved strategy: meta-feature arrays do not match the meta-feature names")
            features = (list(feature_names), raw, mean, scale)
        self = cls.__new__(cls)
        self._build(space, list(tasks), [X[tid == t] for t in range(T)], [y[tid == t] for t in range(T)], features)
        return self

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    def subset(self, keep: Sequence[int]) -> "MetaData":
        """The meta-train data of tasks ``keep`` only (for cross-validation inside a strategy's fit; the
        meta-features keep their raw values and are standardized afresh over ``keep``)."""
        keep = [int(t) for t in keep]
        features = None
        if self.feature_names is not None:
            raw = self.raw_features[keep]
            std = raw.std(0)
            constant = std <= 1e-9 * np.maximum(1.0, np.abs(raw.mean(0)))
            features = (list(self.feature_names), raw, raw.mean(0), np.where(constant, 1.0, std))
        out = type(self).__new__(type(self))
        out._build(self.space, [self.tasks[t] for t in keep], [self.X[t] for t in keep], [self.y[t] for t in keep], features)
        return out

    def task_feature_series(self, task: int) -> pd.Series | None:
        """Meta-train task ``task``'s meta-features in their own units (``None`` without)."""
        return None if self.feature_names is None else pd.Series(self.raw_features[task], index=self.feature_names)

    @property
    def raw_features(self) -> np.ndarray | None:
        """The meta-train tasks' meta-features in their own units ``(T, f)`` (``None`` without)."""
        if self.features is None:
            return None
        raw = self._raw_features
        return np.asarray(raw if raw is not None else self.features * self.feature_scale + self.feature_mean, dtype=float)

    def best_points(self) -> np.ndarray:
        """The encoded best configuration of every meta-train task ``(T, d)``."""
        return np.stack([self.X[t][self.yn[t].argmax()] for t in range(self.n_tasks)])

    def values_at(self, task: int, Xq: np.ndarray, utility: str = "regret") -> np.ndarray:
        """Values of task ``task`` at encoded points: exact where evaluated, else nearest.

        ``utility``: ``regret`` (min-max normalized value, 1 - normalized regret), ``rank``
        (percentile rank) or ``mixed`` (their mean); all are 1 at the task's best.
        """
        Xq = np.asarray(Xq, dtype=float).reshape(-1, self.space.dim)
        return self.utility_values(task, utility)[self._positions(task, Xq, _row_keys(Xq))]

    def _positions(self, task: int, Xq: np.ndarray, keys: list[bytes]) -> np.ndarray:
        """Row of task ``task``'s configurations behind each encoded point: exact where evaluated, else nearest
        (the first of equally near rows)."""
        index = self._exact_index(task)
        pos = np.array([index.get(k, -1) for k in keys], dtype=int)
        miss = np.flatnonzero(pos < 0)
        for chunk in np.array_split(miss, max(1, len(miss) // 256)) if len(miss) else []:
            d = ((Xq[chunk, None, :] - self.X[task][None, :, :]) ** 2).sum(-1)  # (chunk, n_t)
            pos[chunk] = d.argmin(1)
        return pos

    def utility_values(self, task: int, utility: str = "regret") -> np.ndarray:
        """Task ``task``'s own configurations' values under ``utility`` (see :meth:`values_at`)."""
        if utility == "regret":
            return self.yn[task]
        if utility == "rank":
            return self.pct[task]
        if utility == "mixed":
            return 0.5 * (self.yn[task] + self.pct[task])
        raise StrategyError(f"utility must be regret, rank or mixed (got {utility!r})")

    def values_matrix(self, Xq: np.ndarray, utility: str = "regret") -> np.ndarray:
        """Values of every meta-train task at encoded points ``(T, q)`` (the same as :meth:`values_at` task by
        task; tasks that evaluated the very same configurations in the same order share one lookup)."""
        Xq = np.asarray(Xq, dtype=float).reshape(-1, self.space.dim)
        keys = _row_keys(Xq)
        pos: dict[int, np.ndarray] = {}
        rows = []
        for t in range(self.n_tasks):
            r = self._same_configs[t]
            if r not in pos:
                pos[r] = self._positions(r, Xq, keys)
            rows.append(self.utility_values(t, utility)[pos[r]])
        return np.stack(rows)

    @functools.cached_property
    def _same_configs(self) -> list[int]:
        """Per task, the first task whose encoded configurations are identical to its own (itself if none)."""
        first: dict[tuple[tuple[int, ...], bytes], int] = {}
        return [first.setdefault((x.shape, np.ascontiguousarray(x).tobytes()), t) for t, x in enumerate(self.X)]

    def _exact_index(self, task: int) -> dict[bytes, int]:
        if task not in self._index:
            self._index[task] = {k: i for i, k in reversed(list(enumerate(_row_keys(self.X[task]))))}  # first wins
        return self._index[task]

    def standardize_features(self, features: Mapping[str, float] | pd.Series | None) -> np.ndarray | None:
        """A new task's meta-features on the meta-train standardization (``None`` if unusable: none
        fitted, or fewer than half of the fitted ones given, as for a task of another domain)."""
        if features is None or self.features is None:
            return None
        f = pd.Series(features, dtype=float).reindex(self.feature_names)
        if f.notna().mean() < 0.5:
            return None
        return np.nan_to_num((f.to_numpy() - self.feature_mean) / self.feature_scale)

    def feature_weights(self, features: Any, k: int | None = None) -> np.ndarray | None:
        """Similarity weights of meta-train tasks from meta-features (softmax of minus distance; top-k)."""
        z = self.standardize_features(features)
        if z is None:
            return None
        return distance_weights(np.sqrt(((self.features - z) ** 2).sum(1)), k)

    def observation_weights(self, X_obs: np.ndarray, y_obs: np.ndarray, temperature: float = 0.25,
                            V: np.ndarray | None = None) -> np.ndarray:
        """Similarity weights of meta-train tasks from the new task's own observations.

        The Kendall-style agreement between the new task's observed order and each task's order
        of the same configurations (pairs that agree minus pairs that disagree, over all pairs);
        uniform with fewer than two distinct observations. ``V``: the tasks' values at ``X_obs``
        (:meth:`values_matrix`), when the caller has them already.
        """
        T = self.n_tasks
        if len(y_obs) < 2 or np.ptp(y_obs) == 0:
            return np.full(T, 1.0 / T)
        tau = self.rank_agreement(X_obs, y_obs, V)
        w = np.exp((tau - tau.max()) / temperature)
        return w / w.sum()

    def rank_agreement(self, X_obs: np.ndarray, y_obs: np.ndarray, V: np.ndarray | None = None) -> np.ndarray:
        """Per meta-train task, the Kendall-style agreement in [-1, 1] between its order of the observed
        configurations and the new task's (pairs that agree minus pairs that disagree, over the pairs
        the new task orders); zeros with fewer than two distinct observations. ``V``: as in
        :meth:`observation_weights` (any utility: all order a task's configurations alike)."""
        if len(y_obs) < 2 or np.ptp(y_obs) == 0:
            return np.zeros(self.n_tasks)
        V = self.values_matrix(X_obs) if V is None else V  # (T, n)
        dy = np.sign(y_obs[:, None] - y_obs[None, :])  # (n, n)
        dv = np.sign(V[:, :, None] - V[:, None, :])  # (T, n, n)
        pairs = max((dy != 0).sum(), 1)
        return (dv * dy[None]).sum((1, 2)) / pairs  # (T,)

    def feature_novelty(self, features: Mapping[str, float] | pd.Series | None) -> float | None:
        """How far a new task lies from the meta-train tasks in meta-feature space.

        Returns:
            The distance to the nearest meta-train task divided by the largest nearest-neighbour
            distance among the meta-train tasks themselves (above 1: farther out than any meta-train
            task is from the rest); ``inf`` when fewer than half of the fitted meta-features are
            given (the task is described in other terms: another domain); ``None`` without
            meta-features on either side.
        """
        if features is None or self.features is None:
            return None
        f = pd.Series(features, dtype=float).reindex(self.feature_names)
        if f.notna().mean() < 0.5:
            return math.inf
        if len(self.features) < 2:
            return None
        d_new = np.sqrt(((self.features - self.standardize_features(f)) ** 2).sum(1)).min()
        spread = self.feature_spread
        return float(d_new / spread) if spread > 0 else math.inf

    @functools.cached_property
    def feature_spread(self) -> float:
        """The largest nearest-neighbour distance among the meta-train tasks' standardized meta-features."""
        F = self.features  # (T, f)
        D = np.sqrt(((F[:, None, :] - F[None, :, :]) ** 2).sum(-1))  # (T, T)
        np.fill_diagonal(D, np.inf)
        return float(D.min(1).max())


def distance_weights(dist: np.ndarray, k: int | None = None) -> np.ndarray:
    """Similarity weights from meta-feature distances ``(T,)``: softmax of minus the distance scaled by its
    median spread, zero outside the ``k`` nearest, normalized."""
    w = np.exp(-(dist - dist.min()) / max(np.median(dist) - dist.min(), 1e-6))
    if k is not None and k < len(w):
        w[np.argsort(dist)[k:]] = 0.0
    return w / w.sum()


def _row_keys(X: np.ndarray) -> list[bytes]:
    """Hashable keys of encoded rows (rounded, so equal configurations match exactly)."""
    R = np.ascontiguousarray(np.round(np.asarray(X, dtype=float), 9) + 0.0)  # + 0.0: no negative zeros
    return [r.tobytes() for r in R]


def config_key(space: SearchSpace, config: Mapping[str, Any]) -> bytes:
    """The identity of a configuration: two configurations are the same trial when their keys are equal.

    The key is the configuration encoded to the unit cube and rounded (as sessions use it, so "never
    twice" means the same thing everywhere in the package).

    Raises:
        ValueError, TypeError, KeyError: ``config`` is not a configuration of ``space`` (a missing
            hyperparameter, a categorical value outside its choices).
    """
    return _row_keys(space.encode(config)[None, :])[0]


def as_candidates(candidates: Any, space: SearchSpace) -> list[dict[str, Any]] | None:
    """Candidates given as a DataFrame or a list of dicts -> list of configuration dicts."""
    if candidates is None:
        return None
    if isinstance(candidates, pd.DataFrame):
        candidates = candidates[space.names].to_dict("records")
    out = [dict(c) for c in candidates]
    if not out:
        raise StrategyError("start: candidates is empty")
    return out


# ---------------------------------------------------------------- sessions
@dataclass(frozen=True)
class Explanation:
    """Why a session's next proposal is what it is (:meth:`Session.explain`).

    Attributes:
        weights: one weight per meta-train task (in ``meta.tasks`` order, summing to 1) behind the next
            proposal, or ``None`` when no meta-train task drives it (e.g. a GP on the task's own results).
        note: what the weights mean, in words.
    """

    weights: np.ndarray | None
    note: str

    def __post_init__(self) -> None:
        if self.weights is not None:
            w = np.asarray(self.weights, dtype=float)
            object.__setattr__(self, "weights", w / w.sum() if w.sum() > 0 else w)


class Session:
    """One tuning run. Subclasses implement :meth:`_propose` (an encoded point, or the index of
    an open candidate via :meth:`_pick`); the base class keeps observations and candidates.

    Sessions explain themselves: :meth:`explain` gives the meta-train task weights behind the next
    proposal (sessions of meta-learned strategies that have them) and :meth:`predict` the mean and
    standard deviation of a surrogate's prediction (surrogate sessions). ``meta`` is the fitted
    meta-train data the session was started from (``None`` for strategies that learn nothing across
    tasks) and ``task_features`` the meta-features it was started with.
    """

    #: the meta-train data the session was started from (meta-learned strategies)
    meta: "MetaData | None" = None
    #: the new task's meta-features as given to ``start`` (``None``: none given)
    task_features: Any = None

    def __init__(self, space: SearchSpace, candidates: Sequence[Mapping[str, Any]] | None = None, seed: int = 0):
        self.space = space
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.candidates = as_candidates(candidates, space)
        self.cand_X = space.encode_table(pd.DataFrame(self.candidates)) if self.candidates else None
        self.open = np.ones(len(self.candidates), bool) if self.candidates else None
        self.X_obs: list[np.ndarray] = []
        self.y_obs: list[float] = []
        self.configs_obs: list[dict[str, Any]] = []
        self._picked: int | None = None
        self.suggested_indices: list[int] = []  # candidate indices in suggestion order (table mode)
        self._used: set[bytes] = set()  # configurations suggested or observed (continuous mode: never twice)
        self._observed_keys: set[bytes] = set()  # configurations observed

    # ---- public API
    def suggest(self, n: int = 1) -> list[dict[str, Any]]:
        """The next ``n`` configurations (fewer if the candidates run out)."""
        out = []
        for _ in range(n):
            if self.open is not None and not self.open.any():
                break
            self._picked = None
            point = self._propose()
            if self.open is not None:
                i = self._picked if self._picked is not None else self._nearest_open(point)
                self.open[i] = False
                self.suggested_indices.append(i)
                out.append(dict(self.candidates[i]))
            else:
                out.append(self._fresh(np.asarray(point, dtype=float)))
        return out

    def is_new(self, point: np.ndarray) -> bool:
        """Whether the configuration an encoded point decodes to was neither suggested nor observed."""
        return self._config_key(self.space.decode(np.asarray(point, dtype=float))) not in self._used

    def was_observed(self, point: np.ndarray) -> bool:
        """Whether the configuration an encoded point decodes to was observed (told with a value)."""
        return self._config_key(self.space.decode(np.asarray(point, dtype=float))) in self._observed_keys

    def _config_key(self, config: Mapping[str, Any]) -> bytes:
        return config_key(self.space, config)

    def _fresh(self, point: np.ndarray) -> dict[str, Any]:
        """Decode a continuous proposal; a configuration already used is replaced by the nearest new
        one found by growing Gaussian steps around it (so a strategy never spends a trial twice)."""
        config = self.space.decode(point)
        for attempt in range(50):
            if self._config_key(config) not in self._used:
                break
            step = 0.02 * (1 + attempt) * self.rng.standard_normal(self.space.dim)
            config = self.space.decode(np.clip(point + step, 0.0, 1.0))
        self._used.add(self._config_key(config))
        return config

    def observe(self, config: Mapping[str, Any], value: float) -> None:
        """Record the value of a configuration (NaN/inf = a failed run, counted as the worst seen)."""
        x = self.space.encode(config)
        v = float(value) if value is not None else math.nan
        self.X_obs.append(x)
        self.y_obs.append(v)
        self.configs_obs.append(dict(config))
        key = _row_keys(x[None, :])[0]
        self._used.add(key)
        self._observed_keys.add(key)
        if self.open is not None:
            hit = np.flatnonzero(np.all(np.isclose(self.cand_X, x, atol=1e-9), axis=1))
            self.open[hit] = False

    def explain(self) -> Explanation:
        """The meta-train tasks behind the NEXT proposal and their weights; reads the session without
        changing it (no suggestion consumed, its random state untouched).

        Raises:
            StrategyError: the session's strategy has no task weights to show.
        """
        raise StrategyError(f"{type(self).__name__}: this strategy's sessions do not explain their proposals "
                            "with meta-train task weights")

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A surrogate's mean and standard deviation at encoded points ``(q, d)`` given the task's
        observations so far, in its standardized units (per-task standardized values).

        Raises:
            StrategyError: the session's strategy has no surrogate model.
        """
        raise StrategyError(f"{type(self).__name__}: this strategy's sessions have no surrogate to predict with")

    # ---- for subclasses
    @property
    def n_obs(self) -> int:
        return len(self.y_obs)

    def observed(self) -> tuple[np.ndarray, np.ndarray]:
        """Encoded observations ``(n, d)`` and values ``(n,)``, failures replaced by the worst value."""
        if not self.y_obs:
            return np.zeros((0, self.space.dim)), np.zeros(0)
        y = np.array(self.y_obs, dtype=float)
        bad = ~np.isfinite(y)
        if bad.all():
            y = np.zeros_like(y)
        elif bad.any():
            y[bad] = y[~bad].min()
        return np.stack(self.X_obs), y

    def _pick(self, index: int) -> np.ndarray:
        """Choose open candidate ``index`` exactly."""
        self._picked = int(index)
        return self.cand_X[index]

    def _nearest_open(self, point: np.ndarray) -> int:
        idx = np.flatnonzero(self.open)
        d = ((self.cand_X[idx] - np.asarray(point)[None, :]) ** 2).sum(1)
        return int(idx[d.argmin()])

    def pool(self, n_random: int = 1024) -> tuple[np.ndarray, np.ndarray | None]:
        """Points an acquisition is maximised over: the open candidates (with their indices), or
        in a continuous space a Sobol sample plus Gaussian steps around the best observations."""
        if self.open is not None:
            idx = np.flatnonzero(self.open)
            return self.cand_X[idx], idx
        from scipy.stats import qmc

        pts = qmc.Sobol(self.space.dim, scramble=True, seed=self.rng).random(n_random)
        X, y = self.observed()
        if len(y):
            top = X[np.argsort(-y)[:5]]
            local = top[self.rng.integers(len(top), size=n_random // 2)] + 0.05 * self.rng.standard_normal((n_random // 2, self.space.dim))
            pts = np.vstack([pts, np.clip(local, 0, 1)])
        return pts, None

    def _choose(self, scores: np.ndarray, pts: np.ndarray, idx: np.ndarray | None) -> np.ndarray:
        """Return the argmax point of ``scores`` over a :meth:`pool` (exact candidate when on a table)."""
        j = int(np.argmax(scores))
        return self._pick(idx[j]) if idx is not None else pts[j]

    def _propose(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class Strategy:
    """Base class: ``fit`` on a meta-train table, ``start`` a :class:`Session` on a new task.

    The constructor arguments of every subclass are recorded in ``init_params`` (so that a saved
    strategy is rebuilt with the same settings, see :mod:`metahpo_utils.strategies.persist`).
    """

    name = "base"
    meta_learned = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        start = cls.__dict__.get("start")
        if start is not None:
            @functools.wraps(start)
            def started(self: "Strategy", space: SearchSpace, task_features: Any = None, *args: Any, **kw: Any) -> Session:
                session = start(self, space, task_features, *args, **kw)
                # every session knows what it was started from (Session.explain needs no more)
                if isinstance(session, Session):
                    if session.task_features is None:
                        session.task_features = task_features
                    if session.meta is None and self.meta_learned:
                        session.meta = self.meta
                return session

            cls.start = started
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        sig = inspect.signature(init)

        @functools.wraps(init)
        def recorded(self: "Strategy", *args: Any, **kw: Any) -> None:
            if "init_params" not in self.__dict__:  # the outermost constructor records
                bound = sig.bind(self, *args, **kw)
                bound.apply_defaults()
                self.init_params = {k: v for k, v in list(bound.arguments.items())[1:]}
            init(self, *args, **kw)

        cls.__init__ = recorded

    def __init__(self) -> None:
        self.meta: MetaData | None = None
        self.__dict__.setdefault("init_params", {})

    def fit(self, meta_table: pd.DataFrame | None, task_features: pd.DataFrame | None = None,
            space: SearchSpace | None = None) -> "Strategy":
        """Learn from meta-train tasks (a tidy table: ``task``, hyperparameter columns, ``objective``).

        Args:
            meta_table: the meta-train rows only (the target task must not be in it).
            task_features: meta-features indexed by task (optional).
            space: the search space of the table's hyperparameter columns.
        """
        if self.meta_learned:
            if meta_table is None or space is None:
                raise StrategyError(f"{self.name}: fit needs a meta-train table and its space")
            self.meta = MetaData(meta_table, space, task_features)
            self._fit()
        return self

    def _fit(self) -> None:
        """Hook for meta-learned strategies, after ``self.meta`` is set."""

    # ---- persistence: tensors only
    def state_dict(self) -> dict[str, Any]:
        """The fitted state as tensors: the meta-train data and what :meth:`_extra_state` adds."""
        state = self.meta.state_dict() if self.meta is not None else {}
        state.update(self._extra_state())
        return state

    def _extra_state(self) -> dict[str, Any]:
        """Learned weights to store (strategies that train networks); derived state is recomputed."""
        return {}

    def _restore(self, state: Mapping[str, Any]) -> None:
        """After loading: rebuild derived state. By default the deterministic ``_fit`` recomputes it
        from the meta-train data (milliseconds); strategies with trained weights override this."""
        self._fit()

    def start(self, space: SearchSpace, task_features: Any = None, candidates: Any = None, seed: int = 0) -> Session:
        raise NotImplementedError

    def _require_fit(self, space: SearchSpace | None = None) -> MetaData:
        """The fitted meta-train data; with ``space``, also check it is the space fitted on."""
        if self.meta is None:
            raise StrategyError(f"{self.name}: call fit(meta_table, ...) before start()")
        if space is not None and list(space.names) != list(self.meta.space.names):
            raise StrategyError(f"{self.name}: start: space {space.names} differs from the fitted space "
                                f"{self.meta.space.names} (another domain's? wrap the strategy in "
                                f"CrossDomainStrategy to move on the hyperparameters the spaces share)")
        return self.meta
