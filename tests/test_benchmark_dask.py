"""The replay benchmark on Dask workers: the same rows and summary as one process, one clear error
naming the (fold, strategy) of a unit that fails, the CLI's --workers / --scheduler."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from metahpo_utils import benchmark as bm
from metahpo_utils.benchmark import BenchmarkError, _join_parts, _split_units, _unit_cost, prepare, run_benchmark
from metahpo_utils.cli import main
from strategy_fixtures import shifting_space, shifting_table

# two folds, a baseline, a portfolio whose size nested cross-validation chooses, and adaptive-portfolio (its fit
# runs an inner cross-validation of its own)
KW = dict(strategies=["random", "portfolio", "adaptive-portfolio"], budget=6, seeds=2, holdout="kfold:2",
          progress=False, nested={"portfolio": {"size": (3, 10)}})


@pytest.fixture(scope="module")
def data():
    table, feats = shifting_table(n_tasks=6, n_configs=16)
    return prepare(table, space=shifting_space(), task_features=feats, budget=6)


@pytest.mark.slow
def test_dask_workers_give_the_results_of_one_process(data):
    logs: list[str] = []
    one = run_benchmark(data, **KW)
    two = run_benchmark(data, workers=2, log=logs.append, **KW)
    assert len(one.results) == 3 * 6 * 2 * 6
    pd.testing.assert_frame_equal(one.results, two.results, check_exact=True)
    for name in KW["strategies"]:
        for key in ("regret", "rank", "equivalent_random_trials", "regret_ci"):
            assert one.summary["strategies"][name][key] == two.summary["strategies"][name][key], (name, key)
    assert one.summary == two.summary  # nested choices and their inner scores included
    assert len(two.summary["protocol"]["nested"]["portfolio"]) == 2
    assert logs[0] == "benchmark: 6 (fold, strategy) units on 2 Dask workers"
    assert sum("portfolio: settings" in line for line in logs) == 2


@pytest.mark.slow
def test_units_split_by_held_out_task_give_the_results_of_one_process(data, monkeypatch):
    kw = dict(strategies=["random", "knn", "adaptive-portfolio", "mtl", "tpe"], budget=6, seeds=2, holdout="kfold:2",
              progress=False)
    one = run_benchmark(data, **kw)
    monkeypatch.setattr(bm, "SPLIT_REPLAY_S", 0.0)  # split every unit, one held-out task a part
    monkeypatch.setattr(bm, "SPLIT_MIN_PART_S", 1e-9)
    monkeypatch.setattr(bm, "SPLIT_FIT_RATIO", 0.0)
    logs: list[str] = []
    split = run_benchmark(data, workers=2, log=logs.append, **kw)
    assert logs[0] == "benchmark: 30 (fold, strategy) units on 2 Dask workers"  # 2 folds x 5 strategies x 3 tasks
    pd.testing.assert_frame_equal(one.results, split.results, check_exact=True)
    assert one.summary == split.summary


def test_split_units_and_their_reassembly():
    unit = dict(index=0, name="knn", train=list("abcdefgh"), held=list("ijklm"), budget=50, seeds=5, nested=False, grid=None)
    nested = dict(unit, index=1, nested=True)
    small = dict(unit, index=2, held=["i"], budget=2, seeds=1)
    parts = _split_units([unit, nested, small])
    mine = [p for p in parts if p["index"] == 0]
    assert len(mine) == 5 and [p["held"] for p in mine] == [[t] for t in "ijklm"]  # one task a part, in order
    assert [p for p in parts if p["index"] in (1, 2)] == [nested, small]  # nested and short units stay whole
    done = {(p["index"], p.get("part", 0)): {"index": p["index"], "part": p.get("part", 0), "rows": [(p["index"], t) for t in p["held"]],
                                             "times": [1.0], "runs": len(p["held"]), "selection": None} for p in parts[::-1]}
    joined = _join_parts(done, 3)
    assert [r[1] for r in joined[0]["rows"]] == list("ijklm") and joined[0]["runs"] == 5 and joined[0]["times"] == [1.0] * 5
    assert [u["index"] for u in joined] == [0, 1, 2]


@pytest.mark.slow
def test_scheduler_cli_and_a_failing_unit(data, tmp_path):
    from distributed import LocalCluster

    table, _ = shifting_table(n_tasks=4, n_configs=10)
    path = tmp_path / "t.csv"
    table.to_csv(path, index=False)
    args = ["benchmark", "--table", str(path), "--budget", "4", "--seeds", "2", "--holdout", "loo",
            "--strategies", "random,portfolio", "--maximize", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        assert main([*args, "--out", str(tmp_path / "dask"), "--scheduler", address]) == 0
        # --reuse of a distributed run's results, re-running one strategy on the cluster
        assert main([*args, "--out", str(tmp_path / "re"), "--strategies", "portfolio", "--reuse",
                     str(tmp_path / "dask" / "results.csv"), "--scheduler", address]) == 0
        # a unit that raises on a worker: one error that names its strategy and fold (both folds fail: either first)
        named = r"strategy 'portfolio' on fold [12] of 2 \(held out: .*\) failed: TypeError"
        with pytest.raises(BenchmarkError, match=named):
            run_benchmark(data, ["random", "portfolio"], 4, 1, "kfold:2", progress=False, scheduler=address,
                          strategy_kwargs={"portfolio": {"no_such_setting": 1}})
    one, dask = (pd.read_csv(tmp_path / d / "results.csv") for d in ("one", "dask"))
    pd.testing.assert_frame_equal(one, dask, check_exact=True)
    summary = {d: json.loads((tmp_path / d / "summary.json").read_text()) for d in ("one", "dask", "re")}
    assert summary["one"] == summary["dask"] == summary["re"]
    key = ["strategy", "task", "seed", "trial"]  # merge_results sorts the rows it merges
    rerun = pd.read_csv(tmp_path / "re" / "results.csv")
    pd.testing.assert_frame_equal(rerun.sort_values(key).reset_index(drop=True), one.sort_values(key).reset_index(drop=True),
                                  check_exact=True)


def test_a_failing_unit_names_its_fold_and_strategy_in_process(data):
    with pytest.raises(BenchmarkError, match=r"strategy 'portfolio' on fold 1 of 2 \(held out: .*\) failed: TypeError"):
        run_benchmark(data, ["portfolio"], 4, 1, "kfold:2", progress=False, strategy_kwargs={"portfolio": {"bogus": 1}})


def test_longest_units_start_first():
    unit = dict(train=list("abcdefgh"), held=["i"], budget=20, seeds=2, nested=False, grid=None)
    costs = {n: _unit_cost(dict(unit, name=n)) for n in ("random", "knn", "adaptive-portfolio")}
    assert costs["adaptive-portfolio"] > costs["knn"] > costs["random"]
    nested = _unit_cost(dict(unit, name="portfolio", nested=True, grid={"size": (3, 10)}))
    assert nested > _unit_cost(dict(unit, name="portfolio"))
