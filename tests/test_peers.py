"""Syne Tune 0.16 transfer-learning peers (optional extra) on a small synthetic table."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metahpo_utils.space import SearchSpace, float_param, int_param
from metahpo_utils.strategies import peers
from metahpo_utils.strategies.base import StrategyError

NAMES = ["st-zeroshot", "st-boundingbox", "st-quantile"]
N_TASKS, N_CONFIGS, BUDGET = 5, 80, 20
HELD_OUT = "t4"


def _space() -> SearchSpace:
    return SearchSpace({"lr": float_param(1e-4, 1.0, log=True),
                        "dropout": float_param(0.0, 0.5),
                        "width": int_param(16, 256, log=True)})


def _table(shared: bool = True) -> pd.DataFrame:
    """5 tasks x 80 configs (the same 80 on every task, or each task its own); the best region is
    the same on every task (encoded point near (0.7, 0.2, 0.6)), scale and offset differ per task."""
    space, rows = _space(), []
    center = np.array([0.7, 0.2, 0.6])
    for t in range(N_TASKS):
        rng = np.random.default_rng(100 + t)
        for c in space.design(N_CONFIGS, seed=0 if shared else t, method="random"):
            u = space.encode(c)
            val = (0.5 + 0.1 * t) - (1.0 + 0.3 * t) * ((u - center) ** 2).sum() + 0.005 * rng.standard_normal()
            rows.append({"task": f"t{t}", **c, "objective": val})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def data():
    pytest.importorskip("syne_tune")
    table = _table()
    return table[table.task != HELD_OUT], table[table.task == HELD_OUT].reset_index(drop=True)


def _run(name: str, meta: pd.DataFrame, target: pd.DataFrame, seed: int) -> list[tuple]:
    space = _space()
    strategy = peers.PEER_STRATEGIES[name]().fit(meta, space=space)
    session = strategy.start(space, candidates=target[space.names], seed=seed)
    lookup = {tuple(r[space.names]): r["objective"] for _, r in target.iterrows()}
    out = []
    for _ in range(BUDGET):
        (config,) = session.suggest(1)
        key = tuple(config[n] for n in space.names)
        out.append(key)
        session.observe(config, lookup[key])
    return out


_RUNS: dict[tuple, list[tuple]] = {}


def _cached_run(name, data, seed=0):
    if (name, seed) not in _RUNS:
        _RUNS[(name, seed)] = _run(name, *data, seed)
    return _RUNS[(name, seed)]


def test_available_flag():
    assert isinstance(peers.PEERS_AVAILABLE, bool)
    assert set(peers.PEER_STRATEGIES) == set(NAMES)
    assert all(cls.meta_learned for cls in peers.PEER_STRATEGIES.values())


def test_missing_syne_tune_raises(monkeypatch):
    monkeypatch.setattr(peers, "PEERS_AVAILABLE", False)
    monkeypatch.setattr(peers, "_ST", None)
    for cls in peers.PEER_STRATEGIES.values():
        with pytest.raises(StrategyError, match=r"pip install 'metahpo\[peers\]'"):
            cls().fit(_table(), space=_space())


@pytest.mark.parametrize("name", NAMES)
def test_suggestions_are_distinct_candidates(name, data):
    _, target = data
    sugg = _cached_run(name, data)
    members = set(map(tuple, target[_space().names].itertuples(index=False)))
    assert len(sugg) == BUDGET and len(set(sugg)) == BUDGET
    assert set(sugg) <= members


def test_zeroshot_first_suggestion_in_top_decile(data):
    _, target = data
    first = _cached_run("st-zeroshot", data)[0]
    top = target.nlargest(N_CONFIGS // 10, "objective")
    assert first in set(map(tuple, top[_space().names].itertuples(index=False)))


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_for_a_seed(name, data):
    assert _run(name, *data, seed=0) == _cached_run(name, data)


def test_continuous_space_without_candidates(data):
    table = _table(shared=False)  # tasks with different configurations: zero-shot imputes
    meta, space = table[table.task != HELD_OUT], _space()
    for name in NAMES:
        session = peers.PEER_STRATEGIES[name]().fit(meta, space=space).start(space, seed=1)
        configs = session.suggest(5)
        assert len(configs) == 5 and len({tuple(c.values()) for c in configs}) == 5
        for c in configs:
            assert np.all((space.encode(c) >= 0) & (space.encode(c) <= 1))
            session.observe(c, 0.0)


def test_zeroshot_surrogate_imputation(data):
    """impute='surrogate' (Syne Tune's use_surrogates=True, patched for its 0.16 crash)."""
    table = _table(shared=False)
    meta, target = table[table.task != HELD_OUT], table[table.task == HELD_OUT]
    space = _space()
    strategy = peers.SyneZeroShotStrategy(impute="surrogate").fit(meta, space=space)
    runs = [strategy.start(space, candidates=target[space.names], seed=3).suggest(10) for _ in range(2)]
    assert runs[0] == runs[1] and len({tuple(c.values()) for c in runs[0]}) == 10
