"""The notebook widgets: built from tiny in-code data, driven by setting their controls; the
state they keep and their Output change accordingly (no pixels compared)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("ipywidgets")

from metahpo_utils import widgets as W  # noqa: E402


def _has_figure(w) -> bool:  # noqa: ANN001
    return w.error is None and any("image/png" in o.get("data", {}) for o in w.out.outputs)


@pytest.fixture(scope="module")
def tables():
    from metahpo_utils.metadataset import MetaTables, default_metadataset

    t = default_metadataset("digits")
    keep = sorted(t.trials["task"].unique())[:6]
    pick = lambda f: f[f["task"].isin(keep)].reset_index(drop=True)  # noqa: E731
    return MetaTables(pick(t.trials), pick(t.tasks), pick(t.provenance), t.meta)


@pytest.fixture(scope="module")
def mtl(tables):
    import torch

    from metahpo_utils.strategies import make_strategy

    torch.set_num_threads(1)
    fit_tasks = sorted(tables.trials["task"].unique())[:4]  # the other two are "not in fit"
    trials = tables.trials[tables.trials["task"].isin(fit_tasks)]
    return make_strategy("mtl", epochs=30, hidden=16).fit(trials, tables.tasks.set_index("task"), space=tables.space)


# ---------------------------------------------------------------- task explorer
def test_task_explorer_follows_task_and_suite():
    w = W.task_explorer("digits", n_tasks=4, seed=3)
    assert w.current == w.task.value == "digits-000"
    first = dict(w.metafeatures)
    assert _has_figure(w) and len(w.out.outputs) == 3  # figure, meta-features, recipe
    assert w.view.class_counts.sum() == first["n_examples"]
    w.task.value = "digits-002"
    assert w.current == "digits-002" and w.metafeatures != first
    w.suite.value = "mnist1d"  # options follow the suite; the first task is shown
    assert list(w.task.options)[0] == "mnist1d-000" and w.current == "mnist1d-000"
    assert w.view.suite.kind == "signal" and _has_figure(w)


def test_task_view_uses_the_suite_table_for_histograms(tables):
    from metahpo_utils.data.tasks import build_suite

    task = build_suite("digits", n_tasks=48, seed=0).task("digits-001")
    view = W.task_view(task, tables.tasks, per_task=4)
    assert view.in_suite and len(view.suite.metafeatures) == len(tables.tasks)
    assert len(view.suite.examples[0][1]) == 4 and view.recipe["k"] == len(task.classes)
    assert W.draw_task_view(view).axes  # draws into a bare Figure


# ---------------------------------------------------------------- landscape explorer
def test_landscape_explorer_axes_sliders_task(mtl, tables):
    w = W.landscape_explorer(mtl, tables.space, tables, grid=12)
    assert _has_figure(w)
    assert w.grid_mean.shape == (12, 12) and set(w.proposal) == set(tables.space.names)
    assert w.sliders["lr"].disabled and not w.sliders["dropout"].disabled
    assert len(w.surface.observed) == 64  # the task's trials overlaid
    before = w.grid_mean.copy()

    w.x.value = "dropout"  # a new axis: new surface, the freed slider enabled
    assert w.surface.x == "dropout" and not np.allclose(w.grid_mean, before)
    assert w.sliders["dropout"].disabled and not w.sliders["lr"].disabled
    w.x.value = w.y.value  # choosing the other axis swaps them
    assert w.x.value != w.y.value and w.surface.x == w.x.value

    before = w.grid_mean.copy()
    w.sliders["lr"].value = 0.3  # a fixed hyperparameter moves the slice
    assert w.surface.fixed["lr"] == pytest.approx(0.3, rel=1e-6) and not np.allclose(w.grid_mean, before)

    before, tasks = w.grid_mean.copy(), [v for _, v in w.task.options]
    w.task.value = tasks[5]  # a task the strategy never saw: its meta-features place it
    assert w.surface.task.startswith(tasks[5]) and "not in fit" in w.surface.task
    assert not np.allclose(w.grid_mean, before)

    before = w.grid_mean.copy()
    w.condition.value = True  # the posterior after the task's 64 observations
    assert w.surface.conditioned and not np.allclose(w.grid_mean, before)


def test_landscape_explorer_new_task_features(mtl, tables):
    w = W.landscape_explorer(mtl, tables.space, grid=8)  # no tables: tasks and points from the strategy
    assert all(f.disabled for f in w.features.values())
    w.task.value = w.NEW_TASK
    assert len(w.surface.observed) == 0 and not w.features["n_classes"].disabled
    before = w.grid_mean.copy()
    w.features["n_classes"].value = 2.0
    w.features["landmark_1nn"].value = 0.2
    assert w.task_features()["n_classes"] == 2.0 and not np.allclose(w.grid_mean, before)
    assert _has_figure(w)


def test_landscape_explorer_transfer(tables):
    from metahpo_utils.strategies import make_strategy

    trials = tables.trials[tables.trials["task"].isin(sorted(tables.trials["task"].unique())[:3])]
    transfer = make_strategy("transfer", K=2, hidden=8, epochs=20, finetune_steps=3).fit(trials, space=tables.space)
    w = W.landscape_explorer(transfer, tables.space, tables, grid=6)
    assert w.features == {} and w.grid_mean.shape == (6, 6) and np.isfinite(w.surface.sd).all()
    before = w.grid_mean.copy()
    w.y.value = "momentum"
    assert w.surface.y == "momentum" and not np.allclose(w.grid_mean, before) and _has_figure(w)


def test_surface_data_rejects_a_categorical_axis(mtl, tables):
    with pytest.raises(ValueError, match="numeric"):
        W.surface_data(mtl, tables.space, "lr", "optimizer")


# ---------------------------------------------------------------- tuning replay
@pytest.fixture(scope="module")
def results():
    rng = np.random.default_rng(0)
    rows = []
    for task in ("digits-040", "digits-041"):
        for seed in (0, 1):
            for strategy, n in (("random", 8), ("mtl", 8), ("tpe", 6)):
                best = np.nan
                for trial in range(1, n + 1):
                    obj = float(rng.uniform(0.2, 0.9))
                    best = obj if np.isnan(best) else max(best, obj)
                    rows.append({"strategy": strategy, "task": task, "seed": seed, "trial": trial, "lr": 10 ** rng.uniform(-4, 0),
                                 "objective": obj, "status": "ok", "best_so_far": best, "elapsed_s": 0.5 * trial,
                                 "baseline": 0.2})
    return pd.DataFrame(rows)


def test_tuning_replay_slider_task_seed(results):
    w = W.tuning_replay(results)
    assert w.trial == w.slider.max == 8 and _has_figure(w)
    assert set(w.table.index) == {"random", "mtl", "tpe"}
    assert {"lr", "objective", "best_so_far"} <= set(w.table.columns)
    assert w.table.loc["tpe", "trial"] == 6  # a shorter run shows its last trial

    w.slider.value = 3
    r = results[(results.task == "digits-040") & (results.seed == 0) & (results.trial == 3)].set_index("strategy")
    assert w.trial == 3 and (w.table["trial"] == 3).all()
    assert w.table.loc["mtl", "objective"] == pytest.approx(r.loc["mtl", "objective"])
    assert all(c["trial"].max() == 8 or s == "tpe" for s, c in w.replay.curves.items())

    table = w.table.copy()
    w.seed.value = 1  # another run: the slider goes to its end
    assert w.trial == 8 and not w.table["objective"].equals(table["objective"])
    w.task.value = "digits-041"
    assert w.replay.task == "digits-041" and _has_figure(w)

    w.results = results.iloc[:0]  # a failing callback: the message goes to the Output, the error is kept
    w.slider.value = 2
    assert isinstance(w.error, ValueError) and "error: ValueError" in w.out.outputs[0]["text"]


def test_tuning_replay_without_seeds_or_configs(results):
    bench = results[results.seed == 0][["strategy", "task", "trial", "best_so_far"]]
    w = W.tuning_replay(bench)
    assert w.seed.disabled and list(w.table.columns) == ["trial", "best_so_far"]
    w.slider.value = 1
    assert w.table["best_so_far"].tolist() == bench[bench.trial == 1].query("task == 'digits-040'")["best_so_far"].tolist()


# ---------------------------------------------------------------- importance explorer
def test_importance_explorer_ranges(tables):
    from metahpo_utils.interpret import importance_per_task

    per_task = importance_per_task(tables.trials, tables.space, method="ped-anova")
    props = tables.tasks.set_index("task").join(tables.provenance.set_index("task")[["label_noise", "n_per_class"]])
    w = W.importance_explorer(per_task, props, properties=["n_classes", "label_noise", "landmark_1nn"])
    assert len(w.selected) == 6 and _has_figure(w) and "6</b> of 6" in w.status.value
    assert w.importance.index[0] == per_task.mean().idxmax()
    full = w.importance.copy()

    lo = w.ranges["n_classes"].value[0]
    cut = float(np.median(props["n_classes"]))
    w.ranges["n_classes"].value = (lo, cut)
    expect = sorted(props.index[props["n_classes"] <= cut])
    assert sorted(w.selected) == expect and 0 < len(expect) < 6
    assert not np.allclose(w.importance.reindex(full.index), full)
    assert w.importance.reindex(per_task.columns).to_numpy() == pytest.approx(per_task.loc[expect].mean().to_numpy())

    w.ranges["landmark_1nn"].value = (2.0, 2.0)  # beyond every task: nothing selected, still drawn
    assert w.selected == [] and w.importance.isna().all() and _has_figure(w)


def test_importance_explorer_defaults_and_errors():
    per_task = pd.DataFrame({"lr": [0.6, 0.2, 0.5], "depth": [0.4, 0.8, 0.5]}, index=["a", "b", "c"])
    props = pd.DataFrame({"task": ["a", "b", "c", "d"], "const": [1, 1, 1, 1], "size": [10, 20, 30, 40],
                          "noise": [0.0, 0.1, 0.2, 0.3], "base": list("xxyy")})
    w = W.importance_explorer(per_task, props)
    assert list(w.ranges) == ["size", "noise"] and w.selected == ["a", "b", "c"]
    w.ranges["size"].value = (15, 30)
    assert w.selected == ["b", "c"] and w.importance["depth"] == pytest.approx(0.65)
    with pytest.raises(ValueError, match="numeric"):
        W.importance_explorer(per_task, props, properties=["base"])


def test_landscape_legend_sits_under_the_heat_maps(mtl, tables):
    from conftest import legends_clear_of_axes

    surface = W.surface_data(mtl, tables.space, "lr", "weight_decay")
    assert legends_clear_of_axes(W.draw_surface(surface, tables.space))
