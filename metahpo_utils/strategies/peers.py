"""Optional peers: Syne Tune 0.16 transfer-learning searchers behind our ask/tell interface.

    st-zeroshot     syne_tune...transfer_learning.zero_shot.ZeroShotTransfer
    st-boundingbox  syne_tune...transfer_learning.bounding_box.BoundingBox (random search in the box)
    st-quantile     syne_tune...transfer_learning.quantile_based.quantile_based_searcher
                    .QuantileBasedSurrogateSearcher (copula Thompson sampling, CTS)

Install with ``pip install 'metahpo[peers]'`` (``syne-tune==0.16.0``). Without it this module
still imports, :data:`PEERS_AVAILABLE` is ``False`` and the strategies raise
:class:`StrategyError` at ``fit``/``start``. Syne Tune is imported lazily (it takes seconds and
pulls in ``huggingface_hub``, which is only imported: nothing is downloaded).

How the meta-data are handed over. Every searcher sees the space as the unit cube: one
``syne_tune.config_space.uniform(0, 1)`` per hyperparameter, named as in our space; the
hyperparameters of each meta-train task are its encoded configurations and the objective is the
task's min-max normalized value (``MetaData.yn``, 1 = the task's best) shaped
``(n, 1 seed, 1 fidelity, 1 objective)``. We maximise: ZeroShotTransfer and BoundingBox get
``do_minimize=False`` (0.16 has ``do_minimize``, not ``mode``); QuantileBasedSurrogateSearcher
has no mode and minimises, so it gets the negated values (its Gaussian-copula transform is
rank-based per task, so normalized or raw values give the same model).

Syne Tune 0.16 details this adapter works around (checked in the installed source):

* ``ZeroShotTransfer.suggest()`` is ``SingleFidelityScheduler.suggest``, which calls its random
  searcher and ignores the rank-based portfolio; the portfolio is in ``ZeroShotTransfer.get_config()``
  (greedy minimum average rank, then clipping of ranks by the chosen one). We call ``get_config()``.
  It also requires every configuration to be evaluated on every task; by default we feed it
  ``MetaData.pool`` with ``MetaData.Y`` (values imputed from the nearest evaluated configuration
  where a task lacks one); ``impute="surrogate"`` uses Syne Tune's own ``use_surrogates=True``
  (XGBoost imputation on ``5**d`` random configurations, 10,000 from d = 6 on) instead, through a
  subclass that fixes its 0.16 crash (``self.random_state`` used before it is set).
* ``RandomSearcher`` ignores its ``random_seed`` (it samples with the global NumPy state), so the
  BoundingBox's inner scheduler is a ``SingleObjectiveScheduler`` around a ``RandomSearcher``
  subclass that samples with ``RandomState(seed)``.
* ``QuantileBasedSurrogateSearcher._update`` is a no-op: the 0.16 CTS is pure transfer and does
  not learn from the target's observations (nor does random search in the bounding box, nor the
  static zero-shot portfolio). Observations are still reported through the 0.16 API
  (``on_trial_complete(trial, {metric: value})`` on the schedulers,
  ``on_trial_complete(trial_id, config, metric)`` on the quantile searcher) so a later Syne Tune
  that does learn would receive them.
* With ``candidates`` the quantile searcher's Thompson sampling runs over the open candidates
  (its cached random candidate set is replaced by them); without candidates it keeps Syne Tune's
  100,000 random candidates and drops each one once suggested, so it never repeats itself.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
from collections.abc import Mapping
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from ..space import SearchSpace
from .base import MetaData, Session, Strategy, StrategyError


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or blocked package counts as absent
        return False


#: Whether Syne Tune is installed (the import itself happens on first use).
PEERS_AVAILABLE: bool = _installed("syne_tune")

_INSTALL_HINT = "pip install 'metahpo[peers]'"
_METRIC = "objective"
_ST: SimpleNamespace | None = None


def _syne(who: str) -> SimpleNamespace:
    """Import the Syne Tune pieces once; a clear :class:`StrategyError` when it is missing."""
    global _ST
    if _ST is not None:
        return _ST
    if not PEERS_AVAILABLE:
        raise StrategyError(f"{who}: needs Syne Tune 0.16 (not installed): {_INSTALL_HINT}")
    try:
        from syne_tune.backend.trial_status import Trial
        from syne_tune.config_space import Domain, uniform
        from syne_tune.optimizer.schedulers.searchers.random_searcher import (
            RandomSearcher,
        )
        from syne_tune.optimizer.schedulers.single_objective_scheduler import (
            SingleObjectiveScheduler,
        )
        from syne_tune.optimizer.schedulers.transfer_learning.bounding_box import (
            BoundingBox,
        )
        from syne_tune.optimizer.schedulers.transfer_learning.quantile_based.quantile_based_searcher import (
            QuantileBasedSurrogateSearcher,
        )
        from syne_tune.optimizer.schedulers.transfer_learning.transfer_learning_task_evaluation import (
            TransferLearningTaskEvaluations,
        )
        from syne_tune.optimizer.schedulers.transfer_learning.zero_shot import (
            ZeroShotTransfer,
        )
    except ImportError as err:
        raise StrategyError(f"{who}: cannot import Syne Tune ({err}); {_INSTALL_HINT}") from err

    class SeededRandomSearcher(RandomSearcher):
        """RandomSearcher that honours ``random_seed`` (0.16 samples with the global NumPy state)."""

        def __init__(self, config_space: dict, random_seed: int):
            super().__init__(config_space, random_seed=random_seed)
            self._rs = np.random.RandomState(self.random_seed)

        def suggest(self, **kwargs) -> dict | None:
            return {k: v.sample(random_state=self._rs) if isinstance(v, Domain) else v
                    for k, v in self.config_space.items()}

    class SeededZeroShotTransfer(ZeroShotTransfer):
        """ZeroShotTransfer whose ``use_surrogates=True`` works: 0.16 samples the surrogate's random
        configurations with ``self.random_state`` before ``__init__`` has set it (AttributeError)."""

        def _create_surrogate_transfer_learning_evaluations(self, *args, **kwargs):
            self.random_state = np.random.RandomState(self.random_seed)
            return super()._create_surrogate_transfer_learning_evaluations(*args, **kwargs)

    _ST = SimpleNamespace(Trial=Trial, uniform=uniform, SingleObjectiveScheduler=SingleObjectiveScheduler,
                          BoundingBox=BoundingBox, QuantileBasedSurrogateSearcher=QuantileBasedSurrogateSearcher,
                          TLTE=TransferLearningTaskEvaluations, ZeroShotTransfer=SeededZeroShotTransfer,
                          SeededRandomSearcher=SeededRandomSearcher)
    return _ST


@contextlib.contextmanager
def _quiet(one_thread: bool = True):
    """Silence Syne Tune's prints (bounding box, timers) and its per-construction warnings, and run
    XGBoost/BLAS on one thread: the models are tiny, and OpenMP's spinning threads on a shared
    2-core machine turned a 0.1 s XGBoost fit into 30 s (``one_thread=False`` skips the ~5 ms
    that setting the thread limit costs, where no model is fitted or evaluated)."""
    from threadpoolctl import threadpool_limits

    log = logging.getLogger("syne_tune")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), (
                threadpool_limits(limits=1) if one_thread else contextlib.nullcontext()):
            yield
    finally:
        log.setLevel(level)


def _unit_space(st: SimpleNamespace, names: list[str]) -> dict[str, Any]:
    return {n: st.uniform(0.0, 1.0) for n in names}


def _evaluations(st: SimpleNamespace, cs: dict[str, Any], names: list[str], X: list[np.ndarray],
                 values: list[np.ndarray], tasks: list[str]) -> dict[str, Any]:
    """Per task a TransferLearningTaskEvaluations: encoded configs, values shaped (n, 1, 1, 1)."""
    return {t: st.TLTE(configuration_space=cs,
                       hyperparameters=pd.DataFrame(np.asarray(x, float), columns=names),
                       objectives_names=[_METRIC],
                       objectives_evaluations=np.asarray(v, float).reshape(-1, 1, 1, 1))
            for t, x, v in zip(tasks, X, values)}


# ---------------------------------------------------------------- sessions
class _PeerSession(Session):
    """Keeps Syne Tune trial ids for suggested/observed configurations and reports observations."""

    def __init__(self, space: SearchSpace, candidates: Any, seed: int):
        super().__init__(space, candidates, seed)
        self.st = _syne("start")
        self._trial_ids: dict[tuple, int] = {}

    def _key(self, x: np.ndarray) -> tuple:
        return tuple(np.round(np.asarray(x, float), 9))

    def _trial_id(self, x: np.ndarray) -> int:
        return self._trial_ids.setdefault(self._key(x), len(self._trial_ids))

    def _st_config(self, x: np.ndarray) -> dict[str, float]:
        return {n: float(v) for n, v in zip(self.space.names, x)}

    def suggest(self, n: int = 1) -> list[dict[str, Any]]:
        out = super().suggest(n)
        for c in out:
            self._trial_id(self.space.encode(c))
        return out

    def observe(self, config: Mapping[str, Any], value: float) -> None:
        super().observe(config, value)
        x, v = self.X_obs[-1], self.y_obs[-1]
        trial = self.st.Trial(trial_id=self._trial_id(x), config=self._st_config(x), creation_time=datetime.now())
        self._report(trial, v)

    def _report(self, trial: Any, value: float) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class _SchedulerSession(_PeerSession):
    """A Syne Tune scheduler (ZeroShotTransfer, BoundingBox): results go to ``on_trial_complete``."""

    scheduler: Any

    def _report(self, trial: Any, value: float) -> None:
        with _quiet(one_thread=False):
            if np.isfinite(value):
                self.scheduler.on_trial_complete(trial, {_METRIC: value})
            else:
                self.scheduler.on_trial_error(trial)


class _ZeroShotSession(_SchedulerSession):
    def __init__(self, scheduler: Any, space: SearchSpace, candidates: Any, seed: int):
        super().__init__(space, candidates, seed)
        self.scheduler = scheduler

    def _propose(self) -> np.ndarray:
        zs = self.scheduler
        # ZeroShotTransfer.suggest() would return a random config; get_config() is the portfolio.
        cfg = zs.get_config() if len(zs._hyperparameters) else None
        if cfg is None:  # portfolio exhausted: uniform random, as Syne Tune's own fallback searcher
            return self.rng.random(self.space.dim)
        return np.array([cfg[n] for n in self.space.names], float)


class _BoundingBoxSession(_SchedulerSession):
    def __init__(self, scheduler: Any, space: SearchSpace, candidates: Any, seed: int):
        super().__init__(space, candidates, seed)
        self.scheduler = scheduler

    def _propose(self) -> np.ndarray:
        sug = self.scheduler.suggest()
        if sug is None or sug.config is None:
            return self.rng.random(self.space.dim)
        return np.array([sug.config[n] for n in self.space.names], float)


class _QuantileSession(_PeerSession):
    def __init__(self, searcher: Any, space: SearchSpace, candidates: Any, seed: int):
        super().__init__(space, candidates, seed)
        self.searcher = searcher
        if self.cand_X is not None:
            # Thompson sampling over the table's candidates instead of Syne Tune's random ones.
            cands = pd.DataFrame(self.cand_X, columns=space.names)
            with _quiet():
                mu = np.asarray(searcher.model_pipeline.predict(cands), float).reshape(len(cands), -1)
            self._mu_all, self._sigma = mu, float(np.ravel(searcher.sigma_pred)[0])

    def _propose(self) -> np.ndarray:
        s = self.searcher
        if self.cand_X is not None:
            idx = np.flatnonzero(self.open)
            s.X_candidates = pd.DataFrame(self.cand_X[idx], columns=self.space.names)
            s.mu_pred = self._mu_all[idx]
            s.sigma_pred = np.full_like(s.mu_pred, self._sigma)
            cfg = s.suggest()
            x = np.array([cfg[n] for n in self.space.names], float)
            return self._pick(int(idx[np.argmin(((self.cand_X[idx] - x) ** 2).sum(1))]))
        if len(s.X_candidates) == 0:
            return self.rng.random(self.space.dim)
        cfg = s.suggest()
        x = np.array([cfg[n] for n in self.space.names], float)
        # drop the suggested candidate so that it is not suggested again
        j = int(np.flatnonzero(np.all(np.isclose(s.X_candidates.to_numpy(float), x, atol=1e-12), axis=1))[0])
        keep = np.arange(len(s.X_candidates)) != j
        s.X_candidates = s.X_candidates[keep].reset_index(drop=True)
        s.mu_pred, s.sigma_pred = s.mu_pred[keep], s.sigma_pred[keep]
        return x

    def _report(self, trial: Any, value: float) -> None:
        # The searcher minimises: report the negated value (a no-op in 0.16, see the module doc).
        if np.isfinite(value):
            self.searcher.on_trial_complete(trial.trial_id, trial.config, -float(value))
        else:
            self.searcher.on_trial_error(trial.trial_id)


# ---------------------------------------------------------------- strategies
class _PeerStrategy(Strategy):
    meta_learned = True

    def fit(self, meta_table: pd.DataFrame | None, task_features: pd.DataFrame | None = None,
            space: SearchSpace | None = None) -> Strategy:
        _syne(f"{self.name}: fit")
        return super().fit(meta_table, task_features, space)

    def _prepare(self, space: SearchSpace) -> tuple[SimpleNamespace, MetaData, dict[str, Any]]:
        st = _syne(f"{self.name}: start")
        meta = self._require_fit(space)
        return st, meta, _unit_space(st, space.names)


class SyneZeroShotStrategy(_PeerStrategy):
    """Syne Tune's ``ZeroShotTransfer`` (Wistuba et al. 2015): a static rank-based portfolio.

    Args:
        impute: ``"nearest"`` (default) ranks ``MetaData.pool`` with ``MetaData.Y`` (exact where all
            tasks share their configurations); ``"surrogate"`` uses Syne Tune's
            ``use_surrogates=True`` (XGBoost per task on random configurations).
    """

    name = "st-zeroshot"

    def __init__(self, impute: str = "nearest"):
        super().__init__()
        if impute not in ("nearest", "surrogate"):
            raise StrategyError(f"{self.name}: impute must be 'nearest' or 'surrogate' (got {impute!r})")
        self.impute = impute

    def start(self, space: SearchSpace, task_features: Any = None, candidates: Any = None, seed: int = 0) -> Session:
        st, meta, cs = self._prepare(space)
        if self.impute == "nearest":
            evals = _evaluations(st, cs, space.names, [meta.pool] * meta.n_tasks, list(meta.Y), meta.tasks)
        else:
            evals = _evaluations(st, cs, space.names, meta.X, meta.yn, meta.tasks)
        with _quiet():
            zs = st.ZeroShotTransfer(config_space=cs, metric=_METRIC, transfer_learning_evaluations=evals,
                                     do_minimize=False, sort_transfer_learning_evaluations=False,
                                     use_surrogates=self.impute == "surrogate", random_seed=seed)
        return _ZeroShotSession(zs, space, candidates, seed)


class SyneBoundingBoxStrategy(_PeerStrategy):
    """Syne Tune's ``BoundingBox`` (Perrone et al. 2019): random search in the box spanned by the
    best ``num_hyperparameters_per_task`` configurations of each meta-train task."""

    name = "st-boundingbox"

    def __init__(self, num_hyperparameters_per_task: int = 1):
        super().__init__()
        self.num_hyperparameters_per_task = int(num_hyperparameters_per_task)

    def start(self, space: SearchSpace, task_features: Any = None, candidates: Any = None, seed: int = 0) -> Session:
        st, meta, cs = self._prepare(space)
        evals = _evaluations(st, cs, space.names, meta.X, meta.yn, meta.tasks)

        def scheduler_fun(box: dict, metric: str, do_minimize: bool, random_seed: int) -> Any:
            return st.SingleObjectiveScheduler(box, metric=metric, do_minimize=do_minimize,
                                               searcher=st.SeededRandomSearcher(box, random_seed=random_seed),
                                               random_seed=random_seed)

        with _quiet():
            bb = st.BoundingBox(scheduler_fun=scheduler_fun, config_space=cs, metric=_METRIC,
                                transfer_learning_evaluations=evals, do_minimize=False,
                                num_hyperparameters_per_task=self.num_hyperparameters_per_task, random_seed=seed)
        return _BoundingBoxSession(bb, space, candidates, seed)


class SyneQuantileStrategy(_PeerStrategy):
    """Syne Tune's ``QuantileBasedSurrogateSearcher`` (Salinas et al. 2020, CTS): an XGBoost
    surrogate of the Gaussian-copula-transformed meta-train values, Thompson-sampled."""

    name = "st-quantile"

    def __init__(self, max_fit_samples: int = 100000, normalization: str = "gaussian"):
        super().__init__()
        self.max_fit_samples, self.normalization = int(max_fit_samples), normalization

    def start(self, space: SearchSpace, task_features: Any = None, candidates: Any = None, seed: int = 0) -> Session:
        st, meta, cs = self._prepare(space)
        evals = _evaluations(st, cs, space.names, meta.X, [-v for v in meta.yn], meta.tasks)
        with _quiet():
            searcher = st.QuantileBasedSurrogateSearcher(config_space=cs, transfer_learning_evaluations=evals,
                                                         max_fit_samples=self.max_fit_samples,
                                                         normalization=self.normalization, random_seed=seed)
        return _QuantileSession(searcher, space, candidates, seed)


#: Name -> class, for the strategy registry.
PEER_STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (SyneZeroShotStrategy, SyneBoundingBoxStrategy, SyneQuantileStrategy)
}
