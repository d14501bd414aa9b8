"""Paper figures: data builders asserted on, every drawing function rendered, and the figures
command regenerating the whole set from the default meta-dataset."""
from __future__ import annotations

import io
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from metahpo_utils import plotting as P  # noqa: E402
from metahpo_utils.metadataset import default_metadataset  # noqa: E402


def _render(ax_or_axes) -> int:
    fig = np.atleast_1d(ax_or_axes)[0].figure
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close("all")
    return buf.tell()


@pytest.fixture(scope="module")
def tables():
    return default_metadataset("digits")


def test_strategy_styles_are_distinct_and_shared():
    styles = {(v["color"], v["ls"]) for v in P.STRATEGY_STYLES.values()}
    assert len(styles) == len(P.STRATEGY_STYLES)
    arms = {(v["color"], v["ls"]) for v in [*P.ARM_STYLES.values(), P.style("random"), P.style("tpe")]}
    assert len(arms) == len(P.ARM_STYLES) + 2  # the cross-domain figure's lines are distinct too
    assert P.style("adaptive-portfolio+sh")["color"] == P.style("adaptive-portfolio")["color"]
    assert P.style("adaptive-portfolio+sh")["ls"] == ":"


def test_savefig_writes_png_and_pdf(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    paths = P.savefig(fig, "x", tmp_path / "f")
    plt.close(fig)
    assert sorted(p.name for p in paths.values()) == ["x.pdf", "x.png"] and all(p.stat().st_size for p in paths.values())


def test_task_suite_data_and_drawing(tiny_suite, tables):
    tasks = [tiny_suite.task(n) for n in tiny_suite.task_names[:2]]
    view = P.task_suite_data(tasks, tables.tasks, per_task=5)
    assert view.kind == "image" and len(view.examples) == 2
    name, inputs, labels = view.examples[0]
    assert inputs.shape == (5, 8, 8) and len(labels) == 5
    assert len(set(labels)) == min(5, tasks[0].n_classes)  # one example per class first
    assert list(view.metafeatures.columns) == [c for c in P.SUITE_FEATURES if c in tables.tasks.columns]
    assert _render(P.draw_task_suite(view)) > 0


def test_landscape_data(tables):
    land = P.landscape_data(tables.trials)
    assert land.matrix.shape == (48, 64)
    assert np.allclose(np.nanmax(land.matrix, axis=1), 1.0) and np.nanmin(land.matrix) >= 0
    col_means = np.nanmean(land.matrix, axis=0)
    assert np.all(np.diff(col_means) <= 1e-12)  # configurations ordered best first
    assert np.all(np.diff(land.best_lr) >= 0)  # tasks ordered by their best learning rate
    best = tables.trials.loc[tables.trials.groupby("task")["objective"].idxmax()].set_index("task")["lr"]
    assert np.allclose(land.best_lr, best.reindex(land.tasks))
    top = land.lr_curves.groupby("task")["objective"].max()
    assert np.allclose(top.reindex(land.tasks), tables.trials.groupby("task")["objective"].max().reindex(land.tasks))
    assert _render(P.draw_landscape(land)) > 0


def test_meta_training_curves_have_held_out_loss(tables):
    from metahpo_utils.strategies import make_strategy
    from metahpo_utils.tuning import fit_strategy

    s = {n: fit_strategy(make_strategy(n, epochs=40, holdout=0.2), tables) for n in ("mtl", "transfer")}
    data = P.meta_training_data(s)
    for c in data.curves.values():
        assert len(c["train"]) == len(c["val"]) == 40
        assert c["train"][-1] < c["train"][0] and c["val"][-1] < c["val"][0]
    with pytest.raises(ValueError, match="no training history"):
        P.meta_training_data({"mtl": make_strategy("mtl")})
    assert _render(P.draw_meta_training(data)) > 0


def test_equivalent_trials_and_benchmark_curves():
    summary = {"strategies": {"random": {"equivalent_random_trials": {"1": 1.0, "5": 5.2}},
                              "portfolio": {"equivalent_random_trials": {"1": 9.0, "5": 30.0}}}}
    df = P.equivalent_trials_data(summary)
    assert df.set_index(["strategy", "k"]).loc[("portfolio", 5), "ert"] == 30.0
    assert _render(P.draw_equivalent_trials(df)) > 0
    res = pd.DataFrame({"strategy": ["a", "a", "b", "b"], "task": "t", "seed": 0, "trial": [1, 2, 1, 2],
                        "normalized_regret": [0.5, 0.1, 0.4, 0.4]})
    curves = P.benchmark_curves(res, "rank")
    assert list(curves.mean["a"]) == [2.0, 1.0]
    assert _render(P.draw_curves(curves, log=False)) > 0


def test_importance_by_group_drawing():
    from metahpo_utils.interpret import GroupImportance

    gi = GroupImportance(pd.DataFrame({"cartpole": [0.6, 0.1], "pendulum": [0.1, 0.5]}, index=["algo", "lr"]),
                         pd.Series({"cartpole": 4, "pendulum": 3}), pd.Series({"algo": 0.01, "lr": 0.2}))
    ax = P.draw_importance_by_group(gi, group_label="env")
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["algo *", "lr"] and [t.get_text() for t in ax.get_xticklabels()] == ["cartpole\n(4)", "pendulum\n(3)"]
    assert [t.get_text() for t in ax.texts] == ["0.60", "0.10", "0.10", "0.50"]  # every cell annotated, row by row
    assert _render(ax) > 0


def test_interpretability_drawings(tables):
    from metahpo_utils.interpret import importance_per_task, importance_vs_metafeatures, partial_dependence

    keep = sorted(tables.trials["task"].unique())[:6]
    per_task = importance_per_task(tables.trials, tables.space, tasks=keep)
    assert _render(P.draw_importance(per_task)) > 0
    corr = importance_vs_metafeatures(per_task, tables.tasks.set_index("task")[["n_classes", "log_n_examples"]])
    assert _render(P.draw_importance_vs_metafeatures(corr)) > 0
    space = tables.space
    lr = space.names.index("lr")

    def predict(X):
        return -(X[:, lr] - 0.4) ** 2

    bg = np.random.default_rng(0).random((20, space.dim))
    one = partial_dependence(predict, space, "lr", bg)
    assert abs(one.encoded[0][int(np.argmax(one.pd))] - 0.4) < 0.05
    assert _render(P.draw_partial_dependence(one)) > 0
    two = partial_dependence(predict, space, ("lr", "optimizer"), bg, ice=False)
    assert two.pd.shape == (len(two.values[0]), 2)
    assert _render(P.draw_partial_dependence(two)) > 0


def test_figures_command_regenerates_the_set(tmp_path, capsys):
    from metahpo_utils.cli import main
    from metahpo_utils.figures import FIGURES

    assert main(["figures", "--out", str(tmp_path), "--fast"]) == 0
    assert "importance_by_group: skipped (the tasks form no groups" in capsys.readouterr().out  # one kind of task
    for name in FIGURES:
        for ext in ("png", "pdf"):
            if name == "importance_by_group":
                assert not (tmp_path / f"{name}.{ext}").exists()
                continue
            assert (tmp_path / f"{name}.{ext}").stat().st_size > 0, f"{name}.{ext}"
    assert main(["figures", "--out", str(tmp_path), "--only", "nope"]) == 2
    assert "unknown figure(s) ['nope']" in capsys.readouterr().err
    (tmp_path / "bench").mkdir()
    assert main(["figures", "--out", str(tmp_path), "--benchmark", str(tmp_path / "bench"), "--only", "rank_curves"]) == 2


def test_figures_reuse_benchmark_and_tuning_runs(tmp_path):
    from metahpo_utils.figures import make_figures

    bench = tmp_path / "bench"
    bench.mkdir()
    pd.DataFrame({"strategy": ["a", "a", "b", "b"], "task": "t", "seed": 0, "trial": [1, 2, 1, 2],
                  "best_so_far": 0.0, "normalized_regret": [0.5, 0.1, 0.4, 0.4]}).to_csv(bench / "results.csv", index=False)
    (bench / "summary.json").write_text(json.dumps({"strategies": {"a": {"equivalent_random_trials": {"1": 2.0}}}}))
    logs = []
    written = make_figures(out=tmp_path / "f", benchmark=bench, only=("rank_curves", "equivalent_trials"), log=logs.append)
    assert set(written) == {"rank_curves", "equivalent_trials"}
    assert not any("running the replay benchmark" in line for line in logs)


def test_headline_curves_split_into_main_comparison_and_the_rest():
    trials = np.arange(1, 4)
    names = ["random", "grid", "tpe", "portfolio", "adaptive-portfolio", "knn", "st-zeroshot", "mtl"]
    ones = {n: np.ones(3) for n in names}
    curves = P.Curves(trials, ones, ones, ones, {"random (exact expectation)": np.ones(3)})
    main, rest = P.split_curves(curves)
    assert list(main.mean) == ["random", "tpe", "portfolio", "adaptive-portfolio", "st-zeroshot"]
    assert list(rest.mean) == ["random", "grid", "knn", "mtl"]  # the baseline stays in both panels
    assert set(main.mean) | set(rest.mean) == set(names) and main.reference and rest.reference
    fig = P.curves_figure(curves, "normalized regret", True)
    assert len(fig.axes) == 2 and [a.get_title() for a in fig.axes] == ["main comparison", "other strategies"]
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.tell() > 0


def test_legends_sit_off_the_data():
    from conftest import legends_clear_of_axes
    from metahpo_utils.interpret import mapping_data
    from metahpo_utils.tuning import fit_strategy

    trials = np.arange(1, 6)
    curves = P.Curves(trials, {s: np.linspace(0.5, 0.0, 5) for s in ("random", "adaptive-portfolio", "knn")},
                      {s: np.zeros(5) for s in ("random", "adaptive-portfolio", "knn")},
                      {s: np.ones(5) for s in ("random", "adaptive-portfolio", "knn")})
    assert legends_clear_of_axes(P.curves_figure(curves, "normalized regret", True))
    tables = default_metadataset("digits")
    md = mapping_data(fit_strategy("mapping", tables), tables, "log_examples_per_class", "weight_decay")
    fig, ax = plt.subplots(figsize=P.SIZES["column"], layout="constrained")
    P.draw_mapping(md, ax)
    assert legends_clear_of_axes(fig)
    plt.close("all")
