"""The committed default meta-dataset: its contract, and a few rows recomputed from scratch."""
from __future__ import annotations

import numpy as np
import pytest

from metahpo_utils.reproduce import REPRODUCE
from metahpo_utils.metadataset import RESOURCES, best_config_summary, default_metadataset, recompute_trial


@pytest.fixture(scope="module")
def tables():
    return default_metadataset("digits")


def test_committed_size_and_contract(tables):
    size = sum(p.stat().st_size for p in (RESOURCES / "digits").iterdir())
    assert size < 20 * 2**20
    t = tables.trials
    assert t["task"].nunique() >= 40 and t["config_id"].nunique() >= 64
    assert len(t) == t["task"].nunique() * t["config_id"].nunique()  # complete grid, no duplicates
    assert set(t["status"]) <= {"ok", "diverged", "failed"} and (t["status"] == "ok").mean() > 0.8
    assert tables.meta["suite"] == REPRODUCE["suite"] and tables.meta["epochs"] == REPRODUCE["epochs"]
    assert set(tables.tasks["task"]) == set(t["task"]) == set(tables.provenance["task"])
    assert set(tables.space.names) < set(t.columns)


def test_best_configuration_moves_across_tasks(tables):
    s = best_config_summary(tables.trials, tables.provenance)
    assert s["distinct_best_configs"] >= 5 and s["most_common_best_share"] < 0.5
    assert s["best_log10_lr_max"] - s["best_log10_lr_min"] > 1.0  # best learning rates span over a decade
    assert 0 < s["mean_rank_correlation"] < 1


def test_rows_recompute_from_scratch(tables):
    """Retrain a few rows from the recorded settings alone and compare.

    Where this machine's float kernels are those the meta-dataset was recorded with, they match exactly: torch's
    AVX2 kernels (which importing metahpo pins on x86) and a matrix library (MKL) that chose the same kernels,
    which the first row, retrained bit for bit, shows. Elsewhere (other kernels sum floats in another order; MKL
    picks its own by processor, see the README's "Same numbers on every run") stable rows agree to one validation
    example and losses to 1e-4 (relative), and the unstable row, chaotic by design, only keeps its status. (A
    change that breaks bit-exact training on a recording machine would show here as the tolerance branch; the
    trainer's own determinism is tested in test_models_training and test_population.)
    """
    import torch

    t = tables.trials
    diverged = t[t["status"] == "diverged"].head(1)
    # digits-003 x config 23 (SGD at lr 0.87) is unstable: other kernels send it 0.03 to 0.36 elsewhere
    unstable = t[(t["task"] == "digits-003") & (t["config_id"] == 23)]
    picks = [t.iloc[i] for i in (0, len(t) // 3, 2 * len(t) // 3 + 5)] + [r for _, r in diverged.iterrows()] \
        + [r for _, r in unstable.iterrows()]
    prov = tables.provenance.set_index("task")
    exact = None
    for row in picks:
        res = recompute_trial(tables.meta, row["task"], int(row["config_id"]))
        if exact is None:  # the first row (a stable one) tells whether this machine has the recording's kernels
            exact = torch.backends.cpu.get_cpu_capability() == "AVX2" and res["val_loss"] == list(row["val_loss_curve"])
        for name in tables.space.names:
            want, got = row[name], res["config"][name]
            assert (got == pytest.approx(want, rel=1e-9)) if isinstance(got, float) else (str(got) == str(want))
        n_val = prov.loc[row["task"], "n_val_per_class"] * prov.loc[row["task"], "k"]
        assert res["status"] == row["status"]
        if exact:
            assert (res["objective"], res["test_objective"], res["curve"]) == \
                (row["objective"], row["test_objective"], list(row["curve"]))
            np.testing.assert_array_equal(res["val_loss"], row["val_loss_curve"])
        if row.name in unstable.index:
            continue  # the unstable row: only exact kernels bring it back
        assert abs(res["objective"] - row["objective"]) <= 1.0 / n_val + 1e-12
        assert len(res["curve"]) == len(row["curve"])
        np.testing.assert_allclose(res["curve"], row["curve"], atol=1.0 / n_val + 1e-12)
        np.testing.assert_allclose(res["val_loss"], row["val_loss_curve"], rtol=1e-4)
