"""Bridges to Optuna: a meta-learned sampler, and meta-datasets to and from Optuna storages.

* :class:`MetaLearnedSampler` -- an ``optuna`` sampler driven by a fitted meta-learned
  :class:`~metahpo_utils.strategies.base.Strategy`; it proposes from the very first trial
  (a relative sampler cannot: its search space is empty until a trial has completed).
* :func:`from_optuna` -- a user's past studies (one study = one task) as a :class:`MetaTables`
  meta-dataset that strategies can be fitted on.
* :func:`to_optuna` -- a meta-dataset written as one study per task to an Optuna storage, so
  ``optuna-dashboard`` and ``optuna.visualization`` open it.

Objectives in a meta-dataset are maximised. A minimised study's values are negated on import
(and on the way into the sampler's session); exported studies are ``maximize`` studies.
"""
from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from .errors import MetahpoError
from .metadataset import MetaDatasetStore, MetaTables, load_exported
from .optuna_parallel import CLAIM_WAIT_S, claim_configuration, key_of, published_config
from .space import SearchSpace, infer_space
from .strategies.base import Session, Strategy
from .strategies.optuna_adapters import optuna_quiet


class OptunaInteropError(MetahpoError, ValueError):
    """A study, storage or meta-dataset that cannot be bridged to or from Optuna."""


#: Relative tolerance (of a parameter's range) within which a value counts as inside its bounds.
_BOUND_TOL = 1e-9
_FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
#: Times the session is asked again for a trial (plus one per running trial) before a seeded random
#: configuration is drawn instead.
_MAX_ASKS = 20
#: Random draws tried for an untried configuration (a small finite space may have none left).
_MAX_DRAWS = 1000


# ---------------------------------------------------------------- the sampler
class MetaLearnedSampler(BaseSampler):
    """An Optuna sampler that asks a fitted meta-learned strategy for each trial's configuration.

    Before each trial the sampler tells the strategy's session every finished trial it has not
    seen yet (failed and pruned ones as failures), then asks it for one configuration. Parameters
    the objective requests are answered from that proposal when the proposed value fits the
    requested distribution; any other parameter (not in the space, or a proposal outside a
    narrower distribution) comes from ``fallback``. Trials already in the storage (a resumed
    study, other workers, enqueued trials) are told to the session too.

    Parallel workers: run the same script in N processes (or machines) with one study on one shared
    storage -- ``optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))`` or
    an RDB URL such as ``sqlite:///study.db`` -- each with its own ``MetaLearnedSampler(strategy,
    seed=i)``. The sampler never proposes a configuration the study already holds:

    * Finished trials of every worker are told to the session (with their values) before each proposal.
    * Running trials of other workers are pending: their configurations are taken. When the session
      proposes one, it is asked again (its next best; the rejected configuration's value reaches it
      when that trial finishes); after 20 refusals more than there are running trials, a seeded random
      untried configuration is used.
      (Constant liar, telling the session a fake value, is not used: many sessions pass observations
      on to an optimiser that cannot take a value back.)
    * The proposal is published in the trial's system attribute ``metahpo:proposal`` as soon as the
      trial starts, before the objective runs, and settled against rival claims
      (:func:`~metahpo_utils.optuna_parallel.claim_configuration`), so two workers sampling at the same
      moment do not both keep the same configuration.

    The guarantee: no two trials whose configurations were proposed by MetaLearnedSamplers share a
    configuration (same :func:`~metahpo_utils.strategies.base.config_key`, the identity sessions use), and
    none repeats a configuration that was visible in the storage (any state; enqueued trials' fixed
    parameters) when its trial started. What stays open: a trial whose parameters come from elsewhere
    (another sampler, parameters the objective sets itself) becomes visible only when its objective calls
    ``suggest_*``, so a proposal made before that cannot avoid it; parameters drawn by ``fallback`` (a
    requested distribution narrower than the space, a parameter outside it) are not checked; a worker that
    dies between its claim and its decision makes rivals wait ``claim_wait_s`` and give that configuration up;
    a finite space whose configurations are all taken repeats one.

    Example::

        tables = from_optuna("sqlite:///past.db")               # or default_metadataset()
        strategy = make_strategy("portfolio").fit(tables.trials, space=tables.space)
        study = optuna.create_study(direction="minimize", sampler=MetaLearnedSampler(strategy, seed=0))
        study.optimize(objective, n_trials=20)
        print(study.sampler.stats)                               # proposed vs fallback counts

    Args:
        strategy: a fitted strategy (e.g. ``make_strategy("portfolio").fit(table, space=space)``).
        space: the search space of the strategy's sessions; by default the space it was fitted on.
        task_features: the new task's meta-features (a mapping or Series), for strategies that use them.
        fallback: sampler for parameters the strategy does not answer (``RandomSampler(seed)`` by default).
        seed: seed of the session, of the default fallback and of random untried configurations.
        claim_wait_s: seconds to wait for another worker's unsettled claim on the same configuration.

    Attributes:
        stats: ``proposed`` / ``fallback`` parameter counts, ``observed`` trials told to the session,
            ``skipped`` finished trials that could not be told (no usable configuration).
        dedup: ``asked_again`` (session proposals refused as already in the study), ``random`` (random
            untried configurations used instead), ``claims_lost`` (claims given up to a worker that
            claimed the same configuration at the same moment).

    Raises:
        OptunaInteropError: no space given and the strategy has none (not fitted).
    """

    def __init__(self, strategy: Strategy, space: SearchSpace | None = None, task_features: Any = None,
                 fallback: BaseSampler | None = None, seed: int = 0, claim_wait_s: float = CLAIM_WAIT_S):
        if space is None:
            meta = getattr(strategy, "meta", None)
            space = getattr(meta, "space", None)
        if space is None:
            raise OptunaInteropError(
                f"MetaLearnedSampler: strategy '{getattr(strategy, 'name', type(strategy).__name__)}' has no "
                "search space (fit it on a meta-dataset first, or pass space=...)")
        if not isinstance(space, SearchSpace):
            raise OptunaInteropError(f"MetaLearnedSampler: space must be a SearchSpace (got {type(space).__name__})")
        self.strategy = strategy
        self.space = space
        self.task_features = task_features
        self.seed = seed
        self.fallback = fallback if fallback is not None else RandomSampler(seed=seed)
        self.claim_wait_s = claim_wait_s
        self.stats: dict[str, int] = {"proposed": 0, "fallback": 0, "observed": 0, "skipped": 0}
        self.dedup: dict[str, int] = {"asked_again": 0, "random": 0, "claims_lost": 0}
        self._session: Session | None = None
        self._proposals: dict[int, dict[str, Any]] = {}  # trial number -> the strategy's configuration
        self._observed: set[int] = set()  # trial numbers already told to the session
        self._study_name: str | None = None
        self._keys: dict[int, frozenset[bytes]] = {}  # configuration keys of finished trials, by trial id
        self._lock = threading.Lock()  # study.optimize(n_jobs>1) calls the sampler from threads

    @property
    def session(self) -> Session:
        """The strategy's session for this study (started on first use)."""
        if self._session is None:
            self._session = self.strategy.start(self.space, task_features=self.task_features, candidates=None,
                                                seed=self.seed)
        return self._session

    @property
    def proposals(self) -> dict[int, dict[str, Any]]:
        """The configuration proposed for each trial number (a copy)."""
        return {k: dict(v) for k, v in self._proposals.items()}

    # ---- relative sampling: not used (the proposal is made in before_trial)
    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    # ---- per trial
    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        with self._lock:
            self._check_study(study)
            fixed = trial.system_attrs.get("fixed_params", {})
            # An enqueued trial that fixes every hyperparameter would waste a proposal.
            if trial.number not in self._proposals and not all(n in fixed for n in self.space.names):
                fixed = {n: v for n, v in fixed.items() if n in self.space.params}
                config, lost = claim_configuration(
                    study, trial, self.space, lambda taken, trials: self._untried(study, trial, taken, trials, fixed),
                    wait_s=self.claim_wait_s, cache=self._keys)
                self.dedup["claims_lost"] += lost
                self._proposals[trial.number] = config
            else:
                self._sync(study, study.get_trials(deepcopy=False, states=_FINISHED))
        self.fallback.before_trial(study, trial)

    def _sync(self, study: optuna.Study, trials: Sequence[FrozenTrial]) -> None:
        """Tell the session every finished trial (of any worker) it has not been told."""
        sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
        for t in trials:
            if t.state in _FINISHED and t.number not in self._observed:
                self._tell(t, t.state, t.value, sign)

    def _untried(self, study: optuna.Study, trial: FrozenTrial, taken: set[bytes], trials: Sequence[FrozenTrial],
                 fixed: Mapping[str, Any]) -> dict[str, Any]:
        """The session's next configuration not in ``taken`` (with the trial's fixed parameters), else a
        seeded random one; a taken one only when no untried one was found. ``trials``: the study as just
        read (its finished trials are told to the session first, so it moves past them)."""
        self._sync(study, trials)
        n_running = sum(t.state == TrialState.RUNNING and t.number != trial.number for t in trials)
        config: dict[str, Any] = {}
        for _ in range(_MAX_ASKS + n_running):
            suggested = self.session.suggest(1)
            if not suggested:
                break
            config = {**suggested[0], **fixed}
            if key_of(self.space, config) not in taken:
                return config
            self.dedup["asked_again"] += 1
        # Seeded by (seed, trial number, earlier draws), so reruns of a worker draw alike.
        rng = np.random.default_rng([self.seed, trial.number, self.dedup["random"]])
        self.dedup["random"] += 1
        for _ in range(_MAX_DRAWS):
            config = {**self.space.decode(rng.random(self.space.dim)), **fixed}
            if key_of(self.space, config) not in taken:
                return config
        return config

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        proposal = self._proposals.get(trial.number, {})
        if param_name in proposal:
            ok, value = fit_to_distribution(proposal[param_name], param_distribution)
            if ok:
                self.stats["proposed"] += 1
                return value
        self.stats["fallback"] += 1
        return self.fallback.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        # Tell the session now rather than at the next trial, so it is current after optimize().
        with self._lock:
            if trial.number not in self._observed and state in _FINISHED and len(study.directions) == 1:
                sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
                self._tell(trial, state, values[0] if values else None, sign)
        self.fallback.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.fallback.reseed_rng()

    # ---- helpers
    def _check_study(self, study: optuna.Study) -> None:
        if len(study.directions) != 1:
            raise OptunaInteropError(
                f"MetaLearnedSampler: study '{study.study_name}' has {len(study.directions)} objectives; "
                "meta-learned strategies optimise a single objective")
        if self._study_name is None:
            self._study_name = study.study_name
        elif study.study_name != self._study_name:
            raise OptunaInteropError(
                f"MetaLearnedSampler: this sampler serves study '{self._study_name}', not '{study.study_name}' "
                "(create one sampler per study)")

    def _tell(self, trial: FrozenTrial, state: TrialState, value: float | None, sign: float) -> None:
        """Tell the session one finished trial (once); skip it if it has no usable configuration."""
        self._observed.add(trial.number)
        # this worker's proposal, or the one another worker's MetaLearnedSampler published for it
        proposal = self._proposals.get(trial.number) or published_config(trial)
        config = dict(proposal) if proposal else {}
        config.update({n: v for n, v in trial.params.items() if n in self.space.params})
        if proposal is None and any(n not in config for n in self.space.names):
            self.stats["skipped"] += 1
            return
        try:
            self.space.encode(config)  # e.g. a categorical value outside the space's choices
        except (ValueError, TypeError):
            self.stats["skipped"] += 1
            return
        ok = state == TrialState.COMPLETE and value is not None
        self.session.observe(config, sign * float(value) if ok else math.nan)
        self.stats["observed"] += 1


def fit_to_distribution(value: Any, dist: BaseDistribution) -> tuple[bool, Any]:
    """Whether ``value`` is a valid draw of ``dist`` (after rounding to its grid), and that draw.

    Floats and integers must lie within the bounds (up to rounding error) and are rounded to the
    distribution's ``step``; a categorical value must be one of the choices (the choice object itself
    is returned, so ``16.0`` matches the choice ``16`` but ``True`` does not match ``1``).
    """
    if isinstance(dist, CategoricalDistribution):
        i = _choice_index(value, dist.choices)
        return (i is not None), (dist.choices[i] if i is not None else None)
    if isinstance(value, (bool, np.bool_, str)) or value is None:
        return False, None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return False, None
    if not math.isfinite(v):
        return False, None
    tol = _BOUND_TOL * (dist.high - dist.low) + 1e-12
    if not dist.low - tol <= v <= dist.high + tol:
        return False, None
    v = min(max(v, dist.low), dist.high)
    if isinstance(dist, IntDistribution):
        step = dist.step
        v = int(dist.low + round((v - dist.low) / step) * step)
        return (dist.low <= v <= dist.high), v
    if dist.step is not None:
        v = float(min(dist.low + round((v - dist.low) / dist.step) * dist.step, dist.high))
    return True, float(v)


def _choice_index(value: Any, choices: Sequence[Any]) -> int | None:
    """Index of the choice equal to ``value`` (booleans only match booleans), else ``None``."""
    if isinstance(value, np.generic):
        value = value.item()
    for i, c in enumerate(choices):
        if isinstance(c, bool) != isinstance(value, bool):
            continue
        try:
            if c == value:
                return i
        except (TypeError, ValueError):
            continue
    for i, c in enumerate(choices):  # CSV round trips: "16" for 16, "True" for True
        if isinstance(value, str) and str(c) == value:
            return i
    return None


# ---------------------------------------------------------------- storages
def _storage_url(storage: str | os.PathLike) -> str:
    """A storage URL; a plain file path becomes ``sqlite:///<absolute path>``."""
    s = os.fspath(storage)
    return s if "://" in s else "sqlite:///" + str(Path(s).expanduser().resolve())


def _sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (``None`` for other backends or in-memory SQLite)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def _sqlite_tables(path: Path) -> set[str]:
    """Table names of an existing SQLite file, read-only (so a wrong file is never modified)."""
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as err:
        raise OptunaInteropError(f"storage '{path}' is not a readable SQLite file ({err})") from None


def _open_storage(storage: Any, must_exist: bool) -> optuna.storages.BaseStorage:
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage
    if not isinstance(storage, (str, os.PathLike)):
        raise OptunaInteropError("storage must be a URL, a file path or an optuna storage "
                                 f"(got {type(storage).__name__})")
    url = _storage_url(storage)
    path = _sqlite_file(url)
    if path is not None:
        if path.exists():
            tables = _sqlite_tables(path)
            # Optuna would add its tables to any SQLite file (e.g. a metahpo store given by mistake).
            if tables and "studies" not in tables:
                raise OptunaInteropError(f"storage '{path}' is a SQLite file but not an Optuna storage "
                                         f"(tables: {sorted(tables)})")
        elif must_exist:
            raise OptunaInteropError(f"storage '{path}' does not exist")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.get_storage(url)


# ---------------------------------------------------------------- import
def from_optuna(storage: Any, study_names: Sequence[str] | None = None) -> MetaTables:
    """Import past Optuna studies as a meta-dataset, one study per task.

    Trials: ``COMPLETE`` -> status ``ok``; ``FAIL`` -> ``failed``; ``PRUNED`` -> ``pruned`` (objective
    NaN, its intermediate values kept as the curve); running and waiting trials are skipped, and so
    are failed or pruned trials that lack a hyperparameter. ``objective`` is the trial's value in a
    ``maximize`` study and minus it in a ``minimize`` study (so higher is always better); the user
    attribute ``test_objective`` and the curve are negated alike. ``cost_s`` is the trial's duration,
    ``seed`` and ``config_id`` the user attributes of those names (else 0 and the trial number).

    The search space merges every trial's distributions (float/int bounds widened, categorical
    choices united). Hyperparameters are the parameters of every complete trial; the others, and
    parameters fixed to one value, are dropped and listed in ``meta["dropped_params"]``.
    Meta-features are a study's user attribute ``metafeatures`` (a dict) if present, else its numeric
    user attributes; remaining scalar user attributes go to the provenance table.

    Args:
        storage: a storage URL (``sqlite:///past.db``), a SQLite file path, or an optuna storage.
        study_names: the studies to import (all by default).

    Returns:
        A :class:`MetaTables` with ``trials``, ``tasks`` (``task`` + meta-feature columns),
        ``provenance`` (``task``, ``split``, ``direction``, ``n_trials``, ...) and ``meta``
        (``space``, ``source="optuna"``, ``directions``, ``dropped_params``, ``studies``).

    Raises:
        OptunaInteropError: a missing storage, an unknown study, a multi-objective study, a parameter
            whose distributions conflict across trials, or no complete trial at all.
    """
    st = _open_storage(storage, must_exist=True)
    available = optuna.get_all_study_names(st)
    if study_names is None:
        names = list(available)
    else:
        names = [study_names] if isinstance(study_names, str) else list(study_names)
        unknown = [n for n in names if n not in available]
        if unknown:
            raise OptunaInteropError(f"from_optuna: no study named {unknown} in the storage "
                                     f"(available: {sorted(available)})")
    if not names:
        raise OptunaInteropError("from_optuna: the storage holds no studies")

    studies: list[tuple[str, optuna.Study, float, list[FrozenTrial]]] = []
    dists: dict[str, BaseDistribution] = {}
    for name in names:
        study = optuna.load_study(study_name=name, storage=st)
        if len(study.directions) != 1:
            raise OptunaInteropError(f"from_optuna: study '{name}' has {len(study.directions)} objectives "
                                     "(only single-objective studies form a meta-dataset)")
        sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
        trials = study.get_trials(deepcopy=False, states=_FINISHED)
        for t in trials:
            for p, d in t.distributions.items():
                dists[p] = _merge_distributions(p, dists[p], d) if p in dists else d
        studies.append((name, study, sign, trials))

    complete = [t for *_, trials in studies for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise OptunaInteropError(f"from_optuna: no complete trial in the studies {names}")
    common = set.intersection(*(set(t.params) for t in complete))
    keep = [p for p in dists if p in common and not dists[p].single()]
    dropped = sorted(set(dists) - set(keep))
    if not keep:
        raise OptunaInteropError(f"from_optuna: no parameter is set in every complete trial with more than one "
                                 f"value (parameters seen: {sorted(dists)})")
    space = SearchSpace({p: dists[p] for p in keep})

    rows, feats, prov, n_incomplete = [], [], [], 0
    for name, study, sign, trials in studies:
        n = 0
        for t in trials:
            if any(p not in t.params for p in keep):
                n_incomplete += 1
                continue
            rows.append(_trial_row(name, t, keep, sign))
            n += 1
        mf, extra = _study_attrs(name, study.user_attrs)
        feats.append({"task": name, **mf})
        prov.append({"task": name, "split": "meta-train", **extra,
                     "direction": study.direction.name.lower(), "n_trials": n})
    cols = ["task", *keep, "objective", "test_objective", "status", "cost_s", "seed", "config_id", "curve"]
    meta = {"space": space.to_json(), "source": "optuna", "studies": list(names),
            "directions": {name: study.direction.name.lower() for name, study, *_ in studies},
            "dropped_params": dropped, "incomplete_trials_skipped": n_incomplete}
    return MetaTables(pd.DataFrame(rows, columns=cols), pd.DataFrame(feats), pd.DataFrame(prov), meta)


def _trial_row(task: str, t: FrozenTrial, names: list[str], sign: float) -> dict[str, Any]:
    status = {TrialState.COMPLETE: "ok", TrialState.FAIL: "failed", TrialState.PRUNED: "pruned"}[t.state]
    value = sign * float(t.value) if t.state == TrialState.COMPLETE and t.value is not None else math.nan
    test = t.user_attrs.get("test_objective")
    cost = t.duration.total_seconds() if t.duration is not None else math.nan
    return {"task": task, **{p: t.params[p] for p in names}, "objective": value,
            "test_objective": sign * float(test) if _is_number(test) else math.nan,
            "status": status, "cost_s": cost,
            "seed": int(t.user_attrs["seed"]) if _is_number(t.user_attrs.get("seed")) else 0,
            "config_id": int(t.user_attrs["config_id"]) if _is_number(t.user_attrs.get("config_id")) else t.number,
            "curve": [sign * float(v) for _, v in sorted(t.intermediate_values.items())]}


def _study_attrs(name: str, attrs: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, Any]]:
    """A study's meta-features and its other scalar user attributes (for provenance)."""
    if isinstance(attrs.get("metafeatures"), Mapping):
        mf = {}
        for k, v in attrs["metafeatures"].items():
            if v is not None and not _is_number(v):
                raise OptunaInteropError(f"from_optuna: study '{name}' has a non-numeric meta-feature "
                                         f"'{k}'={v!r} in its user attribute 'metafeatures'")
            mf[str(k)] = math.nan if v is None else float(v)
        rest = {k: v for k, v in attrs.items() if k != "metafeatures"}
    else:
        mf = {k: float(v) for k, v in attrs.items() if _is_number(v)}
        rest = {k: v for k, v in attrs.items() if k not in mf}
    reserved = {"task", "direction", "n_trials"}
    extra = {k: v for k, v in rest.items()
             if k not in reserved and (v is None or isinstance(v, (str, bool, int, float)))}
    return mf, extra


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _kind(d: BaseDistribution) -> str:
    return {FloatDistribution: "float", IntDistribution: "int", CategoricalDistribution: "categorical"}.get(
        type(d), type(d).__name__)


def _merge_distributions(name: str, a: BaseDistribution, b: BaseDistribution) -> BaseDistribution:
    """One distribution covering both (bounds widened, choices united), or an error naming ``name``."""
    if a == b:
        return a
    if type(a) is not type(b):
        raise OptunaInteropError(f"from_optuna: parameter '{name}' is {_kind(a)} in some trials and "
                                 f"{_kind(b)} in others")
    if isinstance(a, CategoricalDistribution):
        choices = list(a.choices) + [c for c in b.choices if _choice_index(c, a.choices) is None]
        return CategoricalDistribution(choices)
    if not isinstance(a, (FloatDistribution, IntDistribution)):
        raise OptunaInteropError(f"from_optuna: parameter '{name}' has an unsupported distribution {type(a).__name__}")
    if a.log != b.log:
        raise OptunaInteropError(f"from_optuna: parameter '{name}' is log-scaled in some trials and not in others")
    low, high = min(a.low, b.low), max(a.high, b.high)
    step = a.step if a.step == b.step else None
    if step is not None:  # keep a common grid only if both bounds lie on it
        k = (high - low) / step
        if abs(k - round(k)) > 1e-8 or abs((a.low - b.low) / step - round((a.low - b.low) / step)) > 1e-8:
            step = None
    if isinstance(a, IntDistribution):
        return IntDistribution(int(low), int(high), log=a.log, step=int(step) if step is not None else 1)
    return FloatDistribution(low, high, log=a.log, step=step)


# ---------------------------------------------------------------- export
def to_optuna(source: Any, storage: Any, space: SearchSpace | None = None, study_prefix: str = "",
              overwrite: bool = False) -> list[str]:
    """Write a meta-dataset to an Optuna storage, one ``maximize`` study per task.

    Each row becomes a trial with the task's hyperparameters as params (``space.params`` as their
    distributions): status ``ok``/``diverged`` -> ``COMPLETE`` with the objective as value (``FAIL``
    if the objective is not finite), ``failed`` -> ``FAIL``, ``pruned`` -> ``PRUNED``; the curve
    becomes the intermediate values (step = epoch, from 1); ``status``, ``test_objective``, ``cost_s``,
    ``seed`` and ``config_id`` become user attributes. Each study's user attributes hold the task's
    ``metafeatures`` (a dict) and its provenance fields (``split``, ...).

    Args:
        source: a :class:`MetaTables`, an exported folder (:func:`export_tables`), a SQLite store made
            by ``collect``, or a tidy trials DataFrame (then ``space`` is given or inferred).
        storage: a storage URL, a file path (``x.db`` -> ``sqlite:///x.db``) or an optuna storage.
        space: the search space (by default the meta-dataset's own).
        study_prefix: prepended to each task name to form its study name.
        overwrite: replace studies of the same names (otherwise they are an error).

    Returns:
        The study names, in task order.

    Raises:
        OptunaInteropError: an unreadable source, a value outside the space, or existing studies
            without ``overwrite``.
    """
    trials, tasks, provenance, space = _resolve_source(source, space)
    trials = trials.copy()
    trials["task"] = trials["task"].astype(str)
    if "status" not in trials:
        trials["status"] = np.where(trials["objective"].notna(), "ok", "failed")
    bad = sorted(set(trials["status"].astype(str)) - {"ok", "diverged", "failed", "pruned"})
    if bad:
        raise OptunaInteropError(f"to_optuna: column 'status' has values {bad}; allowed: ok, diverged, failed, pruned")
    missing = [n for n in space.names if n not in trials.columns]
    if missing:
        raise OptunaInteropError(f"to_optuna: the trials table lacks hyperparameter column(s) {missing}")
    task_names = list(dict.fromkeys(sorted(trials["task"])))
    if not task_names:
        raise OptunaInteropError("to_optuna: the trials table is empty")
    study_names = [f"{study_prefix}{t}" for t in task_names]

    st = _open_storage(storage, must_exist=False)
    existing = sorted(set(study_names) & set(optuna.get_all_study_names(st)))
    if existing and not overwrite:
        raise OptunaInteropError(f"to_optuna: the storage already holds studies {existing[:10]}"
                                 f"{' ...' if len(existing) > 10 else ''} (pass overwrite=True to replace them)")
    # Build every trial before writing, so a bad value leaves the storage untouched.
    frozen = {t: [_frozen_trial(row, space, t) for row in rows.to_dict("records")]
              for t, rows in trials.groupby("task", sort=False)}
    mf_rows = _by_task(tasks)
    prov_rows = _by_task(provenance)
    for name in existing:
        optuna.delete_study(study_name=name, storage=st)
    for task, name in zip(task_names, study_names):
        with optuna_quiet():  # one "A new study created" line per task is noise here
            study = optuna.create_study(study_name=name, storage=st, direction="maximize")
        mf = {str(k): _py(v) for k, v in mf_rows.get(task, {}).items()}
        study.set_user_attr("metafeatures", mf)
        for k, v in prov_rows.get(task, {}).items():
            if k not in ("metafeatures", "direction", "n_trials"):
                study.set_user_attr(str(k), _py(v))
        study.add_trials(frozen[task])
    return study_names


def _resolve_source(source: Any, space: SearchSpace | None) -> tuple[pd.DataFrame, pd.DataFrame | None,
                                                                      pd.DataFrame | None, SearchSpace]:
    """(trials, tasks, provenance, space) of any accepted source."""
    if isinstance(source, MetaTables):
        return source.trials, source.tasks, source.provenance, space or _meta_space(source.meta, "the MetaTables")
    if isinstance(source, pd.DataFrame):
        for col in ("task", "objective"):
            if col not in source.columns:
                raise OptunaInteropError(f"to_optuna: the trials table lacks column '{col}'")
        return source, None, None, space or infer_space(source)
    if not isinstance(source, (str, os.PathLike)):
        raise OptunaInteropError("to_optuna: source must be a MetaTables, a trials DataFrame, an exported folder "
                                 f"or a SQLite store (got {type(source).__name__})")
    path = Path(source)
    if path.is_dir():
        tables = load_exported(path)
        return tables.trials, tables.tasks, tables.provenance, space or _meta_space(tables.meta, f"'{path}'")
    if not path.exists():
        raise OptunaInteropError(f"to_optuna: source '{path}' does not exist")
    with MetaDatasetStore(path, readonly=True) as store:
        meta = store.read_meta()
        if "space" not in meta:
            raise OptunaInteropError(f"to_optuna: store '{path}' holds no search space (not a finished collection?)")
        return store.trials_table(), store.tasks_table(), store.provenance_table(), space or store.space


def _meta_space(meta: Mapping[str, Any], what: str) -> SearchSpace:
    if "space" not in meta:
        raise OptunaInteropError(f"to_optuna: {what} has no meta['space']; pass space=...")
    return SearchSpace.from_json(meta["space"])


def _by_task(df: pd.DataFrame | None) -> dict[str, dict[str, Any]]:
    """Rows of a per-task table (``task`` column or index) as task -> {column: value}."""
    if df is None or df.empty:
        return {}
    if "task" in df.columns:
        df = df.set_index("task")
    return {str(t): row.to_dict() for t, row in df.iterrows()}


def _frozen_trial(row: Mapping[str, Any], space: SearchSpace, task: str) -> FrozenTrial:
    params = {}
    for name, dist in space.params.items():
        params[name] = _param_value(row[name], dist, name, task, row.get("config_id"))
    status = str(row["status"])
    obj = _float_or_none(row.get("objective"))
    if status in ("ok", "diverged") and obj is not None:
        state, value = TrialState.COMPLETE, obj
    else:
        state, value = (TrialState.PRUNED if status == "pruned" else TrialState.FAIL), None
    curve = _curve(row.get("curve"))
    attrs = {"status": status, "test_objective": _float_or_none(row.get("test_objective")),
             "cost_s": _float_or_none(row.get("cost_s")),
             "seed": int(row["seed"]) if _is_number(row.get("seed")) and math.isfinite(row["seed"]) else 0}
    if _is_number(row.get("config_id")) and math.isfinite(row["config_id"]):
        attrs["config_id"] = int(row["config_id"])
    return optuna.trial.create_trial(state=state, value=value, params=params, distributions=dict(space.params),
                                     user_attrs=attrs, intermediate_values={i + 1: v for i, v in enumerate(curve)})


def _param_value(v: Any, dist: BaseDistribution, name: str, task: str, cid: Any) -> Any:
    """``v`` as a value of ``dist`` (Python type, exact choice, tiny rounding clipped), or an error."""
    ok, out = fit_to_distribution(v, dist)
    if ok and isinstance(dist, IntDistribution) and abs(float(v) - out) > 1e-6:
        ok = False  # 2.5 is not an integer; only rounding error is forgiven
    if not ok:
        raise OptunaInteropError(f"to_optuna: task '{task}' config_id {cid}: '{name}'={v!r} is outside the space's "
                                 f"{_kind(dist)} distribution {dist}")
    return out


def _curve(v: Any) -> list[float]:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return []
    if isinstance(v, str):
        try:
            v = json.loads(v) if v.strip() else []
        except json.JSONDecodeError as err:
            raise OptunaInteropError(f"to_optuna: a curve is not a JSON list ({err})") from None
    return [float(x) for x in v]


def _float_or_none(v: Any) -> float | None:
    """A finite float, else ``None`` (JSON user attributes and trial values cannot be NaN)."""
    if v is None or isinstance(v, (bool, np.bool_, str)):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _py(v: Any) -> Any:
    """A JSON-serialisable Python value (numpy scalars unwrapped, NaN -> None)."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (str, bool, int, float)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_py(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): _py(x) for k, x in v.items()}
    return str(v)


__all__ = ["MetaLearnedSampler", "OptunaInteropError", "fit_to_distribution", "from_optuna", "to_optuna"]
