"""A tidy table prepared for the replay benchmark: hyperparameter columns told from outcome columns,
rows with a missing value dropped and counted, repeats averaged, and the objective made
higher-is-better once (DESIGN.md's honesty rules for tables). :mod:`metahpo_utils.benchmark` runs
the protocol on the :class:`BenchmarkData` that :func:`prepare` returns."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .errors import MetahpoError
from .metadataset import TableError, load_table
from .space import RESERVED_COLUMNS, SearchSpace, infer_space


class BenchmarkError(MetahpoError, ValueError):
    """Bad benchmark input: names the argument or field."""


@dataclass
class BenchmarkData:
    """A table prepared for replay: one row per (task, configuration), values maximised.

    Attributes:
        table: ``task``, the hyperparameter columns, ``objective`` (higher is better: a minimised
            table is negated once, here, and never again) and ``value`` (the original units).
        space: the search space of the hyperparameter columns.
        features: task meta-features (or ``None``).
        maximize: whether the original objective is higher-is-better.
        hyperparameters_from: ``space`` (given), ``list`` (named by the caller) or ``inferred``.
        outcomes: columns left out because they are outcomes (they differ between tasks for the
            same configuration).
        dropped: rows dropped while preparing, by reason.
    """

    table: pd.DataFrame
    space: SearchSpace
    features: pd.DataFrame | None
    maximize: bool
    hyperparameters_from: str = "space"
    outcomes: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    _rows: dict[str, pd.DataFrame] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def tasks(self) -> list[str]:
        return sorted(self.table["task"].unique())

    def task_rows(self, task: str) -> pd.DataFrame:
        """One task's rows (split from the table once; every replay of the task reads them)."""
        if self._rows is None:
            self._rows = {t: rows.reset_index(drop=True) for t, rows in self.table.groupby("task", sort=False)}
        return self._rows[task]

    def describe(self) -> list[str]:
        """What was prepared, in lines a user reads before the run (hyperparameters, outcomes, drops)."""
        lines = [f"hyperparameters ({self.hyperparameters_from}): "
                 + ", ".join(f"{n} {_describe_dist(d)}" for n, d in self.space.params.items())]
        if self.outcomes:
            lines.append(f"left out as outcomes (they differ between tasks for the same configuration): "
                         f"{', '.join(self.outcomes)}")
        lines += [f"dropped {n} row(s): {why}" for why, n in self.dropped.items() if n]
        return lines

    def protocol_info(self) -> dict[str, Any]:
        """The table-side facts that ``summary.json`` records."""
        return {"space": json.loads(self.space.to_json()), "hyperparameters_from": self.hyperparameters_from,
                "outcome_columns": list(self.outcomes), "dropped_rows": dict(self.dropped),
                "direction": "maximize" if self.maximize else "minimize"}


def _describe_dist(d: Any) -> str:
    from optuna.distributions import CategoricalDistribution

    if isinstance(d, CategoricalDistribution):
        return "{" + ", ".join(map(str, d.choices)) + "}"
    kind = "int" if type(d).__name__ == "IntDistribution" else "float"
    return f"{kind}{' log' if d.log else ''} [{d.low:g}, {d.high:g}]"


def _rows_per_group(df: pd.DataFrame, key: list[str]) -> float:
    """Median rows per (task, configuration key) group."""
    return float(df.groupby(["task", *key], dropna=False, sort=False).size().median())


def _differs_between_tasks(df: pd.DataFrame, key: list[str], col: str) -> bool | None:
    """Whether ``col`` takes different values in different tasks for rows with the same ``key``;
    ``None`` when no key value occurs in two tasks (nothing to compare)."""
    codes = df.groupby(key, dropna=False, sort=False).ngroup()
    shared = df.groupby(codes)["task"].transform("nunique") > 1
    if not shared.any():
        return None
    sub = df[shared]
    per_task = sub.groupby([codes[shared], sub["task"]])[col].agg(lambda s: tuple(sorted(map(str, s))))
    return bool((per_task.groupby(level=0).nunique() > 1).any())


def split_columns(df: pd.DataFrame, candidates: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """Tell hyperparameter columns from outcome columns of a tidy table.

    A column whose value differs between tasks for the same configuration is an outcome. The
    configuration is ``config_id`` when the table has one; otherwise it is given by the columns
    whose values are the same in every task (a shared design), after removing from them any column
    that differs between tasks while the others still identify one configuration. A remaining column
    is an outcome if it differs between tasks for one configuration, a hyperparameter (or a function
    of one) if it does not, and *ambiguous* if no configuration occurs in two tasks.

    Returns:
        ``(hyperparameters, outcomes, ambiguous)``, each in the table's column order.
    """
    cand = [c for c in candidates if df[c].nunique(dropna=True) > 1]
    outcomes: list[str] = []
    if "config_id" in df.columns:
        key, others = ["config_id"], cand
    else:
        values = {c: df.groupby("task")[c].agg(lambda s: frozenset(map(str, s.dropna().unique()))) for c in cand}
        key = [c for c in cand if values[c].nunique() == 1]
        for c in list(key):  # a coarse outcome can take the same values in every task
            rest = [k for k in key if k != c]
            if rest and _rows_per_group(df, rest) == _rows_per_group(df, key) and _differs_between_tasks(df, rest, c):
                key.remove(c)
                outcomes.append(c)
        others = [c for c in cand if c not in key and c not in outcomes]
    hps, ambiguous = [c for c in cand if c in key], []
    for c in others:
        verdict = _differs_between_tasks(df, key, c) if key else None
        if verdict is None:
            ambiguous.append(c)
        elif verdict:
            outcomes.append(c)
        else:
            hps.append(c)
    order = {c: i for i, c in enumerate(df.columns)}
    return sorted(hps, key=order.get), sorted(outcomes, key=order.get), ambiguous


def _drop_missing_values(df: pd.DataFrame, names: Sequence[str], dropped: dict[str, int]) -> pd.DataFrame:
    """Rows with a value of every hyperparameter in ``names`` (the others counted in ``dropped``)."""
    missing = df[list(names)].isna().any(axis=1)
    dropped["a hyperparameter value missing"] = int(missing.sum())
    if missing.all():
        raise BenchmarkError("table: every row lacks a value of some hyperparameter")
    return df[~missing]


def prepare(table: pd.DataFrame | str | Path, task_col: str = "task", objective: str = "objective",
            maximize: bool = True, space: SearchSpace | None = None, task_features: pd.DataFrame | None = None,
            budget: int | None = None, hyperparameters: Sequence[str] | None = None) -> BenchmarkData:
    """Check and normalize a table for the benchmark (one clear error per problem).

    The hyperparameters are the columns of ``space``, or the columns named in ``hyperparameters``
    (their space inferred), or else inferred from the table: every column that is not reserved
    (``status``, ``test_objective``, ...) and not an outcome (see :func:`split_columns`); a column that
    cannot be told apart is refused. A given column that is an outcome is refused too (it would leak
    the target). Rows with a non-finite objective or a missing hyperparameter value are dropped and
    counted (``BenchmarkData.dropped``); repeated (task, configuration) rows are averaged. A minimised
    objective is negated once, here.
    """
    try:
        df = load_table(table, task_col=task_col, objective=objective)
    except TableError as err:
        raise BenchmarkError(str(err)) from None
    dropped: dict[str, int] = {}
    finite = df["objective"].notna() & np.isfinite(pd.to_numeric(df["objective"], errors="coerce"))
    dropped["objective missing or not finite"] = int((~finite).sum())
    df = df[finite].assign(objective=lambda d: d["objective"].astype(float))
    if df.empty:
        raise BenchmarkError(f"table: column '{objective}' has no finite values")
    outcomes: list[str] = []
    if space is not None and hyperparameters is not None:
        raise BenchmarkError("give the hyperparameters as a space or as a list of columns, not both")
    if space is not None or hyperparameters is not None:
        names = list(space.names) if space is not None else [str(h).strip() for h in hyperparameters]
        missing = [n for n in names if n not in df.columns]
        if not names or missing:
            raise BenchmarkError(f"table: missing hyperparameter column(s) {missing or names}")
        df = _drop_missing_values(df, names, dropped)
        for c in names:  # a given column must not be an outcome: that would hand the target to the strategies
            rest = [n for n in names if n != c]
            if rest and _rows_per_group(df, rest) == _rows_per_group(df, names) and _differs_between_tasks(df, rest, c):
                raise BenchmarkError(f"table: column '{c}' differs between tasks for the same configuration of the "
                                     f"other hyperparameters: it is an outcome, not a hyperparameter")
        source = "space" if space is not None else "list"
        if space is None:
            space = infer_space(df[names])
    else:
        skip = set(RESERVED_COLUMNS) | {"task", "objective", "value"}
        hps, outcomes, ambiguous = split_columns(df, [c for c in df.columns if c not in skip])
        if ambiguous:
            raise BenchmarkError(f"table: cannot tell whether column(s) {ambiguous} are hyperparameters or outcomes "
                                 "(no configuration occurs in two tasks); name the hyperparameters or give a space")
        if not hps:
            raise BenchmarkError("table: no hyperparameter columns found")
        space, source = infer_space(df[hps]), "inferred"
        df = _drop_missing_values(df, space.names, dropped)
    df = df.groupby(["task", *space.names], as_index=False, sort=True)["objective"].mean()
    df["value"] = df["objective"]
    if not maximize:
        df["objective"] = -df["objective"]  # the only negation: strategies always see higher-is-better
    sizes = df.groupby("task").size()
    if (sizes < 2).any():
        raise BenchmarkError(f"table: task '{sizes[sizes < 2].index[0]}' has only one configuration")
    if len(sizes) < 2:
        raise BenchmarkError("table: need at least 2 tasks (one to hold out, one to learn from)")
    if budget is not None and budget > sizes.min():
        raise BenchmarkError(f"budget={budget} is larger than task '{sizes.idxmin()}' ({sizes.min()} configurations)")
    feats = None
    if task_features is not None:
        feats = task_features.reindex(sorted(sizes.index))
        if feats.isna().all(axis=1).any():
            raise BenchmarkError(f"task features: no row for task '{feats.index[feats.isna().all(axis=1)][0]}'")
    return BenchmarkData(df, space, feats, maximize, source, outcomes, {k: v for k, v in dropped.items() if v})
