"""Model-free meta-learned strategies: portfolio, adaptive portfolio, kNN warm start, mapping."""
from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np

from ..space import SearchSpace
from .base import UTILITIES, Explanation, MetaData, Session, Strategy, StrategyError, distance_weights
from .baselines import OrderSession


def greedy_portfolio(Y: np.ndarray, size: int, weights: np.ndarray | None = None,
                     start: np.ndarray | None = None) -> list[int]:
    """Greedy portfolio (Wistuba et al. 2015; auto-sklearn 2.0) over normalized values.

    Each step adds the configuration that most lowers the (weighted) mean over tasks of the
    normalized regret ``1 - max over the portfolio``.

    Args:
        Y: normalized values ``(tasks, configs)``, 1 = a task's best.
        size: portfolio length.
        weights: task weights (uniform by default).
        start: per-task value already reached (zeros by default).

    Returns:
        Column indices of ``Y`` in portfolio order.
    """
    T, m = Y.shape
    w = np.full(T, 1.0 / T) if weights is None else weights / weights.sum()
    best = np.zeros(T) if start is None else start.astype(float).copy()
    tie = 1e-6 * (w @ Y)  # among equal gains prefer the better configuration on average
    taken = np.zeros(m, bool)
    order = []
    for _ in range(min(size, m)):
        gain = w @ np.maximum(Y, best[:, None]) + tie
        gain[taken] = -np.inf
        j = int(np.argmax(gain))
        order.append(j)
        taken[j] = True
        best = np.maximum(best, Y[:, j])
    return order


class PortfolioStrategy(Strategy):
    """Zero-shot: one greedy portfolio of meta-train configurations, the same for every new task."""

    name = "portfolio"
    meta_learned = True

    def __init__(self, size: int = 100):
        super().__init__()
        self.size = size

    def _fit(self) -> None:
        self.order = greedy_portfolio(self.meta.Y, self.size)

    def start(self, space: SearchSpace, task_features: Any = None, candidates: Any = None, seed: int = 0) -> Session:
        meta = self._require_fit(space)
        return _PortfolioSession(meta, meta.pool[self.order], space, candidates, seed)


class _PortfolioSession(OrderSession):
    """The portfolio's order, the same for every task."""

    def __init__(self, meta: MetaData, points: np.ndarray, space: SearchSpace, candidates: Any, seed: int):
        super().__init__(points, space, candidates, seed)
        self.meta = meta

    def explain(self) -> Explanation:
        return Explanation(np.full(self.meta.n_tasks, 1.0 / self.meta.n_tasks),
                           "portfolio: one greedy portfolio for every task, all tasks weigh equally")


#: Guard of the adaptive portfolio. Its constants were set before any run; its form (the hedge below) was
#: revised after a first cross-domain run on the committed text table, so its cross-domain numbers in the
#: README are development numbers, not out of sample. A task is unlike the meta-train tasks by its meta-features when they lie
#: farther than GUARD_NOVELTY times the largest nearest-neighbour distance among those tasks, or are
#: mostly missing (another domain's terms). Such a task is hedged: meta-feature similarity is not used,
#: and every second trial comes from the task's own model-based search (a GP with expected improvement on
#: its results; a random point before it has two) instead of the portfolio. Once between
#: GUARD_MIN_OBS_UNLIKE and GUARD_MAX_OBS results are in, if the best of them came from its own search,
#: the prior has been beaten and every later proposal is model-based. For any task, when between
#: GUARD_MIN_OBS and GUARD_MAX_OBS results no meta-train task orders them with rank agreement above
#: GUARD_AGREEMENT, proposals become model-based too. Later, a portfolio that found good configurations
#: is left alone.
GUARD_NOVELTY = 1.5
GUARD_MIN_OBS = 5
GUARD_MIN_OBS_UNLIKE = 4
GUARD_MAX_OBS = 10
GUARD_AGREEMENT = 0.2
#: How the adaptive portfolio uses meta-features: ``auto`` (when they picked better first configurations
#: on the meta-train tasks, see :meth:`AdaptivePortfolioStrategy.feature_check`), ``always``, ``never``.
FEATURE_MODES = ("auto", "always", "never")
#: After how many results the adaptive portfolio hands over to the GP with the transfer prior: the
#: choices its fit cross-validates on the meta-train tasks (``model_from="auto"``; ``None`` = never), the
#: value used with fewer than 3 meta-train tasks, and how many meta-train tasks the check holds out
#: (fixed in advance, before any benchmark run of the combination).
MODEL_FROM_CHOICES: tuple[int | None, ...] = (4, 10, None)
MODEL_FROM_DEFAULT = 10
MODEL_CHECK_TASKS = 8


class _AdaptiveSession(Session):
    """Conditional greedy portfolio: the next configuration maximises the similarity-weighted
    gain over meta-train tasks given what the new task has already tried. With the guard on, a
    task unlike every meta-train task (see :data:`GUARD_NOVELTY`) is searched model-based."""

    def __init__(self, meta: MetaData, space: SearchSpace, candidates: Any, seed: int, prior: np.ndarray | None,
                 temperature: tuple[float, float], switch: int, utility: str, novelty: float | None = None,
                 guard: bool = False, model_from: int | None = None):
        super().__init__(space, candidates, seed)
        self.meta, self.prior, self.temperature, self.switch, self.utility = meta, prior, temperature, switch, utility
        self.model_from = model_from
        self._kernel, self._kernel_n = None, 0  # the model phase's GP kernel and the data size it was fitted on
        self._V_obs = np.zeros((meta.n_tasks, 0))  # see _values_obs
        #: the last model-based proposal's fit of the transfer prior: intercept and slope of the task's
        #: standardized values on the weighted meta-train tasks' values (slope near 0: they did not predict it)
        self.prior_fit: dict[str, float] | None = None
        # value of every candidate (or pool configuration) on every meta-train task: (T, n)
        self.V = meta.values_matrix(self.cand_X if self.candidates is not None else meta.pool, utility)
        # continuous mode: the configuration key of each pool entry, so none is proposed twice
        self.pool_keys = None if self.candidates is not None else [self._config_key(space.decode(x)) for x in meta.pool]
        self.use_guard = guard
        unlike = novelty is not None and novelty > GUARD_NOVELTY
        #: the guard's state: meta-feature novelty, whether that makes the task unlike the meta-train
        #: tasks, the best rank agreement of its first results, from which trial (1-based) every proposal
        #: is model-based (``None``: never), and which trials the hedge gave to the task's own search
        self.guard = {"novelty": novelty, "unlike_by_features": unlike, "agreement": None, "model_based_from": None,
                      "own_search_trials": []}
        self._own: set[int] = set()  # trials (0-based) the task's own search proposed while hedged
        if guard and unlike:
            self.prior = None  # similarity to tasks it is unlike carries no information

    def explain(self) -> Explanation:
        """Observation agreement x meta-feature prior, as the next proposal uses them (``None`` once the
        guard has made proposals model-based, or on a trial the hedge gives to the task's own search)."""
        X, y = self.observed()
        saved = copy.deepcopy(self.guard), set(self._own)
        try:
            guarded = self._guarded(X, y)
        finally:
            self.guard, self._own = saved
        if guarded:
            return Explanation(None, "model-based: a GP with expected improvement on the task's own results "
                                     "(the guard's decision); no meta-train task drives it")
        w, temperature = self._task_weights(X, y)
        what = ("observation agreement x meta-feature prior" if self.prior is not None
                else "observation agreement (no meta-features)") + f" (temperature {temperature})"
        if self._model_phase(y):
            return Explanation(w, "prior mean of a GP on the task's own results (expected improvement): the "
                                  f"meta-train tasks' values weighted by {what}")
        return Explanation(w, what)

    def _task_weights(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
        """Meta-train task weights behind the next proposal and the temperature that gave them."""
        temperature = self.temperature[0] if len(y) < self.switch else self.temperature[1]
        w = self.meta.observation_weights(X, y, temperature, self._values_obs(X))
        if self.prior is not None:
            w = w * self.prior
        return w / w.sum(), temperature

    def _values_obs(self, X: np.ndarray) -> np.ndarray:
        """The meta-train tasks' values (under the utility) at the observations ``(T, n)``, computed once
        per observation (observations only ever grow)."""
        if self._V_obs.shape[1] < len(X):
            self._V_obs = np.hstack([self._V_obs, self.meta.values_matrix(X[self._V_obs.shape[1]:], self.utility)])
        return self._V_obs[:, :len(X)]

    def _model_phase(self, y: np.ndarray) -> bool:
        """Whether the next proposal comes from the GP with the transfer prior (after ``model_from`` results)."""
        return self.model_from is not None and len(y) >= self.model_from and np.ptp(y) > 0

    def _guarded(self, X: np.ndarray, y: np.ndarray) -> bool:
        """Whether this proposal is model-based (after the switch, every one is: the decision stays)."""
        if not self.use_guard:
            return False
        n, unlike = len(y), self.guard["unlike_by_features"]
        if self.guard["model_based_from"] is None and 2 <= n <= GUARD_MAX_OBS and np.ptp(y) > 0:
            if n >= GUARD_MIN_OBS:
                self.guard["agreement"] = float(self.meta.rank_agreement(X, y, self._values_obs(X)).max())
                if self.guard["agreement"] < GUARD_AGREEMENT:
                    self.guard["model_based_from"] = n + 1
            if unlike and n >= GUARD_MIN_OBS_UNLIKE and int(np.argmax(y)) in self._own:
                self.guard["model_based_from"] = n + 1  # its own search beat the prior
        if self.guard["model_based_from"] is not None:
            return True
        if unlike and n % 2 == 1:  # hedged: trials 2, 4, 6, ... from the task's own search
            self._own.add(n)
            self.guard["own_search_trials"].append(n + 1)
            return True
        return False

    # The model phase's three hooks (the defaults are the strategy; development variants override them):
    #: how the task's values are turned into the GP's targets (``None``: standardized)
    value_transform: Callable[[np.ndarray], np.ndarray] | None = None

    def _model_space(self) -> SearchSpace:
        """The space whose :meth:`~SearchSpace.model_inputs` the model phase's GP sees."""
        return self.space

    def _prior_extras(self, X: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Regressors of the prior mean besides the meta-train tasks' values, at ``X`` and at ``pts`` (``None``:
        none); see :func:`transfer_prior_ei`."""
        return None

    def _propose(self) -> np.ndarray:
        X, y = self.observed()
        if self._guarded(X, y):
            if len(y) < 2 or np.ptp(y) == 0:
                return self.rng.random(self.space.dim)  # nothing to model yet: a random point
            pts, idx = self.pool()
            ei, _ = gp_expected_improvement(X, y, pts, self.seed)
            return self._choose(ei, pts, idx)
        w, _ = self._task_weights(X, y)
        if self._model_phase(y):
            pts, idx = self.pool()
            V_pts = self.V[:, idx] if idx is not None else self.meta.values_matrix(pts, self.utility)  # (T, q)
            # the GP's hyperparameters are re-fitted whenever the data grew by a fifth since the last fit
            refit = self._kernel is None or len(y) >= 1.2 * self._kernel_n
            extra = self._prior_extras(X, pts)
            ei, fit = transfer_prior_ei(self._model_space(), X, y, pts, w @ self._values_obs(X), w @ V_pts,
                                        self.seed, None if refit else self._kernel, *(extra or (None, None)),
                                        transform=self.value_transform)
            if refit:
                self._kernel, self._kernel_n = fit["kernel"], len(y)
            self.prior_fit = {k: fit[k] for k in ("intercept", "slope", "extra") if k in fit}
            return self._choose(ei, pts, idx)
        start = self._values_obs(X).max(1) if len(y) else None
        V = self.V
        if not len(y) and self.utility != "regret":  # nothing seen yet: the pick of least expected regret
            V = self.meta.values_matrix(self.cand_X if self.candidates is not None else self.meta.pool, "regret")
        if self.candidates is not None:
            idx = np.flatnonzero(self.open)
            j = greedy_portfolio(V[:, idx], 1, w, start)[0]
            return self._pick(idx[j])
        fresh = np.flatnonzero([k not in self._used for k in self.pool_keys])
        if not len(fresh):
            return self.rng.random(self.space.dim)
        j = greedy_portfolio(V[:, fresh], 1, w, start)[0]
        return self.meta.pool[fresh[j]]


class AdaptivePortfolioStrategy(Strategy):
    """Portfolio that adapts: meta-train tasks are weighted by how well their ranking of the
    configurations tried so far agrees with the new task's (and by meta-feature similarity when
    given), and each step greedily adds the configuration with the largest weighted gain. The
    weights are a softmax of agreement with ``temperature`` for the first ``switch`` trials and
    ``late_temperature`` after (soft while evidence is thin, sharp once it is not); with
    meta-features, only the ``k_features`` nearest meta-train tasks count.

    A meta-train task values a configuration by ``utility``: ``regret`` (1 - normalized regret,
    as the plain portfolio), ``rank`` (its percentile rank, as Syne Tune's zero-shot), or
    ``mixed`` (their mean, the default: rank rewards hitting a task's very best configurations,
    regret keeps the distance to them). With ``utility="regret"``, no observations and no
    meta-features it is exactly the greedy portfolio.

    ``guard`` (on by default): a new task unlike everything the strategy was fitted on is noticed
    from its meta-features (then they are not used for similarity, every second trial comes from a GP
    with expected improvement on the task's own results, and once that search beats the portfolio all
    proposals do) and from its first results (no meta-train task orders them alike: all proposals
    model-based); see :data:`GUARD_NOVELTY`. The session's ``guard`` attribute says whether and from
    which trial.

    The default temperatures and utility are what :func:`metahpo_utils.benchmark.select_settings`
    chooses from :attr:`SETTINGS_GRID` by leave-one-task-out cross-validation over the 38 digits
    meta-train and meta-val tasks (mean normalized regret over 50 trials; never a meta-test task or
    another benchmark); ``k_features=5`` was chosen the same way earlier. The benchmark can choose
    them afresh in every fold from that fold's meta-train tasks (``nested=``)."""

    name = "adaptive-portfolio"
    meta_learned = True
    #: The settings that nested cross-validation chooses among (``benchmark(nested=...)``,
    #: :func:`metahpo_utils.benchmark.select_settings`).
    SETTINGS_GRID = {"temperature": (0.1, 0.3, 1.0), "late_temperature": (0.02, 0.05, 0.2),
                     "utility": ("mixed", "regret", "rank")}
    #: what :meth:`model_check` chooses among (a subclass may offer other hand-overs; ties keep the first)
    model_from_choices: tuple[Any, ...] = MODEL_FROM_CHOICES

    def __init__(self, temperature: float = 0.3, late_temperature: float = 0.05, switch: int = 5,
                 k_features: int | None = 5, utility: str = "regret", guard: bool = True,
                 model_from: int | str | None = "auto", features: str = "auto"):
        super().__init__()
        self.guard = guard
        # soft task weights while few observations exist, sharper once the ranking evidence is there
        self.temperature, self.late_temperature, self.switch, self.k_features = temperature, late_temperature, switch, k_features
        if utility not in UTILITIES:
            raise StrategyError(f"adaptive-portfolio: utility must be regret, rank or mixed (got {utility!r})")
        if features not in FEATURE_MODES:
            raise StrategyError(f"adaptive-portfolio: features must be one of {FEATURE_MODES} (got {features!r})")
        if not (model_from is None or model_from == "auto" or (isinstance(model_from, int) and model_from >= 2)):
            raise StrategyError(f"adaptive-portfolio: model_from must be 'auto', None or at least 2 results (got {model_from!r})")
        self.utility, self.model_from, self.features = utility, model_from, features
        #: what fit found out about the meta-features (see :meth:`feature_check`) and the model phase
        #: (see :meth:`model_check`)
        self.feature_report: dict[str, Any] = {}
        self.model_report: dict[str, Any] = {}

    def _fit(self) -> None:
        self.feature_report = self.feature_check()
        self.model_report = self.model_check() if self.model_from == "auto" else {"model_from": self.model_from}

    @property
    def model_from_used(self) -> int | None:
        """The trial count after which proposals come from the GP with the transfer prior (``None``: never)."""
        return self.model_report.get("model_from", MODEL_FROM_DEFAULT) if self.model_from == "auto" else self.model_from

    def model_check(self, budget: int = 50) -> dict[str, Any]:
        """Choose ``model_from`` among :attr:`model_from_choices` (:data:`MODEL_FROM_CHOICES`) by cross-validation on the meta-train
        tasks alone: each of at most :data:`MODEL_CHECK_TASKS` of them (a seeded choice) is held out in
        turn, the strategy is fitted on the others and replays ``budget`` trials among the held-out task's
        own configurations (one replicate); the choice with the lowest mean normalized regret over those
        trials wins (ties: the first). With a single meta-train task :data:`MODEL_FROM_DEFAULT` stands.

        Returns:
            ``model_from`` (the choice), ``scores`` (choice -> inner score) and ``tasks`` (the held-out ones).
        """
        meta = self.meta
        if meta.n_tasks < 2:
            return {"model_from": MODEL_FROM_DEFAULT, "scores": {}, "tasks": []}
        rng = np.random.default_rng(0)
        held = sorted(rng.choice(meta.n_tasks, min(MODEL_CHECK_TASKS, meta.n_tasks), replace=False).tolist())
        choices = self.model_from_choices
        scores: dict[Any, list[float]] = {c: [] for c in choices}
        for t in held:
            sub = meta.subset([u for u in range(meta.n_tasks) if u != t])
            inner = copy.copy(self)  # the same settings and feature decision, fitted on the other tasks
            inner.meta = sub
            cands = [meta.space.decode(x) for x in meta.X[t]]
            vals, span = meta.y[t], np.ptp(meta.y[t])
            n = min(budget, len(vals))
            for choice in choices:
                session = inner._session(meta.space, meta.task_feature_series(t), cands, seed=t, model_from=choice)
                best, regrets = -np.inf, []
                for _ in range(n):
                    config = session.suggest(1)[0]
                    i = session.suggested_indices[-1]
                    session.observe(config, vals[i])
                    best = max(best, vals[i])
                    regrets.append((vals.max() - best) / span if span > 0 else 0.0)
                scores[choice].append(float(np.mean(regrets)))
        mean = {c: float(np.mean(v)) for c, v in scores.items()}
        choice = min(choices, key=lambda c: mean[c])  # min keeps the first of equal scores
        return {"model_from": choice, "scores": mean, "tasks": [meta.tasks[t] for t in held]}

    def feature_check(self, picks: int = 3) -> dict[str, Any]:
        """Do the meta-features pick better first configurations than no meta-features, on the meta-train
        tasks themselves? Leave one meta-train task out at a time: the greedy portfolio of the others
        (``picks`` long), weighted by meta-feature similarity to the held-out task (its ``k_features``
        nearest) or uniformly, and the held-out task's mean normalized regret over those picks.

        Returns:
            ``use`` (whether sessions use the meta-feature prior: with ``features="auto"``, only when it
            scored strictly better; ``"always"``/``"never"`` force it), ``regret_with`` and
            ``regret_without`` (mean over the meta-train tasks; ``None`` when not measured).
        """
        meta = self.meta
        report: dict[str, Any] = {"use": self.features == "always" and meta.features is not None,
                                  "regret_with": None, "regret_without": None}
        if meta.features is None or not self.k_features or meta.n_tasks < 3 or self.features == "never":
            return report
        F = meta.features  # (T, f) standardized
        with_, without = [], []
        for t in range(meta.n_tasks):
            others = np.delete(np.arange(meta.n_tasks), t)
            w = distance_weights(np.sqrt(((F[others] - F[t]) ** 2).sum(1)), self.k_features)
            for weights, out in ((w, with_), (None, without)):
                order = greedy_portfolio(meta.Y[others], picks, weights)
                out.append(float(np.mean(1.0 - np.maximum.accumulate(meta.Y[t, order]))))
        report.update(regret_with=float(np.mean(with_)), regret_without=float(np.mean(without)))
        if self.features == "auto":
            report["use"] = report["regret_with"] < report["regret_without"]
        return report

    def start(self, space: SearchSpace, task_features: Any = None, candidates: Any = None, seed: int = 0) -> Session:
        self._require_fit(space)
        return self._session(space, task_features, candidates, seed, self.model_from_used)

    def _session(self, space: SearchSpace, task_features: Any, candidates: Any, seed: int,
                 model_from: int | None) -> "_AdaptiveSession":
        meta = self.meta
        novelty = meta.feature_novelty(task_features)
        prior = meta.feature_weights(task_features, self.k_features) if self.feature_report.get("use") else None
        return _AdaptiveSession(meta, space, candidates, seed, prior, (self.temperature, self.late_temperature),
                                self.switch, self.utility, novelty, self.guard, model_from)


# ---------------------------------------------------------------- kNN warm start + GP (Feurer et al. 2015)
def gp_expected_improvement(X: np.ndarray, y: np.ndarray, pts: np.ndarray, seed: int = 0,
                            kernel: Any = None) -> tuple[np.ndarray, Any]:
    """Expected improvement of a Matern-5/2 GP fitted to ``(X, y)`` at ``pts`` (maximisation).

    With ``kernel`` (a fitted kernel from an earlier call) its hyperparameters are reused as they
    are; otherwise they are fitted by maximum marginal likelihood. Returns the EI and the kernel.
    """
    import warnings

    from scipy.stats import norm
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    if kernel is None:
        kernel = ConstantKernel(1.0) * Matern(length_scale=np.full(X.shape[1], 0.3), length_scale_bounds=(1e-2, 1e2), nu=2.5) \
            + WhiteKernel(1e-3, (1e-6, 1e-1))
        gp = GaussianProcessRegressor(kernel, normalize_y=True, random_state=seed, n_restarts_optimizer=0)
    else:
        gp = GaussianProcessRegressor(kernel, normalize_y=True, optimizer=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gp.fit(X, y)
    mu, sd = gp.predict(pts, return_std=True)
    sd = np.maximum(sd, 1e-9)
    z = (mu - y.max()) / sd
    return (mu - y.max()) * norm.cdf(z) + sd * norm.pdf(z), gp.kernel_


def transfer_prior_ei(space: SearchSpace, X: np.ndarray, y: np.ndarray, pts: np.ndarray, prior_obs: np.ndarray,
                      prior_pts: np.ndarray, seed: int = 0, kernel: Any = None, extra_obs: np.ndarray | None = None,
                      extra_pts: np.ndarray | None = None,
                      transform: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Expected improvement of a GP on a task's own results whose prior mean is what the meta-train
    tasks say (in the spirit of RGPE and TST-R: a transfer prior the target's data can overrule).

    The task's standardized values ``z`` are regressed on the prior (the weighted meta-train tasks' values
    at the same configurations): ``z ~ a + b * prior`` (``b`` kept >= 0; ridge 1e-3). A Matern-5/2 GP on
    :meth:`SearchSpace.model_inputs` (categoricals one-hot) with a noise term fits the residuals
    (:class:`~metahpo_utils.strategies.gp.GaussianProcess`).
    Where the meta-train tasks predict the task, ``b`` is large and the GP only corrects them; where they
    do not, ``b`` is near 0 and this is plain GP expected improvement.

    Args:
        X, y: the task's encoded observations ``(n, d)`` and values ``(n,)`` (higher is better).
        pts: encoded points to score ``(q, d)``.
        prior_obs, prior_pts: the prior at ``X`` ``(n,)`` and at ``pts`` ``(q,)``.

        kernel: ``(length scales, noise)`` from an earlier call, reused as they are (no marginal-likelihood fit).
        extra_obs, extra_pts: further regressors of the prior mean at ``X`` ``(n, e)`` and at ``pts`` ``(q, e)``,
            with coefficients of either sign (``None``: none).
        transform: turns ``y`` into the targets ``z`` (``None``: standardized).

    Returns:
        The expected improvement at ``pts`` and the fit: ``{"intercept": a, "slope": b, "kernel": (length
        scales, noise)}``, plus ``"extra"`` (the further regressors' coefficients) when there are any.
    """
    from .gp import GaussianProcess
    from .surrogates import expected_improvement, standardize

    z = (transform or standardize)(y)
    E_obs = np.zeros((len(z), 0)) if extra_obs is None else np.asarray(extra_obs, dtype=float).reshape(len(z), -1)
    E_pts = np.zeros((len(pts), 0)) if extra_pts is None else np.asarray(extra_pts, dtype=float).reshape(len(pts), -1)
    A = np.column_stack([np.ones_like(prior_obs), prior_obs, E_obs])  # (n, 2 + e)
    coef = np.linalg.solve(A.T @ A + 1e-3 * np.eye(A.shape[1]), A.T @ z)
    if coef[1] <= 0:  # the meta-train tasks order these results the wrong way: no transfer from them
        if E_obs.shape[1]:
            A2 = np.delete(A, 1, axis=1)
            c2 = np.linalg.solve(A2.T @ A2 + 1e-3 * np.eye(A2.shape[1]), A2.T @ z)
            coef = np.insert(c2, 1, 0.0)
        else:
            coef = np.array([z.mean(), 0.0])
    a, b, c = coef[0], coef[1], coef[2:]
    mean_obs, mean_pts = a + b * prior_obs, a + b * prior_pts
    if len(c):
        mean_obs, mean_pts = mean_obs + E_obs @ c, mean_pts + E_pts @ c
    gp = GaussianProcess().fit(space.model_inputs(X), z - mean_obs, space.model_blocks, kernel)
    mu, sd = gp.predict(space.model_inputs(pts))
    fit = {"intercept": float(a), "slope": float(b), "kernel": gp.params}
    if len(c):
        fit["extra"] = [float(v) for v in c]
    return expected_improvement(mean_pts + mu, sd, z.max()), fit


class _KnnSession(Session):
    def __init__(self, warm: np.ndarray, meta: MetaData, space: SearchSpace, candidates: Any, seed: int,
                 feature_weights: np.ndarray | None, k: int):
        super().__init__(space, candidates, seed)
        self.warm, self.meta, self.features_given = list(warm), meta, feature_weights is not None
        self.feature_weights, self.k = feature_weights, k
        self.warm_tasks = list(np.argsort(-feature_weights)[:k]) if feature_weights is not None else []
        self._kernel, self._kernel_n = None, 0

    def explain(self) -> Explanation:
        X, y = self.observed()
        gp = "GP expected improvement on the task's own observations: no meta-train task drives it"
        if len(y) >= 5 or not self.warm:
            return Explanation(None, gp)
        meta = self.meta
        if self.features_given:
            remaining = self.warm_tasks[len(self.warm_tasks) - len(self.warm):]  # the warm list is a suffix
            if self.candidates is None:  # continuous mode: a best configuration already used is skipped
                remaining = [t for t in remaining if self.is_new(meta.X[t][meta.yn[t].argmax()])]
            if not remaining:
                return Explanation(None, gp)
            out = np.zeros(meta.n_tasks)
            out[remaining] = self.feature_weights[remaining]
            return Explanation(out, "meta-feature similarity of the remaining warm-start tasks (the first one's "
                                    "best comes next)")
        if len(y) >= 2:
            return Explanation(meta.observation_weights(X, y), "observation agreement (warm start from the best of "
                                                               "the most agreeing task)")
        return Explanation(np.full(meta.n_tasks, 1.0 / meta.n_tasks),
                           "the portfolio's first configuration: all tasks weigh equally")

    def _propose(self) -> np.ndarray:
        X, y = self.observed()
        if not self.features_given and len(y) >= 2 and self.warm and len(y) < 5:
            # no meta-features: the nearest tasks are those whose ranking agrees with what we saw
            w = self.meta.observation_weights(X, y)
            self.warm = [self.meta.X[t][self.meta.yn[t].argmax()] for t in np.argsort(-w)]
        while self.warm and len(y) < 5:
            point = self.warm.pop(0)
            if self.candidates is not None or self.is_new(point):  # tasks often share a best configuration
                return point
        if len(y) < 2 or np.ptp(y) == 0:
            return self.rng.random(self.space.dim)  # nothing to model yet (e.g. a batch before any result)
        pts, idx = self.pool()
        # kernel hyperparameters are re-fitted whenever the data grew by a fifth since the last fit
        refit = self._kernel is None or len(y) >= 1.2 * self._kernel_n
        ei, kernel = gp_expected_improvement(X, y, pts, self.seed, None if refit else self._kernel)
        if refit:
            self._kernel, self._kernel_n = kernel, len(y)
        return self._choose(ei, pts, idx)


class KnnStrategy(Strategy):
    """Warm start from the best configurations of the k nearest meta-train tasks by meta-features
    (auto-sklearn 1.0), then Bayesian optimisation with a GP and expected improvement.
    Without meta-features: the portfolio's first configuration, then the best configurations of
    the tasks whose ranking agrees most with the new task's observations."""

    name = "knn"
    meta_learned = True

    def __init__(self, k: int = 5):
        super().__init__()
        self.k = k

    def _fit(self) -> None:
        self.first = self.meta.pool[greedy_portfolio(self.meta.Y, 1)[0]]

    def start(self, space: SearchSpace, task_features: Any = None, candidates: Any = None, seed: int = 0) -> Session:
        meta = self._require_fit(space)
        w = meta.feature_weights(task_features)
        if w is not None:
            order = np.argsort(-w)[: self.k]
            warm = np.stack([meta.X[t][meta.yn[t].argmax()] for t in order])
        else:
            warm = self.first[None, :]
        return _KnnSession(warm, meta, space, candidates, seed, w, self.k)


# ---------------------------------------------------------------- mapping: meta-features -> best configuration
class _MappingSession(Session):
    def __init__(self, center: np.ndarray, meta: MetaData, space: SearchSpace, candidates: Any, seed: int,
                 use_obs: bool, radius: float, weights: np.ndarray, k: int):
        super().__init__(space, candidates, seed)
        self.center, self.meta, self.use_obs, self.radius = center, meta, use_obs, radius
        self.weights, self.k = weights, k  # the task weights behind the first proposal (its centre)

    def explain(self) -> Explanation:
        X, y = self.observed()
        if len(y) == 0:
            if self.use_obs:
                return Explanation(self.weights, "mean of the tasks' optima (no meta-features): all tasks equal")
            return Explanation(self.weights, f"meta-feature weights of the {self.k} nearest tasks (their optima's "
                                             "weighted mean comes next)")
        if self.use_obs and len(y) < 4:
            return Explanation(self.meta.observation_weights(X, y),
                               "observation agreement (re-weighted mean of the tasks' optima, plus noise)")
        return Explanation(None, "local search around the best point so far: no meta-train task drives it")

    def _propose(self) -> np.ndarray:
        X, y = self.observed()
        if len(y) == 0:
            return self.center
        if self.use_obs and len(y) < 4:
            # no meta-features: re-weight the tasks' optima by agreement with our observations
            w = self.meta.observation_weights(X, y)
            self.center = _weighted_best(self.meta, w)
            return self.center + self.radius * 0.5 * self.rng.standard_normal(self.space.dim)
        # the neighbourhood of the best point so far, shrinking as trials accumulate
        r = self.radius / np.sqrt(1 + len(y) / 5)
        return np.clip(X[np.argmax(y)] + r * self.rng.standard_normal(self.space.dim), 0, 1)


def _weighted_best(meta: MetaData, w: np.ndarray) -> np.ndarray:
    bests = np.stack([meta.X[t][meta.yn[t].argmax()] for t in range(meta.n_tasks)])  # (T, d)
    return w @ bests


class MappingStrategy(Strategy):
    """"Everything is a mapping", literally: a regressor from meta-features to the encoded best
    configuration (distance-weighted k-nearest-neighbour regression over meta-train tasks).
    Its prediction comes first, then the neighbourhood of the best point found so far.
    Without meta-features the prediction is the mean of the tasks' optima, re-weighted by
    agreement with the new task's first observations."""

    name = "mapping"
    meta_learned = True

    def __init__(self, k: int = 5, radius: float = 0.15):
        super().__init__()
        self.k, self.radius = k, radius

    def predict(self, task_features: Any) -> np.ndarray | None:
        """The predicted best configuration (encoded) for a task's meta-features."""
        meta = self._require_fit()
        w = meta.feature_weights(task_features, self.k)
        return None if w is None else _weighted_best(meta, w)

    def start(self, space: SearchSpace, task_features: Any = None, candidates: Any = None, seed: int = 0) -> Session:
        meta = self._require_fit(space)
        w = meta.feature_weights(task_features, self.k)
        use_obs = w is None
        if w is None:
            w = np.full(meta.n_tasks, 1.0 / meta.n_tasks)
        return _MappingSession(_weighted_best(meta, w), meta, space, candidates, seed, use_obs, self.radius, w, self.k)
