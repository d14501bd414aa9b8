"""Optuna interop: the meta-learned sampler in real studies, and meta-datasets to/from Optuna storages."""
from __future__ import annotations

import json
import math
import wsgiref.util

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from strategy_fixtures import shifting_space, shifting_table

from metahpo_utils.metadataset import MetaDatasetStore, MetaTables, default_metadataset, export_tables
from metahpo_utils.optuna_interop import (
    MetaLearnedSampler,
    OptunaInteropError,
    fit_to_distribution,
    from_optuna,
    to_optuna,
)
from metahpo_utils.strategies import make_strategy


def shifting_value(x: float, lr: float, opt: str, f: float = 0.5) -> float:
    """The objective of a shifting-family task with meta-feature ``f`` (as ``target_rows``)."""
    return float(np.exp(-((x - f) ** 2) / 0.02) + 0.3 * np.exp(-((np.log10(lr) + 2) ** 2) / 2)
                 + (0.1 if opt == "a" else 0.0))


@pytest.fixture(scope="module")
def small() -> tuple[pd.DataFrame, pd.DataFrame]:
    return shifting_table(n_tasks=6, n_configs=20)


@pytest.fixture(scope="module")
def portfolio(small):
    table, feats = small
    return make_strategy("portfolio").fit(table, feats, space=shifting_space())


def space_objective(trial: optuna.Trial, extra: bool = False) -> float:
    x = trial.suggest_float("x", 0.0, 1.0)
    lr = trial.suggest_float("lr", 1e-4, 1.0, log=True)
    opt = trial.suggest_categorical("opt", ["a", "b"])
    if extra:
        trial.suggest_int("extra", 3, 9)
    return shifting_value(x, lr, opt)


# ---------------------------------------------------------------- the sampler
def test_sampler_plays_the_strategy_from_the_first_trial(portfolio):
    expected = portfolio.start(shifting_space(), seed=0).suggest(6)
    sampler = MetaLearnedSampler(portfolio, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(lambda t: space_objective(t, extra=True), n_trials=6)
    for trial, config in zip(study.trials, expected):
        assert {k: trial.params[k] for k in ("x", "lr", "opt")} == config
        assert 3 <= trial.params["extra"] <= 9 and isinstance(trial.params["extra"], int)
    assert sampler.stats == {"proposed": 18, "fallback": 6, "observed": 6, "skipped": 0}
    assert sampler.session.n_obs == 6
    assert sampler.session.y_obs == pytest.approx([t.value for t in study.trials])


def test_sampler_needs_a_space():
    with pytest.raises(OptunaInteropError, match="no search space"):
        MetaLearnedSampler(make_strategy("portfolio"))


def test_minimize_study_negates_observations(portfolio):
    sampler = MetaLearnedSampler(portfolio, seed=0)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.optimize(space_objective, n_trials=4)
    values = [t.value for t in study.trials]
    assert sampler.session.y_obs == pytest.approx([-v for v in values])
    assert all(v > 0 for v in values)


def test_narrower_user_distribution_falls_back(portfolio):
    expected = portfolio.start(shifting_space(), seed=0).suggest(5)
    sampler = MetaLearnedSampler(portfolio, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.3, 0.7)
        opt = trial.suggest_categorical("opt", ["b", "c"])
        return x + (opt == "b")

    study.optimize(objective, n_trials=5)
    x_in = [0.3 <= c["x"] <= 0.7 for c in expected]
    assert any(x_in) and not all(x_in)  # the check below tests both paths
    for trial, config, inside in zip(study.trials, expected, x_in):
        assert 0.3 <= trial.params["x"] <= 0.7
        assert (trial.params["x"] == config["x"]) == inside
        if config["opt"] == "b":
            assert trial.params["opt"] == "b"
    n_b = sum(c["opt"] == "b" for c in expected)
    assert sampler.stats["proposed"] == sum(x_in) + n_b
    assert sampler.stats["fallback"] == 10 - sum(x_in) - n_b
    # 'c' is not a choice of the space: such trials cannot be told to the session
    n_c = sum(t.params["opt"] == "c" for t in study.trials)
    assert sampler.stats["skipped"] == n_c and sampler.session.n_obs == 5 - n_c


def test_resumed_study_observes_stored_trials(portfolio, tmp_path):
    url = f"sqlite:///{tmp_path / 'resume.db'}"
    first = optuna.create_study(study_name="s", storage=url, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=1))
    first.optimize(space_objective, n_trials=3)
    t = first.ask()
    space_objective(t)
    first.tell(t, state=TrialState.FAIL)
    t = first.ask()
    t.suggest_float("x", 0.0, 1.0)  # lacks lr and opt: not a configuration of the space
    first.tell(t, 0.5)
    stored = first.get_trials()

    sampler = MetaLearnedSampler(portfolio, seed=0)
    study = optuna.load_study(study_name="s", storage=url, sampler=sampler)
    study.optimize(space_objective, n_trials=1)
    session = sampler.session
    assert session.n_obs == 5  # 3 complete + 1 failed (NaN) + the new trial
    assert [c["x"] for c in session.configs_obs[:4]] == [s.params["x"] for s in stored[:4]]
    assert session.y_obs[:3] == pytest.approx([s.value for s in stored[:3]])
    assert math.isnan(session.y_obs[3])
    assert sampler.stats["skipped"] == 1
    assert study.trials[-1].params["x"] == portfolio.start(shifting_space(), seed=0).suggest(1)[0]["x"]


def test_multi_objective_study_is_refused(portfolio):
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=MetaLearnedSampler(portfolio))
    with pytest.raises(OptunaInteropError, match="2 objectives"):
        study.ask()


def test_meta_learned_sampler_beats_random_on_a_new_task():
    table, feats = shifting_table()  # 12 tasks; the new task's optimum x = 0.5 lies between theirs
    strategy = make_strategy("portfolio").fit(table, feats, space=shifting_space())

    def best_of_5(sampler: optuna.samplers.BaseSampler) -> float:
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.optimize(space_objective, n_trials=5)
        return study.best_value

    meta = best_of_5(MetaLearnedSampler(strategy, seed=0))
    random = np.mean([best_of_5(optuna.samplers.RandomSampler(seed=s)) for s in range(3)])
    assert meta > random + 0.1, (meta, random)


def test_fit_to_distribution_rounds_and_checks():
    assert fit_to_distribution(0.26, FloatDistribution(0.0, 1.0, step=0.1)) == (True, pytest.approx(0.3))
    assert fit_to_distribution(4.6, IntDistribution(0, 10, step=2)) == (True, 4)
    assert fit_to_distribution(np.int64(7), IntDistribution(1, 5))[0] is False
    assert fit_to_distribution(1.0 + 1e-13, FloatDistribution(0.0, 1.0)) == (True, 1.0)
    assert fit_to_distribution(16.0, CategoricalDistribution([16, 32])) == (True, 16)
    assert fit_to_distribution(True, CategoricalDistribution([1, 2]))[0] is False
    assert fit_to_distribution("x", FloatDistribution(0.0, 1.0))[0] is False


# ---------------------------------------------------------------- from_optuna
def _told(study: optuna.Study, params: dict, value: float | None = None, state: TrialState = TrialState.COMPLETE,
          curve: tuple[float, ...] = (), attrs: dict | None = None, dists: dict | None = None) -> None:
    """One trial through ask/tell with fixed parameters (so its duration and datetimes are real)."""
    study.enqueue_trial(params)
    t = study.ask()
    for name, d in (dists or {}).items():
        if isinstance(d, CategoricalDistribution):
            t.suggest_categorical(name, d.choices)
        elif isinstance(d, IntDistribution):
            t.suggest_int(name, d.low, d.high, log=d.log, step=d.step)
        else:
            t.suggest_float(name, d.low, d.high, log=d.log, step=d.step)
    for step, v in enumerate(curve):
        t.report(v, step)
    for k, v in (attrs or {}).items():
        t.set_user_attr(k, v)
    study.tell(t, value, state=state)


X1, X2 = FloatDistribution(0.0, 1.0), FloatDistribution(0.0, 2.0)
LR = FloatDistribution(1e-4, 1.0, log=True)
OPT_AB, OPT_BC = CategoricalDistribution(["a", "b"]), CategoricalDistribution(["b", "c"])
DEPTH = IntDistribution(1, 4)


@pytest.fixture
def past_studies(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'past.db'}"
    s1 = optuna.create_study(study_name="s_max", storage=url, direction="maximize")
    s1.set_user_attr("n_examples", 100)
    s1.set_user_attr("noise", 0.3)
    s1.set_user_attr("owner", "me")
    dists = {"x": X1, "lr": LR, "opt": OPT_AB, "depth": DEPTH}
    for x, lr, opt, d in [(0.1, 1e-3, "a", 1), (0.5, 1e-2, "b", 2), (0.9, 0.1, "a", 4)]:
        _told(s1, {"x": x, "lr": lr, "opt": opt, "depth": d}, value=x + d, curve=(x, x + 1), dists=dists,
              attrs={"test_objective": x, "seed": 7})
    s1.ask()  # left running: skipped

    s2 = optuna.create_study(study_name="s_min", storage=url, direction="minimize")
    s2.set_user_attr("metafeatures", {"n_examples": 50, "noise": 0.1})
    s2.set_user_attr("split", "meta-test")
    dists2 = {"x": X2, "lr": LR, "opt": OPT_BC, "depth": DEPTH}
    _told(s2, {"x": 1.5, "lr": 0.5, "opt": "c", "depth": 3}, value=2.0, dists=dists2, attrs={"test_objective": 3.0})
    _told(s2, {"x": 0.2, "lr": 0.01, "opt": "b", "depth": 1}, value=1.0, dists=dists2)
    _told(s2, {"x": 0.3, "lr": 0.02, "opt": "b", "depth": 2}, state=TrialState.FAIL, dists=dists2)
    _told(s2, {"x": 0.4, "lr": 0.03, "opt": "c", "depth": 2}, state=TrialState.PRUNED, curve=(5.0, 4.0), dists=dists2)

    s3 = optuna.create_study(study_name="s_extra", storage=url, direction="maximize")
    s3.set_user_attr("metafeatures", {"n_examples": 80, "noise": 0.2})
    dists3 = {**dists, "extra": IntDistribution(0, 3)}
    _told(s3, {"x": 0.7, "lr": 0.05, "opt": "a", "depth": 2, "extra": 1}, value=3.0, dists=dists3)
    _told(s3, {"x": 0.6, "lr": 0.05, "opt": "b", "depth": 3}, value=2.5, dists=dists)
    return url


def test_from_optuna_imports_studies(past_studies):
    tables = from_optuna(past_studies)
    tr = tables.trials
    assert sorted(tr["task"].unique()) == ["s_extra", "s_max", "s_min"]
    assert tables.meta["source"] == "optuna" and tables.meta["dropped_params"] == ["extra"]
    assert tables.meta["directions"] == {"s_max": "maximize", "s_min": "minimize", "s_extra": "maximize"}
    space = tables.space
    assert space.names == ["x", "lr", "opt", "depth"]
    assert space.params["x"] == FloatDistribution(0.0, 2.0)
    assert space.params["opt"].choices == ("a", "b", "c")
    assert space.params["depth"] == DEPTH and space.params["lr"] == LR

    s_max = tr[tr["task"] == "s_max"].sort_values("config_id")
    assert len(s_max) == 3 and (s_max["status"] == "ok").all()
    assert s_max["objective"].tolist() == pytest.approx([1.1, 2.5, 4.9])
    assert s_max["test_objective"].tolist() == pytest.approx([0.1, 0.5, 0.9])
    assert (s_max["seed"] == 7).all() and s_max["config_id"].tolist() == [0, 1, 2]
    assert s_max["curve"].iloc[1] == pytest.approx([0.5, 1.5])
    assert (s_max["cost_s"] >= 0).all()

    s_min = tr[tr["task"] == "s_min"].set_index("config_id")
    assert s_min["status"].tolist() == ["ok", "ok", "failed", "pruned"]
    assert s_min.loc[0, "objective"] == -2.0 and s_min.loc[1, "objective"] == -1.0
    assert s_min.loc[0, "test_objective"] == -3.0
    assert s_min[["objective"]].iloc[2:].isna().all().all()
    assert s_min.loc[3, "curve"] == [-5.0, -4.0] and s_min.loc[0, "opt"] == "c"

    tasks = tables.tasks.set_index("task")
    assert tasks.loc["s_max", "n_examples"] == 100 and tasks.loc["s_min", "noise"] == 0.1
    assert "owner" not in tasks.columns
    prov = tables.provenance.set_index("task")
    assert prov.loc["s_min", "split"] == "meta-test" and prov.loc["s_max", "split"] == "meta-train"
    assert prov.loc["s_min", "direction"] == "minimize" and prov.loc["s_min", "n_trials"] == 4
    assert prov.loc["s_max", "owner"] == "me"

    sub = from_optuna(past_studies, ["s_min"])
    assert sub.trials["task"].unique().tolist() == ["s_min"] and sub.meta["dropped_params"] == []

    # the imported meta-dataset trains a strategy
    knn = make_strategy("knn").fit(tr, tasks, space=space)
    config = knn.start(space, task_features={"n_examples": 90, "noise": 0.25}, seed=0).suggest(1)[0]
    assert set(config) == set(space.names)
    space.encode(config)


def test_from_optuna_errors(past_studies, tmp_path):
    with pytest.raises(OptunaInteropError, match=r"nope.*available.*s_extra"):
        from_optuna(past_studies, ["s_max", "nope"])
    with pytest.raises(OptunaInteropError, match="does not exist"):
        from_optuna(tmp_path / "missing.db")

    url = f"sqlite:///{tmp_path / 'conflict.db'}"
    a = optuna.create_study(study_name="a", storage=url)
    _told(a, {"x": 0.5}, value=1.0, dists={"x": X1})
    b = optuna.create_study(study_name="b", storage=url)
    _told(b, {"x": "big"}, value=1.0, dists={"x": CategoricalDistribution(["big", "small"])})
    with pytest.raises(OptunaInteropError, match="'x' is float in some trials and categorical"):
        from_optuna(url)

    url = f"sqlite:///{tmp_path / 'mo.db'}"
    optuna.create_study(study_name="mo", storage=url, directions=["maximize", "maximize"])
    with pytest.raises(OptunaInteropError, match="'mo' has 2 objectives"):
        from_optuna(url)

    url = f"sqlite:///{tmp_path / 'failed.db'}"
    c = optuna.create_study(study_name="c", storage=url)
    _told(c, {"x": 0.5}, state=TrialState.FAIL, dists={"x": X1})
    with pytest.raises(OptunaInteropError, match="no complete trial"):
        from_optuna(url)


# ---------------------------------------------------------------- to_optuna
@pytest.fixture(scope="module")
def shifting_tables() -> MetaTables:
    table, feats = shifting_table(n_tasks=3, n_configs=12)
    table["curve"] = [[0.5 * v, 0.8 * v, v] for v in table["objective"]]
    table["test_objective"] = table["objective"] - 0.01
    table["status"] = "ok"
    table["seed"] = 0
    table.loc[3, ["objective", "status", "curve"]] = [np.nan, "failed", json.dumps([0.1])]  # JSON-text curve too
    prov = pd.DataFrame({"task": feats.index, "split": "meta-train", "k": 3})
    return MetaTables(table, feats.reset_index(), prov, {"space": shifting_space().to_json()})


def test_to_optuna_round_trip(shifting_tables, tmp_path):
    path = tmp_path / "export.db"
    names = to_optuna(shifting_tables, path)  # a plain file path
    url = f"sqlite:///{path}"
    table = shifting_tables.trials
    assert names == sorted(table["task"].unique())
    for name in names:
        rows = table[table["task"] == name].sort_values("config_id")
        study = optuna.load_study(study_name=name, storage=url)
        trials = study.get_trials()
        assert len(trials) == len(rows) == 12
        assert study.direction == optuna.study.StudyDirection.MAXIMIZE
        assert study.best_value == pytest.approx(rows["objective"].max())
        ok = [t for t in trials if t.state == TrialState.COMPLETE]
        assert [[v for _, v in sorted(t.intermediate_values.items())] for t in ok] == \
            [c for c, s in zip(rows["curve"], rows["status"]) if s == "ok"]
        assert study.user_attrs["metafeatures"] == pytest.approx(
            shifting_tables.tasks.set_index("task").loc[name].to_dict())
        assert study.user_attrs["split"] == "meta-train" and study.user_attrs["k"] == 3
        assert trials[0].user_attrs["config_id"] == 0
    failed = optuna.load_study(study_name="t00", storage=url).trials[3]
    assert failed.state == TrialState.FAIL and failed.user_attrs["status"] == "failed"
    assert failed.intermediate_values == {1: 0.1}

    back = from_optuna(url)
    assert back.space == shifting_space()
    cols = ["task", "config_id", "x", "lr", "opt", "status"]
    got = back.trials.sort_values(["task", "config_id"]).reset_index(drop=True)
    want = table.sort_values(["task", "config_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got[cols], want[cols], check_dtype=False)
    np.testing.assert_allclose(got["objective"], want["objective"])
    np.testing.assert_allclose(got["test_objective"], want["test_objective"])
    assert back.tasks.set_index("task")["f"].to_dict() == pytest.approx(
        shifting_tables.tasks.set_index("task")["f"].to_dict())

    # existing studies: refused, or replaced (not appended to)
    with pytest.raises(OptunaInteropError, match="already holds studies.*overwrite=True"):
        to_optuna(shifting_tables, path)
    assert to_optuna(shifting_tables, url, overwrite=True) == names
    assert len(optuna.load_study(study_name="t00", storage=url).trials) == 12
    assert to_optuna(shifting_tables, url, study_prefix="run2-")[0] == "run2-t00"


def test_exported_study_opens_in_visualization_and_dashboard(shifting_tables, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna_dashboard

    url = f"sqlite:///{tmp_path / 'viz.db'}"
    names = to_optuna(shifting_tables, url, study_prefix="shift-")
    study = optuna.load_study(study_name=names[0], storage=url)
    try:
        with pytest.warns(optuna.exceptions.ExperimentalWarning):
            ax = optuna.visualization.matplotlib.plot_optimization_history(study)
        assert isinstance(ax, matplotlib.axes.Axes)
    finally:
        plt.close("all")

    app = optuna_dashboard.wsgi(url)
    environ: dict = {}
    wsgiref.util.setup_testing_defaults(environ)
    environ.update(REQUEST_METHOD="GET", PATH_INFO="/api/studies")
    status: list[str] = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status[0].startswith("200")
    summaries = json.loads(body)["study_summaries"]
    assert sorted(s["study_name"] for s in summaries) == sorted(names)
    assert {s["directions"][0] for s in summaries} == {"maximize"}


def test_to_optuna_from_default_metadataset(tmp_path):
    full = default_metadataset()
    keep = sorted(full.trials["task"].unique())[:2]
    sub = MetaTables(full.trials[full.trials["task"].isin(keep)], full.tasks[full.tasks["task"].isin(keep)],
                     full.provenance[full.provenance["task"].isin(keep)], full.meta)
    url = f"sqlite:///{tmp_path / 'digits.db'}"
    assert to_optuna(sub, url) == keep
    rows = sub.trials[sub.trials["task"] == keep[0]].reset_index(drop=True)
    trials = optuna.load_study(study_name=keep[0], storage=url).get_trials()
    assert len(trials) == len(rows)
    space = full.space
    for t, (_, r) in zip(trials, rows.iterrows()):
        assert t.params["batch_size"] == r["batch_size"] and type(t.params["batch_size"]) is int
        assert type(t.params["width"]) is int and t.params["width"] == r["width"]
        assert t.params["lr"] == pytest.approx(r["lr"]) and t.params["optimizer"] == r["optimizer"]
        assert t.distributions == space.params
        assert t.user_attrs["status"] == r["status"]
        assert len(t.intermediate_values) == len(r["curve"])
    back = from_optuna(url)
    assert back.space == space
    assert back.tasks.set_index("task").loc[keep[0], "n_examples"] == \
        full.tasks.set_index("task").loc[keep[0], "n_examples"]


def _tiny_store(path) -> None:
    space = shifting_space()
    configs = space.design(3, seed=0)
    with MetaDatasetStore(path, create=True) as st:
        st.write_meta({"space": space.to_json(), "format_version": 1})
        st.add_configs(configs)
        for t, f in (("a", 0.2), ("b", 0.8)):
            st.add_task(t, "meta-train", {"classes": [0, 1], "base": "digits"}, {"f": f})
            for i, c in enumerate(configs):
                v = shifting_value(c["x"], c["lr"], c["opt"], f)
                st.add_trial(t, i, 0, {"status": "ok", "objective": v, "curve": [v / 2, v], "cost_s": 1.0})


def test_to_optuna_from_store_folder_and_dataframe(tmp_path):
    store = tmp_path / "store.sqlite"
    _tiny_store(store)
    assert to_optuna(store, tmp_path / "a.db") == ["a", "b"]
    study = optuna.load_study(study_name="b", storage=f"sqlite:///{tmp_path / 'a.db'}")
    assert len(study.trials) == 3 and study.user_attrs["metafeatures"] == {"f": 0.8}
    assert study.user_attrs["k"] == 2 and study.user_attrs["base"] == "digits"

    export_tables(store, tmp_path / "folder", fmt="csv")
    assert to_optuna(tmp_path / "folder", tmp_path / "b.db") == ["a", "b"]
    back = from_optuna(tmp_path / "b.db")
    direct = from_optuna(tmp_path / "a.db").trials
    assert back.trials["objective"].tolist() == pytest.approx(direct["objective"].tolist())

    df = shifting_table(n_tasks=2, n_configs=5)[0]
    assert to_optuna(df, tmp_path / "c.db") == ["t00", "t01"]  # space inferred from the table
    with pytest.raises(OptunaInteropError, match="not an Optuna storage"):
        to_optuna(df, store)  # never writes into a metahpo store
    bad = df.assign(x=df["x"] + 5)
    with pytest.raises(OptunaInteropError, match=r"'x'=.*outside"):
        to_optuna(bad, tmp_path / "d.db", space=shifting_space())
    assert optuna.get_all_study_names(f"sqlite:///{tmp_path / 'd.db'}") == []
