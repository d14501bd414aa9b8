"""The replay benchmark: a fixed, named protocol (HPO-B style) on any tidy meta-dataset table.

For every held-out task, seed and strategy: fit on the other tasks only (the fold's meta-train
part), start a session whose candidates are the held-out task's configurations in the table,
and replay ``budget`` trials, looking values up in the table. Metrics (DESIGN.md):

- normalized regret at trial k: (best in table - best so far) / (best in table - worst in table),
  per task, averaged over tasks and seeds;
- rank: average rank among the strategies run, per (task, seed, trial);
- equivalent random trials at k: the number r of uniformly random draws without replacement
  whose expected normalized regret (computed exactly from the table) equals the strategy's mean
  normalized regret at k (interpolated between integers; capped at the smallest task's size).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from scipy.special import gammaln

from .metadataset import TableError, load_table
from .space import SearchSpace, infer_space
from .strategies import STRATEGIES, StrategyError, make_strategy

REPORT_AT = (1, 5, 10, 25, 50)


class BenchmarkError(ValueError):
    """Bad benchmark input: names the argument or field."""


@dataclass
class BenchmarkData:
    """A table prepared for replay: one row per (task, configuration), values maximised."""

    table: pd.DataFrame  # task, hyperparameters, objective (maximised), value (original units)
    space: SearchSpace
    features: pd.DataFrame | None
    maximize: bool

    @property
    def tasks(self) -> list[str]:
        return sorted(self.table["task"].unique())

    def task_rows(self, task: str) -> pd.DataFrame:
        return self.table[self.table["task"] == task].reset_index(drop=True)


def prepare(table: pd.DataFrame | str | Path, task_col: str = "task", objective: str = "objective",
            maximize: bool = True, space: SearchSpace | None = None, task_features: pd.DataFrame | None = None,
            budget: int | None = None) -> BenchmarkData:
    """Check and normalise a table for the benchmark (one clear error per problem).

    Rows with a missing objective are dropped; repeated (task, configuration) rows are averaged.
    """
    try:
        df = load_table(table, task_col=task_col, objective=objective)
    except TableError as err:
        raise BenchmarkError(str(err)) from None
    df = df[df["objective"].notna()]
    df = df[np.isfinite(df["objective"].astype(float))]
    if df.empty:
        raise BenchmarkError(f"table: column '{objective}' has no finite values")
    if space is None:
        space = infer_space(df, exclude=[task_col, objective])
    missing = [n for n in space.names if n not in df.columns]
    if missing:
        raise BenchmarkError(f"table: missing hyperparameter column(s) {missing} of the space")
    df = df.groupby(["task", *space.names], as_index=False, sort=True)["objective"].mean()
    df["value"] = df["objective"]
    if not maximize:
        df["objective"] = -df["objective"]
    sizes = df.groupby("task").size()
    if (sizes < 2).any():
        raise BenchmarkError(f"table: task '{sizes[sizes < 2].index[0]}' has only one configuration")
    if len(sizes) < 2:
        raise BenchmarkError("table: need at least 2 tasks (one to hold out, one to learn from)")
    if budget is not None and budget > sizes.min():
        raise BenchmarkError(f"--budget {budget} is larger than task '{sizes.idxmin()}' ({sizes.min()} configurations)")
    feats = None
    if task_features is not None:
        feats = task_features.reindex(sorted(sizes.index))
        if feats.isna().all(axis=1).any():
            raise BenchmarkError(f"task features: no row for task '{feats.index[feats.isna().all(axis=1)][0]}'")
    return BenchmarkData(df, space, feats, maximize)


def folds(tasks: Sequence[str], holdout: str, seed: int = 0, splits: pd.Series | None = None) -> list[tuple[list[str], list[str]]]:
    """(meta-train tasks, held-out tasks) pairs: ``loo``, ``kfold:K``, or ``split`` (meta-train and
    meta-val tasks learn, meta-test tasks are held out; needs ``splits``)."""
    tasks = list(tasks)
    if holdout == "loo":
        return [([t for t in tasks if t != h], [h]) for h in tasks]
    if holdout.startswith("kfold:"):
        try:
            k = int(holdout.split(":", 1)[1])
        except ValueError:
            raise BenchmarkError(f"--holdout {holdout!r}: K must be an integer") from None
        if not 2 <= k <= len(tasks):
            raise BenchmarkError(f"--holdout {holdout!r}: K must be between 2 and the number of tasks ({len(tasks)})")
        perm = np.random.default_rng(seed).permutation(len(tasks))
        parts = np.array_split(perm, k)
        return [([tasks[i] for i in perm if i not in set(p)], [tasks[i] for i in sorted(p)]) for p in parts]
    if holdout == "split":
        if splits is None:
            raise BenchmarkError("--holdout split needs --splits PATH (a table with task and split columns)")
        s = splits.reindex(tasks)
        test = [t for t in tasks if s.get(t) == "meta-test"]
        train = [t for t in tasks if s.get(t) in ("meta-train", "meta-val")]
        if not test or not train:
            raise BenchmarkError("--splits: need meta-test tasks and meta-train/meta-val tasks among the table's tasks")
        return [(train, test)]
    raise BenchmarkError(f"--holdout must be loo, kfold:K or split (got {holdout!r})")


def replay(strategy: Any, data: BenchmarkData, task: str, budget: int, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """One tuning run on a held-out task: values (maximised) in trial order, indices chosen, and the
    median suggest() time in seconds."""
    rows = data.task_rows(task)
    feats = data.features.loc[task] if data.features is not None else None
    session = strategy.start(data.space, task_features=feats, candidates=rows[data.space.names], seed=seed)
    vals = rows["objective"].to_numpy()
    out, times = [], []
    for _ in range(budget):
        t0 = time.perf_counter()
        cfg = session.suggest(1)
        times.append(time.perf_counter() - t0)
        if not cfg:
            break
        i = session.suggested_indices[-1]
        session.observe(cfg[0], vals[i] if data.maximize else -vals[i])  # strategies maximise the table's objective
        out.append(i)
    idx = np.array(out)
    return vals[idx], idx, float(np.median(times))


def expected_random_regret(values: np.ndarray, n_max: int) -> np.ndarray:
    """Exact expected normalized regret of r = 1..n_max uniform draws without replacement.

    With values sorted ascending v_1 <= ... <= v_n, P(best of r draws is v_i) = C(i-1, r-1) / C(n, r).
    """
    v = np.sort(values)
    n = len(v)
    span = v[-1] - v[0]
    reg = (v[-1] - v) / span if span > 0 else np.zeros(n)
    out = np.empty(n_max)
    i = np.arange(1, n + 1)
    for r in range(1, n_max + 1):
        with np.errstate(invalid="ignore"):
            logp = np.where(i >= r, gammaln(i) - gammaln(r) - gammaln(i - r + 1), -np.inf) \
                - (gammaln(n + 1) - gammaln(r + 1) - gammaln(n - r + 1))
        out[r - 1] = float((np.exp(logp) * reg).sum())
    return out


def equivalent_random_trials(strategy_regret: float, random_curve: np.ndarray) -> float:
    """r such that the exact random-search regret curve equals ``strategy_regret`` (interpolated)."""
    if strategy_regret >= random_curve[0]:
        # worse than one random draw: interpolate towards r = 0, taken as regret 1 (nothing tried)
        hi, lo = 1.0, random_curve[0]
        return float(max(0.0, (hi - strategy_regret) / (hi - lo))) if hi > lo else 0.0
    below = np.flatnonzero(random_curve <= strategy_regret)
    if len(below) == 0:
        return float(len(random_curve))  # better than random with every configuration it could draw
    j = int(below[0])
    hi, lo = random_curve[j - 1], random_curve[j]
    frac = (hi - strategy_regret) / (hi - lo) if hi > lo else 1.0
    return float(j + frac)  # trials are 1-based: curve[j - 1] is r = j


def check_strategies(names: Sequence[str], flag: str = "--strategies") -> None:
    """Refuse an empty list or an unknown strategy name, naming it."""
    unknown = [s for s in names if s not in STRATEGIES]
    if not names or unknown:
        raise BenchmarkError(f"{flag}: unknown strategy '{(unknown or [''])[0]}' (available: {', '.join(STRATEGIES)})")


@dataclass
class BenchmarkResult:
    results: pd.DataFrame  # strategy, task, seed, trial, best_so_far, normalized_regret
    summary: dict[str, Any]
    suggest_median_s: dict[str, float]


def run_benchmark(data: BenchmarkData, strategies: Sequence[str], budget: int, seeds: int, holdout: str = "loo",
                  splits: pd.Series | None = None, progress: bool = True,
                  strategy_kwargs: dict[str, dict[str, Any]] | None = None,
                  log: Callable[[str], None] | None = None, reuse: pd.DataFrame | None = None) -> BenchmarkResult:
    """Run the protocol over product(strategies, folds' held-out tasks, seeds).

    Args:
        data: from :func:`prepare`.
        strategies: names in :data:`metahpo_utils.strategies.STRATEGIES`.
        budget: trials per run.
        seeds: seeds 0..seeds-1 per (strategy, task).
        holdout: ``loo``, ``kfold:K`` or ``split``.
        splits: task -> split, for ``split``.
        strategy_kwargs: per-strategy constructor arguments.
        reuse: an earlier ``results.csv`` of the same protocol; its rows for strategies not run
            now are kept (ranks are then computed over all of them), see :func:`merge_results`.
    """
    from tqdm.auto import tqdm

    check_strategies(strategies)
    if budget < 1 or seeds < 1:
        raise BenchmarkError("--budget and --seeds must be at least 1")
    fold_list = folds(data.tasks, holdout, splits=splits)
    kw = strategy_kwargs or {}
    rows, times = [], {s: [] for s in strategies}
    total = len(strategies) * sum(len(h) for _, h in fold_list) * seeds
    bar = tqdm(total=total, desc="benchmark", unit="run", disable=not progress)
    for train, held in fold_list:
        meta_table = data.table[data.table["task"].isin(train)]  # the held-out tasks never reach fit
        feats = data.features.loc[train] if data.features is not None else None
        for name in strategies:
            strat = make_strategy(name, **kw.get(name, {}))
            try:
                strat.fit(meta_table, feats, space=data.space)
            except StrategyError as err:
                raise BenchmarkError(f"strategy '{name}': {err}") from None
            for task in held:
                vals_all = data.task_rows(task)["objective"].to_numpy()
                best, worst = vals_all.max(), vals_all.min()
                span = best - worst
                for seed in range(seeds):
                    vals, _, med = replay(strat, data, task, budget, seed)
                    times[name].append(med)
                    bsf = np.maximum.accumulate(vals)
                    reg = (best - bsf) / span if span > 0 else np.zeros_like(bsf)
                    shown = bsf if data.maximize else -bsf
                    rows += [(name, task, seed, k + 1, shown[k], reg[k]) for k in range(len(vals))]
                    bar.update(1)
    bar.close()
    res = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    names = list(strategies)
    if reuse is not None:
        res, names = merge_results(res, reuse, names)
    summary = summarize(res, data, budget, seeds, names)
    return BenchmarkResult(res, summary, {k: float(np.median(v)) for k, v in times.items() if v})


RESULT_COLUMNS = ["strategy", "task", "seed", "trial", "best_so_far", "normalized_regret"]


def merge_results(new: pd.DataFrame, old: pd.DataFrame, run: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Add an earlier run's rows for the strategies not run now (the re-run ones are replaced).

    The earlier run must cover the same (task, seed, trial) grid, so that ranks compare like with
    like; otherwise one error names the difference.
    """
    missing = [c for c in RESULT_COLUMNS if c not in old.columns]
    if missing:
        raise BenchmarkError(f"--reuse: missing column(s) {missing} (expected a results.csv of benchmark)")
    old = old[RESULT_COLUMNS].assign(task=old["task"].astype(str))
    kept = old[~old["strategy"].isin(run)]
    grid = set(new[["task", "seed", "trial"]].itertuples(index=False, name=None))
    for name, rows in kept.groupby("strategy", sort=False):
        other = set(rows[["task", "seed", "trial"]].itertuples(index=False, name=None))
        if other != grid:
            diff = sorted(grid ^ other)[:3]
            raise BenchmarkError(f"--reuse: strategy '{name}' covers other (task, seed, trial) runs than this "
                                 f"benchmark (e.g. {diff}); use the same table, holdout, budget and seeds")
    # the earlier run's order, re-run strategies in their old place, new ones last
    order = [n for n in dict.fromkeys(old["strategy"]) if n in run or n in set(kept["strategy"])]
    order += [n for n in run if n not in order]
    out = pd.concat([kept, new], ignore_index=True)
    out["_o"] = out["strategy"].map({n: i for i, n in enumerate(order)})
    out = out.sort_values(["_o", "task", "seed", "trial"], kind="stable").drop(columns="_o").reset_index(drop=True)
    return out, order


def summarize(res: pd.DataFrame, data: BenchmarkData, budget: int, seeds: int, strategies: list[str]) -> dict[str, Any]:
    """summary.json of DESIGN.md: regret, rank and equivalent random trials at 1, 5, 10, 25, 50 (up to budget)."""
    res = res.copy()
    res["rank"] = res.groupby(["task", "seed", "trial"])["normalized_regret"].rank(method="average")
    keys = [k for k in REPORT_AT if k <= budget]
    tasks = sorted(res["task"].unique())
    n_min = min(len(data.task_rows(t)) for t in tasks)
    rand = np.mean([expected_random_regret(data.task_rows(t)["objective"].to_numpy(), n_min) for t in tasks], axis=0)
    out: dict[str, Any] = {"budget": budget, "seeds": seeds, "tasks": tasks, "strategies": {}}
    for s in strategies:
        r = res[res["strategy"] == s]
        curve = r.groupby("trial")["normalized_regret"].mean()
        ranks = r.groupby("trial")["rank"].mean()
        out["strategies"][s] = {
            "regret": {str(k): float(curve.get(k, np.nan)) for k in keys},
            "rank": {str(k): float(ranks.get(k, np.nan)) for k in keys},
            "equivalent_random_trials": {str(k): equivalent_random_trials(float(curve.get(k, np.nan)), rand) for k in keys},
        }
    return out


def write_outputs(result: BenchmarkResult, out: str | Path) -> dict[str, Path]:
    """Write results.csv, summary.json and the regret / rank figures into ``out``."""
    from . import plotting

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"results": out / "results.csv", "summary": out / "summary.json"}
    result.results.to_csv(paths["results"], index=False)
    paths["summary"].write_text(json.dumps(result.summary, indent=2))
    paths.update(plotting.benchmark_figures(result.results, out))
    return paths


def suggest_overhead(data: BenchmarkData, strategies: Sequence[str], n_obs: int = 100, n_timed: int = 20,
                     seed: int = 0) -> dict[str, float]:
    """Median seconds of ``suggest(1)`` after ``n_obs`` observations, per strategy.

    The first task is the target (its configurations are the candidates), the others are the
    meta-train data; ``n_obs`` random candidates are observed first, then ``n_timed``
    suggest/observe rounds are timed.
    """
    target, train = data.tasks[0], data.tasks[1:]
    rows = data.task_rows(target)
    if len(rows) < n_obs + n_timed:
        raise BenchmarkError(f"perf: task '{target}' has {len(rows)} configurations, {n_obs + n_timed} needed")
    feats = data.features.loc[train] if data.features is not None else None
    vals = rows["objective"].to_numpy()
    first = np.random.default_rng(seed).permutation(len(rows))[:n_obs]
    out = {}
    for name in strategies:
        strat = make_strategy(name).fit(data.table[data.table["task"].isin(train)], feats, space=data.space)
        session = strat.start(data.space, task_features=None if data.features is None else data.features.loc[target],
                              candidates=rows[data.space.names], seed=seed)
        for i in first:
            session.observe(rows[data.space.names].iloc[i].to_dict(), vals[i])
        times = []
        for _ in range(n_timed):
            t0 = time.perf_counter()
            cfg = session.suggest(1)
            times.append(time.perf_counter() - t0)
            session.observe(cfg[0], vals[session.suggested_indices[-1]])
        out[name] = float(np.median(times))
    return out
