"""Paired comparison of strategies on one benchmark's results (benchmark.paired_comparison, CLI compare)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metahpo_utils.benchmark import BenchmarkError, paired_comparison
from metahpo_utils.cli import main


def results(regrets: dict[str, np.ndarray], seeds: int = 2, budget: int = 10) -> pd.DataFrame:
    """A results.csv: strategy -> per-task regret (constant over trials; seed s adds s * 0.001 then the mean
    over seeds is the given value plus 0.0005)."""
    rows = []
    for name, per_task in regrets.items():
        for t, r in enumerate(per_task):
            for s in range(seeds):
                for k in range(1, budget + 1):
                    rows.append({"strategy": name, "task": f"t{t}", "seed": s, "trial": k, "best_so_far": -r,
                                 "normalized_regret": r + 0.001 * s})
    return pd.DataFrame(rows)


def test_a_strategy_lower_on_every_task_is_lower_with_an_interval_below_zero():
    res = results({"a": np.array([0.1, 0.2, 0.3, 0.4, 0.5]), "b": np.array([0.2, 0.35, 0.4, 0.45, 0.6])})
    t = paired_comparison(res, "a")
    assert list(t["budget"]) == [1, 5, 10] and set(t["other"]) == {"b"}
    row = t.iloc[0]
    assert row["difference"] == pytest.approx(-0.1)
    assert row["ci_high"] < 0 and row["verdict"] == "lower"
    assert (row["wins"], row["ties"], row["losses"], row["tasks"]) == (5, 0, 0, 5)
    assert row["regret"] == pytest.approx(0.3005) and row["regret_other"] == pytest.approx(0.4005)
    flipped = paired_comparison(res, "b").iloc[0]
    assert flipped["verdict"] == "higher" and flipped["losses"] == 5


def test_pairing_sees_what_two_unpaired_intervals_cannot():
    """Tasks differ far more than the strategies do: the paired difference is still clearly negative."""
    base = np.array([0.01, 0.3, 0.05, 0.6, 0.2, 0.9])
    t = paired_comparison(results({"a": base, "b": base + 0.01}), "a", budgets=[3]).iloc[0]
    assert t["verdict"] == "lower" and t["difference"] == pytest.approx(-0.01)


def test_mixed_results_and_ties_show_no_difference():
    res = results({"a": np.array([0.1, 0.3, 0.2, 0.2]), "b": np.array([0.2, 0.2, 0.2, 0.25])})
    row = paired_comparison(res, "a", ["b"], [10]).iloc[0]
    assert (row["wins"], row["ties"], row["losses"]) == (2, 1, 1)
    assert row["ci_low"] < 0 < row["ci_high"] and row["verdict"] == "no difference shown"


def test_best_of_compares_with_the_lowest_other_at_each_budget():
    res = results({"a": np.array([0.2, 0.2, 0.2]), "b": np.array([0.3, 0.3, 0.3]), "c": np.array([0.1, 0.15, 0.1])})
    t = paired_comparison(res, "a", best_of=True, budgets=[5])
    assert list(t["other"]) == ["b", "c", "best of others: c"]
    assert t.iloc[2]["difference"] == pytest.approx(t.iloc[1]["difference"])
    only = paired_comparison(res, "a", best_of=True, only_best=True, budgets=[5])
    assert list(only["other"]) == ["best of others: c"] and only.iloc[0]["losses"] == 3


@pytest.mark.parametrize("kwargs, words", [({"strategy": "z"}, ["'z'", "a, b"]),
                                           ({"strategy": "a", "against": ["y"]}, ["'y'"]),
                                           ({"strategy": "a", "budgets": [11]}, ["budgets", "10"])])
def test_bad_names_and_budgets_get_one_clear_error(kwargs, words):
    res = results({"a": np.array([0.1, 0.2]), "b": np.array([0.2, 0.3])})
    with pytest.raises(BenchmarkError) as err:
        paired_comparison(res, **kwargs)
    assert all(w in str(err.value) for w in words)


def test_runs_on_other_tasks_are_refused():
    res = results({"a": np.array([0.1, 0.2]), "b": np.array([0.2, 0.3])})
    res = pd.concat([res, results({"c": np.array([0.1, 0.2, 0.3])})])
    with pytest.raises(BenchmarkError, match="other tasks"):
        paired_comparison(res, "a", ["c"])


def test_cli_prints_and_writes_the_table_and_refuses_a_bad_file(tmp_path, capsys):
    results({"a": np.array([0.1, 0.2, 0.3]), "b": np.array([0.2, 0.3, 0.4])}).to_csv(tmp_path / "results.csv", index=False)
    assert main(["compare", "--results", str(tmp_path), "--strategy", "a", "--out", str(tmp_path / "c.md")]) == 0
    out = capsys.readouterr().out
    assert "| 10 | `b` | 0.2005 | 0.3005 | -0.1000" in out and "3 / 0 / 0 | lower |" in out
    assert (tmp_path / "c.md").read_text().strip() == out.strip()
    pd.DataFrame({"strategy": ["a"]}).to_csv(tmp_path / "bad.csv", index=False)
    assert main(["compare", "--results", str(tmp_path / "bad.csv"), "--strategy", "a"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing column(s)" in err[0]


def test_a_run_that_stopped_early_leaves_its_task_out_of_the_later_budgets():
    res = results({"a": np.array([0.1, 0.2, 0.3]), "b": np.array([0.2, 0.3, 0.4])})
    res = res[~((res.strategy == "b") & (res.task == "t2") & (res.seed == 1) & (res.trial > 5))]  # stopped at 5
    t = paired_comparison(res, "a", budgets=[5, 10]).set_index("budget")
    assert t.loc[5, "tasks"] == 3 and t.loc[10, "tasks"] == 2
    assert t.loc[10, "difference"] == pytest.approx(-0.1) and t.loc[10, "regret_other"] == pytest.approx(0.2505)
    gone = res[~((res.strategy == "b") & (res.trial > 5))]  # every run of b stopped at 5
    row = paired_comparison(gone, "a", budgets=[10]).iloc[0]
    assert row["tasks"] == 0 and row["verdict"] == "n/a" and np.isnan(row["difference"])
    from metahpo_utils.benchmark import comparison_markdown
    assert "| 10 | `b` | n/a | n/a | n/a [n/a, n/a] | 0 / 0 / 0 | n/a |" in comparison_markdown(
        paired_comparison(gone, "a", budgets=[10]), "a")
