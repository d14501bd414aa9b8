"""The main job of `make reproduce`, on a tiny protocol: every step runs, a second run reuses."""
from __future__ import annotations

import json

import pytest

import metahpo_utils.reproduce as R


@pytest.mark.slow
def test_main_job_end_to_end_and_reuse(tmp_path, monkeypatch):
    monkeypatch.setattr(R, "REPRODUCE", {"suite": "digits", "n_tasks": 5, "n_configs": 4, "epochs": 1, "seed": 0})
    monkeypatch.setattr(R, "BENCHMARK", {"strategies": ["random", "portfolio", "adaptive-portfolio"], "budget": 6,
                                         "seeds": 1, "holdout": "split", "nested": ["adaptive-portfolio"]})
    monkeypatch.setattr(R, "TUNING", {"strategies": ["random", "adaptive-portfolio"], "seeds": 1, "budget_trials": 2})
    logs: list[str] = []
    res = R.main_job(tmp_path / "runs", tmp_path / "figs", workers=1, log=logs.append)
    from metahpo_utils.figures import FIGURES

    missing = [f for f in FIGURES if not (tmp_path / "figs" / f"{f}.png").exists()]
    assert missing == ["importance_by_group"]  # the digits tasks form no groups (one kind of task)
    assert any("importance_by_group: skipped" in line for line in logs)
    text = res["summary"].read_text()
    assert "| `portfolio` |" in text and "| `adaptive-portfolio` |" in text and "regret@1" in text
    assert "| random, exact expectation |" in text and "chosen by nested cross-validation" in text
    # a table of 4 configurations a task is replayed to the end of it, not to the protocol's budget of 6
    assert json.loads((tmp_path / "runs" / "bench_digits" / "summary.json").read_text())["budget"] == 4
    assert any("budget 4" in line for line in logs)
    logs.clear()
    R.main_job(tmp_path / "runs", tmp_path / "figs", workers=1, log=logs.append)  # everything is reused
    assert any("benchmark: reusing" in line for line in logs) and any("tuning: reusing" in line for line in logs)
    assert any("collected: 0 new trials" in line for line in logs)
