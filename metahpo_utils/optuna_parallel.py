"""Many Optuna workers on one storage: claims, so that no configuration is proposed twice.

:class:`~metahpo_utils.optuna_interop.MetaLearnedSampler` calls :func:`claim_configuration` when a
trial starts (in ``before_trial``, right after the storage has created the trial as ``RUNNING`` and
long before the objective sets any parameter). A claim is the proposed configuration written into
the trial's system attribute :data:`PROPOSAL_ATTR`, so every other worker sees it at once:

1. Read the study. Every configuration it holds is *taken*: the parameters of any trial in any state
   (completed by its published proposal), every published proposal, the fixed parameters of enqueued
   trials. Ask for a configuration whose key is not taken (:func:`~metahpo_utils.strategies.base.config_key`,
   the identity sessions use) and publish it as ``{"config": ..., "final": false}``.
2. Read the study again. If another trial holds the same key, the claim loses (the configuration is
   taken; back to 1) -- except against a later trial (higher number) whose claim is not final yet:
   then wait until that claim is settled (it loses to ours, or it was made final first and ours loses).
3. Publish ``"final": true`` and return the configuration.

Each worker writes its claim before it reads the others', so of two workers that claim the same
configuration at the same moment at least one sees the other's claim. The earlier trial has priority,
but keeps the configuration only once every later rival it saw has settled (a later rival that did not
see it may have made its claim final first). Hence no two trials whose configurations were claimed this
way share one, on any storage whose reads see every completed write (``JournalStorage`` with a file
backend, ``RDBStorage`` such as SQLite). A rival that never settles (its worker died between claim and
decision) is waited for :data:`CLAIM_WAIT_S` seconds; then the configuration is given up.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from .space import SearchSpace
from .strategies.base import config_key

#: The trial system attribute that holds a sampler's claim: ``{"config": {name: value}, "final": bool}``.
PROPOSAL_ATTR = "metahpo:proposal"
#: Seconds a claim waits for a later trial's unsettled claim on the same configuration (a worker that
#: died between its claim and its decision); after that the configuration is given up, never repeated.
CLAIM_WAIT_S = 10.0
#: Seconds between two reads of the storage while waiting.
POLL_S = 0.01
#: Claims tried per trial before the last proposal is kept as it is.
MAX_ROUNDS = 100


def published_config(trial: FrozenTrial) -> dict[str, Any] | None:
    """The configuration a sampler claimed for ``trial`` (``None`` if none was published)."""
    claim = trial.system_attrs.get(PROPOSAL_ATTR)
    if isinstance(claim, Mapping) and isinstance(claim.get("config"), Mapping):
        return dict(claim["config"])
    return None


def _is_settled(trial: FrozenTrial) -> bool:
    """Whether a trial's configuration is decided: a final claim, a trial past the sampler, or no claim."""
    claim = trial.system_attrs.get(PROPOSAL_ATTR)
    return not isinstance(claim, Mapping) or bool(claim.get("final")) or trial.state != TrialState.RUNNING \
        or bool(trial.params)


def key_of(space: SearchSpace, config: Mapping[str, Any]) -> bytes | None:
    """The configuration's :func:`~metahpo_utils.strategies.base.config_key`, or ``None`` when it is not a
    whole configuration of the space (a missing hyperparameter, a value outside its choices)."""
    if any(n not in config for n in space.names):
        return None
    try:
        return config_key(space, config)
    except (ValueError, TypeError, KeyError, IndexError):
        return None


#: Keys of finished trials by trial id (they no longer change); see :func:`trial_keys`.
KeyCache = dict[int, frozenset[bytes]]


def trial_keys(trial: FrozenTrial, space: SearchSpace, cache: KeyCache | None = None) -> frozenset[bytes]:
    """The keys of the configurations a trial occupies.

    Its parameters completed by its published proposal (what it runs), the proposal itself (what it
    may still run while its objective has not asked for every parameter) and, for an enqueued
    trial, its fixed parameters. Partial configurations occupy nothing. ``cache`` keeps the keys of
    finished trials (a study re-read before every trial would encode them again and again).
    """
    if cache is not None and trial._trial_id in cache:
        return cache[trial._trial_id]
    proposal = published_config(trial) or {}
    fixed = trial.system_attrs.get("fixed_params") or {}
    params = {n: v for n, v in trial.params.items() if n in space.params}
    configs = [proposal, {**proposal, **fixed, **params}]
    keys = frozenset(k for k in (key_of(space, c) for c in configs) if k is not None)
    if cache is not None and trial.state.is_finished():
        cache[trial._trial_id] = keys
    return keys


def taken_keys(trials: Iterable[FrozenTrial], space: SearchSpace, exclude: int | None = None,
               cache: KeyCache | None = None) -> set[bytes]:
    """The keys of every configuration the trials occupy (all states), trial number ``exclude`` left out."""
    out: set[bytes] = set()
    for t in trials:
        if t.number != exclude:
            out |= trial_keys(t, space, cache)
    return out


def json_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A configuration with plain Python values (storages keep system attributes as JSON)."""
    return {str(k): (v.item() if isinstance(v, np.generic) else v) for k, v in config.items()}


def _publish(study: optuna.Study, trial: FrozenTrial, config: Mapping[str, Any], final: bool) -> None:
    # Samplers write their per-trial state this way (optuna's own samplers do the same).
    study._storage.set_trial_system_attr(trial._trial_id, PROPOSAL_ATTR, {"config": json_config(config),
                                                                          "final": final})


def _contest(trials: list[FrozenTrial], trial: FrozenTrial, key: bytes, space: SearchSpace,
             cache: KeyCache | None) -> str:
    """``won``, ``lost`` or ``wait``: the claim of ``key`` for ``trial`` against the other trials."""
    verdict = "won"
    for t in trials:
        if t.number == trial.number or key not in trial_keys(t, space, cache):
            continue
        if t.number > trial.number and not _is_settled(t):
            verdict = "wait"  # a later claim not yet decided: it will see ours and give way, or be final
            continue
        return "lost"
    return verdict


def claim_configuration(study: optuna.Study, trial: FrozenTrial, space: SearchSpace,
                        propose: Callable[[set[bytes], list[FrozenTrial]], dict[str, Any]],
                        wait_s: float = CLAIM_WAIT_S,
                        poll_s: float = POLL_S, cache: KeyCache | None = None) -> tuple[dict[str, Any], int]:
    """Claim a configuration for ``trial`` that no other trial of the study holds (see the module doc).

    Args:
        study: the study (its storage is shared by the workers).
        trial: the trial being started (``RUNNING``, as given to ``before_trial``).
        space: the search space (configurations are compared by their key in it).
        propose: called with the taken keys and the trials just read, returns a configuration (a whole
            one of ``space``); it should return one whose key is not taken whenever one exists.
        wait_s: how long to wait for a later trial's unsettled claim on the same configuration.
        poll_s: seconds between reads while waiting.
        cache: keys of finished trials, kept between calls (see :func:`trial_keys`).

    Returns:
        The configuration (published in the trial's :data:`PROPOSAL_ATTR`, final) and the number of
        claims lost to other trials on the way.
    """
    trials = study.get_trials(deepcopy=False)
    cache = {} if cache is None else cache
    taken = taken_keys(trials, space, exclude=trial.number, cache=cache)
    lost = 0
    config: dict[str, Any] = {}
    for _ in range(MAX_ROUNDS):
        config = propose(taken, trials)
        key = key_of(space, config)
        if key is None or key in taken:
            break  # nothing untried could be proposed (a finite space used up): keep it as it is
        _publish(study, trial, config, final=False)
        deadline = time.monotonic() + wait_s
        while True:
            trials = study.get_trials(deepcopy=False)
            verdict = _contest(trials, trial, key, space, cache)
            if verdict != "wait" or time.monotonic() > deadline:
                break
            time.sleep(poll_s)
        if verdict == "won":
            break
        lost += 1
        taken |= taken_keys(trials, space, exclude=trial.number, cache=cache) | {key}
    _publish(study, trial, config, final=True)
    return config, lost


__all__ = ["CLAIM_WAIT_S", "PROPOSAL_ATTR", "claim_configuration", "json_config", "key_of", "published_config",
           "taken_keys", "trial_keys"]
