"""Optuna adapters (tpe, cmaes, ws-cmaes) on a tiny synthetic problem built in code."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from metahpo_utils.space import SearchSpace, float_param
from metahpo_utils.strategies.base import StrategyError
from metahpo_utils.strategies.optuna_adapters import (
    CmaEsStrategy,
    TPEStrategy,
    WarmStartCmaEsStrategy,
)

SPACE = SearchSpace({"x": float_param(-2.0, 2.0), "y": float_param(1e-3, 1.0, log=True)})
CENTRE = np.array([0.75, 0.25])  # the bump's optimum in the unit cube, shared by every task
N_TASKS, N_CONFIGS = 5, 60


def bump(u: np.ndarray, shift: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """A smooth bump, maximal (= scale) at CENTRE + shift."""
    return scale * np.exp(-((np.atleast_2d(u) - (CENTRE + shift)) ** 2).sum(-1) / (2 * 0.12 ** 2))


def make_task(rng: np.random.Generator, name: str, n: int) -> pd.DataFrame:
    u = rng.random((n, 2))
    shift = rng.normal(0.0, 0.03, 2)
    rows = pd.DataFrame([SPACE.decode(p) for p in u])
    rows["task"] = name
    rows["objective"] = bump(SPACE.encode_table(rows), shift, scale=rng.uniform(0.5, 1.0)) + rng.uniform(0, 0.2)
    return rows


@pytest.fixture(scope="module")
def meta_table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.concat([make_task(rng, f"t{i}", N_CONFIGS) for i in range(N_TASKS)], ignore_index=True)


@pytest.fixture(scope="module")
def meta_features() -> pd.DataFrame:
    return pd.DataFrame({"size": np.arange(N_TASKS, dtype=float), "noise": [0.1, 0.3, 0.2, 0.5, 0.4]},
                        index=[f"t{i}" for i in range(N_TASKS)])


def strategies(meta_table: pd.DataFrame):
    return [TPEStrategy(), CmaEsStrategy(), WarmStartCmaEsStrategy().fit(meta_table, space=SPACE)]


def table_value(table: pd.DataFrame):
    lookup = {(round(r.x, 12), round(r.y, 12)): r.objective for r in table.itertuples()}
    return lambda c: lookup[(round(c["x"], 12), round(c["y"], 12))]


# ---------------------------------------------------------------- (a) candidates
def test_candidates_distinct_and_from_table(meta_table):
    target = make_task(np.random.default_rng(7), "target", N_CONFIGS)
    value = table_value(target)
    cand = target[SPACE.names]
    keys = {(round(x, 12), round(y, 12)) for x, y in cand.to_numpy()}
    for strat in strategies(meta_table):
        s = strat.start(SPACE, candidates=cand, seed=3)
        seen = []
        for i in range(30):
            batch = s.suggest(1) if i % 6 else s.suggest(3)[:1]  # mix single and batch asks
            for c in batch:
                s.observe(c, value(c))
                seen.append((round(c["x"], 12), round(c["y"], 12)))
        # batch leftovers were never observed but are no longer open either
        assert len(seen) == 30 and len(set(seen)) == 30, strat.name
        assert set(seen) <= keys, strat.name
        rest = s.suggest(100)  # the table runs out: only the untouched candidates come back
        assert len(rest) == N_CONFIGS - 30 - 2 * 5 and not {(round(c["x"], 12), round(c["y"], 12)) for c in rest} & set(seen)


# ---------------------------------------------------------------- (b) continuous
def test_continuous_suggestions_inside_bounds(meta_table):
    for strat in strategies(meta_table):
        s = strat.start(SPACE, seed=1)
        for i in range(12):
            for c in s.suggest(2):
                assert set(c) == {"x", "y"}
                assert -2.0 <= c["x"] <= 2.0 and 1e-3 <= c["y"] <= 1.0, (strat.name, c)
                s.observe(c, float(bump(SPACE.encode(c), np.zeros(2))[0]))


# ---------------------------------------------------------------- (c) improvement
def test_each_adapter_improves_on_a_quadratic(meta_table):
    def quad(c):
        u = SPACE.encode(c)
        return 1.0 - float(((u - CENTRE) ** 2).sum())

    for strat in strategies(meta_table):
        s = strat.start(SPACE, seed=0)
        vals = []
        for _ in range(40):
            c = s.suggest(1)[0]
            vals.append(quad(c))
            s.observe(c, vals[-1])
        assert max(vals) >= 1.0 - 0.05, (strat.name, max(vals))
        assert max(vals) >= max(vals[:5]), strat.name
        assert np.mean(vals[-10:]) > np.mean(vals[:5]), strat.name


# ---------------------------------------------------------------- (d) warm start helps
def test_warm_start_beats_plain_cmaes_early(meta_table):
    ws = WarmStartCmaEsStrategy().fit(meta_table, space=SPACE)
    plain = CmaEsStrategy()
    target = make_task(np.random.default_rng(11), "target", 300)
    value = table_value(target)
    y = target["objective"].to_numpy()
    near = y.max() - 0.05 * (y.max() - y.min())
    best10 = {"ws": [], "plain": []}
    for seed in range(5):
        for key, strat in (("ws", ws), ("plain", plain)):
            s = strat.start(SPACE, candidates=target[SPACE.names], seed=seed)
            vals = []
            for _ in range(10):
                c = s.suggest(1)[0]
                vals.append(value(c))
                s.observe(c, vals[-1])
            best10[key].append(max(vals))
    hits = {k: sum(v >= near for v in b) for k, b in best10.items()}
    assert hits["ws"] >= hits["plain"], (hits, best10)
    assert hits["ws"] > hits["plain"] or np.mean(best10["ws"]) > np.mean(best10["plain"]), (hits, best10)


def test_warm_start_sources_by_meta_features(meta_table, meta_features):
    ws = WarmStartCmaEsStrategy(k=3).fit(meta_table, meta_features, space=SPACE)
    w = ws.source_weights({"size": 0.2, "noise": 0.15})
    assert (w > 0).sum() == 3 and w.argmax() == 0
    assert np.allclose(ws.source_weights(None), 1 / N_TASKS)  # no features: every task, uniformly
    X, yn = ws.source_points({"size": 0.2, "noise": 0.15})
    assert X.shape[1] == 2 and len(yn) == len(X) <= 3 * N_CONFIGS and yn.max() == 1.0
    s = ws.start(SPACE, task_features={"size": 0.2, "noise": 0.15}, seed=0)
    first = SPACE.encode(s.suggest(1)[0])  # drawn from the transferred Gaussian, near the optimum
    assert np.linalg.norm(first - CENTRE) < 0.3


def test_warm_start_misuse(meta_table):
    with pytest.raises(StrategyError):
        WarmStartCmaEsStrategy().start(SPACE)
    ws = WarmStartCmaEsStrategy().fit(meta_table, space=SPACE)
    other = SearchSpace({"x": float_param(-2.0, 2.0), "z": float_param(0.0, 1.0)})
    with pytest.raises(StrategyError):
        ws.start(other)


# ---------------------------------------------------------------- (e) determinism
def run(strat, seed, n=15):
    s = strat.start(SPACE, seed=seed)
    out = []
    for _ in range(n):
        c = s.suggest(1)[0]
        out.append((c["x"], c["y"]))
        s.observe(c, float(bump(SPACE.encode(c), np.zeros(2))[0]))
    return out


def test_same_seed_same_suggestions(meta_table):
    for strat in strategies(meta_table):
        assert run(strat, 5) == run(strat, 5), strat.name
        assert run(strat, 5) != run(strat, 6), strat.name


# ---------------------------------------------------------------- bookkeeping
def test_failures_out_of_order_and_unasked_observations():
    from optuna.trial import TrialState

    for strat in (TPEStrategy(), CmaEsStrategy()):
        s = strat.start(SPACE, seed=2)
        a, b, c = s.suggest(3)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no optuna warnings on any of these paths
            s.observe(c, 0.4)
            s.observe(a, math.nan)  # failed run: told as the worst finite value so far
            s.observe({"x": 0.0, "y": 0.5}, 0.9)  # never asked: just added
            s.observe(b, 0.1)
            s.observe(s.suggest(1)[0], math.inf)  # -> worst so far, 0.1
        trials = s.study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        assert sum(t.state == TrialState.FAIL for t in trials) == 4
        assert [t.value for t in done] == [0.4, 0.4, 0.9, 0.1, 0.1]
        assert done[0].params == pytest.approx({n: v for n, v in zip(SPACE.names, SPACE.encode(c))}
                                               if strat.name == "cmaes" else c)
