"""Interpretation of meta-datasets and meta-learned strategies: the data behind the paper's figures.

Every function here is a small, pure *data builder* returning a ``DataFrame`` or a small
dataclass; drawing is done elsewhere (:mod:`metahpo_utils.plotting`, notebooks).

* :func:`importance`, :func:`importance_per_task`, :func:`aggregate_importance` -- hyperparameter
  importance per task (Optuna's fANOVA or PED-ANOVA) and across tasks;
  :func:`importance_vs_metafeatures` -- does a hyperparameter matter more on small / noisy tasks.
* :func:`partial_dependence`, :func:`surrogate_predictor` -- PD / ICE curves of a fitted surrogate.
* :func:`mapping_data` -- meta-feature -> best hyperparameter, observed and as the ``mapping``
  strategy predicts it.
* :func:`task_similarity`, :func:`similarity_agreement` -- 2-D maps of the meta-train tasks.
* :func:`why_proposal` -- which meta-train tasks drive a session's next suggestion.

Objectives are maximised throughout; encoded points live in the unit cube of
:class:`~metahpo_utils.space.SearchSpace`.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from optuna.distributions import CategoricalDistribution, IntDistribution

from .errors import MetahpoError
from .space import SearchSpace
from .strategies.base import MetaData, Session, Strategy, StrategyError

__all__ = [
    "IMPORTANCE_METHODS",
    "InterpretError",
    "MappingData",
    "PartialDependence",
    "aggregate_importance",
    "importance",
    "importance_per_task",
    "importance_vs_metafeatures",
    "mapping_data",
    "partial_dependence",
    "similarity_agreement",
    "study_from_rows",
    "surrogate_predictor",
    "task_similarity",
    "why_proposal",
]


class InterpretError(MetahpoError, ValueError):
    """An interpretation request that cannot be answered (bad input, unsupported strategy)."""


#: Importance evaluators by name (Optuna's).
IMPORTANCE_METHODS = ("fanova", "ped-anova")
#: Trial statuses whose objective counts (a diverged run has a real, poor objective).
_USABLE_STATUSES = ("ok", "diverged")


# ---------------------------------------------------------------- helpers
@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Silence optuna's logging and its experimental / user warnings inside the block."""
    import optuna

    prev = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        optuna.logging.set_verbosity(prev)


def _usable_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Rows with a finite objective (and, with a ``status`` column, status ok or diverged)."""
    if "objective" not in table.columns:
        raise InterpretError("table has no 'objective' column")
    obj = pd.to_numeric(table["objective"], errors="coerce").astype(float)
    keep = np.isfinite(obj.to_numpy())
    if "status" in table.columns:
        keep &= table["status"].astype(str).isin(_USABLE_STATUSES).to_numpy()
    return table[keep]


def _native_values(table: pd.DataFrame, space: SearchSpace) -> list[dict[str, Any]]:
    """Hyperparameter columns as Python values inside the space's distributions (categoricals as
    exactly the choice objects, integers rounded, numbers clipped to their bounds)."""
    enc = space.encode_table(table)  # (rows, d); validates columns and categorical choices
    cols: dict[str, list[Any]] = {}
    for i, (name, dist) in enumerate(space.params.items()):
        if isinstance(dist, CategoricalDistribution):
            k = len(dist.choices)
            cols[name] = [dist.choices[min(int(u * k), k - 1)] for u in enc[:, i]]
        else:
            v = np.clip(table[name].astype(float).to_numpy(), dist.low, dist.high)
            cols[name] = [int(np.rint(x)) for x in v] if isinstance(dist, IntDistribution) else [float(x) for x in v]
    return [{n: cols[n][r] for n in space.names} for r in range(len(table))]


def _is_log(space: SearchSpace, name: str) -> bool:
    return bool(getattr(space.params[name], "log", False))


def _is_categorical(space: SearchSpace, name: str) -> bool:
    return isinstance(space.params[name], CategoricalDistribution)


def _by_task(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame indexed by task (from a ``task`` column when there is one)."""
    if "task" in frame.columns:
        frame = frame.set_index("task")
    out = frame.copy()
    out.index = out.index.astype(str)
    return out


# ---------------------------------------------------------------- 1-3. importance
def study_from_rows(table: pd.DataFrame, space: SearchSpace) -> Any:
    """An in-memory ``maximize`` optuna study holding one completed trial per usable row.

    Args:
        table: tidy rows of ONE task (hyperparameter columns and ``objective``); rows with a
            non-finite objective or a failed/pruned ``status`` are dropped.
        space: the search space (its distributions become the trials' distributions).

    Returns:
        An ``optuna.Study`` (a ``RandomSampler`` is attached; nothing is sampled).
    """
    import optuna
    from optuna.trial import create_trial

    if "task" in table.columns and table["task"].astype(str).nunique() > 1:
        raise InterpretError(f"table holds {table['task'].nunique()} tasks; pass one task's rows "
                             "(or use importance_per_task)")
    rows = _usable_rows(table)
    if len(rows) < 2:
        raise InterpretError(f"need at least two finite objective values to compute importances (got {len(rows)})")
    params = _native_values(rows, space)
    values = rows["objective"].astype(float).to_numpy()
    with _quiet_optuna():
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
        study.add_trials([create_trial(params=p, distributions=dict(space.params), value=float(v))
                          for p, v in zip(params, values)])
    return study


def _evaluator(method: str, seed: int, kwargs: Mapping[str, Any] | None) -> Any:
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator

    kwargs = dict(kwargs or {})
    if method == "fanova":
        return FanovaImportanceEvaluator(seed=seed, **kwargs)
    if method == "ped-anova":  # deterministic; it ranks by the study's direction (maximize here)
        return PedAnovaImportanceEvaluator(**kwargs)
    raise InterpretError(f"importance method must be one of {IMPORTANCE_METHODS} (got {method!r})")


def importance(table: pd.DataFrame, space: SearchSpace, method: str = "fanova", seed: int = 0,
               evaluator_kwargs: Mapping[str, Any] | None = None) -> pd.Series:
    """Hyperparameter importance on one task, normalized to sum 1.

    Args:
        table: one task's tidy rows (hyperparameter columns + ``objective``; NaN/failed rows dropped).
        space: the search space.
        method: ``"fanova"`` (``optuna.importance.FanovaImportanceEvaluator(seed=seed)``) or
            ``"ped-anova"`` (``PedAnovaImportanceEvaluator``: what distinguishes the top 10% of trials).
        seed: fANOVA's random-forest seed.
        evaluator_kwargs: further keyword arguments of the evaluator (e.g. ``n_trees``, ``target_quantile``).

    Returns:
        Importance share per hyperparameter (index ``space.names``, summing to 1); all NaN when the
        evaluator attributes nothing (e.g. a constant objective).
    """
    study = study_from_rows(table, space)
    with _quiet_optuna():
        raw = _evaluator(method, seed, evaluator_kwargs).evaluate(study, params=space.names)
    s = pd.Series({n: float(raw.get(n, 0.0)) for n in space.names}, dtype=float)
    total = s.sum()
    s = s / total if total > 0 else s * np.nan
    s.name = "importance"
    s.index.name = "hyperparameter"
    return s


def importance_per_task(table: pd.DataFrame, space: SearchSpace, method: str = "fanova", seed: int = 0,
                        tasks: Sequence[str] | None = None) -> pd.DataFrame:
    """:func:`importance` of every task: index ``task``, one column per hyperparameter.

    A task with fewer than two usable rows gets a row of NaN.
    """
    if "task" not in table.columns:
        raise InterpretError("table has no 'task' column")
    task_col = table["task"].astype(str)
    tasks = sorted(task_col.unique()) if tasks is None else [str(t) for t in tasks]
    unknown = sorted(set(tasks) - set(task_col))
    if unknown:
        raise InterpretError(f"task(s) {unknown[:5]} are not in the table")
    out = {}
    for t in tasks:
        rows = table[task_col == t]
        try:
            out[t] = importance(rows, space, method, seed)
        except InterpretError:
            if len(_usable_rows(rows)) >= 2:
                raise
            out[t] = pd.Series(np.nan, index=space.names)
    frame = pd.DataFrame(out).T.reindex(columns=space.names)  # (tasks, d)
    frame.index.name = "task"
    frame.columns.name = "hyperparameter"
    return frame


def aggregate_importance(per_task: pd.DataFrame) -> pd.DataFrame:
    """Across tasks: ``mean``, ``std``, ``sem`` and ``n`` (tasks counted) per hyperparameter,
    sorted by mean importance, largest first."""
    n = per_task.notna().sum()
    std = per_task.std(ddof=1)
    out = pd.DataFrame({"mean": per_task.mean(), "std": std, "sem": std / np.sqrt(n.where(n > 0)), "n": n})
    out.index.name = "hyperparameter"
    return out.sort_values("mean", ascending=False, kind="stable")


def importance_vs_metafeatures(per_task: pd.DataFrame, task_features: pd.DataFrame,
                               method: str = "spearman") -> pd.DataFrame:
    """Correlation over tasks between each hyperparameter's importance and each meta-feature.

    Args:
        per_task: :func:`importance_per_task` output (index task).
        task_features: indexed by task or with a ``task`` column; numeric columns are used
            (meta-features, or provenance columns such as ``n_per_class``, ``label_noise``).
        method: ``"spearman"``, ``"pearson"`` or ``"kendall"``.

    Returns:
        Long table ``hyperparameter, meta_feature, rho, p_value, q_value, n`` (``rho`` NaN when fewer
        than three tasks or a constant column). ``q_value`` is the Benjamini-Hochberg adjusted p-value
        over every test in the table (``scipy.stats.false_discovery_control``): with dozens of
        correlations from a few tasks, some raw p-values fall under 0.05 by chance alone.
    """
    from scipy import stats

    tests = {"spearman": stats.spearmanr, "pearson": stats.pearsonr, "kendall": stats.kendalltau}
    if method not in tests:
        raise InterpretError(f"method must be one of {sorted(tests)} (got {method!r})")
    imp = per_task.copy()
    imp.index = imp.index.astype(str)
    feats = _by_task(task_features)
    feats = feats.loc[:, [c for c in feats.columns if pd.api.types.is_numeric_dtype(feats[c])
                          and not pd.api.types.is_bool_dtype(feats[c])]]
    common = [t for t in imp.index if t in feats.index]
    if not common:
        raise InterpretError("per_task and task_features share no task")
    imp, feats = imp.loc[common].astype(float), feats.loc[common].astype(float)
    rows = []
    for hp in imp.columns:
        for mf in feats.columns:
            ok = imp[hp].notna() & feats[mf].notna()
            a, b = imp.loc[ok, hp].to_numpy(), feats.loc[ok, mf].to_numpy()
            rho = p = math.nan
            if ok.sum() >= 3 and np.ptp(a) > 0 and np.ptp(b) > 0:
                res = tests[method](a, b)
                rho, p = float(res[0]), float(res[1])
            rows.append({"hyperparameter": hp, "meta_feature": mf, "rho": rho, "p_value": p, "n": int(ok.sum())})
    out = pd.DataFrame(rows, columns=["hyperparameter", "meta_feature", "rho", "p_value", "n"])
    tested = out["p_value"].notna()
    out.insert(4, "q_value", math.nan)
    if tested.any():
        out.loc[tested, "q_value"] = stats.false_discovery_control(out.loc[tested, "p_value"].to_numpy(), method="bh")
    return out


@dataclass
class GroupImportance:
    """How importance moves between groups of tasks (e.g. the environments of an RL suite).

    Attributes:
        mean: mean importance ``(hyperparameters, groups)``, rows sorted by the mean over all tasks.
        n: tasks per group.
        q_value: per hyperparameter, the Benjamini-Hochberg adjusted p-value of a Kruskal-Wallis test
            that its importance has the same distribution in every group (NaN when untestable).
    """

    mean: pd.DataFrame
    n: pd.Series
    q_value: pd.Series


def importance_by_group(per_task: pd.DataFrame, groups: Mapping[str, Any] | pd.Series) -> GroupImportance:
    """Mean importance per group of tasks and whether it differs between groups.

    Args:
        per_task: :func:`importance_per_task` output (index task).
        groups: task -> group label (e.g. a provenance column such as an RL task's ``env``).
    """
    from scipy import stats

    g = pd.Series(groups, dtype=object) if not isinstance(groups, pd.Series) else groups.astype(object)
    g.index = g.index.astype(str)
    imp = per_task.copy()
    imp.index = imp.index.astype(str)
    common = [t for t in imp.index if t in g.index and pd.notna(g[t])]
    if not common:
        raise InterpretError("importance_by_group: per_task and groups share no task")
    imp, g = imp.loc[common].astype(float), g.loc[common]
    order = list(imp.mean().sort_values(ascending=False).index)
    labels = sorted(g.unique(), key=str)
    mean = pd.DataFrame({lab: imp[g == lab].mean() for lab in labels}).reindex(order)
    mean.index.name, mean.columns.name = "hyperparameter", "group"
    p = {}
    for hp in order:
        samples = [imp.loc[g == lab, hp].dropna().to_numpy() for lab in labels]
        samples = [x for x in samples if len(x)]
        pooled = np.concatenate(samples) if samples else np.array([])
        ok = len(samples) >= 2 and np.ptp(pooled) > 0
        p[hp] = float(stats.kruskal(*samples).pvalue) if ok else math.nan
    pv = pd.Series(p, dtype=float)
    q = pd.Series(math.nan, index=pv.index)
    if pv.notna().any():
        q[pv.notna()] = stats.false_discovery_control(pv.dropna().to_numpy(), method="bh")
    return GroupImportance(mean, g.value_counts().reindex(labels), q.reindex(order))


# ---------------------------------------------------------------- 4. partial dependence
Predictor = Callable[[np.ndarray], Any]


@dataclass
class PartialDependence:
    """Partial dependence (and ICE) of a predictor on one or two hyperparameters.

    Attributes:
        params: the hyperparameter name(s).
        values: per parameter, the grid decoded for display ``(g_i,)`` (real units, e.g. lr; the
            choices of a categorical).
        encoded: per parameter, the same grid in the unit cube ``(g_i,)``.
        pd: the PD curve ``(g,)`` or surface ``(g_1, g_2)`` (mean prediction over the background).
        ice: 1-D only: one curve per background point ``(n_ice, g)``; else ``None``.
        log: per parameter, whether it is log-scaled (draw its axis on a log scale).
        categorical: per parameter, whether it is categorical.
    """

    params: tuple[str, ...]
    values: tuple[np.ndarray, ...]
    encoded: tuple[np.ndarray, ...]
    pd: np.ndarray
    ice: np.ndarray | None
    log: tuple[bool, ...]
    categorical: tuple[bool, ...]

    @property
    def x(self) -> np.ndarray:
        """The (first) parameter's decoded grid."""
        return self.values[0]

    def argmax(self) -> dict[str, Any]:
        """The decoded grid value(s) where the PD is largest."""
        idx = np.unravel_index(int(np.nanargmax(self.pd)), self.pd.shape)
        return {p: v[i] for p, v, i in zip(self.params, self.values, idx)}


def _mean_prediction(predict: Predictor, X: np.ndarray, chunk: int = 50_000) -> np.ndarray:
    """``predict`` over ``X`` in chunks, keeping the mean of a ``(mean, sd)`` answer ``(n,)``."""
    parts = []
    for s in range(0, len(X), chunk):
        out = predict(X[s:s + chunk])
        if isinstance(out, tuple):
            out = out[0]
        out = np.asarray(out, dtype=float).reshape(-1)
        if len(out) != len(X[s:s + chunk]):
            raise InterpretError(f"predict returned {len(out)} values for {len(X[s:s + chunk])} points")
        parts.append(out)
    return np.concatenate(parts) if parts else np.zeros(0)


def _param_grid(space: SearchSpace, name: str, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Encoded grid ``(g,)`` and its decoded values ``(g,)`` for one hyperparameter: the choices of
    a categorical, every integer of a small integer range, else ``grid`` evenly spaced points."""
    dist = space.params[name]
    j = space.names.index(name)
    if isinstance(dist, CategoricalDistribution):
        k = len(dist.choices)
        enc = (np.arange(k) + 0.5) / k
        vals = np.empty(k, dtype=object)
        vals[:] = list(dist.choices)
        return enc, vals
    if isinstance(dist, IntDistribution) and dist.high - dist.low + 1 <= grid:
        ints = np.arange(dist.low, dist.high + 1)
        enc = np.array([space.encode({**_any_config(space), name: int(v)})[j] for v in ints])  # bin centres
        return enc, ints
    enc = np.linspace(0.0, 1.0, grid)
    probe = np.full(space.dim, 0.5)
    vals = []
    for u in enc:
        probe[j] = u
        vals.append(space.decode(probe)[name])
    return enc, np.asarray(vals)


def _any_config(space: SearchSpace) -> dict[str, Any]:
    return space.decode(np.full(space.dim, 0.5))


def partial_dependence(predict: Predictor, space: SearchSpace, params: str | Sequence[str], background: Any,
                       grid: int = 25, ice: bool = True, seed: int = 0, max_background: int = 256,
                       n_ice: int = 50) -> PartialDependence:
    """Partial dependence of ``predict`` on one or two hyperparameters (Friedman 2001), with ICE.

    Args:
        predict: encoded points ``(n, d)`` -> predicted objective ``(n,)`` or ``(mean, sd)``
            (e.g. :func:`surrogate_predictor`).
        space: the search space.
        params: one name, or two names for a surface.
        background: the data distribution the other hyperparameters are averaged over: encoded
            points ``(n, d)`` or a DataFrame with the hyperparameter columns.
        grid: points per continuous axis (categoricals use their choices, small integer ranges
            every integer).
        ice: 1-D only: also return the individual conditional expectation curves.
        seed: seed of the background subsample (when it has more than ``max_background`` rows)
            and of the choice of ICE curves (at most ``n_ice``).
    """
    names = (params,) if isinstance(params, str) else tuple(params)
    if not 1 <= len(names) <= 2 or len(set(names)) != len(names):
        raise InterpretError(f"params must be one or two distinct hyperparameter names (got {names})")
    unknown = [n for n in names if n not in space.params]
    if unknown:
        raise InterpretError(f"unknown hyperparameter(s) {unknown} (space has {space.names})")
    if isinstance(background, pd.DataFrame):
        background = space.encode_table(background)
    B = np.asarray(background, dtype=float)
    if B.ndim != 2 or B.shape[1] != space.dim or len(B) == 0:
        raise InterpretError(f"background must be encoded points (n, {space.dim}), got shape {B.shape}")
    rng = np.random.default_rng(seed)
    if len(B) > max_background:
        B = B[np.sort(rng.choice(len(B), max_background, replace=False))]
    n = len(B)
    grids = [_param_grid(space, p, grid) for p in names]
    cols = [space.names.index(p) for p in names]
    if len(names) == 1:
        enc = grids[0][0]  # (g,)
        X = np.repeat(B[None, :, :], len(enc), 0)  # (g, n, d)
        X[:, :, cols[0]] = enc[:, None]
        P = _mean_prediction(predict, X.reshape(-1, space.dim)).reshape(len(enc), n)  # (g, n)
        curves = None
        if ice:
            keep = np.sort(rng.choice(n, min(n, n_ice), replace=False))
            curves = P[:, keep].T  # (n_ice, g)
        pd_ = P.mean(1)
    else:
        e1, e2 = grids[0][0], grids[1][0]
        X = np.repeat(B[None, None, :, :], len(e1), 0).repeat(len(e2), 1)  # (g1, g2, n, d)
        X[:, :, :, cols[0]] = e1[:, None, None]
        X[:, :, :, cols[1]] = e2[None, :, None]
        P = _mean_prediction(predict, X.reshape(-1, space.dim)).reshape(len(e1), len(e2), n)
        pd_, curves = P.mean(2), None  # (g1, g2)
    return PartialDependence(names, tuple(g[1] for g in grids), tuple(g[0] for g in grids), pd_, curves,
                             tuple(_is_log(space, p) for p in names), tuple(_is_categorical(space, p) for p in names))


def surrogate_predictor(strategy: Any, task_features: Any = None,
                        observations: Sequence[tuple[Mapping[str, Any], float]] | None = None,
                        ) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``predict(X_enc) -> (mean, sd)`` of a fitted surrogate for a new task.

    Args:
        strategy: a fitted strategy whose sessions predict (:meth:`Session.predict`: ``mtl``, the new
            task's Bayesian linear head on phi; ``transfer``, mean / std over the fine-tuned ensemble), or
            any callable (its answer is passed through; ``sd`` NaN if absent).
        task_features: the new task's meta-features (optional).
        observations: ``[(config, value), ...]`` of the new task (failures count as the worst seen).
            As in the sessions, fewer than two distinct values leave the prior unchanged.

    A session is started on the new task, told the observations, and asked. Predictions are in the
    surrogate's standardized units (per-task standardized values), which is all a PD plot needs.
    """
    if isinstance(strategy, Strategy):
        session = _started(strategy, task_features, observations or [])
        try:  # a session without a surrogate says so without computing anything
            session.predict(np.zeros((0, strategy.meta.space.dim)))
        except StrategyError:
            raise InterpretError(f"surrogate_predictor needs a strategy whose sessions predict (mtl and transfer do) or a "
                                 f"callable (got strategy '{strategy.name}')") from None
        return session.predict
    if not callable(strategy):
        raise InterpretError(f"surrogate_predictor needs a fitted mtl/transfer strategy or a callable (got {type(strategy).__name__})")

    def predict(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = strategy(np.asarray(X, dtype=float))
        if isinstance(out, tuple):
            return np.asarray(out[0], dtype=float), np.asarray(out[1], dtype=float)
        mean = np.asarray(out, dtype=float)
        return mean, np.full_like(mean, np.nan)

    return predict


def _started(strategy: Strategy, task_features: Any, observations: Sequence[tuple[Mapping[str, Any], float]]) -> Session:
    if strategy.meta is None:
        raise InterpretError(f"{strategy.name}: the strategy is not fitted")
    session = strategy.start(strategy.meta.space, task_features=task_features, seed=0)
    for config, value in observations:
        session.observe(config, value)
    return session


# ---------------------------------------------------------------- 5. mapping
@dataclass
class MappingData:
    """Meta-feature -> best value of one hyperparameter: observed per meta-train task and as a
    fitted ``mapping`` strategy predicts it.

    Attributes:
        feature: the meta-feature varied.
        hyperparameter: the hyperparameter shown (decoded; real units when ``log``).
        log: whether the hyperparameter is log-scaled (draw its axis on a log scale).
        categorical: whether it is categorical.
        observed: per meta-train task: ``task``, ``feature`` (its value), ``best`` (the value of
            the hyperparameter in its best trial), ``best_objective``.
        predicted: along the grid: ``feature``, ``best`` (the predicted best, decoded),
            ``best_encoded`` (unit cube).
        context: the meta-features held fixed (per-feature median over the meta-train tasks).
        available: the meta-features the strategy was fitted with.
    """

    feature: str
    hyperparameter: str
    log: bool
    categorical: bool
    observed: pd.DataFrame
    predicted: pd.DataFrame
    context: dict[str, float] = field(default_factory=dict)
    available: list[str] = field(default_factory=list)


def mapping_data(strategy: Any, tables_or_meta: Any = None, feature: str | None = None,
                 hyperparameter: str | None = None, grid: int = 40) -> MappingData:
    """The data of a "meta-feature -> best hyperparameter" figure for a fitted ``mapping`` strategy.

    Args:
        strategy: a fitted :class:`~metahpo_utils.strategies.meta.MappingStrategy` with meta-features.
        tables_or_meta: where the observed values come from: a ``MetaTables`` (``trials`` and
            ``tasks``), a ``(trials, task_features)`` pair, or ``None`` / a ``MetaData`` for the
            strategy's own meta-train data. Only the strategy's meta-train tasks are reported.
        feature: the meta-feature to vary (see ``MappingData.available``).
        hyperparameter: the hyperparameter to show.
        grid: number of feature values, evenly spaced over the observed range.
    """
    from .strategies.meta import MappingStrategy

    if not isinstance(strategy, MappingStrategy):
        raise InterpretError(f"mapping_data needs a fitted mapping strategy (got {getattr(strategy, 'name', type(strategy).__name__)})")
    meta = strategy.meta
    if meta is None:
        raise InterpretError("mapping: the strategy is not fitted")
    if meta.feature_names is None:
        raise InterpretError("mapping: the strategy was fitted without meta-features; fit it with task_features")
    available = list(meta.feature_names)
    if feature not in available:
        raise InterpretError(f"unknown meta-feature {feature!r}; available: {available}")
    space = meta.space
    if hyperparameter not in space.params:
        raise InterpretError(f"unknown hyperparameter {hyperparameter!r} (space has {space.names})")
    raw = pd.DataFrame(meta.raw_features, index=meta.tasks, columns=available)  # (T, f)
    best_enc = meta.best_points()  # (T, d)
    best = [space.decode(b)[hyperparameter] for b in best_enc]
    best_obj = [float(v.max()) for v in meta.y]
    feat_vals = raw[feature].to_numpy()
    if tables_or_meta is not None and not isinstance(tables_or_meta, MetaData):
        if hasattr(tables_or_meta, "trials") and hasattr(tables_or_meta, "tasks"):
            trials, tf = tables_or_meta.trials, tables_or_meta.tasks
        else:
            try:
                trials, tf = tables_or_meta
            except (TypeError, ValueError):
                raise InterpretError("tables_or_meta must be MetaTables, (trials, task_features), a MetaData or None") from None
        rows = _usable_rows(trials)
        rows = rows[rows["task"].astype(str).isin(meta.tasks)]
        top = rows.loc[rows.groupby(rows["task"].astype(str))["objective"].idxmax()]
        top.index = top["task"].astype(str)
        top = top.reindex(meta.tasks)
        best = [b if pd.isna(v) else v for b, v in zip(best, top[hyperparameter])]
        best_obj = [b if pd.isna(v) else float(v) for b, v in zip(best_obj, top["objective"])]
        if tf is not None:
            tf = _by_task(tf)
            if feature in tf.columns:
                given = tf[feature].reindex(meta.tasks).astype(float).to_numpy()
                feat_vals = np.where(np.isnan(given), feat_vals, given)
    observed = pd.DataFrame({"task": meta.tasks, "feature": feat_vals, "best": best, "best_objective": best_obj})
    context = raw.median().to_dict()
    xs = np.linspace(np.nanmin(raw[feature]), np.nanmax(raw[feature]), grid)
    preds = [strategy.predict(pd.Series({**context, feature: float(v)})) for v in xs]  # each (d,)
    j = space.names.index(hyperparameter)
    predicted = pd.DataFrame({"feature": xs, "best": [space.decode(p)[hyperparameter] for p in preds],
                              "best_encoded": [float(p[j]) for p in preds]})
    return MappingData(feature, hyperparameter, _is_log(space, hyperparameter), _is_categorical(space, hyperparameter),
                       observed, predicted, {k: float(v) for k, v in context.items()}, available)


# ---------------------------------------------------------------- 6. task similarity
def _as_meta(meta: Any) -> MetaData:
    """A MetaData from a MetaData, a fitted strategy, or MetaTables (its meta-train tasks)."""
    if isinstance(meta, MetaData):
        return meta
    if isinstance(meta, Strategy):
        if meta.meta is None:
            raise InterpretError(f"{meta.name}: the strategy is not fitted")
        return meta.meta
    if hasattr(meta, "trials") and hasattr(meta, "tasks") and hasattr(meta, "space"):
        trials = meta.trials
        prov = getattr(meta, "provenance", None)
        if prov is not None and "split" in prov.columns and (prov["split"] == "meta-train").any():
            keep = set(prov.loc[prov["split"] == "meta-train", "task"].astype(str))
            trials = trials[trials["task"].astype(str).isin(keep)]
        tf = _by_task(meta.tasks).select_dtypes("number")
        return MetaData(_usable_rows(trials), meta.space, tf)
    raise InterpretError(f"expected a MetaData, a fitted strategy or MetaTables (got {type(meta).__name__})")


def _embed(Z: np.ndarray, method: str, seed: int) -> np.ndarray:
    """2-D coordinates ``(T, 2)`` of the rows of ``Z`` ``(T, f)`` (zero-padded below two dimensions)."""
    T = len(Z)
    out = np.zeros((T, 2))
    if T < 2:
        return out
    if method == "pca":
        from sklearn.decomposition import PCA

        k = min(2, Z.shape[1], T)
        out[:, :k] = PCA(n_components=k, random_state=seed).fit_transform(Z)
    elif method == "mds":
        from sklearn.manifold import MDS

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            out[:] = MDS(n_components=2, random_state=seed, n_init=1, init="classical_mds",
                         metric="euclidean").fit_transform(Z)
    else:
        raise InterpretError(f"method must be 'pca' or 'mds' (got {method!r})")
    return out


def task_similarity(meta: Any, mtl: Any = None, method: str = "pca", seed: int = 0,
                    provenance: pd.DataFrame | None = None) -> pd.DataFrame:
    """2-D map of the meta-train tasks: from their standardized meta-features and, with a fitted
    ``mtl`` strategy, from its per-task head weights.

    Args:
        meta: a ``MetaData``, a fitted strategy, or ``MetaTables`` (its meta-train tasks and meta-features).
        mtl: optional fitted ``mtl`` strategy (its ``heads`` ``(T, h+1)``).
        method: ``"pca"`` or ``"mds"`` (metric MDS, classical initialisation).
        seed: the embedding's seed.
        provenance: optional recipe table (``task``, ``base``, ``n_per_class``, ...) joined on task.

    Returns:
        One row per task: ``task``, ``x_mf``, ``y_mf``, (``x_head``, ``y_head``), ``best_lr``
        (log10 of the task's best lr, when ``lr`` is a hyperparameter), and the provenance columns.
    """
    m = _as_meta(meta)
    if m.features is None and mtl is None:
        raise InterpretError("task_similarity needs meta-features (fit with task_features) or a fitted mtl strategy")
    out = pd.DataFrame({"task": m.tasks})
    if m.features is not None:
        xy = _embed(m.features, method, seed)  # (T, 2)
        out["x_mf"], out["y_mf"] = xy[:, 0], xy[:, 1]
    if mtl is not None:
        heads = getattr(mtl, "heads", None)
        if heads is None or getattr(mtl, "meta", None) is None:
            raise InterpretError("mtl must be a fitted mtl strategy (with per-task heads)")
        H = pd.DataFrame(heads, index=mtl.meta.tasks).reindex(m.tasks)  # (T, h+1)
        have = H.notna().all(axis=1).to_numpy()
        xy = np.full((len(H), 2), np.nan)
        xy[have] = _embed(H.to_numpy()[have], method, seed)
        out["x_head"], out["y_head"] = xy[:, 0], xy[:, 1]
    if "lr" in m.space.params:
        out["best_lr"] = [math.log10(m.space.decode(b)["lr"]) for b in m.best_points()]
    if provenance is not None:
        prov = _by_task(provenance)
        prov = prov.loc[~prov.index.duplicated()]
        extra = [c for c in prov.columns if c not in out.columns]
        out = out.join(prov[extra], on="task")
    return out


def similarity_agreement(df: pd.DataFrame) -> float:
    """Mantel-style agreement of the two maps of :func:`task_similarity`: the Spearman correlation
    between the tasks' pairwise distances in (``x_mf``, ``y_mf``) and in (``x_head``, ``y_head``)."""
    from scipy.spatial.distance import pdist
    from scipy.stats import spearmanr

    need = ["x_mf", "y_mf", "x_head", "y_head"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise InterpretError(f"similarity_agreement needs columns {missing} (task_similarity with meta-features and mtl)")
    d = df[need].dropna().to_numpy(dtype=float)
    if len(d) < 3:
        raise InterpretError(f"similarity_agreement needs at least three tasks with both maps (got {len(d)})")
    a, b = pdist(d[:, :2]), pdist(d[:, 2:])
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(spearmanr(a, b)[0])


# ---------------------------------------------------------------- 7. why this proposal
def why_proposal(strategy: Any, session: Session, top: int | None = 5, task_features: Any = None) -> pd.DataFrame:
    """The meta-train tasks that drive a session's NEXT suggestion, and their weights.

    The session explains itself (:meth:`Session.explain`); this function only checks and formats.
    It reads the session without changing it (no suggestion consumed, its RNG untouched). What the
    weights mean depends on the strategy (``attrs["note"]`` says it), e.g.:

    * ``adaptive-portfolio``: observation agreement x meta-feature prior, as its next proposal uses them.
    * ``knn``: while warm-starting with meta-features, the remaining warm-start tasks weighted by
      meta-feature similarity (the first row's best configuration comes next); without meta-features,
      observation agreement. Once the GP takes over no task drives it (empty frame).
    * ``mapping``: its ``k`` nearest tasks' weights for the first suggestion; empty once it searches
      locally around the best point.
    * ``mtl``: the task weights of its prior; ``ws-cmaes``: its source weights; ``portfolio``: uniform.

    Args:
        strategy: the fitted strategy the session was started from.
        session: the session.
        top: rows returned (largest weights; ``None`` = all tasks with a positive weight).
        task_features: optional check: the meta-features the session should have been started with
            (sessions keep their own; a difference is an error).

    Returns:
        ``task``, ``weight`` (normalized over all meta-train tasks, before the ``top`` cut),
        ``best_objective`` and the task's best configuration (decoded, one column per
        hyperparameter), largest weight first. ``attrs["note"]`` says what the weights mean.
    """
    name = getattr(strategy, "name", None) or type(strategy).__name__
    if not isinstance(strategy, Strategy):
        raise InterpretError(f"why_proposal needs a fitted strategy and one of its sessions (got {name})")
    meta = strategy.meta
    if meta is None:
        raise InterpretError(f"{name}: the strategy is not fitted")
    if session.meta is not meta:
        raise InterpretError(f"{name}: the session ({type(session).__name__}) was not started by this strategy")
    if task_features is not None and not _same_features(task_features, session.task_features):
        raise InterpretError(f"{name}: task_features differ from those the session was started with")
    try:
        explanation = session.explain()
    except StrategyError:
        raise InterpretError(f"why_proposal: {name} sessions do not explain their proposals with meta-train "
                             "task weights") from None
    return _why_frame(meta, explanation.weights, explanation.note, name, top)


def _same_features(a: Any, b: Any) -> bool:
    if b is None:
        return False
    sa, sb = pd.Series(a, dtype=float), pd.Series(b, dtype=float)
    return sa.index.equals(sb.index) and np.allclose(sa.to_numpy(), sb.to_numpy(), equal_nan=True)


def _why_frame(meta: MetaData, w: np.ndarray | None, note: str, name: str, top: int | None) -> pd.DataFrame:
    space = meta.space
    cols = ["task", "weight", "best_objective", *space.names]
    if w is None:
        out = pd.DataFrame(columns=cols)
    else:
        w = np.asarray(w, dtype=float)
        w = w / w.sum()
        order = [t for t in np.argsort(-w, kind="stable") if w[t] > 0]
        if top is not None:
            order = order[:top]
        best = meta.best_points()
        out = pd.DataFrame([{"task": meta.tasks[t], "weight": float(w[t]), "best_objective": float(meta.y[t].max()),
                             **space.decode(best[t])} for t in order], columns=cols)
    out.attrs.update(strategy=name, note=note)
    return out
