from __future__ import annotations

import gc
import hashlib
import sqlite3

import numpy as np
import pandas as pd
import pytest

from metahpo_utils.data import METAFEATURE_NAMES
from metahpo_utils.metadataset import (
    MetaDatasetStore, StoreError, TableError, collect, export_tables, load_exported, load_table, load_task_table,
)
from metahpo_utils.space import default_space


def _digest(path):
    gc.collect()  # close stores other tests left to the garbage collector (their close checkpoints the WAL)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _trials(path):
    with MetaDatasetStore(path) as st:
        return st.trials_table()


@pytest.fixture(scope="module")
def small_store(tmp_path_factory, small_space):
    path = tmp_path_factory.mktemp("store") / "s.sqlite"
    rep = collect("digits", n_tasks=4, n_configs=6, epochs=2, store=path, seed=3, space=small_space, progress=False)
    return path, rep


def test_collect_fills_store(small_store, small_space):
    path, rep = small_store
    assert rep.trials_total == rep.trials_run == 24 and rep.trials_skipped == 0
    with MetaDatasetStore(path) as st:
        assert st.n_trials() == 24
        trials = st.trials_table()
        tasks = st.tasks_table()
        prov = st.provenance_table()
        meta = st.read_meta()
    assert list(trials.columns[:4]) == ["task", "lr", "batch_size", "optimizer"]
    assert {"objective", "test_objective", "status", "cost_s", "seed", "curve"} <= set(trials.columns)
    assert set(trials["status"]) <= {"ok", "diverged"}
    assert trials.groupby("task").size().eq(6).all()
    assert all(len(c) == 2 for c, s in zip(trials["curve"], trials["status"]) if s == "ok")
    # the same design for every task, so tasks are comparable
    assert trials.groupby("config_id")["lr"].nunique().eq(1).all()
    assert list(tasks.columns) == ["task", *METAFEATURE_NAMES]
    assert set(prov["split"]) <= {"meta-train", "meta-val", "meta-test"} and "label_noise" in prov
    assert meta["suite"] == "digits" and meta["n_configs"] == 6 and meta["epochs"] == 2


def test_rerun_resumes_without_duplicates(small_store, small_space):
    path, _ = small_store
    before = _trials(path)
    rep = collect("digits", n_tasks=4, n_configs=6, epochs=2, store=path, seed=3, space=small_space, progress=False)
    assert rep.trials_run == 0 and rep.trials_skipped == 24
    after = _trials(path)
    pd.testing.assert_frame_equal(before, after)


def test_partial_collection_then_resume_matches_full(tmp_path, small_store, small_space):
    path = tmp_path / "p.sqlite"
    kw = dict(n_tasks=4, n_configs=6, epochs=2, store=path, seed=3, space=small_space, progress=False)
    assert collect("digits", max_trials=5, **kw).trials_run == 5
    with MetaDatasetStore(path) as st:
        assert st.n_trials() == 5
    rep = collect("digits", **kw)
    assert rep.trials_run == 19 and rep.trials_skipped == 5
    full = _trials(small_store[0]).drop(columns="cost_s")
    pd.testing.assert_frame_equal(_trials(path).drop(columns="cost_s"), full)


def test_failed_trials_are_retried_not_duplicated(tmp_path, small_space):
    path = tmp_path / "f.sqlite"
    kw = dict(n_tasks=3, n_configs=2, epochs=1, store=path, seed=0, space=small_space, progress=False)
    collect("digits", **kw)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE trials SET status='failed', objective=NULL WHERE config_id=0")
    rep = collect("digits", **kw)
    assert rep.trials_run == 3
    with MetaDatasetStore(path) as st:
        t = st.trials_table()
    assert len(t) == 6 and set(t["status"]) == {"ok"} and t["objective"].notna().all()


def test_store_made_with_other_settings_is_refused_untouched(small_store, small_space):
    path, _ = small_store
    digest = _digest(path)
    with pytest.raises(StoreError, match="different space"):
        collect("digits", n_tasks=4, n_configs=6, epochs=2, store=path, seed=3, space=default_space(), progress=False)
    with pytest.raises(StoreError, match="different suite"):
        collect("mnist1d", n_tasks=4, n_configs=6, epochs=2, store=path, seed=3, space=small_space, progress=False)
    with pytest.raises(StoreError, match="different epochs"):
        collect("digits", n_tasks=4, n_configs=6, epochs=3, store=path, seed=3, space=small_space, progress=False)
    assert _digest(path) == digest


def test_corrupt_or_foreign_store_is_refused(tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    before = bad.read_bytes()
    with pytest.raises(StoreError, match="unreadable or corrupt"):
        MetaDatasetStore(bad)
    with pytest.raises(StoreError, match="unreadable or corrupt"):
        collect("digits", n_tasks=3, n_configs=2, epochs=1, store=bad, progress=False)
    assert bad.read_bytes() == before
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
    with pytest.raises(StoreError, match="not a metahpo store"):
        MetaDatasetStore(foreign)
    with pytest.raises(StoreError, match="does not exist"):
        MetaDatasetStore(tmp_path / "missing.sqlite")


def test_truncated_store_is_refused(tmp_path, small_store):
    src, _ = small_store
    cut = tmp_path / "cut.sqlite"
    data = src.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError):
        MetaDatasetStore(cut)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_import_round_trip(tmp_path, small_store, fmt):
    path, _ = small_store
    paths = export_tables(path, tmp_path / fmt, fmt)
    assert set(paths) == {"trials", "tasks", "provenance", "meta", "space"} and all(p.exists() for p in paths.values())
    with MetaDatasetStore(path) as st:
        want, want_tasks = st.trials_table(), st.tasks_table()
    got = load_table(paths["trials"])
    assert list(got.columns) == list(want.columns)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    tasks = load_task_table(paths["tasks"])
    np.testing.assert_allclose(tasks.loc[want_tasks["task"]].to_numpy(), want_tasks.set_index("task").to_numpy())
    exported = load_exported(tmp_path / fmt)
    pd.testing.assert_frame_equal(exported.trials, want, check_dtype=False)
    assert exported.space.names == ["lr", "batch_size", "optimizer"] and exported.meta["n_configs"] == 6
    with pytest.raises(TableError, match="no meta.json"):
        load_exported(tmp_path)


def test_user_tables_plug_in_and_bad_tables_are_refused(tmp_path):
    df = pd.DataFrame({"dataset": ["a", "a", "b"], "lr": [0.1, 0.01, 0.1], "acc": [0.5, 0.7, 0.9]})
    t = load_table(df, task_col="dataset", objective="acc")
    assert list(t["task"]) == ["a", "a", "b"] and set(t["status"]) == {"ok"}
    with pytest.raises(TableError, match="missing column 'objective'"):
        load_table(df, task_col="dataset")
    with pytest.raises(TableError, match="'status' has values \\['weird'\\]"):
        load_table(df.assign(status="weird"), task_col="dataset", objective="acc")
    with pytest.raises(TableError, match="does not exist"):
        load_table(tmp_path / "none.csv")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 nonsense")
    with pytest.raises(TableError, match="cannot be read"):
        load_table(bad)
    with pytest.raises(TableError, match="not numeric"):
        load_task_table(pd.DataFrame({"task": ["a"], "n": ["x"]}))


def test_more_configs_extend_a_sobol_design(tmp_path, small_store, small_space):
    path = tmp_path / "grow.sqlite"
    kw = dict(n_tasks=4, epochs=2, store=path, seed=3, space=small_space, progress=False)
    collect("digits", n_configs=4, **kw)
    rep = collect("digits", n_configs=6, **kw)
    assert rep.trials_run == 8 and rep.trials_skipped == 16
    full = _trials(small_store[0]).drop(columns="cost_s")
    pd.testing.assert_frame_equal(_trials(path).drop(columns="cost_s"), full)
    with pytest.raises(StoreError, match="different design"):
        collect("digits", n_configs=6, design="lhs", **kw)
