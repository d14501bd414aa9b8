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

Rules that keep the numbers honest (DESIGN.md): a minimised objective is negated once, in
:func:`prepare`; hyperparameter columns are given or inferred only when unambiguous (an outcome
column is never one); each run's session seed is a stable hash of (replicate, task); intervals
bootstrap over tasks after averaging seeds within a task; a setting chosen for a strategy is chosen
on meta-train tasks only (``nested=``, :func:`select_settings`) or fixed in advance.

Scale: :func:`run_benchmark` splits the work into (fold, strategy) units (:func:`replay_unit`: fit once,
replay every seed) that run in-process or on Dask workers (``workers=``, ``scheduler=``) with identical results.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, NoReturn, Sequence

import numpy as np
import pandas as pd
from scipy.special import gammaln

from .benchmark_data import BenchmarkData, BenchmarkError, prepare, split_columns
from .strategies import STRATEGIES, StrategyError, make_strategy

REPORT_AT = (1, 5, 10, 25, 50)

# the table side lives in benchmark_data; its public names stay importable from here
__all__ = ["BenchmarkData", "BenchmarkError", "BenchmarkResult", "prepare", "split_columns", "folds", "run_seed",
           "drive", "replay", "regret_curve", "expected_random_regret", "equivalent_random_trials", "task_bootstrap",
           "check_strategies", "select_settings", "run_benchmark", "make_units", "replay_unit", "merge_results", "per_task_curves",
           "expected_random_curve", "summarize", "summary_table_markdown", "paired_comparison", "comparison_markdown", "write_outputs", "write_results", "suggest_overhead",
           "REPORT_AT", "RESULT_COLUMNS"]


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
            raise BenchmarkError(f"holdout={holdout!r}: K must be an integer") from None
        if not 2 <= k <= len(tasks):
            raise BenchmarkError(f"holdout={holdout!r}: K must be between 2 and the number of tasks ({len(tasks)})")
        perm = np.random.default_rng(seed).permutation(len(tasks))
        parts = np.array_split(perm, k)
        return [([tasks[i] for i in perm if i not in set(p)], [tasks[i] for i in sorted(p)]) for p in parts]
    if holdout == "split":
        if splits is None:
            raise BenchmarkError("holdout='split' needs splits= (a table with task and split columns)")
        s = splits.reindex(tasks)
        test = [t for t in tasks if s.get(t) == "meta-test"]
        train = [t for t in tasks if s.get(t) in ("meta-train", "meta-val")]
        if not test or not train:
            raise BenchmarkError("splits=: need meta-test tasks and meta-train/meta-val tasks among the table's tasks")
        return [(train, test)]
    raise BenchmarkError(f"holdout= must be loo, kfold:K or split (got {holdout!r})")


def run_seed(seed: int, task: str) -> int:
    """The session seed of replicate ``seed`` on ``task``: a stable hash of both (the same on every
    machine and Python run, unlike ``hash``), so that random search draws differently on every task."""
    digest = hashlib.sha256(f"{int(seed)}\x1f{task}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def drive(session: Any, values: np.ndarray, n: int, times: list[float] | None = None) -> list[int]:
    """The replay loop: ``n`` rounds of ``suggest(1)`` and ``observe`` of the table value (higher is
    better, as :func:`prepare` stored it); returns the candidate indices in trial order (fewer if
    the session stops early). ``times`` collects each ``suggest`` call's seconds."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        cfg = session.suggest(1)
        if times is not None:
            times.append(time.perf_counter() - t0)
        if not cfg:
            break
        i = session.suggested_indices[-1]
        session.observe(cfg[0], values[i])
        out.append(i)
    return out


def replay(strategy: Any, data: BenchmarkData, task: str, budget: int, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """One tuning run on a held-out task: values (maximised) in trial order, indices chosen, and the
    median suggest() time in seconds. ``seed`` is the session seed (see :func:`run_seed`)."""
    rows = data.task_rows(task)
    feats = data.features.loc[task] if data.features is not None else None
    session = strategy.start(data.space, task_features=feats, candidates=rows[data.space.names], seed=seed)
    vals = rows["objective"].to_numpy()
    times: list[float] = []
    idx = np.array(drive(session, vals, budget, times), dtype=int)
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
    """r such that the exact random-search regret curve equals ``strategy_regret`` (interpolated).

    A missing regret (NaN: runs that stopped before this trial) gives NaN, never a number."""
    if not np.isfinite(strategy_regret):
        return float("nan")
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


def task_bootstrap(per_task: np.ndarray, level: float = 0.95, n_resamples: int = 2000,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the mean over tasks (``scipy.stats.bootstrap``).

    Tasks are the unit of replication: ``per_task`` is ``(tasks, points)`` with seeds already
    averaged within each task. Columns with a missing value give NaN; with one task the interval
    is that task's value.
    """
    from scipy.stats import bootstrap

    per_task = np.asarray(per_task, dtype=float)
    lo = np.full(per_task.shape[1], np.nan)
    hi = lo.copy()
    ok = ~np.isnan(per_task).any(0)
    if not ok.any():
        return lo, hi
    x = per_task[:, ok]
    if len(x) < 2 or np.all(np.ptp(x, axis=0) == 0):
        lo[ok], hi[ok] = x.mean(0), x.mean(0)
        return lo, hi
    res = bootstrap((x,), np.mean, axis=0, confidence_level=level, n_resamples=n_resamples, method="percentile",
                    vectorized=True, random_state=np.random.default_rng(seed))
    lo[ok], hi[ok] = res.confidence_interval.low, res.confidence_interval.high
    same = np.ptp(x, axis=0) == 0  # every task equal: no spread to resample
    lo[np.flatnonzero(ok)[same]] = hi[np.flatnonzero(ok)[same]] = x.mean(0)[same]
    return lo, hi


def check_strategies(names: Sequence[str], arg: str = "strategies") -> None:
    """Refuse an empty list or an unknown strategy name, naming it."""
    unknown = [s for s in names if s not in STRATEGIES]
    if not names or unknown:
        raise BenchmarkError(f"{arg}=: unknown strategy '{(unknown or [''])[0]}' (available: {', '.join(STRATEGIES)})")


@dataclass
class BenchmarkResult:
    results: pd.DataFrame  # strategy, task, seed, trial, best_so_far, normalized_regret
    summary: dict[str, Any]
    suggest_median_s: dict[str, float]


def _settings_grid(name: str, grid: Mapping[str, Sequence[Any]] | None) -> list[dict[str, Any]]:
    """Every combination of a settings grid (the strategy's own ``SETTINGS_GRID`` by default)."""
    grid = grid if grid is not None else getattr(STRATEGIES[name], "SETTINGS_GRID", None)
    if not grid:
        raise BenchmarkError(f"nested=: strategy '{name}' declares no settings to choose (SETTINGS_GRID)")
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def select_settings(name: str, data: BenchmarkData, train: Sequence[str], budget: int,
                    grid: Mapping[str, Sequence[Any]] | None = None, base: Mapping[str, Any] | None = None,
                    inner: str = "loo") -> tuple[dict[str, Any], pd.DataFrame]:
    """Choose a strategy's settings by cross-validation over meta-train tasks only (the inner loop
    of nested cross-validation): for each setting and each inner fold of ``train``, fit on the
    inner meta-train tasks, replay ``budget`` trials on each inner held-out task (one seed), and
    score the mean normalized regret over trials 1..budget. The lowest mean score wins (ties: the
    first in grid order).

    Returns:
        The chosen settings and a table of every setting's inner score.
    """
    inner_folds = folds(train, inner)
    rows = []
    for setting in _settings_grid(name, grid):
        scores = []
        for tr, held in inner_folds:
            strat = make_strategy(name, **{**(base or {}), **setting})
            _fit(strat, name, data, tr)
            for task in held:
                reg, _ = regret_curve(strat, data, task, budget, run_seed(0, task))
                scores.append(float(np.mean(reg)) if len(reg) == budget else np.nan)
        rows.append({**setting, "inner_score": float(np.mean(scores))})
    table = pd.DataFrame(rows)
    best = int(table["inner_score"].fillna(np.inf).to_numpy().argmin())
    return {k: v for k, v in rows[best].items() if k != "inner_score"}, table


def _fit(strat: Any, name: str, data: BenchmarkData, train: Sequence[str]) -> None:
    meta_table = data.table[data.table["task"].isin(train)]  # held-out tasks never reach fit
    feats = data.features.loc[list(train)] if data.features is not None else None
    try:
        strat.fit(meta_table, feats, space=data.space)
    except StrategyError as err:
        raise BenchmarkError(f"strategy '{name}': {err}") from None


def regret_curve(strat: Any, data: BenchmarkData, task: str, budget: int, seed: int,
                  times: list[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Normalized regret and best value so far (maximised) after each trial of one replay (shorter
    if the run stopped early)."""
    vals, _, med = replay(strat, data, task, budget, seed)
    if times is not None:
        times.append(med)
    all_vals = data.task_rows(task)["objective"].to_numpy()
    best, span = all_vals.max(), np.ptp(all_vals)
    bsf = np.maximum.accumulate(vals) if len(vals) else vals
    return ((best - bsf) / span if span > 0 else np.zeros_like(bsf)), bsf


def run_benchmark(data: BenchmarkData, strategies: Sequence[str], budget: int, seeds: int, holdout: str = "loo",
                  splits: pd.Series | None = None, progress: bool = True,
                  strategy_kwargs: dict[str, dict[str, Any]] | None = None,
                  log: Callable[[str], None] | None = None, reuse: pd.DataFrame | None = None,
                  nested: Mapping[str, Mapping[str, Sequence[Any]] | None] | None = None,
                  workers: int = 1, scheduler: str | None = None) -> BenchmarkResult:
    """Run the protocol over product(strategies, folds' held-out tasks, seeds).

    The work is split into one unit per (fold, strategy): choose its settings (``nested``), fit it on the
    fold's meta-train tasks, replay every seed on every held-out task (:func:`replay_unit`). Units run
    in-process, or on Dask workers, longest first; either way the results are identical (a unit's draws
    depend only on its fold, strategy and seeds, and it runs with one torch and one BLAS thread), and rows come
    back in the order of folds, strategies, held-out tasks and seeds.

    Args:
        data: from :func:`prepare`.
        strategies: names in :data:`metahpo_utils.strategies.STRATEGIES`.
        budget: trials per run.
        seeds: replicates 0..seeds-1 per (strategy, task); replicate s on task t runs with session
            seed :func:`run_seed` (s, t).
        holdout: ``loo``, ``kfold:K`` or ``split``.
        splits: task -> split, for ``split``.
        strategy_kwargs: per-strategy constructor arguments (fixed in advance).
        reuse: an earlier ``results.csv`` of the same protocol; its rows for strategies not run
            now are kept (ranks are then computed over all of them), see :func:`merge_results`.
        nested: strategy -> settings grid (``None``: the strategy's ``SETTINGS_GRID``). In each
            outer fold those settings are chosen by :func:`select_settings` on that fold's
            meta-train tasks alone (nested cross-validation); the choices go into the summary.
        workers: >1 runs the (fold, strategy) units on a Dask ``LocalCluster`` of that many worker processes.
        scheduler: address of an existing Dask scheduler (overrides ``workers``).
    """
    from tqdm.auto import tqdm

    from .collection import connect_scheduler, run_jobs

    check_strategies(strategies)
    if budget < 1 or seeds < 1:
        raise BenchmarkError("budget= and seeds= must be at least 1")
    if workers < 1:
        raise BenchmarkError(f"workers= must be at least 1 (got {workers})")
    nested = dict(nested or {})
    if nested:
        check_strategies(list(nested), "nested")
        for name, grid in nested.items():
            _settings_grid(name, grid)  # a strategy without a grid fails here, before any work
    fold_list = folds(data.tasks, holdout, splits=splits)
    kw = strategy_kwargs or {}
    units = make_units(fold_list, strategies, budget, seeds, kw, nested)
    client = connect_scheduler(scheduler) if scheduler is not None else None
    distributed = client is not None or workers > 1
    if distributed:  # longest first, so that no long unit starts last; the order never changes a result
        units = sorted(_split_units(units), key=lambda u: -_unit_cost(u))
        if log:
            log(f"benchmark: {len(units)} (fold, strategy) units on "
                + (f"the Dask scheduler at {scheduler}" if client is not None else f"{workers} Dask workers"))
    done: dict[int, dict[str, Any]] = {}
    bar = tqdm(total=len(strategies) * sum(len(h) for _, h in fold_list) * seeds, desc="benchmark", unit="run",
               disable=not progress)
    try:
        for res in run_jobs(units, workers, client, fn=replay_unit, shared=data, on_error=_unit_failed):
            done[(res["index"], res["part"])] = res
            bar.update(res["runs"])
            sel = res["selection"]
            if sel is not None and log:
                held = sel["held_out"]
                log(f"{res['name']}: settings {sel['settings']} chosen on the {res['train']} meta-train tasks of the "
                    f"fold holding out {held[0] if len(held) == 1 else f'{len(held)} tasks'}")
    finally:
        bar.close()
        if client is not None:
            client.close()
    ordered = _join_parts(done, len(fold_list) * len(strategies))  # folds, then strategies: the order of a 1-process run
    res = pd.DataFrame([row for u in ordered for row in u["rows"]], columns=RESULT_COLUMNS)
    times = {s: [t for u in ordered if u["name"] == s for t in u["times"]] for s in strategies}
    selected: dict[str, list[dict[str, Any]]] = {}
    for u in ordered:
        if u["selection"] is not None:
            selected.setdefault(u["name"], []).append(u["selection"])
    names = list(strategies)
    if reuse is not None:
        res, names = merge_results(res, reuse, names)
    summary = summarize(res, data, budget, seeds, names)
    summary["protocol"].update({"holdout": holdout, "folds": len(fold_list),
                                "settings": {n: kw[n] for n in names if n in kw},
                                "nested": {n: sel for n, sel in selected.items()}})
    return BenchmarkResult(res, summary, {k: float(np.median(v)) for k, v in times.items() if v})


def replay_unit(unit: dict[str, Any], data: BenchmarkData) -> dict[str, Any]:
    """One (fold, strategy) unit of :func:`run_benchmark`, in-process or on a Dask worker: choose the settings
    (when nested), fit once on the fold's meta-train tasks, then replay every seed on every held-out task.

    Every draw depends only on the unit (fold, strategy) and the seed: strategies seed themselves, session seeds
    come from :func:`run_seed`, and torch and BLAS run on one thread, so the numbers are the same in every
    process. Returns the result rows (columns :data:`RESULT_COLUMNS`), each run's median ``suggest`` seconds and
    the nested selection (or ``None``)."""
    from threadpoolctl import threadpool_limits

    from .training import SMALL_MODEL_THREADS, torch_threads

    name, train, held, budget = unit["name"], unit["train"], unit["held"], unit["budget"]
    settings, selection = dict(unit["settings"]), None
    rows: list[tuple[Any, ...]] = []
    times: list[float] = []
    with torch_threads(SMALL_MODEL_THREADS), threadpool_limits(1):
        if unit["nested"]:
            choice, scores = select_settings(name, data, train, budget, unit["grid"], base=settings)
            settings.update(choice)
            selection = {"held_out": list(held), "settings": choice, "inner_scores": scores.to_dict("records")}
        strat = make_strategy(name, **settings)
        _fit(strat, name, data, train)
        for task in held:
            for seed in range(unit["seeds"]):
                reg, bsf = regret_curve(strat, data, task, budget, run_seed(seed, task), times)
                shown = bsf if data.maximize else -bsf  # best so far in the table's own units
                rows += [(name, task, seed, k + 1, shown[k], reg[k]) for k in range(len(reg))]
    return {"index": unit["index"], "part": unit.get("part", 0), "name": name, "train": len(train), "rows": rows,
            "times": times, "selection": selection, "runs": len(held) * unit["seeds"]}


def make_units(fold_list: list[tuple[list[str], list[str]]], strategies: Sequence[str], budget: int, seeds: int,
               strategy_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
               nested: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The (fold, strategy) units of a benchmark, in the order of its rows (see :func:`replay_unit`)."""
    kw, nested = strategy_kwargs or {}, nested or {}
    pairs = [(f, name) for f in range(len(fold_list)) for name in strategies]
    return [{"index": i, "fold": f, "folds": len(fold_list), "name": name, "train": list(fold_list[f][0]),
             "held": list(fold_list[f][1]), "settings": dict(kw.get(name, {})), "nested": name in nested,
             "grid": nested.get(name), "budget": budget, "seeds": seeds} for i, (f, name) in enumerate(pairs)]


#: On Dask workers, a (fold, strategy) unit whose replays are estimated to take more than SPLIT_REPLAY_S seconds is
#: split by held-out task into parts of at least SPLIT_FIT_RATIO times its fit and SPLIT_MIN_PART_S seconds of
#: replays each. Each part fits the strategy again (fitting is deterministic) and replays its tasks, so one slow
#: strategy no longer holds up the benchmark on one worker; results are the same (every replay depends only on its
#: fit, task and seed).
SPLIT_REPLAY_S = 5.0
SPLIT_FIT_RATIO = 4.0
SPLIT_MIN_PART_S = 1.0


def _split_units(units: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Units for the Dask workers: long non-nested units split by held-out task (see :data:`SPLIT_REPLAY_S`)."""
    out = []
    for u in units:
        fit, trial = _unit_hint(u)
        replay = trial * u["budget"] * len(u["held"]) * u["seeds"]
        parts = 1 if u["nested"] or replay < SPLIT_REPLAY_S else \
            int(min(len(u["held"]), max(1, replay // max(SPLIT_FIT_RATIO * fit, SPLIT_MIN_PART_S))))
        if parts == 1:
            out.append(u)
            continue
        bounds = np.linspace(0, len(u["held"]), parts + 1).round().astype(int)
        out += [dict(u, held=u["held"][a:b], part=k) for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]
    return out


def _join_parts(done: dict[tuple[int, int], dict[str, Any]], n_units: int) -> list[dict[str, Any]]:
    """The results of the units in order, the parts of a split unit joined back in held-out task order."""
    units: list[list[dict[str, Any]]] = [[] for _ in range(n_units)]
    for (i, _), res in sorted(done.items()):
        units[i].append(res)
    return [dict(parts[0], rows=[r for p in parts for r in p["rows"]], times=[t for p in parts for t in p["times"]],
                 runs=sum(p["runs"] for p in parts)) for parts in units]


def _unit_failed(unit: dict[str, Any], err: BaseException) -> NoReturn:
    """A unit that raised, or whose Dask worker died: one error naming its (fold, strategy)."""
    held = unit["held"]
    where = (f"strategy '{unit['name']}' on fold {unit['fold'] + 1} of {unit['folds']} (held out: "
             f"{', '.join(held[:3])}{', ...' if len(held) > 3 else ''})")
    text = str(err) if isinstance(err, BenchmarkError) else f"{type(err).__name__}: {err}"
    raise BenchmarkError(f"{where} failed: {text}") from err


#: Rough seconds of one fit (on 36 meta-train tasks) and of one replayed trial, per strategy, measured on the
#: default digits meta-dataset (64 configurations a task, one thread); others count as cheap. Only the order in
#: which Dask workers start the (fold, strategy) units, and which units are split (:func:`_split_units`), depend
#: on these, never a result.
_COST_HINT: dict[str, tuple[float, float]] = {
    "adaptive-portfolio": (4.4, 0.0025), "mtl": (2.5, 0.001), "transfer": (2.3, 0.019), "knn": (0.02, 0.011),
    "taskset": (0.0, 0.003), "tpe": (0.0, 0.0035), "cmaes": (0.0, 0.0016), "ws-cmaes": (0.02, 0.0033),
    "st-zeroshot": (0.3, 0.0027), "st-boundingbox": (0.02, 0.0017), "st-quantile": (0.02, 0.066)}


def _unit_hint(unit: dict[str, Any]) -> tuple[float, float]:
    """Estimated seconds of a unit's fit (grown with its meta-train tasks) and of one replayed trial."""
    fit, trial = _COST_HINT.get(unit["name"], (0.01, 0.0005))
    return fit * len(unit["train"]) / 36, trial


def _unit_cost(unit: dict[str, Any]) -> float:
    """Estimated seconds of a unit: its fit and replays, and for nested selection every inner fit and replay."""
    fit, trial = _unit_hint(unit)
    n_train = len(unit["train"])
    cost = fit + trial * unit["budget"] * len(unit["held"]) * unit["seeds"]
    if unit["nested"]:
        grid = unit["grid"] if unit["grid"] is not None else getattr(STRATEGIES[unit["name"]], "SETTINGS_GRID", {})
        n_settings = int(np.prod([len(v) for v in grid.values()])) if grid else 1
        cost += n_settings * n_train * (fit + trial * unit["budget"])  # inner leave-one-task-out
    return cost


RESULT_COLUMNS = ["strategy", "task", "seed", "trial", "best_so_far", "normalized_regret"]


def merge_results(new: pd.DataFrame, old: pd.DataFrame, run: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Add an earlier run's rows for the strategies not run now (the re-run ones are replaced).

    The earlier run must cover the same (task, seed, trial) grid, so that ranks compare like with
    like; otherwise one error names the difference.
    """
    missing = [c for c in RESULT_COLUMNS if c not in old.columns]
    if missing:
        raise BenchmarkError(f"reuse=: missing column(s) {missing} (expected a results.csv of benchmark)")
    old = old[RESULT_COLUMNS].assign(task=old["task"].astype(str))
    kept = old[~old["strategy"].isin(run)]
    grid = set(new[["task", "seed", "trial"]].itertuples(index=False, name=None))
    for name, rows in kept.groupby("strategy", sort=False):
        other = set(rows[["task", "seed", "trial"]].itertuples(index=False, name=None))
        if other != grid:
            diff = sorted(grid ^ other)[:3]
            raise BenchmarkError(f"reuse=: strategy '{name}' covers other (task, seed, trial) runs than this "
                                 f"benchmark (e.g. {diff}); use the same table, holdout, budget and seeds")
    # the earlier run's order, re-run strategies in their old place, new ones last
    order = [n for n in dict.fromkeys(old["strategy"]) if n in run or n in set(kept["strategy"])]
    order += [n for n in run if n not in order]
    out = pd.concat([kept, new], ignore_index=True)
    out["_o"] = out["strategy"].map({n: i for i, n in enumerate(order)})
    out = out.sort_values(["_o", "task", "seed", "trial"], kind="stable").drop(columns="_o").reset_index(drop=True)
    return out, order


def per_task_curves(res: pd.DataFrame, column: str, budget: int) -> dict[str, pd.DataFrame]:
    """Per strategy, a (tasks, trials 1..budget) table of ``column`` averaged over seeds within each
    task; a trial some run of the task did not reach is NaN (never averaged over the runs that did)."""
    if column == "rank" and "rank" not in res:
        res = res.assign(rank=res.groupby(["task", "seed", "trial"])["normalized_regret"].rank(method="average"))
    out = {}
    trials = np.arange(1, budget + 1)
    for s, r in res.groupby("strategy", sort=False):
        wide = r.pivot_table(index=["task", "seed"], columns="trial", values=column, aggfunc="mean")
        wide = wide.reindex(columns=trials)
        out[s] = wide.groupby(level="task").agg(lambda c: c.mean() if c.notna().all() else np.nan)
    return out


def expected_random_curve(data: BenchmarkData, tasks: Sequence[str], n_max: int) -> np.ndarray:
    """Exact expected normalized regret of random search, averaged over ``tasks``, trials 1..n_max."""
    return np.mean([expected_random_regret(data.task_rows(t)["objective"].to_numpy(), n_max) for t in tasks], axis=0)


def summarize(res: pd.DataFrame, data: BenchmarkData, budget: int, seeds: int, strategies: list[str]) -> dict[str, Any]:
    """summary.json of DESIGN.md: regret, rank and equivalent random trials at 1, 5, 10, 25, 50 (up to
    budget), each with a 95% bootstrap interval over tasks (seeds averaged within a task first), the
    exact expected curve of random search, and how many runs stopped early."""
    res = res.assign(rank=res.groupby(["task", "seed", "trial"])["normalized_regret"].rank(method="average"))
    keys = [k for k in REPORT_AT if k <= budget]
    tasks = sorted(res["task"].unique())
    n_min = min(len(data.task_rows(t)) for t in tasks)
    rand = expected_random_curve(data, tasks, n_min)  # ERT reference, capped at the smallest task
    regret, rank = per_task_curves(res, "normalized_regret", budget), per_task_curves(res, "rank", budget)
    out: dict[str, Any] = {"budget": budget, "seeds": seeds, "tasks": tasks, "strategies": {},
                           "random_expected": {"regret": {str(k): float(rand[k - 1]) if k <= n_min else None for k in keys},
                                               "curve": [float(x) for x in rand[:budget]]},
                           "protocol": {**data.protocol_info(), "interval": "95% percentile bootstrap over tasks "
                                        "(seeds averaged within a task), scipy.stats.bootstrap, 2000 resamples",
                                        "seed_rule": "session seed = sha256(replicate seed, task)"}}
    for s in strategies:
        reg, rk = regret[s].reindex(tasks), rank[s].reindex(tasks)
        cols = [k - 1 for k in keys]
        r_mean, r_lo, r_hi = reg.mean(skipna=False).to_numpy()[cols], *(a[cols] for a in task_bootstrap(reg.to_numpy()))
        k_mean, k_lo, k_hi = rk.mean(skipna=False).to_numpy()[cols], *(a[cols] for a in task_bootstrap(rk.to_numpy()))
        runs = res[res["strategy"] == s].groupby(["task", "seed"])["trial"].max()
        short = {str(k): int((runs < k).sum()) for k in keys if (runs < k).any()}

        def num(x: float) -> float | None:
            return float(x) if np.isfinite(x) else None

        ert = [equivalent_random_trials(float(x), rand) for x in r_mean]
        out["strategies"][s] = {
            "regret": {str(k): num(v) for k, v in zip(keys, r_mean)},
            "rank": {str(k): num(v) for k, v in zip(keys, k_mean)},
            "equivalent_random_trials": {str(k): num(v) for k, v in zip(keys, ert)},
            "regret_ci": {str(k): [num(a), num(b)] for k, a, b in zip(keys, r_lo, r_hi)},
            "rank_ci": {str(k): [num(a), num(b)] for k, a, b in zip(keys, k_lo, k_hi)},
            # regret is monotone in ERT: the interval maps through the random curve (high regret -> few trials)
            "equivalent_random_trials_ci": {str(k): [num(equivalent_random_trials(float(b), rand)),
                                                     num(equivalent_random_trials(float(a), rand))]
                                            for k, a, b in zip(keys, r_lo, r_hi)},
        }
        if short:
            out["strategies"][s]["runs_stopped_before"] = short
    return out


def summary_table_markdown(summary: dict[str, Any]) -> str:
    """A benchmark ``summary.json`` as a Markdown table: regret [95% interval], rank and equivalent
    random trials [interval] at each reported trial, random search's exact expectation last, and
    the settings nested cross-validation chose."""
    ks = list(next(iter(summary["strategies"].values()))["regret"])

    def cell(v: float | None, ci: list | None = None, fmt: str = ".4f") -> str:
        if v is None:
            return "n/a"
        if ci is None or ci[0] is None:
            return format(v, fmt)
        return f"{v:{fmt}} [{ci[0]:{fmt}}, {ci[1]:{fmt}}]"

    head = ["strategy"] + [f"regret@{k}" for k in ks] + [f"rank@{k}" for k in ks] + [f"ERT@{k}" for k in ks]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s, v in summary["strategies"].items():
        cells = ([f"`{s}`"] + [cell(v["regret"][k], v.get("regret_ci", {}).get(k)) for k in ks]
                 + [cell(v["rank"][k], fmt=".2f") for k in ks]
                 + [cell(v["equivalent_random_trials"][k], v.get("equivalent_random_trials_ci", {}).get(k), ".1f")
                    for k in ks])
        lines.append("| " + " | ".join(cells) + " |")
    exp = summary.get("random_expected", {}).get("regret")
    if exp:
        lines.append("| random, exact expectation | " + " | ".join(cell(exp.get(k)) for k in ks)
                     + " |" + " |" * (2 * len(ks)))
    for name, folds_ in summary.get("protocol", {}).get("nested", {}).items():
        chosen = sorted({json.dumps(f["settings"], sort_keys=True) for f in folds_})
        lines += ["", f"`{name}`: settings chosen by nested cross-validation (inner leave-one-task-out on each fold's "
                  f"meta-train tasks): {'; '.join(chosen)} ({len(folds_)} fold(s))."]
    return "\n".join(lines)


def paired_comparison(res: pd.DataFrame, strategy: str, against: Sequence[str] | None = None,
                      budgets: Sequence[int] | None = None, best_of: bool = False, only_best: bool = False,
                      level: float = 0.95) -> pd.DataFrame:
    """Is ``strategy`` lower in regret than each of ``against``, task by task? A paired comparison on one
    benchmark's ``results.csv``.

    Tasks are the unit, as in the summary's intervals: a strategy's regret on a task is averaged over seeds
    first; the difference (``strategy`` minus the other; negative: ``strategy`` is better) is then averaged
    over tasks, with a percentile bootstrap interval over tasks of the paired differences
    (:func:`task_bootstrap`). ``wins`` / ``ties`` / ``losses`` count the tasks where ``strategy`` is lower /
    equal (within 1e-12) / higher.

    Args:
        res: rows of :data:`RESULT_COLUMNS` (one benchmark run: every strategy on the same tasks and seeds).
        strategy: the strategy compared.
        against: the others (default: every other strategy in ``res``, in its order).
        budgets: the trial counts compared (default: :data:`REPORT_AT` up to the longest run).
        best_of: add, at each budget, a row against the best of ``against`` there (the one with the lowest
            mean regret, named in ``other``). Chosen on these same results, so that comparison favours the others.
        only_best: with ``best_of``, only those rows.
        level: interval level.

    Returns:
        One row per (budget, other): ``budget``, ``other``, ``regret`` (``strategy``'s mean), ``regret_other``,
        ``difference``, ``ci_low``, ``ci_high``, ``wins``, ``ties``, ``losses``, ``tasks`` and ``verdict``
        (``lower`` or ``higher`` where the interval excludes 0, else ``no difference shown``). A task where either
        strategy has a run that stopped before the budget is left out of that row (``tasks`` counts the rest;
        none left: NaN and ``n/a``).
    """
    missing = [c for c in RESULT_COLUMNS if c not in res.columns]
    if missing:
        raise BenchmarkError(f"results: missing column(s) {missing} (expected a results.csv of benchmark)")
    names = list(dict.fromkeys(res["strategy"]))
    if strategy not in names:
        raise BenchmarkError(f"strategy '{strategy}' is not in the results (they hold: {', '.join(names)})")
    others = [n for n in names if n != strategy] if against is None else list(against)
    unknown = [n for n in others if n not in names]
    if unknown:
        raise BenchmarkError(f"against: '{unknown[0]}' is not in the results (they hold: {', '.join(names)})")
    if not others or strategy in others:
        raise BenchmarkError("against: name at least one strategy other than the one compared")
    longest = int(res["trial"].max())
    budgets = [k for k in REPORT_AT if k <= longest] if budgets is None else [int(k) for k in budgets]
    if not budgets or min(budgets) < 1 or max(budgets) > longest:
        raise BenchmarkError(f"budgets: each must be between 1 and {longest} (the longest run), got {budgets}")
    curves = per_task_curves(res.assign(task=res["task"].astype(str)), "normalized_regret", longest)
    tasks = curves[strategy].index
    for n in others:
        if not curves[n].index.equals(tasks):
            raise BenchmarkError(f"strategy '{n}' ran on other tasks than '{strategy}' "
                                 f"({sorted(set(curves[n].index) ^ set(tasks))[:3]}); compare runs of one benchmark")
    rows = []
    for k in budgets:
        mine = curves[strategy][k].to_numpy()
        pairs = [(n, curves[n][k].to_numpy()) for n in others]
        if best_of and len(others) > 1:
            n_best, v_best = min(pairs, key=lambda p: np.nanmean(p[1]))
            pairs = ([] if only_best else pairs) + [(f"best of others: {n_best}", v_best)]
        for n, theirs in pairs:
            both = ~(np.isnan(mine) | np.isnan(theirs))  # a run that stopped before k has no regret there
            d = mine[both] - theirs[both]
            lo, hi = task_bootstrap(d[:, None], level) if len(d) else (np.full(1, np.nan), np.full(1, np.nan))
            rows.append({"budget": k, "other": n, "regret": _mean(mine[both]), "regret_other": _mean(theirs[both]),
                         "difference": _mean(d), "ci_low": float(lo[0]), "ci_high": float(hi[0]),
                         "wins": int((d < -1e-12).sum()), "ties": int((np.abs(d) <= 1e-12).sum()),
                         "losses": int((d > 1e-12).sum()), "tasks": len(d),
                         "verdict": "n/a" if not len(d) else "lower" if hi[0] < 0 else "higher" if lo[0] > 0
                         else "no difference shown"})
    return pd.DataFrame(rows)


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else float("nan")


def comparison_markdown(table: pd.DataFrame, strategy: str) -> str:
    """A :func:`paired_comparison` table as Markdown (``n/a`` where no task had both runs that long)."""
    def f(x: float, fmt: str = ".4f") -> str:
        return "n/a" if np.isnan(x) else format(x, fmt)

    lines = [f"| trial | other | `{strategy}` | other's | difference [95% interval] | tasks lower / equal / higher | verdict |",
             "|---|---|---|---|---|---|---|"]
    for r in table.itertuples(index=False):
        lines.append(f"| {r.budget} | `{r.other}` | {f(r.regret)} | {f(r.regret_other)} | {f(r.difference, '+.4f')} "
                     f"[{f(r.ci_low, '+.4f')}, {f(r.ci_high, '+.4f')}] | {r.wins} / {r.ties} / {r.losses} | {r.verdict} |")
    return "\n".join(lines)


def write_outputs(result: BenchmarkResult, out: str | Path) -> dict[str, Path]:
    """Write results.csv, summary.json and the regret / rank figures into ``out``."""
    from . import plotting

    paths = write_results(result, out)
    paths.update(plotting.benchmark_figures(result.results, Path(out), result.summary))
    return paths


def write_results(result: BenchmarkResult, out: str | Path) -> dict[str, Path]:
    """Write ``results.csv`` and ``summary.json`` into ``out`` (created)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"results": out / "results.csv", "summary": out / "summary.json"}
    result.results.to_csv(paths["results"], index=False)
    paths["summary"].write_text(json.dumps(result.summary, indent=2))
    return paths


def suggest_overhead(data: BenchmarkData, strategies: Sequence[str], n_obs: int = 100, n_timed: int = 20,
                     seed: int = 0) -> dict[str, float]:
    """Median seconds of ``suggest(1)`` after ``n_obs`` observations, per strategy.

    The first task is the target (its configurations are the candidates), the others are the
    meta-train data; ``n_obs`` random candidates are observed first, then ``n_timed``
    suggest/observe rounds of the replay loop (:func:`drive`) are timed.
    """
    target, train = data.tasks[0], data.tasks[1:]
    rows = data.task_rows(target)
    if len(rows) < n_obs + n_timed:
        raise BenchmarkError(f"observations={n_obs}: task '{target}' has {len(rows)} configurations, "
                             f"{n_obs + n_timed} needed")
    vals = rows["objective"].to_numpy()
    first = np.random.default_rng(seed).permutation(len(rows))[:n_obs]
    out = {}
    for name in strategies:
        strat = make_strategy(name)
        _fit(strat, name, data, train)
        session = strat.start(data.space, task_features=None if data.features is None else data.features.loc[target],
                              candidates=rows[data.space.names], seed=seed)
        for i in first:
            session.observe(rows[data.space.names].iloc[i].to_dict(), vals[i])
        times: list[float] = []
        drive(session, vals, n_timed, times)
        out[name] = float(np.median(times))
    return out
