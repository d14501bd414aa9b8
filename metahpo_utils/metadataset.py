"""The meta-dataset: a SQLite store of (task, configuration) -> learning curve, its
resumable collection, and the tidy tables of DESIGN.md.

Store layout (SQLite, WAL journal, one transaction per finished trial):
    meta(key, value)                 format version, suite fingerprint, space, design, epochs, family
    tasks(task, split, spec, metafeatures)
    configs(config_id, params)
    trials(task, config_id, seed, status, objective, test_objective, cost_s, curve, val_loss, train_loss, error)
Re-running the same collection skips finished trials (``failed`` ones are retried);
the primary key (task, config_id, seed) rules out duplicates.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import os
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from .data.metafeatures import compute_metafeatures
from .data.tasks import Suite, build_suite
from .choices import EXPORT_FORMATS, GROUP_BY, TRAINERS
from .errors import MetahpoError
from .space import SearchSpace, default_space

FORMAT_VERSION = 1
STATUSES = ("ok", "diverged", "failed")
#: A tidy table may also hold Optuna's pruned trials (imported by ``from_optuna``).
TABLE_STATUSES = (*STATUSES, "pruned")
_TABLES = ("meta", "tasks", "configs", "trials")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (task TEXT PRIMARY KEY, split TEXT NOT NULL, spec TEXT NOT NULL, metafeatures TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS configs (config_id INTEGER PRIMARY KEY, params TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    task TEXT NOT NULL, config_id INTEGER NOT NULL, seed INTEGER NOT NULL,
    status TEXT NOT NULL, objective REAL, test_objective REAL, cost_s REAL,
    curve TEXT NOT NULL, val_loss TEXT NOT NULL, train_loss TEXT NOT NULL, error TEXT,
    finished_at REAL NOT NULL,
    PRIMARY KEY (task, config_id, seed)
);
"""


class StoreError(MetahpoError, ValueError):
    """A store that cannot be used: unreadable, corrupt, or made for another suite/space."""


class CollectError(MetahpoError, ValueError):
    """A collection that cannot run (e.g. an unreachable Dask scheduler)."""


class TableError(MetahpoError, ValueError):
    """A tidy table that lacks required columns or holds bad values."""


# ---------------------------------------------------------------- the store
class MetaDatasetStore:
    """A SQLite meta-dataset store.

    Args:
        path: the ``.sqlite`` file.
        create: create it if missing (otherwise a missing file is an error).
        readonly: open for reading only: the file is never written (not even its journal mode),
            and a file without the metahpo tables (an empty or foreign one) is refused.

    Raises:
        StoreError: missing (without ``create``), a folder, not SQLite, corrupt, or not a metahpo store.
    """

    def __init__(self, path: str | os.PathLike, create: bool = False, readonly: bool = False):
        self.path = Path(path)
        if self.path.is_dir():
            raise StoreError(f"store '{self.path}' is a folder, not a SQLite file")
        if not self.path.exists():
            if not create or readonly:
                raise StoreError(f"store '{self.path}' does not exist")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        else:
            validate_store_file(self.path, empty_ok=not readonly)
        if readonly:
            self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
            return
        self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)  # autocommit; explicit BEGIN
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(_SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "MetaDatasetStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- meta
    def read_meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.conn.execute("SELECT key, value FROM meta")}

    def write_meta(self, meta: dict[str, Any]) -> None:
        with self._tx():
            self.conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])

    @property
    def space(self) -> SearchSpace:
        return SearchSpace.from_json(self.read_meta()["space"])

    # ---- tasks and configs
    def task_names(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT task FROM tasks ORDER BY task")]

    def add_task(self, name: str, split: str, spec: dict[str, Any], metafeatures: dict[str, float]) -> None:
        with self._tx():
            self.conn.execute("INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, ?)",
                              (name, split, json.dumps(spec), json.dumps(metafeatures)))

    def add_configs(self, configs: list[dict[str, Any]]) -> None:
        with self._tx():
            self.conn.executemany("INSERT OR IGNORE INTO configs VALUES (?, ?)",
                                  [(i, json.dumps(c)) for i, c in enumerate(configs)])

    def configs(self) -> dict[int, dict[str, Any]]:
        return {i: json.loads(p) for i, p in self.conn.execute("SELECT config_id, params FROM configs ORDER BY config_id")}

    # ---- trials
    def finished(self) -> set[tuple[str, int, int]]:
        """Keys of trials that need no rerun (``ok`` or ``diverged``)."""
        rows = self.conn.execute("SELECT task, config_id, seed FROM trials WHERE status != 'failed'")
        return {(t, int(c), int(s)) for t, c, s in rows}

    def add_trial(self, task: str, config_id: int, seed: int, result: dict[str, Any]) -> None:
        """Record one finished trial in its own transaction (a failed one may be replaced later)."""
        if result["status"] not in STATUSES:
            raise StoreError(f"trial status must be one of {STATUSES}, got {result['status']!r}")
        row = (task, int(config_id), int(seed), result["status"], _num(result.get("objective")),
               _num(result.get("test_objective")), _num(result.get("cost_s")),
               json.dumps(result.get("curve", [])), json.dumps(result.get("val_loss", [])),
               json.dumps(result.get("train_loss", [])), result.get("error"), time.time())
        with self._tx():
            self.conn.execute(
                "INSERT INTO trials VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(task, config_id, seed) DO UPDATE SET status=excluded.status, objective=excluded.objective, "
                "test_objective=excluded.test_objective, cost_s=excluded.cost_s, curve=excluded.curve, "
                "val_loss=excluded.val_loss, train_loss=excluded.train_loss, error=excluded.error, "
                "finished_at=excluded.finished_at WHERE trials.status = 'failed'", row)

    def n_trials(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0]

    # ---- tidy tables
    def trials_table(self) -> pd.DataFrame:
        """One row per (task, configuration): task, hyperparameters, objective, test_objective,
        status, cost_s, seed, config_id, curve (list of per-epoch validation accuracy), val_loss_curve."""
        configs = self.configs()
        names = self.space.names
        rows = []
        q = ("SELECT task, config_id, seed, status, objective, test_objective, cost_s, curve, val_loss "
             "FROM trials ORDER BY task, config_id, seed")
        for task, cid, seed, status, obj, tobj, cost, curve, vloss in self.conn.execute(q):
            row = {"task": task, **{n: configs[cid][n] for n in names}}
            row.update(objective=obj, test_objective=tobj, status=status, cost_s=cost, seed=seed,
                       config_id=cid, curve=json.loads(curve), val_loss_curve=json.loads(vloss))
            rows.append(row)
        cols = ["task", *names, "objective", "test_objective", "status", "cost_s", "seed", "config_id", "curve", "val_loss_curve"]
        return pd.DataFrame(rows, columns=cols)

    def tasks_table(self) -> pd.DataFrame:
        """``task`` plus one column per meta-feature."""
        rows = [{"task": t, **json.loads(mf)} for t, mf in self.conn.execute("SELECT task, metafeatures FROM tasks ORDER BY task")]
        return pd.DataFrame(rows)

    def provenance_table(self) -> pd.DataFrame:
        """``task``, ``split`` and the generator recipe (base, k, n_per_class, label_noise, ...)."""
        rows = []
        for t, split, spec in self.conn.execute("SELECT task, split, spec FROM tasks ORDER BY task"):
            s = json.loads(spec)
            s["k"] = len(s.pop("classes"))
            rows.append({"task": t, "split": split, **s})
        return pd.DataFrame(rows)

    def _tx(self) -> "_Transaction":
        return _Transaction(self.conn)


class _Transaction:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def validate_store_file(path: Path, empty_ok: bool = True) -> None:
    """Refuse a file that is not a readable metahpo store, without writing to it (an empty SQLite
    file passes when ``empty_ok``: it is fine to initialise)."""
    path = Path(path)
    if path.is_dir():
        raise StoreError(f"store '{path}' is a folder, not a SQLite file")
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            if conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise StoreError(f"store '{path}' is corrupt (SQLite integrity check failed)")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not tables:
                if empty_ok:
                    return
                raise StoreError(f"store '{path}' is empty (no metahpo tables){' (0 bytes)' if path.stat().st_size == 0 else ''}")
            if set(_TABLES) - tables:
                raise StoreError(f"store '{path}' is not a metahpo store (tables: {sorted(tables)})")
            row = conn.execute("SELECT value FROM meta WHERE key='format_version'").fetchone()
            if row is not None and json.loads(row[0]) != FORMAT_VERSION:
                raise StoreError(f"store '{path}' has format version {row[0]}, this metahpo reads {FORMAT_VERSION}")
    except sqlite3.DatabaseError as err:
        raise StoreError(f"store '{path}' is unreadable or corrupt ({err})") from err


# ---------------------------------------------------------------- trial evaluation (runs on workers)
@functools.lru_cache(maxsize=4)
def _suite(name: str, n_tasks: int, seed: int, root: str | None, ways: tuple[int, int] | None) -> Suite:
    return build_suite(name, n_tasks=n_tasks, seed=seed, root=root, ways=ways)


def evaluate_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job of a collection: ``kind="trial"`` trains one configuration on one task,
    ``kind="group"`` trains (task, configuration) pairs as one population
    (:mod:`metahpo_utils.population`; results in ``"trials"``), ``kind="metafeatures"`` computes a
    task's meta-features.

    Tasks are rebuilt from the suite recipe on the worker (cached per process), so only small
    dicts travel. Torch uses ``job["threads"]`` threads (1 by default) so results do not depend on
    how many workers run. Exceptions become ``status="failed"`` with the message.
    """
    from .training import torch_threads, train_config

    s = job["suite"]
    out: dict[str, Any] = {"kind": job["kind"], "task": job["task"]}
    with torch_threads(int(job.get("threads", 1))):
        try:
            suite = _suite(s["suite"], s["n_tasks"], s["seed"], s.get("root"), tuple(s["ways"]) if s.get("ways") else None)
            if job["kind"] == "metafeatures":
                out["metafeatures"] = compute_metafeatures(suite.task(job["task"]), seed=s["seed"])
            elif job["kind"] == "group":
                from .population import train_members

                pop = train_members([(suite.task(t), c) for t, c in zip(job["tasks"], job["configs"])],
                                    epochs=job["epochs"], seed=job["seed"], family=job["family"], device=job.get("device"))
                out["trials"] = [dict(_trial_record(i, job["seed"], r), task=t)
                                 for t, i, r in zip(job["tasks"], job["config_ids"], pop.results)]
            else:
                r = train_config(suite.task(job["task"]), job["config"], epochs=job["epochs"], seed=job["seed"],
                                 family=job["family"], device=job.get("device"))
                out.update(_trial_record(job["config_id"], job["seed"], r))
        except Exception as err:  # recorded, never fatal to the collection
            out.update(_job_failed(job, err))
    return out


def _trial_record(config_id: int, seed: int, r: Any) -> dict[str, Any]:
    return dict(config_id=config_id, seed=seed, status=r.status, objective=r.objective, test_objective=r.test_objective,
                cost_s=r.cost_s, curve=r.curve, val_loss=r.val_loss, train_loss=r.train_loss)


def _failed_record(config_id: int | None, seed: int | None, err: BaseException) -> dict[str, Any]:
    return dict(config_id=config_id, seed=seed, status="failed", objective=None, test_objective=None, cost_s=None,
                curve=[], val_loss=[], train_loss=[], error=f"{type(err).__name__}: {err}")


def _job_failed(job: dict[str, Any], err: BaseException) -> dict[str, Any]:
    """What a job that raised reports: every trial it held, failed (a group fails as a whole)."""
    if job["kind"] == "group":
        return {"trials": [dict(_failed_record(i, job.get("seed"), err), task=t)
                           for t, i in zip(job["tasks"], job["config_ids"])]}
    return _failed_record(job.get("config_id"), job.get("seed"), err)


def recompute_trial(meta: dict[str, Any], task: str, config_id: int, root: str | None = None) -> dict[str, Any]:
    """Train one (task, configuration) of a collection again from scratch, from its settings alone.

    Args:
        meta: the collection settings (``MetaDatasetStore.read_meta()`` or an export's ``meta.json``).
        task: task name.
        config_id: index in the collection's design.

    Returns:
        The result dict of :func:`evaluate_job`, plus the ``config`` that was trained.
    """
    space = SearchSpace.from_json(meta["space"])
    config = space.design(meta["n_configs"], seed=meta["design_seed"], method=meta["design"])[config_id]
    sfp = {k: meta[k] for k in ("suite", "seed", "n_tasks", "base")}
    sfp.update(root=root, ways=meta.get("ways"))
    res = evaluate_job({"kind": "trial", "suite": sfp, "task": task, "config_id": config_id, "config": config,
                        "epochs": meta["epochs"], "seed": meta["trial_seed"], "family": meta["family"],
                        "device": "cpu", "threads": 1})
    return {**res, "config": config}


# ---------------------------------------------------------------- collection
@dataclass
class CollectReport:
    """What a collection did."""

    store: Path
    n_tasks: int
    n_configs: int
    trials_total: int
    trials_run: int
    trials_skipped: int
    wall_s: float
    statuses: dict[str, int]
    first_error: str | None = None  # the first failed trial's error message, if any failed

    @property
    def trials_per_s(self) -> float:
        return self.trials_run / self.wall_s if self.wall_s > 0 else float("nan")


def collection_meta(suite: Suite, space: SearchSpace, n_configs: int, epochs: int, seed: int,
                    design: str, family: str) -> dict[str, Any]:
    """The settings that identify a collection; a store with different ones is refused."""
    return {"format_version": FORMAT_VERSION, **suite.fingerprint(), "space": space.to_json(),
            "n_configs": n_configs, "epochs": epochs, "design": design, "design_seed": seed,
            "trial_seed": seed, "family": family}


def _grows_design(key: str, old: dict[str, Any], new: dict[str, Any]) -> bool:
    """More configurations of a Sobol or random design extend it: the first n points stay the same."""
    return key == "n_configs" and new.get("design") in ("sobol", "random") and new[key] > old[key]


def open_for_collection(path: str | os.PathLike, meta: dict[str, Any]) -> MetaDatasetStore:
    """Open (or create) a store for a collection, refusing one made with other settings."""
    path = Path(path)
    if path.exists():
        validate_store_file(path)
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            try:
                old = {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}
            except sqlite3.DatabaseError:
                old = {}
        diff = [k for k in meta if k in old and old[k] != meta[k] and not _grows_design(k, old, meta)]
        if diff:
            k = diff[0]
            what = "space" if k == "space" else ("suite" if k in ("suite", "seed", "n_tasks", "base") else k)
            raise StoreError(f"store '{path}' was made with a different {what} ({k}: stored {old[k]!r}, "
                             f"asked {meta[k]!r}); use another store")
    store = MetaDatasetStore(path, create=True)
    store.write_meta(meta)
    return store


def collect(suite: str | Suite = "digits", n_tasks: int | None = None, n_configs: int = 64, epochs: int | None = None,
            store: str | os.PathLike = "runs/digits.sqlite", seed: int = 0, workers: int = 1,
            scheduler: str | None = None, design: str = "sobol", family: str | None = None,
            space: SearchSpace | None = None, root: str | None = None, ways: int | tuple[int, int] | None = None,
            download: bool = False, progress: bool = True,
            device: str | None = "auto", threads: int = 1, max_trials: int | None = None,
            trainer: str = "population", max_group: int = 64, group_by: str = "config") -> CollectReport:
    """Evaluate every task of a suite on one space-filling design of configurations.

    Args:
        suite: suite name (or a built :class:`Suite`).
        n_tasks: tasks in the suite (default: the suite's).
        n_configs: configurations in the design (the same for every task, so tasks compare). Raising it
            on an existing store extends a Sobol or random design (its first points stay the same).
        epochs: training epochs per trial (default: the suite's, 10).
        store: SQLite file; re-running resumes it.
        seed: seed of the suite, the design and the trials.
        workers: >1 runs trials on a Dask ``LocalCluster`` of that many worker processes.
        scheduler: address of an existing Dask scheduler (overrides ``workers``).
        design: ``sobol``, ``lhs`` or ``random``.
        family: model family (default: the suite's).
        space: search space (default: :func:`default_space`).
        root: root folder of a torchvision base dataset.
        ways: classes per task (int or (min, max)); default 2..all.
        download: let torchvision download a missing base dataset (the driver does it before any trial).
        progress: show a ``tqdm.auto`` progress bar.
        device: training device (``auto``: CUDA when present, else CPU).
        threads: torch threads per trial.
        max_trials: stop after this many new trials (for demos; a re-run continues).
        trainer: ``population`` (default: trials train as batched populations, see
            :mod:`metahpo_utils.population` and ``group_by``) or ``sequential`` (one trial at a time).
            Both give the same results up to float rounding.
        max_group: most trials in one population.
        group_by: ``config`` (one configuration across tasks of similar size) or ``task`` (one task's
            configurations); see :func:`_group_jobs`.

    Returns:
        A :class:`CollectReport`.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    if trainer not in TRAINERS:
        raise CollectError(f"collect: trainer= must be one of {', '.join(TRAINERS)} (got {trainer!r})")
    if group_by not in GROUP_BY:
        raise CollectError(f"collect: group_by= must be one of {', '.join(GROUP_BY)} (got {group_by!r})")
    client = _connect(scheduler) if scheduler is not None else None  # fail before touching the store
    suite_obj = suite if isinstance(suite, Suite) else build_suite(suite, n_tasks=n_tasks, seed=seed, root=root, ways=ways, download=download)
    space = space or default_space()
    family = family or suite_obj.definition.model
    epochs = int(epochs or suite_obj.definition.epochs)
    configs = space.design(n_configs, seed=seed, method=design)
    meta = collection_meta(suite_obj, space, n_configs, epochs, seed, design, family)
    st = open_for_collection(store, meta)
    try:
        st.add_configs(configs)
        sfp = {**suite_obj.fingerprint(), "root": suite_obj.root}
        known = set(st.task_names())
        jobs: list[dict[str, Any]] = [
            {"kind": "metafeatures", "suite": sfp, "task": t, "threads": threads}
            for t in suite_obj.task_names if t not in known
        ]
        done = st.finished()
        trial_jobs = [
            {"kind": "trial", "suite": sfp, "task": t, "config_id": i, "config": c, "epochs": epochs,
             "seed": seed, "family": family, "device": device, "threads": threads}
            for t in suite_obj.task_names for i, c in enumerate(configs) if (t, i, seed) not in done
        ]
        if max_trials is not None:
            trial_jobs = trial_jobs[:max_trials]
        if trainer == "population":
            # approximate training-set sizes (largest class x classes), to put tasks of similar size together
            sizes = {t: suite_obj.specs[t].n_per_class * len(suite_obj.specs[t].classes) for t in suite_obj.task_names}
            jobs += _group_jobs(trial_jobs, family, max_group, sizes, by=group_by)
        else:
            jobs += trial_jobs
        total = len(suite_obj) * n_configs
        n_done = sum((t, i, seed) in done for t in suite_obj.task_names for i in range(n_configs))
        bar = tqdm(total=total, initial=n_done, desc=f"collect {suite_obj.name}", unit="trial", disable=not progress)
        statuses: dict[str, int] = {}
        errors: list[str] = []

        def record(res: dict[str, Any]) -> None:
            if res["kind"] == "metafeatures":
                if "metafeatures" not in res:
                    raise StoreError(f"meta-features of task '{res['task']}' failed: {res.get('error')}")
                st.add_task(res["task"], suite_obj.split_of(res["task"]), suite_obj.specs[res["task"]].to_dict(), res["metafeatures"])
                return
            for trial in res["trials"] if res["kind"] == "group" else [res]:
                st.add_trial(trial.get("task", res["task"]), trial["config_id"], trial["seed"], trial)
                statuses[trial["status"]] = statuses.get(trial["status"], 0) + 1
                if trial["status"] == "failed" and not errors:
                    errors.append(str(trial.get("error")))
                bar.update(1)

        for res in _run_jobs(jobs, workers, client):
            record(res)
        bar.close()
    finally:
        st.close()
        if client is not None:
            client.close()
    return CollectReport(Path(store), len(suite_obj), n_configs, total, len(trial_jobs),
                         n_done, time.perf_counter() - t0, statuses, errors[0] if errors else None)


def _group_jobs(trial_jobs: list[dict[str, Any]], family: str, max_group: int, sizes: dict[str, int],
                by: str = "config") -> list[dict[str, Any]]:
    """Trial jobs regrouped into population jobs of at most ``max_group`` members.

    ``by="config"``: one configuration across tasks (identical architectures, no padding), tasks
    sorted by training-set size so that a group's tasks need similar numbers of steps.
    ``by="task"``: per task, configurations that share a :func:`~metahpo_utils.population.group_key`
    (widths and MLP depths padded; padding changes float rounding, so with ``task`` a resumed
    collection can differ from an uninterrupted one in the last digits, which ``config`` avoids).
    """
    from .population import group_configs

    buckets: dict[Any, list[dict[str, Any]]] = {}
    for j in trial_jobs:
        buckets.setdefault(j["config_id"] if by == "config" else j["task"], []).append(j)
    out = []
    for js in buckets.values():
        if by == "config":
            js = sorted(js, key=lambda j: sizes.get(j["task"], 0))
            groups = [list(range(k, min(k + max_group, len(js)))) for k in range(0, len(js), max_group)]
        else:
            groups = group_configs([j["config"] for j in js], family, max_group)
        for idx in groups:
            first = js[idx[0]]
            out.append({**{k: v for k, v in first.items() if k not in ("config", "config_id")}, "kind": "group",
                        "tasks": [js[i]["task"] for i in idx], "config_ids": [js[i]["config_id"] for i in idx],
                        "configs": [js[i]["config"] for i in idx]})
    return out


def _connect(scheduler: str) -> Any:
    """A Dask client of an existing scheduler, or one clear error."""
    from distributed import Client

    try:
        return Client(scheduler, timeout="10s")
    except (OSError, TimeoutError, ValueError) as err:
        raise CollectError(f"cannot reach the Dask scheduler at scheduler={scheduler!r} ({type(err).__name__}: {err})") from None


#: glibc malloc trim and mmap thresholds of the LocalCluster's workers (bytes).
MALLOC_THRESHOLD = 256 * 2**20


def _run_jobs(jobs: list[dict[str, Any]], workers: int, client: Any = None) -> Iterator[dict[str, Any]]:
    """Yield job results in completion order: in-process, on a new ``LocalCluster`` of ``workers``
    processes, or on ``client``'s cluster. Only the driver (the caller) writes the store."""
    if not jobs:
        return
    if client is None and workers <= 1:
        for job in jobs:
            yield evaluate_job(job)
        return
    from distributed import Client, LocalCluster, as_completed

    cluster = own = None
    if client is None:
        import dask

        # Dask's default MALLOC_TRIM_THRESHOLD_ (64 KiB) also switches off glibc's adaptive mmap
        # threshold: every tensor over 128 KiB is then mapped and unmapped afresh, and training spends
        # more time in page faults than in arithmetic. Keep freed memory in the heap instead.
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": str(MALLOC_THRESHOLD),
                              "distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_": str(MALLOC_THRESHOLD)}):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)
        client = own = Client(cluster)
    try:
        # Bounded in-flight window: memory stays flat however many trials there are.
        n_workers = len(client.scheduler_info().get("workers", {})) or workers
        window = max(4, 4 * n_workers)
        it = iter(jobs)
        pending = {client.submit(evaluate_job, j, pure=False): j for j in _take(it, window)}
        ac = as_completed(list(pending))
        for fut in ac:
            job = pending.pop(fut)
            try:
                res = fut.result()
            except Exception as err:  # a worker died: record the trial(s) as failed, go on
                res = {"kind": job["kind"], "task": job["task"], **_job_failed(job, err)}
            fut.release()
            yield res
            for j in _take(it, 1):
                nxt = client.submit(evaluate_job, j, pure=False)
                pending[nxt] = j
                ac.add(nxt)
    finally:
        if own is not None:
            own.close()
        if cluster is not None:
            cluster.close()


def _take(it: Iterator[Any], n: int) -> list[Any]:
    out = []
    for _ in range(n):
        try:
            out.append(next(it))
        except StopIteration:
            break
    return out


# ---------------------------------------------------------------- tidy tables: export / import
_LIST_COLUMNS = ("curve", "val_loss_curve")


def export_tables(store: str | os.PathLike, out: str | os.PathLike, fmt: str = "csv") -> dict[str, Path]:
    """Write the tidy tables of a store into the folder ``out``.

    Files: ``trials.<fmt>`` (one row per task x configuration), ``tasks.<fmt>``
    (task + meta-features), ``provenance.<fmt>`` (task, split, generator recipe) and
    ``meta.json`` (the collection settings: suite, space, design, epochs, model family) and
    ``space.json`` (the search space alone, for ``benchmark --space``).

    Args:
        store: the SQLite store.
        out: output folder (created).
        fmt: ``csv`` (list columns as JSON text), ``csv.gz`` (the same, gzip, byte-reproducible)
            or ``parquet`` (native list columns).

    Returns:
        ``{"trials": path, "tasks": path, "provenance": path, "meta": path, "space": path}``.
    """
    if fmt not in EXPORT_FORMATS:
        raise TableError(f"export: format= must be one of {', '.join(EXPORT_FORMATS)} (got '{fmt}')")
    with MetaDatasetStore(store, readonly=True) as st:
        tables = MetaTables(st.trials_table(), st.tasks_table(), st.provenance_table(), st.read_meta())
    return write_tables(tables, out, fmt)


def write_tables(tables: "MetaTables", out: str | os.PathLike, fmt: str = "csv") -> dict[str, Path]:
    """Write a :class:`MetaTables` as :func:`export_tables` does (readable by :func:`load_exported`)."""
    if fmt not in EXPORT_FORMATS:
        raise TableError(f"export: format= must be one of {', '.join(EXPORT_FORMATS)} (got '{fmt}')")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, df in (("trials", tables.trials), ("tasks", tables.tasks), ("provenance", tables.provenance)):
        path = out / f"{name}.{fmt}"
        if fmt == "parquet":
            df.to_parquet(path, index=False)
        else:
            df = df.copy()
            for col in _LIST_COLUMNS:
                if col in df:
                    df[col] = df[col].map(json.dumps)
            gz = {"method": "gzip", "mtime": 0} if fmt == "csv.gz" else None
            df.to_csv(path, index=False, compression=gz)
        paths[name] = path
    paths["meta"] = out / "meta.json"
    paths["meta"].write_text(json.dumps(tables.meta, indent=1, sort_keys=True))
    paths["space"] = out / "space.json"  # for `benchmark --space`
    paths["space"].write_text(tables.meta["space"])
    return paths


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV (optionally ``.gz``) or Parquet file, parsing JSON list columns of CSVs."""
    path = Path(path)
    if not path.exists():
        raise TableError(f"table '{path}' does not exist")
    if not path.is_file():
        raise TableError(f"table '{path}' is not a file")
    try:
        if path.suffix == ".parquet":
            df = pd.read_parquet(path)
            for col in _LIST_COLUMNS:
                if col in df:
                    df[col] = df[col].map(lambda v: [float(x) for x in v] if v is not None else [])
        else:
            df = pd.read_csv(path)
            for col in _LIST_COLUMNS:
                if col in df:
                    df[col] = df[col].map(lambda v: json.loads(v) if isinstance(v, str) else [])
    except (ValueError, OSError, json.JSONDecodeError) as err:
        raise TableError(f"table '{path}' cannot be read ({type(err).__name__}: {err})") from err
    return df


def load_table(path: str | os.PathLike | pd.DataFrame, task_col: str = "task", objective: str = "objective") -> pd.DataFrame:
    """Load a tidy meta-dataset table (CSV/Parquet or a DataFrame) and check its contract.

    Renames ``task_col``/``objective`` to ``task``/``objective``; fills ``status`` with ``ok``
    where absent, so a user's own results plug in unchanged.

    Raises:
        TableError: a missing column, or a status outside ``ok``/``diverged``/``failed``.
    """
    df = path.copy() if isinstance(path, pd.DataFrame) else read_table(path)
    for col in (task_col, objective):
        if col not in df.columns:
            raise TableError(f"table: missing column '{col}' (columns: {', '.join(map(str, df.columns))})")
    df = df.rename(columns={task_col: "task", objective: "objective"})
    df["task"] = df["task"].astype(str)
    if "status" not in df:
        df["status"] = np.where(df["objective"].notna(), "ok", "failed")
    bad = sorted(set(df["status"]) - set(TABLE_STATUSES))
    if bad:
        raise TableError(f"table: column 'status' has values {bad}; allowed: {', '.join(TABLE_STATUSES)}")
    return df


def load_task_table(path: str | os.PathLike | pd.DataFrame, task_col: str = "task") -> pd.DataFrame:
    """Load a task meta-feature table (``task`` + numeric meta-feature columns), indexed by task."""
    df = path.copy() if isinstance(path, pd.DataFrame) else read_table(path)
    if task_col not in df.columns:
        raise TableError(f"task table: missing column '{task_col}'")
    df = df.rename(columns={task_col: "task"})
    df["task"] = df["task"].astype(str)
    nonnum = [c for c in df.columns if c != "task" and not pd.api.types.is_numeric_dtype(df[c])]
    if nonnum:
        raise TableError(f"task table: meta-feature column(s) {nonnum} are not numeric")
    return df.set_index("task")


# ---------------------------------------------------------------- the committed default meta-dataset
RESOURCES = Path(__file__).resolve().parent / "resources"


@dataclass
class MetaTables:
    """The tidy tables of one meta-dataset plus its collection settings."""

    trials: pd.DataFrame
    tasks: pd.DataFrame
    provenance: pd.DataFrame
    meta: dict[str, Any]

    @property
    def space(self) -> SearchSpace:
        return SearchSpace.from_json(self.meta["space"])


def load_exported(folder: str | os.PathLike) -> MetaTables:
    """Load the folder written by :func:`export_tables` (any of its formats)."""
    folder = Path(folder)
    meta_path = folder / "meta.json"
    if not meta_path.exists():
        raise TableError(f"'{folder}' holds no meta.json (not an exported meta-dataset)")
    fmt = next((f for f in EXPORT_FORMATS if (folder / f"trials.{f}").exists()), None)
    if fmt is None:
        raise TableError(f"'{folder}' holds no trials.csv, trials.csv.gz or trials.parquet")
    return MetaTables(load_table(folder / f"trials.{fmt}"), read_table(folder / f"tasks.{fmt}"),
                      read_table(folder / f"provenance.{fmt}"), json.loads(meta_path.read_text()))


def default_metadataset(suite: str = "digits") -> MetaTables:
    """The compact meta-dataset committed with the package (made by ``make reproduce`` and
    ``export --format csv.gz``), so notebooks start without collecting."""
    folder = RESOURCES / suite
    if not folder.exists():
        available = sorted(p.name for p in RESOURCES.iterdir() if p.is_dir()) if RESOURCES.exists() else []
        raise TableError(f"no committed meta-dataset for suite '{suite}' (available: {available})")
    return load_exported(folder)


def best_config_summary(trials: pd.DataFrame, provenance: pd.DataFrame | None = None) -> dict[str, Any]:
    """How much the best configuration moves across tasks (is there something to meta-learn?).

    Args:
        trials: tidy table with ``task``, ``config_id``, ``objective`` and hyperparameter columns.
        provenance: optional task recipes (``task``, ``k``, ``n_per_class``, ``label_noise``, ``noise_std``).

    Returns:
        A dict: tasks, configs, distinct best configurations, the share of tasks won by the most
        frequent best configuration, the range of the best learning rate (log10), the mean Spearman
        correlation of configuration rankings between tasks, the mean normalized regret of the single
        best-on-average configuration, and Spearman correlations of the best log-lr with task properties.
    """
    from scipy.stats import spearmanr

    t = trials[trials["objective"].notna()]
    piv = t.pivot_table(index="config_id", columns="task", values="objective")  # (configs, tasks)
    best = t.loc[t.groupby("task")["objective"].idxmax()].set_index("task")
    span = (piv.max() - piv.min()).replace(0, np.nan)
    regret = ((piv.max() - piv) / span).mean(axis=1)
    ranks = piv.rank().corr().to_numpy()
    iu = np.triu_indices(len(ranks), 1)
    out: dict[str, Any] = {
        "tasks": int(piv.shape[1]), "configs": int(piv.shape[0]),
        "distinct_best_configs": int(best["config_id"].nunique()),
        "most_common_best_share": float(best["config_id"].value_counts().iloc[0] / len(best)),
        "single_best_config_regret": float(regret.min()),
        "mean_rank_correlation": float(np.nanmean(ranks[iu])),
    }
    if "lr" in best:
        lr = np.log10(best["lr"].astype(float))
        out.update(best_log10_lr_min=float(lr.min()), best_log10_lr_max=float(lr.max()), best_log10_lr_std=float(lr.std()))
        if provenance is not None:
            prov = provenance.set_index("task").reindex(best.index)
            out["best_log10_lr_spearman"] = {
                c: float(spearmanr(prov[c], lr)[0]) for c in ("k", "n_per_class", "label_noise", "noise_std")
                if c in prov and prov[c].nunique() > 1
            }
    return out
