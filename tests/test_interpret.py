"""Interpretation data builders: importance, partial dependence, mapping, task maps, why_proposal."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from strategy_fixtures import shifting_space, shifting_table

from metahpo_utils import interpret as I
from metahpo_utils.strategies import make_strategy


@pytest.fixture(scope="module")
def space():
    return shifting_space()  # x in [0, 1], lr log in [1e-4, 1], opt in {a, b}


def _one_hp_task(space, n: int = 64, seed: int = 1) -> pd.DataFrame:
    """A task whose objective depends on ``x`` only (lr and opt are noise-free irrelevant)."""
    rows = pd.DataFrame(space.design(n, seed=seed))
    return rows.assign(objective=-(rows["x"] - 0.3) ** 2)


@pytest.fixture(scope="module")
def shifting():
    table, feats = shifting_table(n_tasks=8, n_configs=20, seed=0)
    return table, feats


@pytest.fixture(scope="module")
def fitted(shifting, space):
    table, feats = shifting
    kw = {"mtl": {"hidden": 8, "epochs": 30}, "transfer": {"K": 3, "hidden": 8, "epochs": 30, "finetune_steps": 5}}
    return {name: make_strategy(name, **kw.get(name, {})).fit(table, feats, space)
            for name in ("adaptive-portfolio", "knn", "mapping", "mtl", "ws-cmaes", "portfolio", "transfer")}


# ---------------------------------------------------------------- importance
def test_fanova_finds_the_only_relevant_hyperparameter(space):
    imp = I.importance(_one_hp_task(space), space, "fanova", seed=0)
    assert list(imp.index) == space.names
    assert imp.sum() == pytest.approx(1.0)
    assert imp.idxmax() == "x" and imp["x"] > 0.8


def test_ped_anova_finds_the_only_relevant_hyperparameter(space):
    imp = I.importance(_one_hp_task(space), space, "ped-anova")
    assert imp.sum() == pytest.approx(1.0)
    assert imp.idxmax() == "x"


def test_fanova_equals_optuna_evaluator_on_the_same_study(space):
    from optuna.importance import FanovaImportanceEvaluator

    rows = _one_hp_task(space, seed=4)
    rows["objective"] += 0.2 * np.log10(rows["lr"]) ** 2 / 16  # give lr a share too
    study = I.study_from_rows(rows, space)
    assert len(study.trials) == len(rows)
    direct = FanovaImportanceEvaluator(seed=3).evaluate(study)
    total = sum(direct.values())
    ours = I.importance(rows, space, "fanova", seed=3)
    for name in space.names:
        assert ours[name] == pytest.approx(direct[name] / total, abs=1e-12)


def test_importance_drops_failed_rows_and_checks_input(space):
    rows = _one_hp_task(space, n=40)
    bad = rows.iloc[:5].assign(objective=np.nan)
    failed = rows.iloc[:5].assign(objective=99.0, status="failed")
    mixed = pd.concat([rows.assign(status="ok"), bad.assign(status="ok"), failed], ignore_index=True)
    assert len(I.study_from_rows(mixed, space).trials) == 40
    with pytest.raises(I.InterpretError, match="method"):
        I.importance(rows, space, method="shap")
    with pytest.raises(I.InterpretError, match="tasks"):
        I.importance(pd.concat([rows.assign(task="a"), rows.assign(task="b")]), space)


def _planted_tasks(space, n_tasks: int = 8, n: int = 40) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Task i weighs lr by a_i (growing with the meta-feature ``size``) and x by 1 - a_i."""
    parts, feats = [], []
    for i, a in enumerate(np.linspace(0.05, 0.95, n_tasks)):
        rows = pd.DataFrame(space.design(n, seed=10 + i))
        g = -((np.log10(rows["lr"]) + 2) / 2) ** 2  # lr's effect, O(1) over the range
        h = -((rows["x"] - 0.5) / 0.5) ** 2  # x's effect, O(1)
        parts.append(rows.assign(task=f"t{i}", objective=a * g + (1 - a) * h))
        feats.append({"task": f"t{i}", "size": 100 * (i + 1), "noise": np.sin(i)})
    return pd.concat(parts, ignore_index=True), pd.DataFrame(feats)


def test_per_task_importance_aggregation_and_planted_metafeature_relation(space):
    table, feats = _planted_tasks(space)
    per_task = I.importance_per_task(table, space)
    assert per_task.shape == (8, 3) and list(per_task.columns) == space.names
    assert np.allclose(per_task.sum(1), 1.0)
    agg = I.aggregate_importance(per_task)
    assert list(agg.columns[:3]) == ["mean", "std", "sem"] and agg["mean"].is_monotonic_decreasing
    assert set(agg.index) == set(space.names) and (agg["n"] == 8).all()

    long = I.importance_vs_metafeatures(per_task, feats)  # feats has a task column, not an index
    assert list(long.columns) == ["hyperparameter", "meta_feature", "rho", "p_value", "q_value", "n"]
    assert len(long) == 3 * 2
    # Benjamini-Hochberg over the 6 tests: q = min over larger p of p * m / rank, never below p
    p = long["p_value"].to_numpy()
    order = np.argsort(p)
    q = np.minimum.accumulate((p[order] * len(p) / np.arange(1, len(p) + 1))[::-1])[::-1]
    np.testing.assert_allclose(long["q_value"].to_numpy()[order], np.minimum(q, 1.0))
    assert (long["q_value"] >= long["p_value"] - 1e-15).all()
    row = long[(long.hyperparameter == "lr") & (long.meta_feature == "size")].iloc[0]
    assert row["rho"] > 0.8 and row["n"] == 8
    x_row = long[(long.hyperparameter == "x") & (long.meta_feature == "size")].iloc[0]
    assert x_row["rho"] < -0.8


def test_importance_by_group_finds_where_importance_moves(space):
    """Tasks of group A depend on x only, tasks of group B on lr only: each one's importance differs between the
    groups (small q); opt is irrelevant everywhere."""
    rows, groups = [], {}
    for t in range(12):
        d = pd.DataFrame(space.design(40, seed=t))
        a = t % 2 == 0
        noise = np.random.default_rng(t).normal(0, 0.01, len(d))
        y = -(d["x"] - 0.3) ** 2 if a else -(np.log10(d["lr"]) + 2) ** 2 / 16
        rows.append(d.assign(task=f"t{t}", objective=y + noise))
        groups[f"t{t}"] = "A" if a else "B"
    per_task = I.importance_per_task(pd.concat(rows), space)
    gi = I.importance_by_group(per_task, groups)
    assert list(gi.mean.columns) == ["A", "B"] and gi.n.to_dict() == {"A": 6, "B": 6}
    assert gi.mean.loc["x", "A"] > 0.7 and gi.mean.loc["lr", "B"] > 0.7 and gi.mean.loc["x", "B"] < 0.2
    assert gi.q_value["x"] < 0.05 and gi.q_value["lr"] < 0.05 and (gi.mean.loc["opt"] < 0.1).all()
    assert list(gi.mean.index) == list(per_task.mean().sort_values(ascending=False).index)
    with pytest.raises(I.InterpretError, match="share no task"):
        I.importance_by_group(per_task, {"other": "A"})


def test_per_task_subset_and_unknown_task(space):
    table, _ = _planted_tasks(space, n_tasks=3, n=20)
    assert list(I.importance_per_task(table, space, "ped-anova", tasks=["t2", "t0"]).index) == ["t2", "t0"]
    with pytest.raises(I.InterpretError, match="not in the table"):
        I.importance_per_task(table, space, tasks=["nope"])


# ---------------------------------------------------------------- partial dependence
def test_partial_dependence_of_a_known_function(space):
    bg = np.random.default_rng(0).random((30, space.dim))

    def predict(X):
        return -(X[:, 0] - 0.3) ** 2 + 0.1 * (X[:, 2] < 0.5)

    pd1 = I.partial_dependence(predict, space, "x", bg, grid=11)
    assert pd1.argmax()["x"] == pytest.approx(0.3)
    assert pd1.pd.shape == (11,) and pd1.ice.shape == (30, 11)
    assert np.allclose(pd1.ice.mean(0), pd1.pd)

    cat = I.partial_dependence(lambda X: (predict(X), np.ones(len(X))), space, "opt", bg)
    assert list(cat.values[0]) == ["a", "b"] and cat.categorical == (True,)
    assert cat.argmax() == {"opt": "a"}

    lr = I.partial_dependence(predict, space, "lr", bg, grid=5, ice=False)
    assert lr.log == (True,) and lr.ice is None
    assert lr.values[0][0] == pytest.approx(1e-4) and lr.values[0][-1] == pytest.approx(1.0)

    surf = I.partial_dependence(predict, space, ("x", "lr"), bg, grid=7)
    assert surf.pd.shape == (7, 7) and surf.ice is None
    assert surf.argmax()["x"] == pytest.approx(1 / 3)
    assert I.partial_dependence(predict, space, ["x", "opt"], bg, grid=7).pd.shape == (7, 2)
    with pytest.raises(I.InterpretError, match="unknown"):
        I.partial_dependence(predict, space, "depth", bg)


def test_surrogate_predictors_mtl_transfer_and_callable(fitted, shifting, space):
    _, feats = shifting
    X = np.random.default_rng(1).random((9, space.dim))
    for name in ("mtl", "transfer"):
        predict = I.surrogate_predictor(fitted[name], task_features=feats.loc["t02"])
        mean, sd = predict(X)
        assert mean.shape == (9,) and sd.shape == (9,)
        assert np.isfinite(mean).all() and (sd > 0).all()
    mean0, _ = I.surrogate_predictor(fitted["mtl"])(X)
    obs = [(space.decode(x), v) for x, v in zip(X[:4], [0.1, 0.9, 0.3, 0.5])]
    mean1, _ = I.surrogate_predictor(fitted["mtl"], observations=obs)(X)
    assert not np.allclose(mean0, mean1)
    mean_t, sd_t = I.surrogate_predictor(fitted["transfer"], observations=obs)(X)
    assert np.isfinite(mean_t).all() and (sd_t > 0).all()
    m, s = I.surrogate_predictor(lambda Z: Z[:, 0])(X)
    assert np.allclose(m, X[:, 0]) and np.isnan(s).all()
    with pytest.raises(I.InterpretError, match="mtl and transfer"):
        I.surrogate_predictor(fitted["knn"])
    # a surrogate drives a PD plot end to end
    pd1 = I.partial_dependence(I.surrogate_predictor(fitted["mtl"]), space, "x", X, grid=6)
    assert np.isfinite(pd1.pd).all()


# ---------------------------------------------------------------- mapping
def test_mapping_data_on_shifting_tasks(space):
    table, feats = shifting_table(n_tasks=12, n_configs=60, seed=0)
    strat = make_strategy("mapping").fit(table, feats, space)
    md = I.mapping_data(strat, (table, feats), "f", "x", grid=20)
    assert md.available == ["f", "noise"] and not md.log and not md.categorical
    assert len(md.predicted) == 20 and len(md.observed) == 12
    assert spearmanr(md.predicted["feature"], md.predicted["best"])[0] > 0.8
    best = table.loc[table.groupby("task")["objective"].idxmax()].set_index("task")
    obs = md.observed.set_index("task")
    assert np.allclose(obs["best"], best["x"].reindex(obs.index))
    assert np.allclose(obs["feature"], feats["f"].reindex(obs.index))
    # without tables: the strategy's own data gives the same observations
    own = I.mapping_data(strat, None, "f", "x", grid=20).observed
    assert np.allclose(own["best"], obs["best"]) and np.allclose(own["feature"], obs["feature"])
    lr = I.mapping_data(strat, None, "f", "lr")
    assert lr.log and (lr.predicted["best"] > 0).all() and lr.predicted["best"].max() <= 1.0
    with pytest.raises(I.InterpretError, match="available"):
        I.mapping_data(strat, None, "n_per_class", "x")


# ---------------------------------------------------------------- task similarity
def test_task_similarity_maps_and_agreement(space):
    table, _ = shifting_table(n_tasks=7, n_configs=12, seed=1)
    rng = np.random.default_rng(5)
    raw = rng.normal(size=(7, 3)) * 3
    raw[6] = raw[0] + 1e-3  # t06 is t00's twin
    feats = pd.DataFrame(raw, index=[f"t{i:02d}" for i in range(7)], columns=["a", "b", "c"])
    mtl = make_strategy("mtl", hidden=8, epochs=20).fit(table, feats, space)
    prov = pd.DataFrame({"task": feats.index, "base": "digits", "n_per_class": range(7)})
    df = I.task_similarity(mtl.meta, mtl, provenance=prov)
    assert len(df) == 7
    assert {"task", "x_mf", "y_mf", "x_head", "y_head", "best_lr", "base", "n_per_class"} <= set(df.columns)
    assert np.isfinite(df[["x_mf", "y_mf", "x_head", "y_head"]].to_numpy()).all()
    xy = df[["x_mf", "y_mf"]].to_numpy()
    d = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1)) + np.diag(np.full(7, np.inf))
    assert df["task"][d[0].argmin()] == "t06"
    best = table.loc[table.groupby("task")["objective"].idxmax()].set_index("task")["lr"]
    assert np.allclose(df.set_index("task")["best_lr"], np.log10(best))
    agree = I.similarity_agreement(df)
    assert -1.0 <= agree <= 1.0
    mds = I.task_similarity(mtl, method="mds", seed=0)
    assert mds.shape[0] == 7 and "x_head" not in mds
    with pytest.raises(I.InterpretError, match="x_head"):
        I.similarity_agreement(mds)


# ---------------------------------------------------------------- why this proposal
OBS = [0.2, 0.7]  # two observations on the new task, in two sessions alike


def _session(strategy, space, tf, n_obs: int):
    ses = strategy.start(space, task_features=tf, seed=1)
    for config, v in zip(space.design(2, seed=7)[:n_obs], OBS):
        ses.observe(config, v)
    return ses


@pytest.mark.parametrize("name,n_obs", [("adaptive-portfolio", 0), ("adaptive-portfolio", 2), ("knn", 0), ("knn", 1),
                                        ("mapping", 0), ("mtl", 2), ("ws-cmaes", 0)])
def test_why_proposal_ranks_nearest_task_and_leaves_session_alone(fitted, shifting, space, name, n_obs):
    """Before observations (and for the feature-only priors of knn, mapping, mtl, ws-cmaes) the task
    nearest by meta-features ranks first; the adaptive portfolio's observations may re-rank."""
    _, feats = shifting
    tf = feats.loc["t03"]  # a meta-train task's own features: nearest by features is t03
    strat = fitted[name]
    ses = _session(strat, space, tf, n_obs)
    state = ses.rng.bit_generator.state
    kw = {} if name in ("adaptive-portfolio", "mtl") else {"task_features": tf}  # these keep what they need
    df = I.why_proposal(strat, ses, top=None, **kw)
    assert df["weight"].sum() == pytest.approx(1.0)
    assert df["weight"].is_monotonic_decreasing
    if not (name == "adaptive-portfolio" and n_obs):
        assert df["task"].iloc[0] == "t03"
    else:  # observation agreement x prior, recomputed by hand
        X, y = ses.observed()
        w = strat.meta.observation_weights(X, y, strat.temperature) * strat.meta.feature_weights(tf, strat.k_features)
        expect = pd.Series(w / w.sum(), index=strat.meta.tasks)
        assert np.allclose(df.set_index("task")["weight"], expect.reindex(df["task"]))
    assert {"task", "weight", "best_objective", *space.names} <= set(df.columns)
    assert df.attrs["note"]
    assert len(I.why_proposal(strat, ses, top=2, **kw)) == 2
    assert ses.rng.bit_generator.state == state
    fresh = _session(strat, space, tf, n_obs)
    assert ses.suggest(1) == fresh.suggest(1)


def test_why_proposal_knn_best_config_matches_next_suggestion(fitted, shifting, space):
    _, feats = shifting
    ses = fitted["knn"].start(space, task_features=feats.loc["t05"], seed=0)
    df = I.why_proposal(fitted["knn"], ses, task_features=feats.loc["t05"])
    assert df["task"].iloc[0] == "t05"
    assert ses.suggest(1)[0] == pytest.approx({n: df[n].iloc[0] for n in space.names})


def test_why_proposal_without_features_and_errors(fitted, shifting, space):
    _, feats = shifting
    # the portfolio weighs all tasks equally
    port = I.why_proposal(fitted["portfolio"], fitted["portfolio"].start(space), top=None)
    assert np.allclose(port["weight"], 1 / 8) and "portfolio" in port.attrs["note"]
    # no meta-features: uniform before observations (mapping), observation agreement after (adaptive)
    m = I.why_proposal(fitted["mapping"], fitted["mapping"].start(space), top=None)
    assert np.allclose(m["weight"], 1 / 8)
    # sessions keep the meta-features they were started with: no need to pass them again
    for name in ("knn", "ws-cmaes", "mapping"):
        df = I.why_proposal(fitted[name], fitted[name].start(space, task_features=feats.loc["t01"]), top=None)
        assert df["task"].iloc[0] == "t01", name
    with pytest.raises(I.InterpretError, match="differ"):
        I.why_proposal(fitted["mapping"], fitted["mapping"].start(space, task_features=feats.loc["t01"]),
                       task_features=feats.loc["t06"])
    # once knn's GP takes over, no meta-train task drives the proposal
    ses = fitted["knn"].start(space, task_features=feats.loc["t01"])
    for c, v in zip(space.design(5, seed=2), [0.1, 0.5, 0.2, 0.9, 0.4]):
        ses.observe(c, v)
    assert I.why_proposal(fitted["knn"], ses, task_features=feats.loc["t01"]).empty
    # unsupported strategies name the supported ones
    rand = make_strategy("random")
    with pytest.raises(I.InterpretError, match="random"):
        I.why_proposal(rand, rand.start(space))
    with pytest.raises(I.InterpretError, match="transfer"):
        I.why_proposal(fitted["transfer"], fitted["transfer"].start(space))
    with pytest.raises(I.InterpretError, match="session"):
        I.why_proposal(fitted["knn"], fitted["mapping"].start(space))


def test_interpret_reads_no_private_names_of_other_modules():
    """interpret only formats what sessions and strategies say through public methods."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(I))
    own = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            bad += [f"import {a.name}" for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            if not (isinstance(node.value, ast.Name) and node.value.id == "self"):
                bad.append(ast.unparse(node))
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr" and len(node.args) > 1 \
                and isinstance(node.args[1], ast.Constant) and str(node.args[1].value).startswith("_"):
            bad.append(ast.unparse(node))
    assert not bad, bad
    assert "why_proposal" in own and "surrogate_predictor" in own


@pytest.mark.parametrize("name", ["adaptive-portfolio", "knn", "mapping", "mtl", "ws-cmaes", "portfolio"])
def test_sessions_explain_themselves(fitted, shifting, space, name):
    """Every explaining session gives weights over the meta-train tasks that sum to one, a note, keeps its
    meta-features, and explaining twice changes nothing."""
    from metahpo_utils.strategies import Explanation

    _, feats = shifting
    strat = fitted[name]
    ses = strat.start(space, task_features=feats.loc["t04"], seed=3)
    assert ses.meta is strat.meta and ses.task_features is not None
    for k, (config, v) in enumerate(zip(space.design(3, seed=5), [0.3, 0.8, 0.1])):
        e = ses.explain()
        assert isinstance(e, Explanation) and e.note
        if e.weights is not None:
            assert e.weights.shape == (strat.meta.n_tasks,) and e.weights.sum() == pytest.approx(1.0)
            assert (e.weights >= 0).all()
        again = ses.explain()
        assert (again.weights is None) == (e.weights is None) and again.note == e.note
        ses.observe(config, v)


def test_sessions_without_weights_or_surrogate_say_so(fitted, space):
    from metahpo_utils.strategies import StrategyError

    for name in ("random", "tpe"):
        ses = make_strategy(name).start(space)
        with pytest.raises(StrategyError, match="explain"):
            ses.explain()
        with pytest.raises(StrategyError, match="surrogate"):
            ses.predict(np.zeros((1, space.dim)))
    with pytest.raises(StrategyError, match="explain"):
        fitted["transfer"].start(space).explain()


def test_surrogate_sessions_predict_what_they_propose_from(fitted, shifting, space):
    """predict() is the model the session's acquisition uses: the next suggestion of an mtl session
    maximises expected improvement under exactly these means and deviations."""
    from metahpo_utils.strategies.surrogates import expected_improvement

    table, feats = shifting
    cands = table[table["task"] == "t02"][space.names].reset_index(drop=True)
    for name in ("mtl", "transfer"):
        ses = fitted[name].start(space, task_features=feats.loc["t02"], candidates=cands, seed=0)
        for c, v in zip(cands.to_dict("records")[:3], [0.2, 0.9, 0.4]):
            ses.observe(c, v)
        open_idx = np.flatnonzero(ses.open)
        mu, sd = ses.predict(ses.cand_X[open_idx])
        y = np.array([0.2, 0.9, 0.4])
        zmax = ((y - y.mean()) / y.std()).max()
        expect = open_idx[int(np.argmax(expected_improvement(mu, sd, zmax)))]
        assert ses.suggest(1)[0] == cands.iloc[expect].to_dict(), name


def test_a_new_strategy_explains_itself_without_any_edit_in_interpret(shifting, space):
    from metahpo_utils.strategies import Explanation, Strategy
    from metahpo_utils.strategies.baselines import RandomSession

    class FirstTask(Strategy):
        name, meta_learned = "first-task", True

        def start(self, space, task_features=None, candidates=None, seed=0):
            meta = self._require_fit(space)

            class S(RandomSession):
                def explain(self):
                    return Explanation(np.eye(meta.n_tasks)[0], "always the first task")

            ses = S(space, candidates, seed)
            ses.meta = meta
            return ses

    table, feats = shifting
    strat = FirstTask().fit(table, feats, space)
    df = I.why_proposal(strat, strat.start(space), top=None)
    assert list(df["task"]) == [strat.meta.tasks[0]] and df.attrs["note"] == "always the first task"
