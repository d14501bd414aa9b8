"""The meta-dataset store: SQLite file of (task, configuration) -> learning curve.

Store layout (SQLite, WAL journal, one transaction per finished trial):
    meta(key, value)                 format version, domain, suite fingerprint, space, design, epochs, family
    tasks(task, split, spec, metafeatures)
    configs(config_id, params)
    trials(task, config_id, seed, status, objective, test_objective, cost_s, curve, val_loss, train_loss, error)
Re-running the same collection skips finished trials (``failed`` ones are retried);
the primary key (task, config_id, seed) rules out duplicates. Collections write it
(:mod:`metahpo_utils.collection`); :mod:`metahpo_utils.tables` exports it as tidy tables.
"""
from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import MetahpoError
from .space import SearchSpace

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
        """``task``, ``split`` and the generator recipe (base, k, n_per_class, label_noise, ...; an RL task's
        ``env``, ``physics.gravity``, ..., a list constant as JSON text)."""
        rows = []
        for t, split, spec in self.conn.execute("SELECT task, split, spec FROM tasks ORDER BY task"):
            s = json.loads(spec)
            if "classes" in s:
                s["k"] = len(s.pop("classes"))
            for key in [k for k, v in s.items() if isinstance(v, dict)]:
                s.update({f"{key}.{sub}": json.dumps(v) if isinstance(v, list) else v for sub, v in s.pop(key).items()})
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

