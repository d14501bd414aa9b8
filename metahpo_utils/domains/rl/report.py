"""Is there something to tune? Per RL task of a meta-dataset: what a random policy earns, what the median
and the best configuration earn, and how the configurations spread between failing and solving.

Returns are normalized per task between the random policy (0) and the best configuration of the
meta-dataset (1): ``(R - R_random) / (R_best - R_random)``, with ``R_random`` the random policy's mean
return on the task's validation episodes (its ``random_return`` meta-feature).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

#: A configuration "solves" a task at normalized return >= SOLVED and "fails" at <= FAILED.
SOLVED, FAILED = 0.5, 0.1


def task_spread(tables) -> pd.DataFrame:  # noqa: ANN001 - MetaTables of an RL collection
    """One row per task: ``env``, ``split``, ``random`` (random-policy return), ``median`` and ``best``
    configuration returns, ``best_algo``, ``gain`` ((best - random) / max(|random|, 1)), ``median_norm``
    (the median configuration's normalized return), ``solving`` and ``failing`` (shares of configurations
    at normalized return >= :data:`SOLVED` / <= :data:`FAILED`), ``mean_cost_s``."""
    t = tables.trials[tables.trials["objective"].notna()].assign(task=lambda d: d["task"].astype(str))
    feats = tables.tasks.assign(task=tables.tasks["task"].astype(str)).set_index("task")
    prov = tables.provenance.assign(task=tables.provenance["task"].astype(str)).set_index("task")
    rows = []
    for task, d in t.groupby("task"):
        rnd = float(feats.at[task, "random_return"])
        best = float(d["objective"].max())
        span = best - rnd if best > rnd else np.nan
        norm = (d["objective"] - rnd) / span
        rows.append({"task": task, "env": prov.at[task, "env"], "split": prov.at[task, "split"], "random": rnd,
                     "median": float(d["objective"].median()), "best": best,
                     "best_algo": d.loc[d["objective"].idxmax(), "algo"] if "algo" in d else None,
                     "gain": (best - rnd) / max(abs(rnd), 1.0), "median_norm": float(norm.median()),
                     "solving": float((norm >= SOLVED).mean()), "failing": float((norm <= FAILED).mean()),
                     "mean_cost_s": float(d["cost_s"].mean())})
    return pd.DataFrame(rows)


def spread_markdown(spread: pd.DataFrame) -> str:
    """:func:`task_spread` as a Markdown table."""
    cols = ["task", "env", "split", "random", "median", "best", "best_algo", "median_norm", "solving", "failing"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in spread.itertuples():
        lines.append(f"| `{r.task}` | {r.env} | {r.split} | {r.random:.1f} | {r.median:.1f} | {r.best:.1f} | {r.best_algo} "
                     f"| {r.median_norm:.2f} | {r.solving:.0%} | {r.failing:.0%} |")
    return "\n".join(lines) + "\n"
