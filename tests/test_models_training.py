from __future__ import annotations

import math

import pytest
import torch

from metahpo_utils.data import TaskSpec, make_task
from metahpo_utils.models import ModelError, MultiTaskModel, build_model, freeze_blocks
from metahpo_utils.training import DIVERGENCE_LOSS, finetune, pretrain_trunk, train_config, train_multitask

CFG = {"lr": 0.01, "weight_decay": 1e-4, "batch_size": 32, "width": 32, "depth": 2, "dropout": 0.1,
       "optimizer": "adamw", "momentum": 0.9}


@pytest.fixture(scope="module")
def task():
    return make_task(TaskSpec("digits", (0, 1, 2, 3), 40, 20, 20, seed=11))


@pytest.mark.parametrize("family, shape", [("mlp", (1, 8, 8)), ("cnn2d", (1, 8, 8)), ("cnn2d", (3, 32, 32)), ("cnn1d", (1, 40))])
def test_model_families_shapes(family, shape):
    for depth in (1, 2, 3):
        m = build_model(family, shape, 5, {**CFG, "depth": depth})
        assert m(torch.zeros(7, *shape)).shape == (7, 5)
        assert len(m.trunk) >= depth


def test_model_errors():
    with pytest.raises(ModelError, match="unknown family"):
        build_model("transformer", (1, 8, 8), 2, CFG)
    with pytest.raises(ModelError, match="needs inputs of 2 dims"):
        build_model("cnn1d", (1, 8, 8), 2, CFG)


def test_training_learns_and_records_curves(task):
    r = train_config(task, CFG, epochs=6, seed=0)
    assert r.status == "ok" and len(r.curve) == len(r.val_loss) == len(r.train_loss) == 6
    assert r.objective == r.curve[-1] and r.objective > 0.8  # 4-way digits, far above chance (0.25)
    assert 0 <= r.test_objective <= 1 and r.cost_s > 0
    assert r.train_loss[-1] < r.train_loss[0]


def test_training_is_deterministic_given_seed(task):
    a, b = train_config(task, CFG, epochs=3, seed=4), train_config(task, CFG, epochs=3, seed=4)
    assert a.curve == b.curve and a.val_loss == b.val_loss and a.objective == b.objective
    c = train_config(task, CFG, epochs=3, seed=5)
    assert c.val_loss != a.val_loss


@pytest.mark.parametrize("family", ["cnn2d", "mlp"])
def test_sgd_and_other_families_train(task, family):
    r = train_config(task, {**CFG, "optimizer": "sgd", "lr": 0.1}, epochs=5, seed=0, family=family)
    assert r.status == "ok" and r.objective > 0.5


def test_divergence_is_recorded_not_raised(task):
    r = train_config(task, {**CFG, "optimizer": "sgd", "lr": 1e4, "momentum": 0.99}, epochs=5, seed=0)
    assert r.status == "diverged"
    assert len(r.curve) < 5
    # a diverged run is worth a majority-class predictor, a finite number the benchmark can use
    majority = (task.y_val == torch.bincount(task.y_train).argmax()).float().mean().item()
    assert r.objective == pytest.approx(majority) and math.isfinite(r.test_objective)
    # and it poisons nothing: the next run is as if it never happened
    assert train_config(task, CFG, epochs=3, seed=4).curve == train_config(task, CFG, epochs=3, seed=4).curve
    assert DIVERGENCE_LOSS > math.log(task.n_classes)


def test_multitask_heads_use_their_own_labels():
    t1 = make_task(TaskSpec("digits", (0, 1), 40, 20, 20, seed=1))
    t2 = make_task(TaskSpec("digits", (2, 5, 8), 40, 20, 20, seed=2))
    model, curves = train_multitask([t1, t2], CFG, epochs=8, seed=0)
    assert isinstance(model, MultiTaskModel)
    assert [h.out_features for h in model.heads] == [2, 3]
    assert model(t2.X_val, 1).shape == (len(t2.y_val), 3)
    assert curves[0][-1] > 0.9 and curves[1][-1] > 0.8  # both heads well above chance on their own task
    # swapping the heads' tasks gives nonsense: each head learned its own labels
    with torch.no_grad():
        acc_own = (model(t1.X_val, 0).argmax(1) == t1.y_val).float().mean().item()
        acc_other = (model(t1.X_val, 1).argmax(1)[:, None] == t1.y_val[:, None]).float().mean().item()
    assert acc_own > acc_other + 0.3


def test_transfer_freezes_blocks_and_fine_tunes():
    src = make_task(TaskSpec("digits", (0, 1, 2, 3, 4, 5), 80, 20, 20, seed=3))
    tgt = make_task(TaskSpec("digits", (6, 7, 8, 9), 10, 20, 20, seed=4))
    pre = train_config(src, {**CFG, "depth": 2}, epochs=6, seed=0).model
    frozen_before = [p.detach().clone() for p in pre.trunk[0].parameters()]
    r = finetune(pre.trunk, pre.feature_dim, tgt, {**CFG, "lr": 1e-2}, n_frozen=1, epochs=10, seed=0)
    assert r.status == "ok" and r.objective > 0.5
    tuned = r.model
    assert all(torch.equal(a, b) for a, b in zip(frozen_before, tuned.trunk[0].parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(pre.trunk[1].parameters(), tuned.trunk[1].parameters()))
    # the source model itself is untouched (fine-tuning works on a copy)
    assert all(torch.equal(a, b) for a, b in zip(frozen_before, pre.trunk[0].parameters()))
    with pytest.raises(ModelError, match="n_frozen=5"):
        freeze_blocks(pre.trunk, 5)


def test_pretrain_on_several_sources_then_finetune():
    sources = [make_task(TaskSpec("digits", c, 60, 20, 20, seed=i)) for i, c in enumerate([(0, 1, 2), (3, 4, 5)])]
    tgt = make_task(TaskSpec("digits", (6, 7, 8, 9), 10, 20, 20, seed=4))
    trunk, dim = pretrain_trunk(sources, CFG, epochs=6, seed=0)
    assert dim == CFG["width"] and len(trunk) == CFG["depth"]
    r = finetune(trunk, dim, tgt, {**CFG, "lr": 1e-2}, n_frozen=len(trunk), epochs=10, seed=0)
    # all trunk blocks frozen: only the new head learns, on top of transferred features
    assert all(torch.equal(a, b) for a, b in zip(trunk.parameters(), r.model.trunk.parameters()))
    assert r.status == "ok" and r.objective > 0.5
