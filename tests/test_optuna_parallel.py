"""Parallel Optuna workers with MetaLearnedSampler on one storage: no configuration proposed twice."""
from __future__ import annotations

import threading
from typing import Any

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState
from optuna_workers import fitted_portfolio, repeats, run_workers
from strategy_fixtures import shifting_space

from metahpo_utils.optuna_interop import MetaLearnedSampler
from metahpo_utils.optuna_parallel import PROPOSAL_ATTR, claim_configuration, published_config
from metahpo_utils.space import SearchSpace
from metahpo_utils.strategies.base import Strategy, config_key

N_WORKERS, N_TRIALS = 4, 6


@pytest.fixture(scope="module")
def portfolio():
    return fitted_portfolio()


def key(config: dict) -> bytes:
    return config_key(shifting_space(), config)


def repeats_of(configs: list[dict]) -> int:
    return len(configs) - len({key(c) for c in configs})


# ---------------------------------------------------------------- real processes
@pytest.fixture(scope="module")
def parallel_runs(portfolio, tmp_path_factory):
    """4 worker processes x 6 trials on a JournalStorage file, then (the same processes) on SQLite."""
    tmp = tmp_path_factory.mktemp("parallel")
    specs = {"journal": f"journal:{tmp / 'journal.log'}", "sqlite": f"sqlite:///{tmp / 'study.db'}"}
    runs = run_workers(list(specs.values()), portfolio, n_workers=N_WORKERS, n_trials=N_TRIALS)
    return {kind: runs[spec] for kind, spec in specs.items()}


@pytest.mark.parametrize("storage", ["journal", "sqlite"])
def test_worker_processes_on_one_storage_never_repeat_a_configuration(parallel_runs, portfolio, storage):
    trials, counters = parallel_runs[storage]
    assert len(trials) == N_WORKERS * N_TRIALS
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert repeats(trials, shifting_space()) == 0
    # The strategy's own proposals, in its order: no near copies of taken configurations, no random draws.
    first = {key(c) for c in portfolio.start(shifting_space(), seed=0).suggest(N_WORKERS * N_TRIALS + N_WORKERS)}
    assert {key(t.params) for t in trials} <= first
    assert sorted(counters) == list(range(N_WORKERS)) and all(c["random"] == 0 for c in counters.values())
    assert all(published_config(t) == t.params and t.system_attrs[PROPOSAL_ATTR]["final"] for t in trials)


# ---------------------------------------------------------------- in one process
def shared_studies(portfolio, n: int = 2) -> tuple[list[optuna.Study], list[MetaLearnedSampler]]:
    """``n`` workers' views of one study on one storage, each with its own sampler (seed = its index)."""
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(study_name="s", storage=storage, direction="maximize")
    samplers = [MetaLearnedSampler(portfolio, seed=i) for i in range(n)]
    return [optuna.load_study(study_name="s", storage=storage, sampler=s) for s in samplers], samplers


def test_running_trials_of_other_workers_are_pending(portfolio):
    space = shifting_space()
    order = portfolio.start(space, seed=0).suggest(4)
    (a, b), (sa, sb) = shared_studies(portfolio)
    ta = a.ask(space.params)
    tb = b.ask(space.params)  # the portfolio's first is running in worker a: b takes the next one
    assert (ta.params, tb.params) == (order[0], order[1])
    assert sb.dedup == {"asked_again": 1, "random": 0, "claims_lost": 0}
    a.tell(ta, 0.7)
    ta2 = a.ask(space.params)  # a's session skips b's running configuration
    assert ta2.params == order[2] and sa.dedup["asked_again"] == 1
    b.tell(tb, 0.2)
    tb2 = b.ask(space.params)  # b is told a's finished trial, with its value (after its own one)
    assert tb2.params == order[3]
    assert sb.session.configs_obs == [order[1], order[0]] and sb.session.y_obs == pytest.approx([0.2, 0.7])


class _Stubborn(Strategy):
    """Sessions that propose one configuration over and over (a strategy that cannot avoid repeats)."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = config

    def start(self, space: SearchSpace, task_features: Any = None, candidates: Any = None,
              seed: int = 0) -> _SameSession:
        return _SameSession(self.config)


class _SameSession:
    def __init__(self, config: dict):
        self.config = config

    def suggest(self, n: int = 1) -> list[dict]:
        return [dict(self.config) for _ in range(n)]

    def observe(self, config: dict, value: float) -> None:
        pass


def test_no_untried_proposal_falls_back_to_seeded_random(portfolio):
    space = shifting_space()
    same = portfolio.start(space, seed=0).suggest(1)[0]

    def run() -> tuple[list[dict], dict]:
        sampler = MetaLearnedSampler(_Stubborn(same), space=space, seed=3)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        trials = [study.ask(space.params) for _ in range(3)]  # running at once, as with three workers
        study.tell(trials[0], 1.0)
        trials.append(study.ask(space.params))
        return [t.params for t in trials], sampler.dedup

    params, dedup = run()
    assert params[0] == same and repeats_of(params) == 0
    # asked 20 times more than there were other running trials, each time in vain
    assert dedup == {"asked_again": 20 + 1 + 20 + 2 + 20 + 2, "random": 3, "claims_lost": 0}
    assert run()[0] == params  # seeded by (seed, trial number)


def _trial(study: optuna.Study) -> FrozenTrial:
    return study._storage.get_trial(study.ask()._trial_id)


def _set_claim(study: optuna.Study, trial: FrozenTrial, config: dict, final: bool = False) -> None:
    study._storage.set_trial_system_attr(trial._trial_id, PROPOSAL_ATTR, {"config": config, "final": final})


def _claim(study: optuna.Study, trial: FrozenTrial, proposals: list[dict], race, wait_s: float = 5.0):
    """Claim ``proposals`` in turn for ``trial``; ``race()`` runs once, after the study was first read
    (another worker claiming at the same moment)."""
    queue = list(proposals)

    def propose(taken: set, trials: list) -> dict:
        if len(queue) == len(proposals):
            race()
        return queue.pop(0)

    return claim_configuration(study, trial, shifting_space(), propose, wait_s=wait_s, poll_s=0.005)


def test_simultaneous_claims_of_one_configuration_keep_it_once(portfolio):
    p, q = portfolio.start(shifting_space(), seed=0).suggest(2)
    study = optuna.create_study(direction="maximize")
    earlier = _trial(study)
    ours = _trial(study)
    assert _claim(study, ours, [p, q], lambda: _set_claim(study, earlier, p)) == (q, 1)  # the earlier trial wins

    study = optuna.create_study(direction="maximize")
    ours = _trial(study)
    later = _trial(study)
    got = _claim(study, ours, [p, q], lambda: _set_claim(study, later, p), wait_s=0.05)
    assert got == (q, 1)  # a later claim that is never settled (its worker died): p is given up

    # A later claim that settles while we wait: its worker gives way (claims q instead), or made p final first.
    for withdrawn, expected in [(True, (p, 0)), (False, (q, 1))]:
        study = optuna.create_study(direction="maximize")
        ours = _trial(study)
        later = _trial(study)

        def race() -> None:
            _set_claim(study, later, p)
            threading.Timer(0.05, _set_claim, args=(study, later, q if withdrawn else p, not withdrawn)).start()

        assert _claim(study, ours, [p, q], race) == expected
        assert study._storage.get_trial(ours._trial_id).system_attrs[PROPOSAL_ATTR] == {
            "config": expected[0], "final": True}


def test_portfolio_skips_configurations_told_from_outside(portfolio):
    order = portfolio.start(shifting_space(), seed=0).suggest(4)
    session = portfolio.start(shifting_space(), seed=0)
    session.observe(order[1], 0.5)  # another worker's finished trial
    assert session.suggest(3) == [order[0], order[2], order[3]]
