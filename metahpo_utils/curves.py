"""A learning-curve model learned from a meta-dataset, and the early-stopping rule it drives.

Every (task, configuration) of a meta-dataset holds a learning curve. :class:`CurveModel` learns from the
meta-train tasks' curves to predict a configuration's final value (at ``horizon`` epochs) from its first
``k`` epochs, its hyperparameters and (optionally) the task's meta-features, with an uncertainty:

    model = CurveModel().fit(trials, space, task_features)           # meta-train tasks only
    mean, sd = model.predict([[0.41], [0.62, 0.70, 0.74]], configs, task_features={"n_classes": 10, ...})

One gradient-boosted model per ``k`` predicts the gain ``final - last observed value``; a second one predicts
the size of that model's error on tasks it was not fitted on (its absolute residuals, out of fold by task), which
gives ``sd`` (``sqrt(pi / 2)`` times the expected absolute error: a normal's). The trees are evaluated as flat
arrays: one prediction takes about a millisecond (sklearn's own predict costs that per model).

:func:`early_stopping` is the loop of ``tune(..., multi_fidelity="model")`` and :class:`StopRule` its decisions:
the first few proposals train to the first rung together and the quickest of those that may be the best goes on
first; at each rung a configuration whose optimistic final value ``mean + z * sd`` is below the best final value so
far is stopped, any other promoted. :func:`replay_rule` replays that loop on the meta-train tasks' stored curves,
and :func:`rule_summary` chooses the rule's settings from the replay.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import MetahpoError
from .space import SearchSpace

#: Folds over tasks of the out-of-fold residuals behind ``sd``.
_RESIDUAL_FOLDS = 3


class CurveError(MetahpoError, ValueError):
    """Bad input to the learning-curve model (a table without curves, a curve too short, unknown k)."""


# ---------------------------------------------------------------- fast tree ensembles
@dataclass
class _Trees:
    """A fitted ``GradientBoostingRegressor`` as flat arrays ``(trees, nodes)``: evaluated in numpy for all
    trees at once (sklearn's own ``predict`` costs about a millisecond per call, more than a 1-epoch training
    of the small tasks)."""

    feature: np.ndarray    # (T, N) int: split feature (0 at leaves)
    threshold: np.ndarray  # (T, N): go left when x <= threshold (+inf at leaves: stay)
    left: np.ndarray       # (T, N) int: left child (itself at leaves)
    right: np.ndarray      # (T, N) int
    value: np.ndarray      # (T, N): learning rate * leaf value
    offset: float
    depth: int

    @classmethod
    def from_sklearn(cls, model: Any, X: np.ndarray) -> "_Trees":
        trees = [est.tree_ for est in model.estimators_[:, 0]]
        n = max(t.node_count for t in trees)
        T = len(trees)
        feature = np.zeros((T, n), dtype=np.int64)
        threshold = np.full((T, n), np.inf)
        left = np.tile(np.arange(n), (T, 1))
        right = left.copy()
        value = np.zeros((T, n))
        for i, t in enumerate(trees):
            m = t.node_count
            inner = t.children_left[:m] >= 0
            feature[i, :m] = np.where(inner, t.feature[:m], 0)
            threshold[i, :m] = np.where(inner, t.threshold[:m], np.inf)
            left[i, :m] = np.where(inner, t.children_left[:m], np.arange(m))
            right[i, :m] = np.where(inner, t.children_right[:m], np.arange(m))
            value[i, :m] = model.learning_rate * t.value[:m, 0, 0]
        out = cls(feature, threshold, left, right, value, 0.0, int(max(t.max_depth for t in trees)))
        probe = X[: min(len(X), 16)]
        out.offset = float(np.mean(model.predict(probe) - out(probe)))  # the initial estimate (mean or quantile)
        return out

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """Predictions for rows ``X`` ``(n, features)``: ``(n,)``."""
        X = np.asarray(X, dtype=np.float32).astype(float)  # sklearn splits float32 values
        T = self.feature.shape[0]
        rows = np.arange(len(X))[:, None]
        trees = np.arange(T)[None, :]
        node = np.zeros((len(X), T), dtype=np.int64)
        for _ in range(self.depth):
            go_left = X[rows, self.feature[trees, node]] <= self.threshold[trees, node]
            node = np.where(go_left, self.left[trees, node], self.right[trees, node])
        return self.offset + self.value[trees, node].sum(axis=1)


# ---------------------------------------------------------------- the curve model
@dataclass
class CurveModel:
    """Predicts a configuration's value at ``horizon`` epochs from its first ``k`` epochs.

    Args:
        horizon: the epoch whose value is predicted (default: the longest curve of the table).
        ks: prefix lengths to fit a model for (default every ``1 .. horizon - 1``); a curve of another length
            is predicted from its first ``max(k in ks, k <= len)`` epochs.
        use_val_loss: also use the validation-loss curve (``"auto"``: when the table has ``val_loss_curve``).
        n_estimators, max_depth, learning_rate: of each gradient-boosted model.
        seed: seed of the boosting's subsampling.
    """

    horizon: int | None = None
    ks: Sequence[int] | None = None
    use_val_loss: bool | str = "auto"
    n_estimators: int = 60
    max_depth: int = 5
    learning_rate: float = 0.15
    seed: int = 0
    space: SearchSpace | None = field(default=None, init=False, repr=False)
    tasks: list[str] = field(default_factory=list, init=False, repr=False)
    feature_names: list[str] = field(default_factory=list, init=False, repr=False)
    _models: dict[int, tuple[_Trees, _Trees, float]] = field(default_factory=dict, init=False, repr=False)
    _loc: np.ndarray | None = field(default=None, init=False, repr=False)
    _scale: np.ndarray | None = field(default=None, init=False, repr=False)
    _range: tuple[float, float] = field(default=(-math.inf, math.inf), init=False, repr=False)

    # ---- fit
    def fit(self, trials: pd.DataFrame, space: SearchSpace, task_features: pd.DataFrame | None = None) -> "CurveModel":
        """Fit on a tidy trials table (``task``, the hyperparameters, ``objective``, ``status``, ``curve`` and
        optionally ``val_loss_curve``), e.g. the meta-train tasks' rows.

        Args:
            trials: the table; rows whose status is neither ``ok`` nor ``diverged`` are left out. A curve that
                stops before ``horizon`` because the run diverged has the run's ``objective`` as final value.
            space: the search space the hyperparameters are encoded in.
            task_features: one row per task (index or column ``task``), numeric meta-feature columns; ``None``
                to predict without them.

        Returns:
            The fitted model (``self``).
        """
        from threadpoolctl import threadpool_limits

        missing = [c for c in ("task", "objective", "status", "curve") if c not in trials.columns]
        if missing:
            raise CurveError(f"trials: missing column(s) {missing} (the curve model needs learning curves)")
        rows = trials[trials["status"].isin(["ok", "diverged"])].reset_index(drop=True)
        curves = [_as_curve(c) for c in rows["curve"]]
        longest = max((len(c) for c in curves), default=0)
        horizon = int(self.horizon or longest)
        if horizon < 2 or horizon > longest:
            raise CurveError(f"horizon: need 2 <= horizon <= {longest} (the longest curve), got {horizon}")
        ks = sorted(set(int(k) for k in (self.ks if self.ks is not None else range(1, horizon))))
        if not ks or ks[0] < 1 or ks[-1] >= horizon:
            raise CurveError(f"ks: prefix lengths must lie in 1..{horizon - 1} (got {list(self.ks or [])})")
        use_loss = ("val_loss_curve" in rows.columns) if self.use_val_loss == "auto" else bool(self.use_val_loss)
        if use_loss and "val_loss_curve" not in rows.columns:
            raise CurveError("use_val_loss: the trials table has no val_loss_curve column")
        self.space, self.horizon, self.ks, self.use_val_loss = space, horizon, ks, use_loss
        self.tasks = sorted(rows["task"].astype(str).unique())
        losses = [_as_curve(c) for c in rows["val_loss_curve"]] if use_loss else [None] * len(rows)
        # final value: at the horizon; a run that diverged before it keeps its objective (a useless model's value)
        final = np.array([c[horizon - 1] if len(c) >= horizon else (o if s == "diverged" else np.nan)
                          for c, o, s in zip(curves, rows["objective"].astype(float), rows["status"])])
        configs = space.encode_table(rows)  # (rows, dims)
        feats = self._fit_task_features(rows["task"].astype(str), task_features)  # (rows, meta-features) or None
        ok = np.isfinite(final)
        codes = pd.factorize(rows["task"].astype(str), sort=True)[0] % _RESIDUAL_FOLDS  # fold of each row's task
        self._range = (float(np.min(final[ok])), float(np.max(final[ok])))
        self._models = {}
        with threadpool_limits(1):
            for k in ks:
                use = [i for i in range(len(rows)) if ok[i] and len(curves[i]) >= k]
                if len(use) < 10:
                    raise CurveError(f"trials: only {len(use)} curves reach {k} epochs (need at least 10)")
                X = self._design([curves[i][:k] for i in use], configs[use], None if feats is None else feats[use],
                                 [losses[i][:k] for i in use] if use_loss else None)
                gain = final[use] - X[:, 0]  # column 0 is the last observed value
                fold = codes[use]
                mean = self._boost(X, gain)
                # how wrong the mean model is on tasks it has not seen: absolute residuals out of fold by task
                if len(np.unique(fold)) > 1:
                    resid = np.zeros(len(use))
                    for f in np.unique(fold):
                        out = fold == f
                        resid[out] = np.abs(gain[out] - self._boost(X[~out], gain[~out]).predict(X[out]))
                else:  # one task: in-sample residuals are all there is
                    resid = np.abs(gain - mean.predict(X))
                # floor: a quarter of the typical error, so that no prediction is ever taken as certain
                self._models[k] = (_Trees.from_sklearn(mean, X), _Trees.from_sklearn(self._boost(X, resid), X),
                                   0.25 * float(np.mean(resid)))
        return self

    def _boost(self, X: np.ndarray, y: np.ndarray) -> Any:
        from sklearn.ensemble import GradientBoostingRegressor

        return GradientBoostingRegressor(n_estimators=self.n_estimators, max_depth=self.max_depth,
                                         learning_rate=self.learning_rate, subsample=0.8, max_features=0.6,
                                         min_samples_leaf=8, random_state=self.seed).fit(X, y)

    def _fit_task_features(self, tasks: pd.Series, table: pd.DataFrame | None) -> np.ndarray | None:
        self.feature_names, self._loc, self._scale = [], None, None
        if table is None:
            return None
        t = table.set_index("task") if "task" in table.columns else table
        t = t.select_dtypes("number")
        t.index = t.index.astype(str)
        absent = sorted(set(tasks) - set(t.index))
        if absent:
            raise CurveError(f"task_features: no row for task(s) {absent[:5]}")
        raw = t.loc[sorted(set(tasks))].to_numpy(float)  # one row per task: each task counts once
        loc, scale = np.nanmean(raw, axis=0), np.nanstd(raw, axis=0)
        scale = np.where(np.isfinite(scale) & (scale > 1e-9 * np.maximum(1.0, np.abs(loc))), scale, 1.0)
        self.feature_names, self._loc, self._scale = list(t.columns), np.nan_to_num(loc), scale
        return self._standardize(t.loc[tasks].to_numpy(float))

    def _standardize(self, raw: np.ndarray) -> np.ndarray:
        return np.nan_to_num((raw - self._loc) / self._scale)  # a missing meta-feature counts as the mean

    @staticmethod
    def _design(curves: Sequence[Sequence[float]], configs: np.ndarray, feats: np.ndarray | None,
                losses: Sequence[Sequence[float]] | None) -> np.ndarray:
        """Inputs of one prefix length: last value (column 0), best, last step, mean, the values themselves,
        (log validation loss, its last step), the encoded configuration, (the meta-features)."""
        C = np.asarray(curves, dtype=float)  # (n, k)
        step = C[:, -1] - (C[:, -2] if C.shape[1] > 1 else 0.0)
        parts = [C[:, -1:], C.max(1, keepdims=True), step[:, None], C.mean(1, keepdims=True), C]
        if losses is not None:
            L = np.log(np.maximum(np.asarray(losses, dtype=float), 1e-12))
            parts += [L[:, -1:], (L[:, -1] - (L[:, -2] if L.shape[1] > 1 else 0.0))[:, None]]
        parts.append(configs)
        if feats is not None:
            parts.append(feats)
        return np.hstack(parts)

    # ---- predict
    def predict(self, partial_curves: Sequence[Sequence[float]], configs: Sequence[Mapping[str, Any]] | pd.DataFrame,
                task_features: Mapping[str, float] | pd.DataFrame | None = None,
                val_losses: Sequence[Sequence[float]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Predicted final value of each configuration from its partial curve.

        Args:
            partial_curves: per configuration, its values at epochs ``1 .. k`` (any ``k >= 1``; a curve that
                already reaches the horizon is returned as it is, with ``sd`` 0).
            configs: the configurations (dicts or a DataFrame of hyperparameter columns), one per curve.
            task_features: the task's meta-features (one mapping for all, or a DataFrame with one row per
                curve); ignored when the model was fitted without them.
            val_losses: the validation-loss curves, needed when the model uses them.

        Returns:
            ``(mean, sd)``, arrays ``(n,)``.
        """
        if self.space is None:
            raise CurveError("CurveModel: call fit() before predict()")
        curves = [_as_curve(c) for c in partial_curves]
        n = len(curves)
        if len(configs) != n:
            raise CurveError(f"configs: {len(configs)} configurations for {n} curves")
        if self.use_val_loss and val_losses is None:
            raise CurveError("val_losses: this model was fitted with validation-loss curves; pass them")
        losses = [_as_curve(v) for v in val_losses] if self.use_val_loss else None
        short = [i for i, c in enumerate(curves) if len(c) < self.ks[0]]
        if short:
            raise CurveError(f"partial_curves: curve {short[0]} has {len(curves[short[0]])} epochs; "
                             f"the model needs at least {self.ks[0]}")
        enc = (self.space.encode_table(configs.reset_index(drop=True)) if isinstance(configs, pd.DataFrame)
               else np.array([self.space.encode(c) for c in configs]).reshape(n, self.space.dim))
        feats = self._predict_features(task_features, n)
        mean, sd = np.empty(n), np.zeros(n)
        length = np.array([len(c) for c in curves])
        for i in np.flatnonzero(length >= self.horizon):
            mean[i] = curves[i][self.horizon - 1]
        open_ = length < self.horizon
        use_k = np.array([max(k for k in self.ks if k <= L) if o else 0 for L, o in zip(length, open_)])
        for k in np.unique(use_k[open_]):
            idx = np.flatnonzero(open_ & (use_k == k))
            X = self._design([curves[i][:k] for i in idx], enc[idx], None if feats is None else feats[idx],
                             None if losses is None else [losses[i][:k] for i in idx])
            gain_model, error_model, floor = self._models[int(k)]
            mean[idx] = np.clip(X[:, 0] + gain_model(X), *self._range)
            sd[idx] = math.sqrt(math.pi / 2) * np.maximum(error_model(X), floor)
        return mean, sd

    def _predict_features(self, task_features: Any, n: int) -> np.ndarray | None:
        if not self.feature_names:
            return None
        if task_features is None:
            raise CurveError("task_features: this model was fitted with meta-features; pass the task's")
        if isinstance(task_features, pd.DataFrame):
            if len(task_features) != n:
                raise CurveError(f"task_features: {len(task_features)} rows for {n} curves")
            raw = task_features.reindex(columns=self.feature_names).to_numpy(float)
        else:
            row = [float(task_features.get(name, np.nan)) for name in self.feature_names]
            raw = np.tile(row, (n, 1))
        return self._standardize(raw)


def _as_curve(curve: Any) -> list[float]:
    if curve is None or (isinstance(curve, float) and math.isnan(curve)):
        return []
    if isinstance(curve, str):
        import json

        curve = json.loads(curve)
    return [float(v) for v in curve]


# ---------------------------------------------------------------- the decision rule
@dataclass(frozen=True)
class StopRule:
    """How ``tune(..., multi_fidelity="model")`` decides, set by :func:`replay_rule` on meta-train tasks (README).

    Attributes:
        z: at each rung below the last, a configuration whose optimistic final value ``mean + z * sd`` is below
            the best final value so far is stopped, any other promoted (every one before a final value exists);
            ``inf`` never stops (full fidelity).
        eta, min_epochs: the rungs, as in successive halving (:func:`rungs_for`).
        opening: the first ``opening`` proposals train to the first rung together, then go on one by one, those
            that may be the best of them (``mean + z * sd`` at least their best ``mean``) quickest per epoch
            first: the first final value comes sooner when the strategy's first proposal is slow to train.
    """

    # chosen by replay_rule on the digits meta-train and meta-val tasks (5 folds, 2 seeds, adaptive-portfolio,
    # 30 trials): the lowest regret per second among rules as good as full fidelity at the last trial (README)
    z: float = 3.0
    eta: int = 10
    min_epochs: int = 1
    opening: int = 5

    def __post_init__(self) -> None:
        if not self.z >= 0 or int(self.eta) < 2 or int(self.min_epochs) < 1 or int(self.opening) < 1:
            raise CurveError(f"StopRule: need z >= 0, eta >= 2, min_epochs >= 1, opening >= 1 (got {self})")

    def decide(self, mean: float, sd: float, best: float) -> str:
        """``"stopped"`` or ``"promoted"``."""
        if not math.isfinite(best) or math.isinf(self.z):
            return "promoted"
        return "stopped" if mean + self.z * sd < best else "promoted"

    def rungs(self, epochs: int) -> list[int]:
        return rungs_for(epochs, int(self.eta), int(self.min_epochs))

    def opening_order(self, mean: np.ndarray, sd: np.ndarray, seconds_per_epoch: np.ndarray) -> list[int]:
        """The order the opening's configurations go on in: possibly the best first, quickest first among equals."""
        plausible = mean + (sd * self.z if math.isfinite(self.z) else np.inf) >= np.max(mean)
        return sorted(range(len(mean)), key=lambda i: (not plausible[i], seconds_per_epoch[i], i))


def rungs_for(epochs: int, eta: int = 3, min_epochs: int = 1) -> list[int]:
    """Epochs at the rungs of successive halving: ``epochs / eta**s`` down to ``min_epochs`` (the last is
    ``epochs``)."""
    s_max = max(0, int(math.floor(math.log(epochs / min_epochs, eta) + 1e-9)))
    return sorted(set(max(min_epochs, int(round(epochs / eta ** (s_max - i)))) for i in range(s_max + 1)))


def early_stopping(session: Any, start: Callable[[dict[str, Any]], Any], model: CurveModel, rule: StopRule,
                   epochs: int, task_features: Mapping[str, float] | None, room: Callable[[], int],
                   report: Callable[..., None]) -> bool:
    """The loop of ``tune(..., multi_fidelity="model")``, for real training and for :func:`replay_rule` alike.

    Args:
        session: the strategy's session (``suggest``/``observe``): told a stopped configuration's predicted final
            value, a finished one's final value.
        start: makes a run of a configuration: ``advance(epochs)`` trains it to that many epochs in all;
            ``curve``, ``val_loss``, ``objective``, ``final`` (reached ``epochs`` or diverged) and
            ``seconds_per_epoch`` tell where it stands.
        room: how many more configurations may start now (0: a budget ran out).
        report: called after each decision as ``report(run, rung, decision, mean, sd, decisions)``; decision
            ``"promoted"``, ``"stopped"``, ``"completed"`` or ``"diverged"``; ``decisions`` lists one dict per rung
            decided so far.

    Returns:
        Whether the strategy ran out of proposals.
    """
    rungs = rule.rungs(epochs)
    best, opening = -math.inf, True
    while room() > 0:
        configs = session.suggest(min(room(), int(rule.opening)) if opening else 1)
        if not configs:
            return True
        runs = []
        for config in configs:
            if runs and room() <= 0:
                break
            run = start(config)
            run.advance(rungs[0])
            runs.append(run)
        if opening and len(runs) > 1:
            pred = [_predict(model, run, task_features) for run in runs]
            order = rule.opening_order(np.array([p[0] for p in pred]), np.array([p[1] for p in pred]),
                                       np.array([run.seconds_per_epoch for run in runs]))
            runs = [runs[i] for i in order]
        opening = False
        for run in runs:
            decisions: list[dict[str, Any]] = []
            mean = sd = math.nan
            for rung, target in enumerate(rungs):
                run.advance(target)
                if run.final:
                    best = max(best, run.objective)
                    report(run, rung, "completed" if run.status == "ok" else "diverged", mean, sd, decisions)
                    session.observe(run.config, run.objective)
                    break
                mean, sd = _predict(model, run, task_features)
                decision = rule.decide(mean, sd, best)
                decisions.append({"epochs": len(run.curve), "value": run.objective, "predicted": mean,
                                  "predicted_sd": sd, "best": best if best > -math.inf else None, "decision": decision})
                report(run, rung, decision, mean, sd, decisions)
                if decision == "stopped":
                    session.observe(run.config, mean)
                    break
    return False


def _predict(model: CurveModel, run: Any, task_features: Any) -> tuple[float, float]:
    if run.final:
        return float(run.objective), 0.0
    m, s = model.predict([run.curve], [run.config], task_features, [run.val_loss] if model.use_val_loss else None)
    return float(m[0]), float(s[0])


# ---------------------------------------------------------------- choosing the rule on meta-train tasks
@dataclass
class _TableRun:
    """A configuration of a stored table "trained" by reading its curve; ``clock`` is shared by a replay's runs."""

    config: dict[str, Any]
    row: Mapping[str, Any]
    clock: list[float]
    epochs: int
    done: int = 0

    def __post_init__(self) -> None:
        self.full = _as_curve(self.row["curve"])
        self.losses = _as_curve(self.row.get("val_loss_curve"))
        self.seconds_per_epoch = float(self.row["cost_s"]) / max(1, len(self.full))
        self.status = "ok"

    def advance(self, epochs: int) -> None:
        reach = min(epochs, len(self.full))
        self.clock[0] += self.seconds_per_epoch * max(0, reach - self.done)
        self.done = max(self.done, reach)
        if reach < epochs and self.row["status"] != "ok":
            self.status = "diverged"

    @property
    def curve(self) -> list[float]:
        return self.full[:self.done]

    @property
    def val_loss(self) -> list[float]:
        return self.losses[:self.done]

    @property
    def final(self) -> bool:
        return self.status != "ok" or self.done >= self.epochs

    @property
    def objective(self) -> float:
        return float(self.row["objective"]) if self.final else self.full[self.done - 1]


def replay_rule(tables: Any, rules: Sequence[StopRule], strategy: str = "adaptive-portfolio", budget: int = 30,
                seeds: Sequence[int] = (0, 1, 2), folds: int = 5, epochs: int | None = None) -> pd.DataFrame:
    """Replay ``tune(..., multi_fidelity="model")`` with each rule on the tasks a strategy learns from (never the
    meta-test tasks), without training: the held-out task's configurations in the table are the candidates, their
    stored curves the training, their ``cost_s`` (spread evenly over the epochs) the time. ``folds`` folds over
    those tasks: the strategy and the curve model of a fold are fitted on the other folds' tasks.

    Returns:
        One row per (rule, task, seed, configuration), in the order configurations were settled: ``rule``
        (``"z/eta/min_epochs/opening"``), ``trial``, ``epochs`` trained, ``cost_s`` (training seconds so far),
        ``best_so_far`` (best final value) and ``regret`` (normalized per task by the table's best and worst).
    """
    from .benchmark import run_seed
    from .tuning import fit_strategy, training_tasks

    space = tables.space
    epochs = int(epochs if epochs is not None else tables.meta.get("epochs", 10))
    ks = sorted({k for rule in rules for k in rule.rungs(epochs)[:-1]}) or [1]
    tasks = training_tasks(tables)
    feats = tables.tasks.set_index("task") if tables.tasks is not None and len(tables.tasks.columns) > 1 else None
    out: list[dict[str, Any]] = []
    for f in range(folds):
        held = tasks[f::folds]
        fitted = fit_strategy(strategy, tables, exclude=held)
        keep = tables.trials["task"].astype(str).isin(training_tasks(tables, held))
        model = CurveModel(horizon=epochs, ks=ks).fit(tables.trials[keep], space, feats)
        for task in held:
            rows = tables.trials[(tables.trials["task"].astype(str) == task)
                                 & tables.trials["status"].isin(["ok", "diverged"])].reset_index(drop=True)
            lo, hi = rows["objective"].min(), rows["objective"].max()
            tf = feats.loc[task].to_dict() if feats is not None else None
            for seed, rule in ((s, r) for s in seeds for r in rules):
                session = fitted.start(space, task_features=tf, candidates=rows[space.names], seed=run_seed(seed, task))
                settled = _replay_run(session, rows, model, rule, epochs, tf, budget)
                label = f"{rule.z:g}/{rule.eta}/{rule.min_epochs}/{rule.opening}"
                out.extend({"rule": label, "task": task, "seed": seed, "trial": i + 1, **r,
                            "regret": (hi - r["best_so_far"]) / (hi - lo) if hi > lo and r["best_so_far"] > -math.inf
                            else 1.0} for i, r in enumerate(settled))
    return pd.DataFrame(out)


def _replay_run(session: Any, rows: pd.DataFrame, model: CurveModel, rule: StopRule, epochs: int,
                task_features: Mapping[str, float] | None, budget: int) -> list[dict[str, Any]]:
    """One replayed tuning run: per configuration settled (stopped or final), its epochs, the training seconds
    so far and the best final value so far."""
    clock, settled, started, best = [0.0], [], [0], [-math.inf]

    def start(config: dict[str, Any]) -> _TableRun:
        started[0] += 1  # runs start in the order of the suggestions
        return _TableRun(config, rows.iloc[session.suggested_indices[started[0] - 1]], clock, epochs)

    def report(run: _TableRun, rung: int, decision: str, *_: Any) -> None:
        if decision != "promoted":
            if run.final:
                best[0] = max(best[0], run.objective)
            settled.append({"epochs": run.done, "cost_s": clock[0], "best_so_far": best[0]})

    early_stopping(session, start, model, rule, epochs, task_features, lambda: budget - started[0], report)
    return settled


def rule_summary(replayed: pd.DataFrame, fractions: Sequence[float] = (0.125, 0.25, 0.5, 1.0),
                 tolerance: float = 0.001) -> pd.DataFrame:
    """Per rule of a :func:`replay_rule` result: mean normalized regret at the last trial, mean training seconds
    and epochs per run, and mean regret at ``fractions`` of the median full-fidelity run's seconds (rules with
    ``z = inf``); ``regret_per_second`` is their mean. ``chosen`` marks the rule with the lowest
    ``regret_per_second`` among those whose regret at the last trial is within ``tolerance`` of full
    fidelity's (full fidelity itself when no early-stopping rule does better)."""
    full = replayed[replayed["rule"].str.startswith("inf/")]
    end = float(full.groupby(["rule", "task", "seed"])["cost_s"].max().median())
    out = []
    for rule, d in replayed.groupby("rule", sort=False):
        runs = d.groupby(["task", "seed"])
        last = d[d["trial"] == runs["trial"].transform("max")]
        row = {"rule": rule, "regret_at_budget": last["regret"].mean(), "cost_s": last["cost_s"].mean(),
               "epochs_per_run": d["epochs"].sum() / runs.ngroups}
        for frac in fractions:
            row[f"regret@{frac:g}"] = float(np.mean([r.loc[r["cost_s"] <= frac * end, "regret"].min()
                                                     if (r["cost_s"] <= frac * end).any() else 1.0 for _, r in runs]))
        row["regret_per_second"] = float(np.mean([row[f"regret@{frac:g}"] for frac in fractions]))
        out.append(row)
    table = pd.DataFrame(out)
    reference = table.loc[table["rule"].str.startswith("inf/"), "regret_at_budget"].min()
    ok = table[table["regret_at_budget"] <= reference + tolerance]
    table["chosen"] = table["rule"] == ok.sort_values(["regret_per_second", "cost_s"])["rule"].iloc[0]
    return table
