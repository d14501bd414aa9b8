"""Real worker processes optimising one Optuna study through a shared storage (the parallel tests).

Run as a script to count repeated configurations among the trials of N workers:

    python tests/optuna_workers.py --storage both --workers 4 --trials 6
"""
from __future__ import annotations

import argparse
import importlib
import multiprocessing as mp
import queue
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial

from strategy_fixtures import shifting_space, shifting_table  # the tests folder: on sys.path as a script too

from metahpo_utils.strategies.base import Strategy
from metahpo_utils.strategies.optuna_adapters import optuna_quiet

SAMPLER = "metahpo_utils.optuna_interop:MetaLearnedSampler"
STUDY = "parallel"


def open_storage(spec: str) -> optuna.storages.BaseStorage:
    """``journal:PATH`` -> a JournalStorage on a file; anything else is an RDB URL (``sqlite:///PATH``)."""
    if spec.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(spec[len("journal:"):]))
    # a generous busy timeout: four processes write to one SQLite file
    return optuna.storages.RDBStorage(spec, engine_kwargs={"connect_args": {"timeout": 60}})


def objective(trial: optuna.Trial, sleep_s: float) -> float:
    x = trial.suggest_float("x", 0.0, 1.0)
    lr = trial.suggest_float("lr", 1e-4, 1.0, log=True)
    opt = trial.suggest_categorical("opt", ["a", "b"])
    time.sleep(sleep_s)  # trials of different workers overlap, as real training runs do
    return float(np.exp(-((x - 0.5) ** 2) / 0.02) + 0.3 * np.exp(-((np.log10(lr) + 2) ** 2) / 2) + (opt == "a") * 0.1)


def worker(specs: list[str], strategy: Strategy, seed: int, n_trials: int, sleep_s: float, sampler_path: str,
           barrier: Any, results: Any) -> None:
    """One worker: on each storage in turn, its own sampler (seed ``seed``) on the shared study; reports
    the sampler's ``dedup`` counters and the seconds its trials took."""
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    module, name = sampler_path.split(":")
    for spec in specs:
        sampler = getattr(importlib.import_module(module), name)(strategy, seed=seed)
        study = optuna.load_study(study_name=STUDY, storage=open_storage(spec), sampler=sampler)
        barrier.wait(timeout=300)  # start together: the first trials of all workers race
        t0 = time.perf_counter()
        study.optimize(lambda t: objective(t, sleep_s), n_trials=n_trials)
        results.put((spec, seed, dict(getattr(sampler, "dedup", {})), time.perf_counter() - t0))


def run_workers(specs: list[str], strategy: Strategy, n_workers: int = 4, n_trials: int = 6, sleep_s: float = 0.05,
                sampler_path: str = SAMPLER, start_method: str = "forkserver",
                ) -> dict[str, tuple[list[FrozenTrial], dict[int, dict[str, Any]]]]:
    """Create the study on each storage of ``specs`` and optimise them, one after the other, with the
    same ``n_workers`` fresh processes (started once: importing the package is the slow part).

    ``forkserver`` forks each worker from a clean server process that imported the package once (no
    state of this process is shared, as with ``spawn``, but a worker starts in well under a second
    instead of several seconds on a loaded machine).

    Returns:
        Per storage spec: the study's trials, and per worker seed its sampler's ``dedup`` counters plus
        ``seconds`` (the wall time of its trials).
    """
    with optuna_quiet():  # no "A new study created" lines; the caller's verbosity is restored
        for spec in specs:
            optuna.create_study(study_name=STUDY, storage=open_storage(spec), direction="maximize")
    ctx = mp.get_context(start_method)
    if start_method == "forkserver":
        ctx.set_forkserver_preload([__name__, "metahpo_utils.optuna_interop"])
    barrier, results = ctx.Barrier(n_workers), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(specs, strategy, i, n_trials, sleep_s, sampler_path, barrier, results))
             for i in range(n_workers)]
    for p in procs:
        p.start()
    counters: dict[str, dict[int, dict[str, Any]]] = {spec: {} for spec in specs}
    try:
        while sum(map(len, counters.values())) < n_workers * len(specs):
            try:
                spec, seed, dedup, seconds = results.get(timeout=1)
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"worker {dead[0].name} exited with {dead[0].exitcode}") from None
                continue
            counters[spec][seed] = {**dedup, "seconds": round(seconds, 2)}
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.terminate()
    return {spec: (optuna.load_study(study_name=STUDY, storage=open_storage(spec)).get_trials(), counters[spec])
            for spec in specs}


def repeats(trials: list[FrozenTrial], space: Any) -> int:
    """How many trials repeat the configuration of an earlier trial."""
    keys = [tuple(np.round(space.encode(t.params), 9) + 0.0) for t in trials]  # as config_key: encoded, rounded
    return len(keys) - len(set(keys))


def fitted_portfolio() -> Strategy:
    from metahpo_utils.strategies import make_strategy

    table, feats = shifting_table(n_tasks=6, n_configs=40)
    return make_strategy("portfolio").fit(table, feats, space=shifting_space())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--storage", choices=["journal", "sqlite", "both"], default="both")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--sampler", default=SAMPLER, help="module:Class of the sampler (default: %(default)s)")
    ap.add_argument("--start", choices=["forkserver", "spawn"], default="forkserver", help="process start method")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        specs = {"journal": f"journal:{Path(tmp) / 'journal.log'}", "sqlite": f"sqlite:///{Path(tmp) / 'study.db'}"}
        chosen = list(specs) if args.storage == "both" else [args.storage]
        runs = run_workers([specs[k] for k in chosen], fitted_portfolio(), args.workers, args.trials,
                           sampler_path=args.sampler, start_method=args.start)
        for kind in chosen:
            trials, counters = runs[specs[kind]]
            states = sorted({t.state.name for t in trials})
            print(f"{kind}: {len(trials)} trials ({', '.join(states)}), {repeats(trials, shifting_space())} "
                  f"repeated configurations; per worker: {dict(sorted(counters.items()))}")


if __name__ == "__main__":
    main()
