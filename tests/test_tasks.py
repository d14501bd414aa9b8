from __future__ import annotations

import numpy as np
import pytest
import torch

from metahpo_utils.data.tasks import FLAG_BLOCK, PERTURBATION_RATES
from metahpo_utils.data import (
    DatasetError, SUITES, Task, TaskError, TaskSpec, build_suite, get_tasksets, load_dataset, make_task,
)


@pytest.mark.parametrize("name, shape, n", [("digits", (1, 8, 8), 1797), ("mnist5k", (1, 28, 28), 5000), ("mnist1d", (1, 40), 5000)])
def test_embedded_datasets_are_real_and_offline(name, shape, n):
    ds = load_dataset(name)
    assert tuple(ds.X.shape) == (n, *shape)
    assert ds.X.dtype == torch.float32 and ds.y.dtype == torch.int64
    assert ds.n_classes == 10 and set(ds.y.tolist()) == set(range(10))
    counts = ds.class_counts()
    assert counts.min() >= 150  # real data, roughly balanced
    if name != "mnist1d":
        assert 0.0 <= ds.X.min() and ds.X.max() <= 1.0


def test_unknown_dataset_and_missing_root():
    with pytest.raises(DatasetError, match="unknown dataset 'nope'"):
        load_dataset("nope")
    with pytest.raises(DatasetError, match="needs a root"):
        load_dataset("cifar10")


def _spec(**kw):
    base = dict(base="digits", classes=(0, 3, 7), n_per_class=40, n_val_per_class=20, n_test_per_class=20, seed=5)
    base.update(kw)
    return TaskSpec(**base)


def test_make_task_is_deterministic_and_splits_are_disjoint():
    a, b = make_task(_spec()), make_task(_spec())
    for attr in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test"):
        assert torch.equal(getattr(a, attr), getattr(b, attr))
    c = make_task(_spec(seed=6))
    assert not torch.equal(a.X_train, c.X_train)
    assert a.n_classes == 3 and a.classes == ["0", "3", "7"]
    assert len(a.y_train) == 120 and len(a.y_val) == 60 and len(a.y_test) == 60
    # no example appears in two splits
    rows = lambda X: {tuple(x.flatten().tolist()) for x in X}  # noqa: E731
    assert not rows(a.X_train) & rows(a.X_val) and not rows(a.X_val) & rows(a.X_test)
    assert a.provenance["classes"] == [0, 3, 7] and a.provenance["base"] == "digits"


def test_label_noise_flips_about_the_requested_fraction():
    clean, noisy = make_task(_spec(n_per_class=100)), make_task(_spec(n_per_class=100, label_noise=0.3))
    # same examples (same seed), labels differ at ~30% of positions; validation stays clean
    assert torch.equal(clean.X_train, noisy.X_train)
    frac = (clean.y_train != noisy.y_train).float().mean().item()
    assert 0.2 < frac < 0.4
    assert torch.equal(clean.y_val, noisy.y_val)


def test_imbalance_rotation_downsample_and_noise():
    t = make_task(_spec(n_per_class=90, imbalance=9.0))
    counts = torch.bincount(t.y_train).tolist()
    assert counts[0] == 90 and counts[-1] == 10
    base = make_task(_spec())
    for kw in ({"rotation": 30.0}, {"downsample": 2}, {"noise_std": 0.5}):
        t = make_task(_spec(**kw))
        assert t.X_train.shape == base.X_train.shape
        assert not torch.allclose(t.X_train, base.X_train)
    ds = make_task(_spec(downsample=2)).X_train
    assert torch.equal(ds[..., ::2, ::2], ds[..., 1::2, 1::2])  # 2x2 blocks share one value
    with pytest.raises(TaskError, match="rotation needs images"):
        make_task(TaskSpec("mnist1d", (0, 1), 20, 10, 10, rotation=10.0))


def test_bad_recipes_are_refused_with_a_reason():
    with pytest.raises(TaskError, match="does not fit the 10 classes"):
        make_task(_spec(classes=tuple(range(11))))
    with pytest.raises(TaskError, match="at least 2 classes"):
        make_task(_spec(classes=(1,)))
    with pytest.raises(TaskError, match="examples"):
        make_task(_spec(n_per_class=1000))


@pytest.mark.parametrize("name", ["digits", "mnist5k", "mnist1d"])
def test_named_suites_default_size_and_splits(name):
    suite = build_suite(name)
    assert len(suite) >= 40 and len(suite) == SUITES[name].default_tasks
    parts = [set(v) for v in suite.splits.values()]
    assert set().union(*parts) == set(suite.task_names) and sum(map(len, parts)) == len(suite)
    assert all(len(p) >= 5 for p in parts)
    # the same seed gives the same suite, another seed another one
    assert build_suite(name).specs == suite.specs
    assert build_suite(name, seed=1).specs != suite.specs
    specs = list(suite.specs.values())
    ks = {len(s.classes) for s in specs}
    sizes = [s.n_per_class for s in specs]
    assert len(ks) >= 5 and max(sizes) / min(sizes) >= 5
    # each perturbation reaches exactly its share of every block of FLAG_BLOCK tasks (not luck)
    block = specs[:FLAG_BLOCK]
    for field_, on in (("label_noise", lambda s: s.label_noise > 0), ("noise_std", lambda s: s.noise_std > 0),
                       ("imbalance", lambda s: s.imbalance > 1), ("downsample", lambda s: s.downsample > 1)):
        assert sum(map(on, block)) == round(PERTURBATION_RATES[field_] * FLAG_BLOCK), field_
    n_rot = sum(s.rotation > 0 for s in block)
    assert n_rot == (0 if name == "mnist1d" else round(PERTURBATION_RATES["rotation"] * FLAG_BLOCK))
    # task i depends only on (seed, i): a smaller suite is a prefix of a larger one
    small = build_suite(name, n_tasks=7)
    assert list(small.specs.values()) == specs[:7]
    clean = [s for s in specs if s.label_noise == 0 and s.noise_std == 0 and s.rotation == 0
             and s.downsample == 1 and s.imbalance == 1]
    assert len(clean) >= 5
    assert any(s.noise_std > 0 for s in specs) and any(s.downsample > 1 for s in specs) and any(s.imbalance > 1 for s in specs)
    t = suite.task(suite.splits["meta-test"][0])
    assert t.n_classes == len(suite.specs[t.name].classes)


def test_tasks_option_ways_and_tasksets():
    suite = build_suite("digits", n_tasks=7, ways=3)
    assert len(suite) == 7 and all(len(s.classes) == 3 for s in suite.specs.values())
    with pytest.raises(TaskError, match="k-way=12 is larger than the 10 classes"):
        build_suite("digits", ways=(2, 12))
    with pytest.raises(DatasetError, match="unknown suite"):
        build_suite("imagenet")
    sets = get_tasksets("digits", n_tasks=5, ways=(2, 3))
    assert set(sets) == {"meta-train", "meta-val", "meta-test"}
    assert all(isinstance(t, Task) for ts in sets.values() for t in ts)


def test_task_from_user_arrays():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(100, 12)), rng.choice([3, 8], size=100)
    t = Task.from_arrays(X, y, seed=1)
    assert t.classes == ["3", "8"] and t.input_shape == (1, 12)
    assert len(t.y_train) + len(t.y_val) + len(t.y_test) == 100
    assert set(t.y_train.tolist()) <= {0, 1}
    with pytest.raises(TaskError, match="len\\(y\\) == N"):
        Task.from_arrays(X, y[:10])
    given = Task.from_arrays(X[:80], y[:80], X_val=X[80:], y_val=y[80:])
    assert len(given.y_val) == 20 and torch.equal(given.y_val, torch.as_tensor((y[80:] == 8).astype(np.int64)))
    with pytest.raises(TaskError, match="held-out labels \\[5\\]"):
        Task.from_arrays(X[:80], y[:80], X_val=X[80:], y_val=np.full(20, 5))


def test_tasks_over_a_torchvision_dataset_on_disk(tmp_path):
    """A task suite over FashionMNIST read through torchvision from real-format IDX files."""
    from test_torchvision_sets import MNIST_DIRS, _write_idx

    from metahpo_utils.training import train_config

    rng = np.random.default_rng(0)
    raw = tmp_path / MNIST_DIRS["fashionmnist"] / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 400), ("t10k", 20)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    t = make_task(TaskSpec("fashionmnist", (0, 4, 9), 10, 10, 10, rotation=15.0, seed=0), root=str(tmp_path))
    assert tuple(t.X_train.shape) == (30, 1, 28, 28) and t.classes == ["T-shirt/top", "Coat", "Ankle boot"]
    r = train_config(t, {"lr": 0.01, "optimizer": "adamw", "width": 8, "depth": 2}, epochs=1, family="cnn2d")
    assert r.status == "ok" and len(r.curve) == 1
