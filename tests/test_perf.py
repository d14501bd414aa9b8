"""The perf command measures every figure the performance benchmark reports (on tiny sizes here;
the figures themselves are benchmarks, never asserted as timings)."""
from __future__ import annotations

import json

import pytest

from metahpo_utils import perf
from metahpo_utils.cli import main


def test_perf_reports_every_figure(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(perf.WORKLOADS, "mlp", ("mlp", "mnist1d", 300, 4, 1, {"batch_size": 64, "depth": 2, "width": 24}))
    monkeypatch.setitem(perf.WORKLOADS, "cnn", ("cnn1d", "mnist1d", 300, 4, 1, {"batch_size": 64, "depth": 2, "width": 8}))
    monkeypatch.setattr(perf, "COLLECT_SIZE", {"n_tasks": 3, "n_configs": 4, "epochs": 1})
    monkeypatch.setattr(perf, "REPLAY", {"strategies": ("random", "portfolio", "mtl"), "budget": 5, "seeds": 1,
                                         "strategy_kwargs": {"mtl": {"epochs": 50}}})
    out = tmp_path / "perf.json"
    assert main(["perf", "--only", "trainers,collect,replay", "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    for key in ("population_speedup_mlp", "population_speedup_cnn", "dask_speedup", "matmul_fraction"):
        assert got[key] > 0, key
    assert set(got["replay_runs_per_s"]) == {"random", "portfolio", "mtl"}
    # the population trainer reproduces the sequential one on both workloads
    assert got["population_mlp"]["same_objective_fraction"] == 1.0
    assert got["population_cnn"]["same_objective_fraction"] == 1.0
    assert got["collect"]["workers_1"]["trials"] == 3 * 4 and got["collect"]["tasks_x2_workers_1"]["trials"] == 6 * 4
    assert all(v > 50 for v in got["collect_peak_rss_mb"].values())  # a real measurement of a python process
    assert "matmul" in capsys.readouterr().out


def test_perf_rejects_unknown_section(capsys):
    assert main(["perf", "--only", "trainers,warp"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--only: unknown section 'warp'" in err[0]


def test_flop_count_matches_layer_shapes():
    family, task, configs, epochs = perf.workload("mlp")
    d, W, C = 40, 100, task.n_classes
    per_example = 2 * (d * W + W * W + W * C) * len(configs)
    n = 3 * len(task.y_train) * epochs + len(task.y_val) * epochs + len(task.y_test)
    assert perf.mlp_flops(task, configs, epochs) == pytest.approx(per_example * n)


@pytest.mark.slow
def test_perf_reports_the_benchmark_dask_speedup(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(perf, "BENCHMARK_DASK", {"strategies": ("random", "portfolio"), "budget": 3, "seeds": 1,
                                                 "holdout": "kfold:2", "workers": 2})
    out = tmp_path / "perf.json"
    assert main(["perf", "--only", "benchmark", "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["benchmark_dask_speedup"] > 0 and got["benchmark_dask"]["identical"] is True
    assert got["benchmark_dask"]["runs"] == 2 * 48  # every default digits task held out once, per strategy
    assert "2 Dask workers" in capsys.readouterr().out


def test_perf_reports_the_slowdown_under_load(tmp_path, monkeypatch, capsys):
    """Both runs happen with and without the competing process, which is gone afterwards."""
    import psutil

    monkeypatch.setattr(perf, "LOAD", {"tune": {**perf.LOAD["tune"], "budget_trials": 2, "epochs": 1},
                                       "collect": {"n_tasks": 3, "n_configs": 2, "epochs": 1}, "repeats": 1})
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    out = tmp_path / "perf.json"
    assert main(["perf", "--only", "load", "--json", str(out)]) == 0
    got = json.loads(out.read_text())["under_load"]
    assert set(got["slowdown"]) == {"tune", "collect"}
    for k in ("tune", "collect"):
        assert got["idle_s"][k] > 0 and got["loaded_s"][k] > 0
        assert got["slowdown"][k] == pytest.approx(got["loaded_s"][k] / got["idle_s"][k])
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before  # the busy process was stopped
    assert "under load" in capsys.readouterr().out
