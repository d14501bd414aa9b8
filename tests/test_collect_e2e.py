"""Collection under stress: SIGKILL mid-run then resume, and a real Dask LocalCluster."""
from __future__ import annotations

import signal
import sqlite3
import subprocess
import time

import pandas as pd
import pytest

from conftest import PYTHON, ROOT
from metahpo_utils.metadataset import MetaDatasetStore, collect

ARGS = dict(n_tasks=3, n_configs=12, epochs=3, seed=1)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same collection run in-process, uninterrupted."""
    path = tmp_path_factory.mktemp("ref") / "ref.sqlite"
    collect("digits", store=path, progress=False, **ARGS)
    with MetaDatasetStore(path) as st:
        return st.trials_table().drop(columns="cost_s")


def _count(path) -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_sigkill_mid_collection_then_resume(tmp_path, cli_env, reference):
    store = tmp_path / "k.sqlite"
    cmd = [PYTHON, "-m", "metahpo_utils", "collect", "--suite", "digits", "--tasks", "3", "--configs", "12",
           "--epochs", "3", "--seed", "1", "--store", str(store), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while _count(store) < 8 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "collection finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done = _count(store)
    assert 8 <= done < 36
    with MetaDatasetStore(store) as st:  # opens and passes the integrity check after the kill
        partial = st.trials_table()
    assert len(partial) == done
    r = subprocess.run(cmd, cwd=ROOT, env=cli_env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"ran {36 - done}, skipped {done}" in r.stdout
    with MetaDatasetStore(store) as st:
        final = st.trials_table().drop(columns="cost_s")
    assert not final.duplicated(["task", "config_id", "seed"]).any()
    pd.testing.assert_frame_equal(final, reference)  # nothing lost, nothing different


def test_dask_local_cluster_of_two_workers(tmp_path, reference):
    store = tmp_path / "d.sqlite"
    rep = collect("digits", store=store, progress=False, workers=2, **ARGS)
    assert rep.trials_run == 36
    with MetaDatasetStore(store) as st:
        got = st.trials_table().drop(columns="cost_s")
        assert len(st.tasks_table()) == 3
    pd.testing.assert_frame_equal(got, reference)  # same numbers whoever trains them


def test_existing_dask_cluster_by_scheduler_address(tmp_path, reference):
    """`--scheduler ADDRESS`: trials run on a cluster started elsewhere; only the driver writes."""
    from distributed import LocalCluster

    store = tmp_path / "s.sqlite"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        rep = collect("digits", store=store, progress=False, scheduler=cluster.scheduler_address, **ARGS)
    assert rep.trials_run == 36
    with MetaDatasetStore(store) as st:
        pd.testing.assert_frame_equal(st.trials_table().drop(columns="cost_s"), reference)
