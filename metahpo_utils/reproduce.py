"""The main job of ``make reproduce`` on the embedded default data.

Steps (each resumes or reuses what an identical earlier run left in ``out``):
1. build the default suite and collect its meta-dataset (``out/digits.sqlite``, tidy tables in ``out/digits/``);
2. fit every strategy and run the replay benchmark on the meta-test tasks (``out/bench_digits/``);
3. tune the meta-test tasks for real: adaptive-portfolio (plain and with successive halving) vs random
   and TPE (``out/tune_digits/``);
4. write every figure and ``summary.md`` (the headline table) into ``figures/``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd

#: The protocol of the main job.
REPRODUCE: dict[str, Any] = {"suite": "digits", "n_tasks": 48, "n_configs": 64, "epochs": 10, "seed": 0}
BENCHMARK: dict[str, Any] = {
    "strategies": ["random", "grid", "taskset", "tpe", "cmaes", "ws-cmaes", "portfolio", "adaptive-portfolio", "knn",
                   "mapping", "mtl", "transfer", "st-zeroshot", "st-boundingbox", "st-quantile"],
    "budget": 50, "seeds": 5, "holdout": "split",
    # no strategy's settings are re-chosen here: adaptive-portfolio's temperatures and utility were fixed in
    # advance (leave-one-task-out on the digits meta-train + meta-val tasks) and it chooses its model phase
    # inside fit by cross-validation on the fold's meta-train tasks alone; `--nested` remains for users
    "nested": []}
#: Every job trains on the CPU, even where a GPU is present (``device="auto"`` elsewhere would pick it): the
#: committed meta-datasets and figures are CPU numbers, and float rounding on a GPU differs.
DEVICE = "cpu"
TUNING: dict[str, Any] = {"strategies": ["adaptive-portfolio", "adaptive-portfolio+sh", "random", "tpe"],
                          "seeds": 5, "budget_trials": 30}


def _reusable(results: Path, strategies: list[str], seeds: int, trials: int, tasks: list[str],
              nested: list[str] | None = None, epochs: int | None = None) -> bool:
    """Whether an earlier run's results.csv holds exactly this protocol (for a benchmark, also the
    strategies whose settings were chosen by nested cross-validation, from its summary.json; for tuning, the
    epochs of a full training)."""
    if not results.exists():
        return False
    if nested is not None:
        summary = results.with_name("summary.json")
        if not summary.exists() or sorted(json.loads(summary.read_text()).get("protocol", {}).get("nested", {})) != sorted(nested):
            return False
    r = pd.read_csv(results, usecols=["strategy", "task", "seed", "trial"] + (["epochs"] if epochs else []))
    return (sorted(r["strategy"].unique()) == sorted(strategies) and r["seed"].nunique() == seeds
            and int(r["trial"].max()) == trials and sorted(r["task"].astype(str).unique()) == sorted(tasks)
            and (epochs is None or int(r["epochs"].max()) == epochs))


def main_job(out: str | Path = "runs", figures: str | Path = "figures", workers: int = 2,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) the four steps; returns the wall time of each step and the paths written."""
    from .figures import make_figures
    from .metadataset import best_config_summary, collect, export_tables, load_exported
    from .tuning import comparison_summary

    out, figures = Path(out), Path(figures)
    r = REPRODUCE
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    store = out / f"{r['suite']}.sqlite"
    # the sequential trainer: the committed default meta-dataset and every figure built on it come from
    # it, and the population trainer matches it only up to float rounding (a few unstable runs differ)
    rep = collect(r["suite"], n_tasks=r["n_tasks"], n_configs=r["n_configs"], epochs=r["epochs"], store=store,
                  seed=r["seed"], workers=workers, trainer="sequential", device=DEVICE)
    log(f"collected: {rep.trials_run} new trials in {rep.wall_s:.1f} s ({rep.trials_total} in the store)")
    export_tables(store, out / r["suite"], "csv")
    tables = load_exported(out / r["suite"])
    best = best_config_summary(tables.trials, tables.provenance)
    (out / r["suite"] / "collection.json").write_text(json.dumps({
        "suite": r["suite"], "n_tasks": rep.n_tasks, "n_configs": rep.n_configs, "epochs": r["epochs"],
        "trials": rep.trials_total, "ran_now": rep.trials_run, "wall_s_now": round(rep.wall_s, 1), "workers": workers,
        "statuses": tables.trials["status"].value_counts().to_dict(),
        "sum_trial_cost_s": round(float(tables.trials["cost_s"].sum()), 1), "best_config_spread": best}, indent=2))
    log("how the best configuration moves across tasks: " + ", ".join(f"{k}={v}" for k, v in best.items()
                                                                   if not isinstance(v, dict)))
    times["collect_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    prov = tables.provenance.assign(task=tables.provenance["task"].astype(str)).set_index("task")["split"]
    test_tasks = sorted(prov.index[prov == "meta-test"])
    bench_dir = out / f"bench_{r['suite']}"
    summary = _benchmark_step(tables, prov, test_tasks, bench_dir, log, workers)
    times["benchmark_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    tune_dir = out / f"tune_{r['suite']}"
    tuning_summary = comparison_summary(_tuning_step(tables, test_tasks, tune_dir, TUNING, log, workers))
    times["tuning_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    written = make_figures(store, figures, benchmark=bench_dir, tuning=tune_dir, log=log)
    (figures / "summary.md").write_text(summary_markdown(summary, tuning_summary))
    times["figures_s"] = time.perf_counter() - t0
    log(f"wrote {len(written)} figures and {figures / 'summary.md'}")
    return {"times": times, "figures": written, "summary": figures / "summary.md"}


def _benchmark_step(tables: Any, prov: pd.Series, test_tasks: list[str], bench_dir: Path,
                    log: Callable[[str], None], workers: int = 1) -> dict[str, Any]:
    """The replay benchmark of :data:`BENCHMARK` on the meta-test tasks (or an identical earlier run's summary),
    its (fold, strategy) units on ``workers`` Dask worker processes (the same numbers as one process).
    Its budget is :data:`BENCHMARK`'s, or every configuration of a table with fewer (a replay cannot try more)."""
    from .benchmark import prepare, run_benchmark, write_outputs

    b = BENCHMARK
    budget = min(b["budget"], int(tables.trials.groupby("task").size().min()))
    if _reusable(bench_dir / "results.csv", b["strategies"], b["seeds"], budget, test_tasks, b["nested"]):
        log(f"benchmark: reusing {bench_dir} (same protocol)")
        return json.loads((bench_dir / "summary.json").read_text())
    log(f"benchmark: {len(b['strategies'])} strategies x {len(test_tasks)} meta-test tasks x {b['seeds']} seeds, "
        f"budget {budget}")
    data = prepare(tables.trials, space=tables.space, task_features=tables.tasks.set_index("task"), budget=budget)
    res = run_benchmark(data, b["strategies"], budget, b["seeds"], b["holdout"], splits=prov,
                        nested={n: None for n in b["nested"]}, log=log, workers=workers)
    write_outputs(res, bench_dir)
    return res.summary


def _tuning_step(tables: Any, test_tasks: list[str], tune_dir: Path, t: dict[str, Any],
                 log: Callable[[str], None], workers: int = 1) -> pd.DataFrame:
    """Real tuning of the meta-test tasks under protocol ``t`` (or an identical earlier run's results)."""
    from .tuning import compare_tuning

    epochs = t.get("epochs") or int(tables.meta.get("epochs", 10))
    if _reusable(tune_dir / "results.csv", t["strategies"], t["seeds"], t["budget_trials"], test_tasks, epochs=epochs):
        log(f"new-task tuning: reusing {tune_dir} (same protocol)")
        return pd.read_csv(tune_dir / "results.csv")
    log(f"new-task tuning for real: {len(t['strategies'])} strategies x {len(test_tasks)} tasks x {t['seeds']} seeds "
        f"x {t['budget_trials']} trials")
    tuned = compare_tuning(test_tasks, t["strategies"], list(range(t["seeds"])), t["budget_trials"], meta=tables,
                           epochs=t.get("epochs"), progress=True, workers=workers, device=DEVICE)
    tune_dir.mkdir(parents=True, exist_ok=True)
    tuned.to_csv(tune_dir / "results.csv", index=False)
    return tuned


def _cross_domain_step(target: Any, source: Any, test_tasks: list[str], cd_dir: Path, figures: Path,
                       c: dict[str, Any], log: Callable[[str], None]) -> Any:
    """The cross-domain experiment (or an identical earlier run's results); its figure also into ``figures``."""
    import shutil

    from .benchmark import BenchmarkResult
    from .crossdomain import ARMS, cross_domain_benchmark, write_cross_domain

    if _reusable(cd_dir / "results.csv", list(ARMS), c["seeds"], c["budget"], test_tasks):
        log(f"cross-domain: reusing {cd_dir} (same protocol)")
        cross = BenchmarkResult(pd.read_csv(cd_dir / "results.csv"), json.loads((cd_dir / "summary.json").read_text()), {})
    else:
        cross = cross_domain_benchmark(target, source, budget=c["budget"], seeds=c["seeds"], log=log)
        write_cross_domain(cross, cd_dir)
    figures.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "pdf"):  # the figure beside the others
        shutil.copyfile(cd_dir / f"cross_domain.{ext}", figures / f"cross_domain.{ext}")
    return cross


def summary_markdown(bench: dict[str, Any], tuning: pd.DataFrame) -> str:
    """The headline tables: replay benchmark (regret, rank, equivalent random trials at 1/5/10/25/50)
    and real-training new-task tuning."""
    from .benchmark import summary_table_markdown
    from .tuning import comparison_markdown

    lines = ["# Headline results (`make reproduce`)", "",
             f"Replay benchmark: {len(bench['tasks'])} meta-test tasks, {bench['seeds']} seeds, budget {bench['budget']}; "
             "normalized regret and average rank (lower is better), equivalent random trials (higher is better); "
             "[95% bootstrap interval over tasks].", "", summary_table_markdown(bench), ""]
    lines += ["New-task tuning with real training (mean best validation accuracy after k trials / t seconds; "
              "test accuracy of the chosen configuration):", "", comparison_markdown(tuning)]
    lines += ["Figures: `regret_curves`, `rank_curves`, `equivalent_trials`, `new_task_tuning` and the rest in this folder.", ""]
    return "\n".join(lines)


#: The text domain's job (``python -m metahpo_utils reproduce --domain text``): the committed text
#: meta-dataset (or a fresh collection of it with ``collect=True``), the same replay benchmark as the main job,
#: real tuning of the meta-test tasks, transfer across domains, and the figures, into ``figures/text``.
TEXT_JOB: dict[str, Any] = {"suite": "text", "n_tasks": 40, "n_configs": 64, "epochs": 5, "seed": 0,
                            "tuning": {"strategies": ["adaptive-portfolio", "random", "tpe"], "seeds": 1,
                                       "budget_trials": 15},
                            "cross_domain": {"source": "digits", "budget": 50, "seeds": 5}}


def _committed_or_collected(j: dict[str, Any], out: Path, workers: int, collect_again: bool,
                            log: Callable[[str], None]) -> Any:
    """A domain job's meta-dataset: the committed one, or (``collect_again``) a fresh collection into
    ``out/<suite>.sqlite``, said equal or not to the committed one apart from the trials' wall times."""
    from .metadataset import collect, default_metadataset, export_tables, load_exported

    if not collect_again:
        return default_metadataset(j["suite"])
    store = out / f"{j['suite']}.sqlite"
    rep = collect(j["suite"], n_tasks=j["n_tasks"], n_configs=j["n_configs"], epochs=j["epochs"], store=store,
                  seed=j["seed"], workers=workers, device=DEVICE)
    export_tables(store, out / j["suite"], "csv.gz")
    tables = load_exported(out / j["suite"])
    committed = default_metadataset(j["suite"])
    # every column but cost_s (each trial's measured wall time, never the same twice)
    same = all(a.drop(columns="cost_s", errors="ignore").equals(b.drop(columns="cost_s", errors="ignore"))
               for a, b in ((tables.trials, committed.trials), (tables.tasks, committed.tasks),
                            (tables.provenance, committed.provenance)))
    log(f"collected {rep.trials_run} new trials in {rep.wall_s:.0f} s; identical to the committed {j['suite']} "
        f"meta-dataset apart from wall times: {same}")
    return tables


def _domain_job(j: dict[str, Any], out: Path, workers: int, collect_again: bool,
                log: Callable[[str], None]) -> tuple[Any, list[str], dict[str, Any], pd.DataFrame, dict[str, float]]:
    """What every domain job does: the meta-dataset, the replay benchmark and real tuning of its meta-test tasks.

    Returns:
        ``(tables, test_tasks, benchmark summary, tuning results, times)``.
    """
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    tables = _committed_or_collected(j, out, workers, collect_again, log)
    times["collect_s"] = time.perf_counter() - t0
    prov = tables.provenance.assign(task=tables.provenance["task"].astype(str)).set_index("task")["split"]
    test_tasks = sorted(prov.index[prov == "meta-test"])
    t0 = time.perf_counter()
    summary = _benchmark_step(tables, prov, test_tasks, out / f"bench_{j['suite']}", log, workers)
    times["benchmark_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tuned = _tuning_step(tables, test_tasks, out / f"tune_{j['suite']}", j["tuning"], log, workers)
    times["tuning_s"] = time.perf_counter() - t0
    return tables, test_tasks, summary, tuned, times


def text_job(out: str | Path = "runs", figures: str | Path = "figures/text", workers: int = 2, collect_again: bool = False,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """The text domain's results: benchmark, real tuning, cross-domain transfer, figures and ``summary.md``.

    Args:
        collect_again: collect the meta-dataset afresh into ``out/text.sqlite`` (about 40 min with 2 workers)
            and say whether it equals the committed one (apart from the trials' wall times); otherwise use the
            committed one.
    """
    from .benchmark import summary_table_markdown
    from .figures import make_figures
    from .metadataset import default_metadataset
    from .tuning import comparison_markdown, comparison_summary

    out, figures = Path(out), Path(figures)
    j = TEXT_JOB
    tables, test_tasks, summary, tuned, times = _domain_job(j, out, workers, collect_again, log)
    tuning_summary = comparison_summary(tuned)
    t0 = time.perf_counter()
    c = j["cross_domain"]
    cross = _cross_domain_step(tables, default_metadataset(c["source"]), test_tasks, out / "crossdomain_text", figures, c, log)
    times["cross_domain_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    written = make_figures(tables, figures, benchmark=out / "bench_text", tuning=out / "tune_text", log=log)
    guard = cross.summary["cross_domain"]["guard"]
    lines = ["# Text domain results (`python -m metahpo_utils reproduce --domain text`)", "",
             f"Replay benchmark: {len(summary['tasks'])} text meta-test tasks, {summary['seeds']} seeds, budget "
             f"{summary['budget']}; [95% bootstrap interval over tasks].", "", summary_table_markdown(summary), "",
             "New-task tuning with real training:", "", comparison_markdown(tuning_summary),
             f"Transfer across domains (`adaptive-portfolio` fitted on the text tasks, the {c['source']} tasks on the "
             f"shared hyperparameters {', '.join(cross.summary['cross_domain']['shared_hyperparameters'])}, or both):", "",
             summary_table_markdown(cross.summary), "",
             "Guard: " + "; ".join(f"{a}: model-based in {g['model_based_runs']} of {g['runs']} runs" for a, g in guard.items()), ""]
    (figures / "summary.md").write_text("\n".join(lines))
    times["figures_s"] = time.perf_counter() - t0
    log(f"wrote {len(written) + 1} figures and {figures / 'summary.md'}")
    return {"times": times, "figures": written, "summary": figures / "summary.md"}


#: The RL domain's job (``python -m metahpo_utils reproduce --domain rl``): the committed RL meta-dataset (or a
#: fresh collection of it with ``collect=True``: about 67 minutes on 2 workers), the replay benchmark of the main
#: job on its meta-test tasks, real tuning of them (returns normalized per task between the random policy and the
#: best return seen), what there is to tune per task, and the figures, into ``figures/rl``.
RL_JOB: dict[str, Any] = {"suite": "rl", "n_tasks": 24, "n_configs": 32, "epochs": 5, "seed": 0,
                          "tuning": {"strategies": ["adaptive-portfolio", "random", "tpe"], "seeds": 2, "budget_trials": 12}}


def rl_job(out: str | Path = "runs", figures: str | Path = "figures/rl", workers: int = 2, collect_again: bool = False,
           log: Callable[[str], None] = print) -> dict[str, Any]:
    """The RL domain's results: per-task spread of the meta-dataset, benchmark, real tuning, figures, ``summary.md``."""
    from .benchmark import summary_table_markdown
    from .domains.rl.report import spread_markdown, task_spread
    from .figures import make_figures
    from .tuning import comparison_markdown, comparison_summary, normalize_results

    out, figures = Path(out), Path(figures)
    j = RL_JOB
    tables, test_tasks, summary, tuned, times = _domain_job(j, out, workers, collect_again, log)
    t0 = time.perf_counter()
    written = make_figures(tables, figures, benchmark=out / "bench_rl", tuning=out / "tune_rl", log=log)
    spread = task_spread(tables)
    raw = comparison_summary(tuned)
    normalized = comparison_summary(normalize_results(tuned, tables))  # the same seconds: elapsed times are kept
    lines = ["# RL domain results (`python -m metahpo_utils reproduce --domain rl`)", "",
             "What there is to tune: per task the random policy's mean validation return, the median and the best "
             "configuration's, the best algorithm, the median configuration's return normalized between the random "
             "policy (0) and the best configuration (1), and the shares of configurations that solve (>= 0.5) or fail "
             "(<= 0.1) on that scale.", "", spread_markdown(spread),
             f"Replay benchmark: {len(summary['tasks'])} RL meta-test tasks, {summary['seeds']} seeds, budget "
             f"{summary['budget']}; [95% bootstrap interval over tasks].", "", summary_table_markdown(summary), "",
             "New-task tuning with real training, returns normalized per task (0 = the random policy, 1 = the best "
             "return seen on the task, in these runs or the meta-dataset; test values on the test episodes):", "",
             comparison_markdown(normalized), "Raw mean returns (over tasks of different scales):", "",
             comparison_markdown(raw)]
    (figures / "summary.md").write_text("\n".join(lines))
    times["figures_s"] = time.perf_counter() - t0
    log(f"wrote {len(written) + 1} figures and {figures / 'summary.md'}")
    return {"times": times, "figures": written, "summary": figures / "summary.md"}
