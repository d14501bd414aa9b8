from __future__ import annotations

import time

import numpy as np

from metahpo_utils.data import METAFEATURE_NAMES, TaskSpec, compute_metafeatures, make_task, metafeatures_from_arrays


def test_simple_features_and_ranges():
    t = make_task(TaskSpec("digits", (0, 1, 2, 3), 50, 20, 20, imbalance=5.0, seed=1))
    t0 = time.perf_counter()
    mf = compute_metafeatures(t)
    assert time.perf_counter() - t0 < 30  # "seconds per task" (generous bound against a hang)
    assert set(mf) == set(METAFEATURE_NAMES)
    assert mf["n_classes"] == 4 and mf["n_features"] == 64 and mf["n_examples"] == len(t.y_train)
    assert mf["class_imbalance"] == 10 / 50
    assert 0 < mf["class_entropy"] < 1
    assert 1 <= mf["pca_95"] <= 64
    for k in ("landmark_1nn", "landmark_logreg", "landmark_nb"):
        assert 0 <= mf[k] <= 1
    assert all(np.isfinite(v) for v in mf.values())


def test_landmarkers_see_label_noise_and_separability():
    clean = compute_metafeatures(make_task(TaskSpec("digits", (0, 1, 2), 100, 20, 20, seed=2)))
    noisy = compute_metafeatures(make_task(TaskSpec("digits", (0, 1, 2), 100, 20, 20, label_noise=0.4, seed=2)))
    assert clean["landmark_1nn"] > noisy["landmark_1nn"] + 0.15
    assert clean["landmark_logreg"] > noisy["landmark_logreg"] + 0.1
    rng = np.random.default_rng(0)
    rand = metafeatures_from_arrays(rng.normal(size=(200, 10)), rng.integers(0, 2, 200))
    assert rand["landmark_logreg"] < 0.7  # pure noise is not separable


def test_deterministic():
    t = make_task(TaskSpec("mnist1d", (0, 5), 30, 20, 20, seed=3))
    assert compute_metafeatures(t, seed=1) == compute_metafeatures(t, seed=1)
