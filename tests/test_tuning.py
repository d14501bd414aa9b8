"""New-task tuning for real: resumable training, tune() on built-in tasks, arrays and image
folders, budgets, successive halving, the comparison, and the tune CLI."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from metahpo_utils.metadataset import default_metadataset
from metahpo_utils.models import build_model
from metahpo_utils.training import Trainer, evaluate, train_config
from metahpo_utils.tuning import (TuneError, best_so_far, compare_tuning, comparison_summary, fit_strategy, resolve_task,
                                  training_tasks, tune)

CONFIG = {"lr": 0.01, "weight_decay": 1e-4, "batch_size": 32, "width": 32, "depth": 2, "dropout": 0.3,
          "optimizer": "adamw", "momentum": 0.9}


@pytest.fixture(scope="module")
def tables():
    return default_metadataset("digits")


@pytest.fixture(scope="module")
def test_task(tables):
    prov = tables.provenance
    return sorted(prov.loc[prov["split"] == "meta-test", "task"])[0]


def _digits_arrays(n=240, classes=(0, 1, 2)):
    from sklearn.datasets import load_digits

    d = load_digits()
    keep = np.isin(d.target, classes)
    return d.data[keep][:n] / 16.0, d.target[keep][:n]


def test_trainer_resumes_exactly_even_with_others_in_between(tiny_suite):
    task = tiny_suite.task(tiny_suite.task_names[0])

    def trainer(seed):
        torch.manual_seed(seed)
        return Trainer(build_model("mlp", task.input_shape, task.n_classes, CONFIG), task, CONFIG, seed, torch.device("cpu"))

    straight = trainer(0).run(5).result()
    a, other = trainer(0), trainer(1)
    a.run(2)
    other.run(3)  # draws dropout masks from the global generator in between
    torch.rand(7)
    resumed = a.run(3).result()
    assert resumed.curve == straight.curve and len(resumed.curve) == 5
    for p, q in zip(resumed.model.parameters(), straight.model.parameters()):
        assert torch.equal(p, q)
    assert straight.curve == train_config(task, CONFIG, epochs=5, seed=0).curve


def test_strategy_never_learns_from_meta_test_or_the_target(tables, test_task):
    s = fit_strategy("portfolio", tables, exclude=["digits-000"])
    prov = tables.provenance.set_index("task")["split"]
    assert "digits-000" not in s.meta.tasks and test_task not in s.meta.tasks
    assert set(prov[s.meta.tasks]) == {"meta-train", "meta-val"}
    assert s.meta.tasks == training_tasks(tables, ["digits-000"])


def test_tune_a_builtin_task(tables, test_task):
    res = tune(test_task, "adaptive-portfolio", budget_trials=4, meta=tables, epochs=3)
    h = res.history
    assert len(h) == 4 and res.stopped_by == "trials" and list(h["trial"]) == [1, 2, 3, 4]
    assert len({tuple(sorted((k, str(v)) for k, v in r.items())) for r in h[tables.space.names].to_dict("records")}) == 4
    assert (h["epochs"] == 3).all() and h["curve"].map(len).eq(3).all()
    assert res.best_value == h["objective"].max() and h["best_so_far"].is_monotonic_increasing
    assert res.metafeatures and res.metafeatures["n_classes"] == resolve_task(test_task).n_classes
    # the returned model is the best configuration's trained model
    task = resolve_task(test_task)
    assert evaluate(res.model, task.X_val, task.y_val)[0] == pytest.approx(res.best_value)
    assert res.best_config == {k: h.loc[h["objective"].idxmax(), k] for k in tables.space.names}
    again = tune(test_task, "adaptive-portfolio", budget_trials=4, meta=tables, epochs=3)
    assert again.history["objective"].tolist() == h["objective"].tolist()  # same command, same numbers


def test_tune_user_arrays_tensors_and_dicts(tables):
    X, y = _digits_arrays()
    res = tune((X, y), "random", budget_trials=2, meta=tables, epochs=2)
    assert len(res.history) == 2 and res.task == "user-task" and res.model is not None
    res = tune({"X": torch.tensor(X[:180]), "y": torch.tensor(y[:180]), "X_val": X[180:], "y_val": y[180:],
                "name": "mine"}, "knn", budget_trials=2, meta=tables, epochs=2)
    assert res.task == "mine" and len(res.history) == 2
    with pytest.raises(TuneError, match="needs keys 'X' and 'y'"):
        tune({"X": X}, "random", budget_trials=1, meta=tables)


def test_seconds_budget_stops_between_trainings(tables):
    X, y = _digits_arrays()
    res = tune((X, y), "random", budget_seconds=0.6, meta=tables, epochs=3)
    h = res.history
    assert res.stopped_by == "seconds" and len(h) >= 1
    started = h["elapsed_s"] - h["cost_s"]
    assert (started.iloc[:-1] < 0.6).all()  # nothing started after the budget ran out
    both = tune((X, y), "random", budget_trials=2, budget_seconds=600, meta=tables, epochs=1)
    assert both.stopped_by == "trials" and len(both.history) == 2


def test_tune_an_image_folder(tmp_path, tables):
    from PIL import Image

    X, y = _digits_arrays(n=90)
    for i, (img, label) in enumerate(zip(X, y)):
        d = tmp_path / "shapes" / f"class_{label}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray((img.reshape(8, 8) * 255).astype(np.uint8)).save(d / f"{i}.png")
    task = resolve_task(tmp_path / "shapes", image_size=12)
    assert task.classes == ["class_0", "class_1", "class_2"] and task.input_shape == (1, 12, 12)
    res = tune(tmp_path / "shapes", "portfolio", budget_trials=2, meta=tables, epochs=2, image_size=12)
    assert res.task == "shapes" and len(res.history) == 2
    (tmp_path / "one" / "only").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "one" / "only" / "a.png")
    with pytest.raises(TuneError, match="need at least 2"):
        resolve_task(tmp_path / "one")


def test_successive_halving_resumes_and_promotes(tables, test_task):
    res = tune(test_task, "adaptive-portfolio", budget_trials=9, meta=tables, epochs=9, multi_fidelity="sh", eta=3)
    h = res.history
    assert len(h) == 9
    assert sorted(h["epochs"].tolist()) == [1] * 6 + [3] * 2 + [9]
    top = h[h["epochs"] == 9].iloc[0]
    assert res.best_value == top["objective"]
    # the promoted configuration's rungs equal one straight training: resumed, not restarted
    config = {k: top[k] for k in tables.space.names}
    straight = train_config(resolve_task(test_task), config, epochs=9, seed=0, family="mlp")
    assert top["curve"] == straight.curve
    # promoted ones were the best at the lower rung
    three = h[h["epochs"] >= 3]
    assert three["curve"].map(lambda c: c[0]).min() >= h[h["epochs"] == 1]["objective"].max()


@pytest.mark.parametrize("kwargs, message", [
    ({}, "give budget_trials or budget_seconds"),
    ({"budget_trials": 0}, "at least 1"),
    ({"budget_trials": 1, "multi_fidelity": "hyperband"}, "multi_fidelity must be"),
    ({"budget_trials": 1, "eta": 1}, "eta must be at least 2"),
])
def test_bad_arguments(kwargs, message, tables, test_task):
    with pytest.raises(TuneError, match=message):
        tune(test_task, "random", meta=tables, **kwargs)


def test_bad_tasks():
    with pytest.raises(TuneError, match="has no task 'digits-999'"):
        resolve_task("digits-999")
    with pytest.raises(TuneError, match="not a built-in task"):
        resolve_task("no-such-thing")
    with pytest.raises(TuneError, match="needs root="):
        resolve_task("fashionmnist")


def test_best_so_far_counts_final_results_only():
    import pandas as pd

    h = pd.DataFrame({"objective": [0.5, 0.9, 0.3, 0.7, 0.8], "epochs": [1, 1, 2, 10, 10],
                      "status": ["ok", "ok", "diverged", "ok", "ok"]})
    # a rung-1 value never counts; a diverged run is a final (poor) result; no gaps after the first
    assert best_so_far(h, 10).tolist()[2:] == [0.3, 0.7, 0.8]
    assert best_so_far(h, 10).iloc[:2].isna().all()


@pytest.mark.slow
def test_compare_tuning_on_dask_workers_gives_the_same_values(tables):
    prov = tables.provenance
    tasks = sorted(prov.loc[prov["split"] == "meta-test", "task"])[:2]
    kw = dict(strategies=["adaptive-portfolio", "random", "tpe"], seeds=[0, 1], budget_trials=2, meta=tables, epochs=1)
    one, two = compare_tuning(tasks, **kw), compare_tuning(tasks, workers=2, **kw)
    assert len(one) == 2 * 2 * 3 * 2 and list(one.columns) == list(two.columns)
    same = [c for c in one.columns if c not in ("elapsed_s", "cost_s")]  # timings are the machine's
    assert one[same].equals(two[same])
    assert list(one.drop_duplicates(["task", "seed", "strategy"])["strategy"])[:3] == kw["strategies"]  # run order kept


def test_normalize_results_puts_every_task_on_one_scale():
    import pandas as pd

    from metahpo_utils.metadataset import MetaTables
    from metahpo_utils.tuning import normalize_results

    res = pd.DataFrame({"task": ["a", "a", "b", "b"], "strategy": "s", "seed": 0, "trial": [1, 2, 1, 2],
                        "objective": [20.0, 60.0, -900.0, -300.0], "best_so_far": [20.0, 60.0, -900.0, -300.0],
                        "baseline": [10.0, 10.0, -1000.0, -1000.0], "test_objective": [15.0, 55.0, -800.0, -200.0],
                        "best_test_objective": [15.0, 55.0, -800.0, -200.0], "test_baseline": [5.0, 5.0, -1000.0, -1000.0]})
    n = normalize_results(res)
    assert n["best_so_far"].tolist() == [0.2, 1.0, 1 / 7, 1.0] and (n["baseline"] == 0).all()  # 0 = baseline, 1 = best
    assert n["best_test_objective"].tolist() == [0.2, 1.0, 0.25, 1.0] and (n["test_baseline"] == 0).all()
    ref = MetaTables(pd.DataFrame({"task": ["a", "b"], "objective": [110.0, -300.0], "test_objective": [105.0, 0.0]}),
                     None, None, {})
    m = normalize_results(res, ref)  # the best seen in the meta-dataset counts too
    assert m["best_so_far"].tolist()[:2] == [0.1, 0.5] and m["best_test_objective"].tolist()[2:] == [0.2, 0.8]
    assert res["best_so_far"].tolist() == [20.0, 60.0, -900.0, -300.0]  # the input is left alone


def test_compare_summary_and_figure(tables):
    prov = tables.provenance
    tasks = sorted(prov.loc[prov["split"] == "meta-test", "task"])[:2]
    res = compare_tuning(tasks, ["adaptive-portfolio", "random", "adaptive-portfolio+sh"], seeds=[0], budget_trials=3,
                         meta=tables, epochs=3)
    assert len(res) == 2 * 3 * 3 and set(res["strategy"]) == {"adaptive-portfolio", "random", "adaptive-portfolio+sh"}
    plain = res[res["strategy"] != "adaptive-portfolio+sh"]
    assert plain.groupby(["strategy", "task"])["best_so_far"].apply(lambda s: s.is_monotonic_increasing).all()
    summary = comparison_summary(res)
    assert {"val@1", "val@3", "test_of_chosen", "wall_s"} <= set(summary.columns)
    ap = summary.set_index("strategy").loc["adaptive-portfolio"]
    assert ap["val@3"] == pytest.approx(plain[(plain.strategy == "adaptive-portfolio") & (plain.trial == 3)]["best_so_far"].mean())

    from metahpo_utils.plotting import draw_new_task_tuning, tuning_curves

    by_trial, by_time = tuning_curves(res, "trial"), tuning_curves(res, "seconds")
    assert list(by_trial.trials) == [1, 2, 3]
    for m in by_time.mean.values():  # best so far never drops over time
        m = m[~np.isnan(m)]
        assert np.all(np.diff(m) >= -1e-12)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = draw_new_task_tuning(res)
    assert axes[0].get_xlabel() == "trials" and len(axes[1].get_lines()) == 3
    buf = io.BytesIO()
    axes[0].figure.savefig(buf, format="png")
    plt.close("all")
    assert buf.tell() > 0


def test_tune_cli_single_run_save_and_load(tmp_path, test_task, capsys):
    from metahpo_utils.cli import main

    args = ["tune", "--task", test_task, "--budget-trials", "3", "--epochs", "2", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "a"), "--save-strategy", str(tmp_path / "s")]) == 0
    assert main([*args, "--out", str(tmp_path / "b"), "--load-strategy", str(tmp_path / "s")]) == 0
    best = json.loads((tmp_path / "a" / "best.json").read_text())
    assert best["trials"] == 3 and best["stopped_by"] == "trials" and set(best["best_config"]) >= {"lr", "width"}
    assert (tmp_path / "a" / "history.csv").read_text() != ""
    import pandas as pd

    ha, hb = pd.read_csv(tmp_path / "a" / "history.csv"), pd.read_csv(tmp_path / "b" / "history.csv")
    assert ha["objective"].tolist() == hb["objective"].tolist()  # the saved strategy proposes the same
    state = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert main(["tune", "--task", test_task, "--out", str(tmp_path / "c")]) == 2
    assert "give --budget-trials or --budget-seconds" in capsys.readouterr().err
    assert main(["tune", "--task", test_task, "--strategy", "nope", "--budget-trials", "1", "--out", str(tmp_path / "c")]) == 2
    assert "--strategy: unknown strategy 'nope'" in capsys.readouterr().err


def test_tune_cli_arrays_and_comparison(tmp_path, tables):
    from metahpo_utils.cli import main

    X, y = _digits_arrays()
    np.savez(tmp_path / "mine.npz", X=X, y=y)
    assert main(["tune", "--data", str(tmp_path / "mine.npz"), "--strategy", "random", "--budget-trials", "2",
                 "--epochs", "1", "--out", str(tmp_path / "u"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "u" / "best.json").read_text())["task"] == "mine"
    prov = tables.provenance
    tasks = ",".join(sorted(prov.loc[prov["split"] == "meta-test", "task"])[:2])
    assert main(["tune", "--task", tasks, "--strategy", "portfolio,random", "--budget-trials", "2", "--epochs", "1",
                 "--out", str(tmp_path / "cmp"), "--no-progress"]) == 0
    for f in ("results.csv", "summary.csv", "summary.md", "new_task_tuning.png", "new_task_tuning.pdf"):
        assert (tmp_path / "cmp" / f).exists(), f
    assert "| `portfolio` |" in (tmp_path / "cmp" / "summary.md").read_text()


def test_export_to_optuna_and_back_on_the_cli(tmp_path, tables):
    import optuna

    from metahpo_utils.cli import main
    from metahpo_utils.metadataset import MetaTables, load_exported, write_tables

    keep = sorted(tables.trials["task"].unique())[:2]
    small = MetaTables(tables.trials[tables.trials.task.isin(keep)], tables.tasks[tables.tasks.task.isin(keep)],
                       tables.provenance[tables.provenance.task.isin(keep)], tables.meta)
    write_tables(small, tmp_path / "small")
    db = tmp_path / "o.db"
    assert main(["export", "--store", str(tmp_path / "small"), "--format", "optuna", "--out", str(db)]) == 0
    assert sorted(s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{db}")) == keep
    assert main(["from-optuna", "--storage", str(db), "--out", str(tmp_path / "back")]) == 0
    back = load_exported(tmp_path / "back")
    assert len(back.trials) == len(small.trials) and back.space == tables.space
    assert np.allclose(np.sort(back.trials["objective"]), np.sort(small.trials["objective"]))
    assert main(["export", "--store", str(tmp_path / "small"), "--format", "optuna", "--out", str(db)]) == 2
