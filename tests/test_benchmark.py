"""The replay protocol: no leakage, metric invariants, exact equivalent random trials, the CLI."""
from __future__ import annotations

import itertools
import json
from math import comb

import numpy as np
import pandas as pd
import pytest

from metahpo_utils.benchmark import (
    BenchmarkError, equivalent_random_trials, expected_random_regret, folds, prepare, replay, run_benchmark,
)
from metahpo_utils.cli import main
from metahpo_utils.strategies import STRATEGIES
from metahpo_utils.strategies.meta import PortfolioStrategy
from strategy_fixtures import shifting_space, shifting_table


@pytest.fixture(scope="module")
def data():
    table, feats = shifting_table(n_tasks=6, n_configs=30)
    return prepare(table, space=shifting_space(), task_features=feats, budget=20)


def test_folds():
    tasks = list("abcdef")
    loo = folds(tasks, "loo")
    assert len(loo) == 6 and all(h[0] not in tr and len(tr) == 5 for tr, h in loo)
    k3 = folds(tasks, "kfold:3")
    held = sorted(t for _, h in k3 for t in h)
    assert held == tasks and all(not set(tr) & set(h) for tr, h in k3)
    split = folds(tasks, "split", splits=pd.Series({"a": "meta-test", "b": "meta-train", "c": "meta-val"}))
    assert split == [(["b", "c"], ["a"])]
    for bad in ("kfold:1", "kfold:x", "half"):
        with pytest.raises(BenchmarkError):
            folds(tasks, bad)


class Spy(PortfolioStrategy):
    seen: list[set[str]] = []

    def fit(self, meta_table, task_features=None, space=None):
        Spy.seen.append(set(meta_table["task"]))
        return super().fit(meta_table, task_features, space)


def test_no_leakage_and_metric_invariants(data, monkeypatch):
    monkeypatch.setitem(STRATEGIES, "spy", Spy)
    res = run_benchmark(data, ["spy", "random"], budget=20, seeds=2, holdout="loo", progress=False)
    # each fit saw every task but the held-out one
    assert len(Spy.seen) == 6 and all(len(s) == 5 for s in Spy.seen)
    assert sorted(set(data.tasks) - s for s in map(frozenset, Spy.seen)) == sorted({t} for t in data.tasks)
    r = res.results
    assert r["normalized_regret"].between(0, 1).all()
    for _, g in r.groupby(["strategy", "task", "seed"]):
        assert np.all(np.diff(g.sort_values("trial")["normalized_regret"]) <= 1e-12)
        assert len(g) == 20
    s = res.summary
    assert s["budget"] == 20 and s["seeds"] == 2 and s["tasks"] == data.tasks
    assert set(s["strategies"]["spy"]) >= {"regret", "rank", "equivalent_random_trials", "regret_ci", "rank_ci"}
    assert list(s["strategies"]["spy"]["regret"]) == ["1", "5", "10"]
    ranks = [s["strategies"][k]["rank"]["10"] for k in ("spy", "random")]
    assert sum(ranks) == pytest.approx(3.0)  # two strategies: ranks 1 and 2 (ties share 1.5)


def test_replay_never_repeats_a_configuration(data):
    strat = STRATEGIES["knn"]().fit(data.table[data.table.task != data.tasks[0]], data.features, space=data.space)
    _, idx, _ = replay(strat, data, data.tasks[0], 30, seed=0)
    assert len(idx) == 30 and len(set(idx.tolist())) == 30


def test_expected_random_regret_matches_brute_force():
    v = np.array([0.3, 0.9, 0.1, 0.5, 0.5, 0.7])
    reg = (v.max() - v) / (v.max() - v.min())
    got = expected_random_regret(v, 6)
    for r in range(1, 7):
        subsets = list(itertools.combinations(range(6), r))
        assert len(subsets) == comb(6, r)
        brute = np.mean([reg[list(s)].min() for s in subsets])
        assert got[r - 1] == pytest.approx(brute)
    # equivalent random trials inverts the curve
    assert equivalent_random_trials(got[2], got) == pytest.approx(3.0)
    mid = (got[1] + got[2]) / 2
    assert 2 < equivalent_random_trials(mid, got) < 3
    assert equivalent_random_trials(0.0, got) == pytest.approx(6.0)


def _write(tmp_path, df, name="t.csv"):
    p = tmp_path / name
    df.to_csv(p, index=False)
    return str(p)


def _bench_args(table, out, **over):
    args = {"--table": table, "--budget": "5", "--seeds": "2", "--holdout": "loo",
            "--strategies": "random,portfolio", "--out": str(out)}
    args.update(over)
    flat = [x for k, v in args.items() if v is not None for x in (k, v)]
    return ["benchmark", *flat, "--maximize", "--no-progress"]


def test_cli_benchmark_end_to_end(tmp_path, capsys):
    table, feats = shifting_table(n_tasks=4, n_configs=12)
    t = _write(tmp_path, table)
    f = _write(tmp_path, feats.reset_index(), "f.csv")
    assert main(_bench_args(t, tmp_path / "out", **{"--task-features": f})) == 0
    res = pd.read_csv(tmp_path / "out" / "results.csv")
    assert list(res.columns) == ["strategy", "task", "seed", "trial", "best_so_far", "normalized_regret"]
    assert len(res) == 2 * 4 * 2 * 5
    summ = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summ["budget"] == 5 and set(summ["strategies"]) == {"random", "portfolio"}
    for name in ("regret_curves", "rank_curves"):
        assert (tmp_path / "out" / f"{name}.png").stat().st_size > 1000 and (tmp_path / "out" / f"{name}.pdf").exists()
    assert "regret@1" in capsys.readouterr().out


def test_cli_benchmark_reuse_reruns_only_the_named_strategies(tmp_path, capsys):
    table, _ = shifting_table(n_tasks=4, n_configs=12)
    t = _write(tmp_path, table)
    both = tmp_path / "both"
    assert main(_bench_args(t, both, **{"--strategies": "random,portfolio,grid"})) == 0
    full = pd.read_csv(both / "results.csv")
    # re-run one strategy on top of the earlier results: identical results, ranks over all three
    assert main(_bench_args(t, tmp_path / "re", **{"--strategies": "portfolio", "--reuse": str(both / "results.csv")})) == 0
    merged = pd.read_csv(tmp_path / "re" / "results.csv")
    key = ["strategy", "task", "seed", "trial"]
    pd.testing.assert_frame_equal(merged.sort_values(key).reset_index(drop=True), full.sort_values(key).reset_index(drop=True))
    assert json.loads((tmp_path / "re" / "summary.json").read_text()) == json.loads((both / "summary.json").read_text())
    # an earlier run of another protocol is refused with one line
    capsys.readouterr()
    assert main(_bench_args(t, tmp_path / "bad", **{"--strategies": "portfolio", "--budget": "4",
                                                     "--reuse": str(both / "results.csv")})) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--reuse: strategy 'random' covers other" in err[0]
    assert not (tmp_path / "bad").exists()


def test_cli_benchmark_bad_inputs(tmp_path, capsys):
    table, _ = shifting_table(n_tasks=3, n_configs=6)
    good = _write(tmp_path, table)
    cases = [
        (_write(tmp_path, table.drop(columns="objective"), "a.csv"), {}, "missing column 'objective'"),
        (_write(tmp_path, table.assign(objective=np.nan), "b.csv"), {}, "no finite values"),
        (_write(tmp_path, pd.concat([table, table.iloc[:1].assign(task="lonely")]), "c.csv"), {}, "'lonely' has only one configuration"),
        (good, {"--strategies": "random,magic"}, "unknown strategy 'magic'"),
        (good, {"--budget": "7"}, "--budget 7 is larger than task"),
        (good, {"--holdout": "half"}, "--holdout"),
    ]
    for table_path, over, msg in cases:
        assert main(_bench_args(table_path, tmp_path / "never", **over)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], (msg, err)
    assert not (tmp_path / "never").exists()


def test_suggest_overhead_measures_every_strategy(capsys, tmp_path):
    table, _ = shifting_table(n_tasks=3, n_configs=40)
    t = _write(tmp_path, table)
    assert main(["perf", "--only", "suggest", "--table", t, "--strategies", "random,adaptive-portfolio",
                 "--observations", "10", "--json", str(tmp_path / "perf.json")]) == 0
    got = json.loads((tmp_path / "perf.json").read_text())
    assert set(got["suggest_median_ms"]) == {"random", "adaptive-portfolio"}
    assert all(v > 0 for v in got["suggest_median_ms"].values())
