"""The population trainer matches the sequential trainer member by member.

Tolerance: validation accuracies and statuses must be equal and validation losses agree to
1e-4 (relative) / 1e-5 (absolute). Initial weights, mini-batch order and dropout masks are the
sequential trainer's own, so the only difference left is float32 rounding of batched against
single matrix products (observed: about 1e-7 after 3 epochs); a looser bound would hide a wrong
update rule, a tighter one would fail on BLAS blocking.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from metahpo_utils.data.datasets import load_dataset
from metahpo_utils.data.tasks import Task
from metahpo_utils.population import group_configs, train_configs, train_population
from metahpo_utils.training import evaluate, train_config


@pytest.fixture(scope="module")
def image_task():
    ds = load_dataset("digits")
    return Task.from_arrays(ds.X[:400], ds.y[:400], name="digits-400", seed=0)


@pytest.fixture(scope="module")
def signal_task():
    ds = load_dataset("mnist1d")
    return Task.from_arrays(ds.X[:300], ds.y[:300], name="mnist1d-300", seed=0)


def _configs(depth=2, batch=32):
    base = dict(depth=depth, batch_size=batch)
    return [
        dict(base, lr=0.05, weight_decay=1e-4, width=16, dropout=0.0, optimizer="sgd", momentum=0.9),
        dict(base, lr=0.003, weight_decay=1e-2, width=48, dropout=0.3, optimizer="adamw", momentum=0.85),
        dict(base, lr=0.2, weight_decay=1e-5, width=33, dropout=0.1, optimizer="sgd", momentum=0.5),
        dict(base, lr=0.01, weight_decay=1e-3, width=64, dropout=0.45, optimizer="adamw", momentum=0.95),
        dict(base, lr=1.0, weight_decay=0.0, width=40, dropout=0.0, optimizer="adamw", momentum=0.9),  # diverges
    ]


def _assert_same(seq, pop):
    for a, b in zip(seq, pop):
        assert a.status == b.status
        assert a.curve == pytest.approx(b.curve, abs=0)  # accuracies: equal
        np.testing.assert_allclose(b.val_loss, a.val_loss, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(b.train_loss, a.train_loss, rtol=1e-4, atol=1e-5)
        assert a.objective == b.objective and a.test_objective == b.test_objective


@pytest.mark.parametrize("family", ["mlp", "cnn2d"])
def test_population_matches_sequential_on_images(image_task, family):
    cfgs = _configs(depth=2)
    seq = [train_config(image_task, c, epochs=3, seed=7, family=family) for c in cfgs]
    pop = train_population(image_task, cfgs, epochs=3, seed=7, family=family).results
    assert [r.status for r in seq].count("diverged") >= 1  # the protocol covers a diverging member
    _assert_same(seq, pop)


def test_population_matches_sequential_on_signals(signal_task):
    cfgs = _configs(depth=3, batch=64)
    seq = [train_config(signal_task, c, epochs=2, seed=1, family="cnn1d") for c in cfgs]
    pop = train_population(signal_task, cfgs, epochs=2, seed=1, family="cnn1d").results
    _assert_same(seq, pop)


def test_a_diverging_member_leaves_the_others_unchanged(image_task):
    cfgs = _configs()
    with_bad = train_population(image_task, cfgs, epochs=3, seed=0).results
    without = train_population(image_task, cfgs[:4], epochs=3, seed=0).results
    assert with_bad[4].status == "diverged" and with_bad[4].curve == []
    majority = (image_task.y_val == torch.bincount(image_task.y_train).argmax()).float().mean().item()
    assert with_bad[4].objective == pytest.approx(majority)
    for a, b in zip(without, with_bad[:4]):
        assert a.curve == b.curve and a.status == b.status == "ok"


def test_grouping_and_mixed_groups_refused(image_task):
    cfgs = _configs(depth=1) + _configs(depth=2, batch=16)
    groups = group_configs(cfgs, "mlp", max_size=3)
    assert sorted(i for g in groups for i in g) == list(range(10))
    assert all(len({(cfgs[i]["depth"], cfgs[i]["batch_size"]) for i in g}) == 1 for g in groups)
    assert max(len(g) for g in groups) == 3
    with pytest.raises(ValueError, match="differ in depth or batch size"):
        train_population(image_task, cfgs, epochs=1)
    # train_configs groups for the caller and keeps the order of the configurations
    res = train_configs(image_task, cfgs[3:7], epochs=1, seed=0)
    ref = [train_config(image_task, c, epochs=1, seed=0) for c in cfgs[3:7]]
    assert [r.curve for r in res] == [r.curve for r in ref]


def test_kept_models_are_the_trained_members(image_task):
    cfgs = _configs()[:3]
    res = train_population(image_task, cfgs, epochs=2, seed=3, keep_models=True).results
    for r, c in zip(res, cfgs):
        assert r.model is not None and r.model.trunk[0][1].out_features == c["width"]
        acc, _ = evaluate(r.model, image_task.X_test, image_task.y_test)
        assert acc == pytest.approx(r.test_objective)


def test_mlps_of_different_depths_share_one_population(image_task):
    cfgs = [dict(c, depth=d) for c, d in zip(_configs(), [1, 3, 2, 3, 1])]
    assert len(group_configs(cfgs, "mlp")) == 1  # shallower members are padded with frozen identities
    seq = [train_config(image_task, c, epochs=3, seed=2) for c in cfgs]
    pop = train_population(image_task, cfgs, epochs=3, seed=2, keep_models=True).results
    _assert_same(seq, pop)
    for r, c in zip(pop, cfgs):
        if r.status == "ok":  # the kept model has the member's own depth
            assert len(r.model.trunk) == c["depth"]
            assert evaluate(r.model, image_task.X_test, image_task.y_test)[0] == pytest.approx(r.test_objective)
    assert len(group_configs([dict(c, depth=2) for c in cfgs], "cnn2d")) == 1
    assert len(group_configs(cfgs, "cnn2d")) == 3  # ConvNets of other depths pool differently: not padded


@pytest.mark.parametrize("group_by", ["config", "task"])
def test_collect_with_populations_records_what_sequential_records(tmp_path, group_by):
    from metahpo_utils.metadataset import MetaDatasetStore, collect

    kw = dict(n_tasks=4, n_configs=6, epochs=2, progress=False, seed=3)
    rep = collect("digits", store=tmp_path / "p.sqlite", trainer="population", group_by=group_by, max_group=3, **kw)
    collect("digits", store=tmp_path / "s.sqlite", trainer="sequential", **kw)
    assert rep.trials_run == 24
    with MetaDatasetStore(tmp_path / "p.sqlite") as a, MetaDatasetStore(tmp_path / "s.sqlite") as b:
        ta, tb = (t.sort_values(["task", "config_id"]).reset_index(drop=True) for t in (a.trials_table(), b.trials_table()))
    assert (ta["status"] == tb["status"]).all()
    assert (ta["objective"] == tb["objective"]).all() and (ta["test_objective"] == tb["test_objective"]).all()
    assert [len(c) for c in ta["curve"]] == [len(c) for c in tb["curve"]]


def test_a_members_numbers_do_not_depend_on_its_population():
    """A resumed collection regroups trials; one configuration's result on a task must not change."""
    from metahpo_utils.data.tasks import build_suite
    from metahpo_utils.population import train_members

    suite = build_suite("digits", n_tasks=4, seed=5)
    tasks = [suite.task(n) for n in suite.task_names]
    c = _configs()[1]  # AdamW with dropout
    alone = train_members([(tasks[2], c)], epochs=3, seed=0).results[0]
    crowd = train_members([(t, c) for t in tasks], epochs=3, seed=0).results[2]
    assert alone.curve == crowd.curve and alone.val_loss == crowd.val_loss and alone.train_loss == crowd.train_loss
