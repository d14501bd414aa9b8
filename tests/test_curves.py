"""The learning-curve model (metahpo_utils.curves) and tune(..., multi_fidelity="model"): a planted crossing of
curves, held-out accuracy against the last observed value, a real tuning run with its decisions, bad input."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from metahpo_utils.curves import CurveError, CurveModel, StopRule, rungs_for
from metahpo_utils.metadataset import default_metadataset
from metahpo_utils.tuning import TuneError, best_so_far, fit_curve_model, split_fidelity, training_tasks, tune

EPOCHS = 9


def _crossing_table(space, n_tasks=12, n_configs=30, seed=0):
    """Synthetic meta-train curves with a planted crossing: configurations with ``lr`` above 0.03 learn fast
    and plateau low (0.55-0.70), the others start near 0.2 and end high (0.80-0.95)."""
    rng = np.random.default_rng(seed)
    rows = []
    epochs = np.arange(1, EPOCHS + 1)
    for t in range(n_tasks):
        for c in range(n_configs):
            lr = float(np.exp(rng.uniform(np.log(1e-3), np.log(0.3))))
            config = {"lr": lr, "batch_size": int(rng.choice([32, 64])), "optimizer": str(rng.choice(["sgd", "adamw"]))}
            if lr > 0.03:  # fast starter, low end
                final = rng.uniform(0.55, 0.70)
                curve = final * (1 - 0.1 * np.exp(-epochs))
            else:  # slow starter, high end
                final = rng.uniform(0.80, 0.95)
                curve = final * (1 - np.exp(-epochs / 4.0))
            curve = np.clip(curve + rng.normal(0, 0.005, EPOCHS), 0, 1)
            rows.append({"task": f"syn-{t:02d}", **config, "objective": float(curve[-1]), "status": "ok",
                         "curve": [float(v) for v in curve]})
    return pd.DataFrame(rows)


def test_planted_crossing_model_promotes_the_slow_starter(small_space):
    train = _crossing_table(small_space)
    model = CurveModel(ks=[1, 3], seed=0).fit(train, small_space)
    assert model.horizon == EPOCHS and model.tasks == sorted(train["task"].unique())
    new = _crossing_table(small_space, n_tasks=1, n_configs=24, seed=7)  # an unseen task
    first = [c[:1] for c in new["curve"]]
    mean, sd = model.predict(first, new[small_space.names])
    final = new["objective"].to_numpy()
    keep = len(new) // 3  # promote a third, as successive halving with eta = 3
    by_first = np.argsort([-c[0] for c in first])[:keep]
    by_model = np.argsort(-mean)[:keep]
    # the 1-epoch rule promotes fast starters, the model the slow ones that end higher
    assert (new["lr"].to_numpy()[by_first] > 0.03).all()
    assert (new["lr"].to_numpy()[by_model] <= 0.03).all()
    assert final[by_model].min() > final[by_first].max()
    assert (sd > 0).all() and np.abs(mean - final).mean() < 0.05
    # with a slow starter's final value as best so far, the rule stops the fast starters at epoch 1
    rule, best = StopRule(1.0), float(np.median(final[final > 0.75]))
    fast = np.flatnonzero(new["lr"].to_numpy() > 0.03)
    assert all(rule.decide(mean[i], sd[i], best) == "stopped" for i in fast)
    assert all(rule.decide(mean[i], sd[i], -math.inf) == "promoted" for i in fast)
    # seeded: the same fit gives the same predictions; any k >= 1 works (k = 2 uses the k = 1 model)
    again = CurveModel(ks=[1, 3], seed=0).fit(train, small_space).predict(first, new[small_space.names])
    assert np.array_equal(again[0], mean) and np.array_equal(again[1], sd)
    two = model.predict([c[:2] for c in new["curve"]], new[small_space.names])[0]
    assert np.isfinite(two).all()
    full = model.predict([new["curve"].iloc[0]], new[small_space.names].iloc[:1])
    assert full[0][0] == new["curve"].iloc[0][-1] and full[1][0] == 0.0


@pytest.fixture(scope="module")
def tables():
    return default_metadataset("digits")


@pytest.fixture(scope="module")
def curve_model(tables):
    return fit_curve_model(tables)  # meta-train and meta-val tasks, rungs 1 and 3 of 10 epochs


def test_held_out_predictions_beat_the_last_value(tables, curve_model):
    prov = tables.provenance
    test = set(prov.loc[prov["split"] == "meta-test", "task"])
    assert curve_model.tasks == training_tasks(tables) and not test & set(curve_model.tasks)
    rows = tables.trials[tables.trials["task"].isin(test) & (tables.trials["status"] == "ok")]
    feats = tables.tasks.set_index("task").loc[rows["task"]].reset_index(drop=True)
    final = rows["objective"].to_numpy()
    for k, bound in ((1, 0.11), (3, 0.08)):
        curves = [c[:k] for c in rows["curve"]]
        mean, sd = curve_model.predict(curves, rows[tables.space.names], feats, [v[:k] for v in rows["val_loss_curve"]])
        model_err, last_err = np.abs(mean - final).mean(), np.abs([c[-1] for c in curves] - final).mean()
        assert model_err < 0.7 * last_err and model_err < bound, (k, model_err, last_err)
        inside = np.mean(np.abs(final - mean) < 1.2816 * sd)  # the 80% band holds most held-out finals
        assert 0.6 < inside < 0.95, (k, inside)


def test_tune_with_the_curve_model_records_every_decision(tables, curve_model):
    task = sorted(tables.provenance.loc[tables.provenance["split"] == "meta-test", "task"])[0]
    seen = []
    rule = StopRule(z=0.0, eta=3, opening=3)  # rungs 1, 3, 10; z = 0 stops whatever is predicted below the best
    res = tune(task, "portfolio", budget_trials=8, meta=tables, multi_fidelity="model", curve_model=curve_model,
               stop_rule=rule, callback=seen.append)
    h = res.history
    assert len(h) == 8 and {"rung", "epochs", "decision", "predicted", "predicted_sd", "decisions"} <= set(h.columns)
    rungs = rule.rungs(10)
    assert rungs == [1, 3, 10] == rungs_for(10, 3, 1)
    for r in h.to_dict("records"):
        passed = r["decisions"]
        assert [d["epochs"] for d in passed] == rungs[:len(passed)]  # one decision per rung passed
        assert all(d["decision"] == "promoted" for d in passed[:-1])
        if r["decision"] == "stopped":
            assert passed[-1]["decision"] == "stopped" and r["epochs"] == passed[-1]["epochs"] < 10
            assert passed[-1]["predicted"] < passed[-1]["best"] and r["predicted"] == passed[-1]["predicted"]
        elif r["decision"] == "completed":
            assert r["epochs"] == 10 and len(passed) == 2 and all(d["decision"] == "promoted" for d in passed)
        else:
            assert r["decision"] == "diverged" and r["status"] == "diverged"
        assert r["rung"] == len(passed) - (r["decision"] == "stopped")
    # the opening: the first three trained one epoch each before any went on, the quickest per epoch went first
    first = h.sort_values("elapsed_s").iloc[0]
    assert first["decision"] == "completed" and first["decisions"][0]["best"] is None  # nothing to beat yet
    assert (h["decision"] == "stopped").any()
    full = h[h["epochs"] == 10]
    ordered = h.sort_values("elapsed_s")
    assert res.best_value == full["objective"].max() and best_so_far(ordered, 10).iloc[-1] == res.best_value
    assert len(seen) == (h["rung"] + 1).sum()  # one record per rung decided
    # a curve model for another number of epochs is refused
    with pytest.raises(TuneError, match="curve_model predicts epoch 10"):
        tune(task, "random", budget_trials=1, meta=tables, epochs=5, multi_fidelity="model", curve_model=curve_model)


@pytest.mark.parametrize("call, message", [
    (lambda t: tune("digits-005", "random", budget_trials=1, meta=t, multi_fidelity="hyperband"),
     "multi_fidelity must be None, 'sh' or 'model'"),
    (lambda t: tune("digits-005", "random", budget_trials=1, meta=t, epochs=11, multi_fidelity="model"),
     r"horizon: need 2 <= horizon <= 10"),
    (lambda t: CurveModel().predict([[0.5]], [{}]), "call fit"),
    (lambda t: CurveModel().fit(t.trials.drop(columns="curve"), t.space), r"missing column\(s\) \['curve'\]"),
])
def test_bad_input_gives_one_clear_error(tables, call, message):
    with pytest.raises((TuneError, CurveError), match=message):
        call(tables)


def test_suffixes_and_short_curves(curve_model, tables):
    assert split_fidelity("adaptive-portfolio+mf") == ("adaptive-portfolio", "model")
    assert split_fidelity("tpe+sh") == ("tpe", "sh") and split_fidelity("knn") == ("knn", None)
    row = tables.trials.iloc[0]
    with pytest.raises(CurveError, match="has 0 epochs"):
        curve_model.predict([[]], [row[tables.space.names].to_dict()], {}, [[]])
    with pytest.raises(CurveError, match="fitted with validation-loss curves"):
        curve_model.predict([row["curve"][:1]], [row[tables.space.names].to_dict()], {})


def test_replay_chooses_the_rule_on_meta_train_tasks_only(tables):
    from metahpo_utils.curves import replay_rule, rule_summary
    from metahpo_utils.tables import MetaTables

    keep = training_tasks(tables)[:6]
    small = MetaTables(tables.trials[tables.trials["task"].isin(keep)], tables.tasks, tables.provenance, tables.meta)
    r = replay_rule(small, [StopRule(math.inf, 3, 1, 1), StopRule(0.0, 3, 1, 3)], strategy="portfolio", budget=6,
                    seeds=(0,), folds=2)
    assert set(r["task"]) == set(keep) and len(r) == 2 * 6 * 6
    full, eager = r[r["rule"] == "inf/3/1/1"], r[r["rule"] == "0/3/1/3"]
    assert full["epochs"].max() == 10 and eager["epochs"].sum() < full["epochs"].sum()
    assert (r.groupby(["rule", "task", "seed"])["regret"].diff().dropna() <= 0).all()
    assert (r.groupby(["rule", "task", "seed"])["cost_s"].diff().dropna() >= 0).all()
    summary = rule_summary(r).set_index("rule")
    assert summary["chosen"].sum() == 1 and summary.loc["0/3/1/3", "cost_s"] < summary.loc["inf/3/1/1", "cost_s"]
