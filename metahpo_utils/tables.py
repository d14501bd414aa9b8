"""The tidy tables of DESIGN.md: export a store, read and check a user's CSV/Parquet tables, the
committed default meta-datasets, and a summary of how much the best configuration moves."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .choices import EXPORT_FORMATS
from .errors import MetahpoError
from .space import SearchSpace
from .store import TABLE_STATUSES, MetaDatasetStore


class TableError(MetahpoError, ValueError):
    """A tidy table that lacks required columns or holds bad values."""


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
