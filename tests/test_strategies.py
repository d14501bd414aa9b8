"""Every strategy honours the ask/tell contract; meta-learned ones exploit known structure."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metahpo_utils.strategies import STRATEGIES, StrategyError, greedy_portfolio, make_strategy
from strategy_fixtures import shifting_space, shifting_table, target_rows

CORE = ["random", "grid", "taskset", "tpe", "cmaes", "ws-cmaes", "portfolio", "adaptive-portfolio", "knn",
        "mapping", "mtl", "transfer"]
FAST_KW = {"mtl": {"epochs": 200}, "transfer": {"epochs": 150, "K": 3}}
META = ["adaptive-portfolio", "knn", "mapping", "mtl", "transfer"]


@pytest.fixture(scope="module")
def meta():
    table, feats = shifting_table()
    return table, feats


@pytest.fixture(scope="module")
def fitted(meta):
    table, feats = meta
    out = {}
    for name in CORE:
        s = make_strategy(name, **FAST_KW.get(name, {}))
        out[name] = s.fit(table, feats, space=shifting_space())
    return out


def run(strategy, rows, n, features=None, seed=0):
    space = shifting_space()
    session = strategy.start(space, task_features=features, candidates=rows[space.names], seed=seed)
    vals, idx = [], []
    for _ in range(n):
        cfg = session.suggest(1)
        if not cfg:
            break
        i = session.suggested_indices[-1]
        assert cfg[0] == rows[space.names].iloc[i].to_dict()
        session.observe(cfg[0], rows["objective"].iloc[i])
        vals.append(rows["objective"].iloc[i])
        idx.append(i)
    return np.array(vals), idx


def regret(vals, rows):
    best, worst = rows["objective"].max(), rows["objective"].min()
    return (best - np.maximum.accumulate(vals)) / (best - worst)


def test_registry_lists_every_strategy():
    assert set(CORE) <= set(STRATEGIES)
    with pytest.raises(StrategyError, match="unknown strategy 'nope'"):
        make_strategy("nope")


@pytest.mark.parametrize("name", CORE)
def test_contract_on_candidates(fitted, name):
    rows = target_rows(0.4)
    vals, idx = run(fitted[name], rows, 60)
    assert len(idx) == 60 and len(set(idx)) == 60  # every candidate once, never twice
    session = fitted[name].start(shifting_space(), candidates=rows[shifting_space().names], seed=0)
    assert len(session.suggest(100)) == 60  # stops when the candidates run out
    again, idx2 = run(fitted[name], rows, 10)
    assert idx2 == idx[:10]  # same seed, same suggestions


@pytest.mark.parametrize("name", CORE)
def test_contract_in_continuous_space(fitted, name):
    space = shifting_space()
    session = fitted[name].start(space, seed=1)
    for _ in range(4):
        cfg = session.suggest(1)[0]
        assert set(cfg) == set(space.names) and 0 <= cfg["x"] <= 1 and 1e-4 <= cfg["lr"] <= 1 and cfg["opt"] in ("a", "b")
        x = cfg["x"]
        session.observe(cfg, float(np.exp(-((x - 0.4) ** 2) / 0.02)))


@pytest.mark.parametrize("name", META)
def test_meta_learned_find_the_shifted_optimum_fast(fitted, meta, name):
    _, feats = meta
    rows = target_rows(0.37)
    target = pd.Series({"f": 0.37, "noise": 0.5})
    got = np.mean([regret(run(fitted[name], rows, 5, target, seed)[0], rows)[-1] for seed in range(3)])
    rand = np.mean([regret(run(fitted["random"], rows, 5, None, seed)[0], rows)[-1] for seed in range(10)])
    assert got <= 0.15 and got < rand


@pytest.mark.parametrize("name", META)
def test_meta_learned_without_features_use_observations(fitted, name):
    rows = target_rows(0.63)
    got = np.mean([regret(run(fitted[name], rows, 12, None, seed)[0], rows)[-1] for seed in range(3)])
    assert got <= 0.25


def test_fit_sees_only_given_tasks_and_checks_space(meta):
    table, feats = meta
    s = make_strategy("portfolio").fit(table[table.task != "t03"], feats, space=shifting_space())
    assert "t03" not in s.meta.tasks and len(s.meta.tasks) == 11
    from metahpo_utils.space import SearchSpace, float_param

    with pytest.raises(StrategyError, match="differs from the fitted space"):
        s.start(SearchSpace({"x": float_param(0, 1)}))
    with pytest.raises(StrategyError, match="call fit"):
        make_strategy("knn").start(shifting_space())


def test_greedy_portfolio_matches_brute_force():
    rng = np.random.default_rng(0)
    Y = rng.random((6, 9))
    order = greedy_portfolio(Y, 3)
    assert order[0] == int(np.argmax(Y.mean(0)))
    # second pick: best pair given the first, checked exhaustively
    pair = [np.mean(np.maximum(Y[:, order[0]], Y[:, j])) if j != order[0] else -1 for j in range(9)]
    assert order[1] == int(np.argmax(pair))
    assert len(set(order)) == 3


def test_meta_values_exact_where_evaluated_nearest_elsewhere(meta):
    table, feats = meta
    m = make_strategy("portfolio").fit(table, feats, space=shifting_space()).meta
    X, yn = m.X[2], m.yn[2]
    # exact hits return the task's own normalised values, in any order and with repeats
    order = np.array([3, 0, 3, len(X) - 1])
    np.testing.assert_array_equal(m.values_at(2, X[order]), yn[order])
    # off-table points take the value of the nearest evaluated configuration (brute force)
    q = np.random.default_rng(1).random((7, X.shape[1]))
    nearest = ((q[:, None, :] - X[None]) ** 2).sum(-1).argmin(1)
    np.testing.assert_array_equal(m.values_at(2, q), yn[nearest])
    assert m.values_matrix(q).shape == (m.n_tasks, 7)
    np.testing.assert_array_equal(m.values_matrix(q)[2], yn[nearest])


def test_meta_utilities_rank_and_mixed(meta):
    table, feats = meta
    m = make_strategy("portfolio").fit(table, feats, space=shifting_space()).meta
    y, yn = m.y[0], m.yn[0]
    pct = m.utility_values(0, "rank")
    # percentile ranks: 1 at the best, 0 at the worst, same order as the values
    assert pct[y.argmax()] == 1.0 and pct[y.argmin()] == 0.0
    assert np.all(np.diff(pct[np.argsort(y)]) >= 0)
    np.testing.assert_allclose(m.utility_values(0, "mixed"), (yn + pct) / 2)
    with pytest.raises(StrategyError, match="utility must be regret, rank or mixed"):
        make_strategy("adaptive-portfolio", utility="top")
    with pytest.raises(StrategyError, match="utility must be regret, rank or mixed"):
        m.values_at(0, m.X[0][:2], utility="top")


def test_grid_lists_a_small_grid_and_samples_one_too_large_to_list():
    """A small space's full-factorial grid is played whole in a seeded order; the RL space's (over a million
    categorical combinations alone) is sampled point by point, without listing it, and never repeats."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from metahpo_utils.domains.rl import rl_space
    from metahpo_utils.space import SearchSpace

    small = SearchSpace({"lr": FloatDistribution(1e-4, 1e-1, log=True), "opt": CategoricalDistribution(["sgd", "adam"])})
    session = make_strategy("grid", size=8).start(small, seed=0)
    configs = session.suggest(8)  # 4 learning-rate levels x 2 optimizers
    assert len({(round(c["lr"], 12), c["opt"]) for c in configs}) == 8
    assert configs == make_strategy("grid", size=8).start(small, seed=0).suggest(8)
    big = rl_space()
    session = make_strategy("grid").start(big, seed=1)
    configs = session.suggest(50)
    assert len({tuple(sorted(c.items())) for c in configs}) == 50 and {c["algo"] for c in configs} == {"dqn", "ppo", "a2c"}
    assert configs == make_strategy("grid").start(big, seed=1).suggest(50)
    assert configs != make_strategy("grid").start(big, seed=2).suggest(50)
