"""The benchmark protocol's honesty rules (DESIGN.md): direction handled once, no outcome column as a
hyperparameter, a different random sequence per task, intervals over tasks, missing regrets stay
missing, settings chosen on meta-train tasks only."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from metahpo_utils.benchmark import (
    BenchmarkError, equivalent_random_trials, expected_random_curve, prepare, replay, run_benchmark, run_seed,
    select_settings, split_columns,
)
from metahpo_utils.cli import main
from metahpo_utils.strategies import STRATEGIES
from metahpo_utils.strategies.meta import AdaptivePortfolioStrategy, PortfolioStrategy
from strategy_fixtures import shifting_table

LEARNERS = "random,tpe,knn,adaptive-portfolio,mtl,transfer"


def _write(tmp_path, df, name="t.csv"):
    p = tmp_path / name
    df.to_csv(p, index=False)
    return str(p)


def _bench(table, out, direction="--maximize", **over):
    args = {"--table": table, "--budget": "8", "--seeds": "2", "--holdout": "loo", "--strategies": LEARNERS,
            "--out": str(out)}
    args.update(over)
    return main(["benchmark", *[x for k, v in args.items() if v is not None for x in (k, v)], direction, "--no-progress"])


def test_minimize_is_the_negated_maximize_for_every_strategy(tmp_path):
    """A loss table with --minimize and the same table negated with --maximize: identical regrets for
    every strategy and seed (strategies that learn from the target used to see it upside down)."""
    table, _ = shifting_table(n_tasks=4, n_configs=16)
    loss = table.assign(objective=-table["objective"])
    assert _bench(_write(tmp_path, table, "up.csv"), tmp_path / "up") == 0
    assert _bench(_write(tmp_path, loss, "down.csv"), tmp_path / "down", "--minimize") == 0
    up, down = (pd.read_csv(tmp_path / d / "results.csv") for d in ("up", "down"))
    assert sorted(up["strategy"].unique()) == sorted(LEARNERS.split(","))
    pd.testing.assert_series_equal(up["normalized_regret"], down["normalized_regret"])
    # best_so_far is reported in each table's own units: the minimum of the loss
    np.testing.assert_allclose(up["best_so_far"], -down["best_so_far"])
    assert json.loads((tmp_path / "down" / "summary.json").read_text())["protocol"]["direction"] == "minimize"


def test_an_outcome_column_is_never_a_hyperparameter(tmp_path, capsys):
    table, feats = shifting_table(n_tasks=5, n_configs=20)
    leaky = table.assign(test_acc=table["objective"] + 0.01 * np.random.default_rng(0).standard_normal(len(table)))
    for t in (leaky, leaky.drop(columns="config_id")):  # with a config_id and without one
        data = prepare(t)
        assert data.space.names == ["x", "lr", "opt"] and data.outcomes == ["test_acc"]
    # the benchmark on the leaky table equals the one on the clean table, and says what it left out
    clean, dirty = _write(tmp_path, table, "clean.csv"), _write(tmp_path, leaky, "leaky.csv")
    assert _bench(clean, tmp_path / "c", **{"--strategies": "knn"}) == 0
    assert _bench(dirty, tmp_path / "d", **{"--strategies": "knn"}) == 0
    out = capsys.readouterr().out
    assert "hyperparameters (inferred): x " in out and "left out as outcomes" in out and "test_acc" in out
    c, d = (pd.read_csv(tmp_path / x / "results.csv") for x in ("c", "d"))
    pd.testing.assert_frame_equal(c, d)
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert summary["protocol"]["outcome_columns"] == ["test_acc"]
    assert list(summary["protocol"]["space"]) == ["x", "lr", "opt"]
    # named explicitly, an outcome is refused (it would hand the target to the strategies)
    assert _bench(dirty, tmp_path / "never", **{"--hyperparameters": "x,lr,opt,test_acc"}) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'test_acc'" in err[0] and "outcome" in err[0]
    assert not (tmp_path / "never").exists()


def test_ambiguous_columns_are_refused_and_can_be_named(tmp_path, capsys):
    """No configuration in two tasks: an extra column cannot be told from a hyperparameter."""
    rng = np.random.default_rng(1)
    rows = [{"task": f"t{t}", "lr": rng.random(), "wd": rng.random(), "acc_test": rng.random(), "objective": rng.random()}
            for t in range(3) for _ in range(10)]
    path = _write(tmp_path, pd.DataFrame(rows))
    assert _bench(path, tmp_path / "never", **{"--strategies": "random", "--budget": "3"}) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot tell" in err[0] and "acc_test" in err[0] and "--hyperparameters" not in err[0]
    assert not (tmp_path / "never").exists()
    assert _bench(path, tmp_path / "ok", **{"--strategies": "random", "--budget": "3", "--hyperparameters": "lr,wd"}) == 0
    summary = json.loads((tmp_path / "ok" / "summary.json").read_text())
    assert list(summary["protocol"]["space"]) == ["lr", "wd"] and summary["protocol"]["hyperparameters_from"] == "list"
    hps, outcomes, ambiguous = split_columns(pd.DataFrame(rows), ["lr", "wd", "acc_test"])
    assert ambiguous == ["lr", "wd", "acc_test"]


def test_a_grid_hyperparameter_is_not_mistaken_for_an_outcome():
    grid = [{"lr": lr, "bs": bs} for lr in (0.01, 0.1, 1.0) for bs in (16, 32)]
    rows = [{"task": f"t{t}", **c, "objective": np.sin(t + 3 * i)} for t in range(4) for i, c in enumerate(grid)]
    data = prepare(pd.DataFrame(rows))
    assert data.space.names == ["lr", "bs"] and data.outcomes == []


def test_rows_without_a_hyperparameter_value_are_counted(tmp_path, capsys):
    table, _ = shifting_table(n_tasks=3, n_configs=10)
    table.loc[[0, 1, 15], "lr"] = np.nan
    table.loc[[2], "objective"] = np.inf
    data = prepare(table, hyperparameters=["x", "lr", "opt"])
    assert data.dropped == {"objective missing or not finite": 1, "a hyperparameter value missing": 3}
    assert len(data.table) == 30 - 4
    assert _bench(_write(tmp_path, table), tmp_path / "o", **{"--strategies": "random", "--budget": "3",
                                                             "--hyperparameters": "x,lr,opt"}) == 0
    assert "dropped 3 row(s): a hyperparameter value missing" in capsys.readouterr().out
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["protocol"]["dropped_rows"] == data.dropped


def test_random_search_draws_differently_on_every_task():
    """Every task lists the same configurations in the same order; the session seed comes from a
    stable hash of (seed, task), so random search picks different configurations per task, and its
    mean regret tracks the exact expectation."""
    table, _ = shifting_table(n_tasks=6, n_configs=30)
    data = prepare(table, budget=10)
    assert run_seed(0, "t00") == run_seed(0, "t00") != run_seed(0, "t01") != run_seed(1, "t00")
    assert run_seed(0, "t00") == 6684162  # sha256, the same on every machine and Python run
    firsts = [tuple(replay(STRATEGIES["random"](), data, t, 5, run_seed(0, t))[1]) for t in data.tasks]
    assert len(set(firsts)) == len(firsts)
    res = run_benchmark(data, ["random"], budget=10, seeds=20, holdout="loo", progress=False)
    expected = res.summary["random_expected"]["regret"]
    assert expected["1"] == pytest.approx(expected_random_curve(data, data.tasks, 30)[0])
    measured = res.summary["strategies"]["random"]["regret"]
    assert abs(measured["1"] - expected["1"]) < 0.06 and abs(measured["5"] - expected["5"]) < 0.03
    assert len(res.summary["random_expected"]["curve"]) == 10


def test_intervals_bootstrap_over_tasks_not_seeds():
    """A deterministic strategy's 5 identical seeds are one observation per task: its interval is the
    same as with one seed (it used to shrink by sqrt(5))."""
    table, feats = shifting_table(n_tasks=6, n_configs=20)
    data = prepare(table, task_features=feats, budget=6)
    one = run_benchmark(data, ["portfolio", "random"], 6, 1, "loo", progress=False).summary
    five = run_benchmark(data, ["portfolio", "random"], 6, 5, "loo", progress=False).summary
    p1, p5 = one["strategies"]["portfolio"], five["strategies"]["portfolio"]
    assert p1["regret"] == p5["regret"] and p1["regret_ci"] == p5["regret_ci"]
    lo, hi = p5["regret_ci"]["1"]
    assert lo <= p5["regret"]["1"] <= hi and hi > lo
    ert_lo, ert_hi = p5["equivalent_random_trials_ci"]["1"]
    assert ert_lo <= p5["equivalent_random_trials"]["1"] <= ert_hi
    assert "bootstrap over tasks" in five["protocol"]["interval"]


def test_figure_intervals_are_the_summary_intervals():
    from metahpo_utils import plotting as P

    table, feats = shifting_table(n_tasks=5, n_configs=20)
    data = prepare(table, task_features=feats, budget=6)
    res = run_benchmark(data, ["portfolio", "random"], 6, 2, "loo", progress=False)
    curves = P.benchmark_curves(res.results, "normalized_regret", res.summary)
    for s in ("portfolio", "random"):
        assert curves.mean[s][4] == pytest.approx(res.summary["strategies"][s]["regret"]["5"])
        assert [curves.low[s][4], curves.high[s][4]] == pytest.approx(res.summary["strategies"][s]["regret_ci"]["5"])
    assert "random (exact expectation)" in curves.reference


class _Stops(PortfolioStrategy):
    """A strategy whose runs stop after 3 trials."""

    def start(self, space, task_features=None, candidates=None, seed=0):
        session = super().start(space, task_features, candidates, seed)
        inner = session.suggest

        def suggest(n=1):
            return [] if len(session.suggested_indices) >= 3 else inner(n)

        session.suggest = suggest
        return session


def test_a_run_that_stopped_early_has_no_regret_there(monkeypatch):
    assert np.isnan(equivalent_random_trials(float("nan"), np.array([0.5, 0.2, 0.1])))
    monkeypatch.setitem(STRATEGIES, "stops", _Stops)
    table, _ = shifting_table(n_tasks=4, n_configs=12)
    data = prepare(table, budget=10)
    s = run_benchmark(data, ["stops", "random"], 10, 2, "loo", progress=False).summary["strategies"]["stops"]
    assert s["regret"]["1"] is not None and s["regret"]["5"] is None and s["regret"]["10"] is None
    assert s["equivalent_random_trials"]["5"] is None and s["rank"]["5"] is None
    assert s["runs_stopped_before"] == {"5": 8, "10": 8}


class _SpyAdaptive(AdaptivePortfolioStrategy):
    SETTINGS_GRID = {"temperature": (0.1, 1.0)}
    fits: list[tuple[frozenset, float]] = []

    def fit(self, meta_table, task_features=None, space=None):
        _SpyAdaptive.fits.append((frozenset(meta_table["task"]), self.temperature))
        return super().fit(meta_table, task_features, space)


def test_nested_selection_never_sees_the_held_out_task(monkeypatch):
    monkeypatch.setitem(STRATEGIES, "spy", _SpyAdaptive)
    _SpyAdaptive.fits = []
    table, feats = shifting_table(n_tasks=5, n_configs=16)
    data = prepare(table, task_features=feats, budget=5)
    # model_from fixed: its own inner check (inside fit) is tested elsewhere and would multiply the fits' cost
    res = run_benchmark(data, ["spy"], 5, 1, "loo", progress=False, nested={"spy": None},
                        strategy_kwargs={"spy": {"model_from": 10}})
    chosen = res.summary["protocol"]["nested"]["spy"]
    assert [c["held_out"] for c in chosen] == [[t] for t in data.tasks]
    for c in chosen:
        assert c["settings"]["temperature"] in (0.1, 1.0) and len(c["inner_scores"]) == 2
    # every fit (inner or outer) of the fold holding out task h saw no row of h: 5 outer folds x
    # (2 settings x 4 inner folds + 1 final fit)
    assert len(_SpyAdaptive.fits) == 5 * (2 * 4 + 1)
    for fold, held in enumerate(data.tasks):
        seen = _SpyAdaptive.fits[fold * 9:(fold + 1) * 9]
        assert all(held not in tasks for tasks, _ in seen)
    best, scores = select_settings("spy", data, data.tasks[1:], 5, base={"model_from": 10})
    assert best["temperature"] == scores.sort_values("inner_score", kind="stable").iloc[0]["temperature"]


def test_nested_needs_a_grid(capsys, tmp_path):
    table, _ = shifting_table(n_tasks=3, n_configs=8)
    with pytest.raises(BenchmarkError, match="declares no settings"):
        run_benchmark(prepare(table), ["random"], 3, 1, "loo", progress=False, nested={"random": None})
    assert _bench(_write(tmp_path, table), tmp_path / "n", **{"--strategies": "random", "--budget": "3",
                                                             "--nested": "portfolio"}) == 2
    assert "--nested: strategy 'portfolio' is not among --strategies" in capsys.readouterr().err
