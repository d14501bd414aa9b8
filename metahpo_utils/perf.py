"""Performance figures, measured in one run on the current machine (``python -m metahpo_utils perf``).

Every figure is a ratio or a rate from the same process and moment, so that runs on a shared,
noisy machine stay comparable. Nothing here is asserted in unit tests: these are benchmarks.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any, Callable

import numpy as np
import torch

from .data.datasets import load_dataset
from .data.tasks import Task
from .population import train_population
from .space import default_space
from .training import torch_threads, train_config

#: The default workloads: (family, dataset, examples, members, epochs, fixed hyperparameters).
WORKLOADS = {
    "mlp": ("mlp", "mnist1d", 2500, 32, 3, {"batch_size": 64, "depth": 2, "width": 100}),
    "cnn": ("cnn1d", "mnist1d", 2500, 32, 2, {"batch_size": 64, "depth": 2, "width": 32}),
}


def workload(kind: str) -> tuple[str, Task, list[dict[str, Any]], int]:
    """The family, task, configurations and epochs of a default workload.

    Configurations are the first members of the default space's Sobol design (optimisers, learning
    rates, weight decay, momentum and dropout vary) with the architecture and batch size fixed as
    :data:`WORKLOADS` says (one network shape, as in a population of copies).
    """
    family, dataset, n, members, epochs, fixed = WORKLOADS[kind]
    ds = load_dataset(dataset)
    task = Task.from_arrays(ds.X[:n], ds.y[:n], name=f"perf-{dataset}", seed=0)
    configs = [dict(c, **fixed) for c in default_space().design(members, seed=0)]
    return family, task, configs, epochs


def describe_workload(kind: str) -> str:
    family, dataset, n, members, epochs, fixed = WORKLOADS[kind]
    return (f"{members} configurations of a {family} on {n} {dataset} examples, {epochs} epochs, "
            + ", ".join(f"{k}={v}" for k, v in fixed.items()))


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def population_speedup(kind: str, threads: int = 1, dropout_masks: str = "sequential") -> dict[str, float]:
    """Configurations per second, sequential trainer vs population trainer, on one workload
    (after a short warm-up of both; both on ``threads`` torch threads), and the share of members
    whose validation accuracy is identical."""
    family, task, configs, epochs = workload(kind)
    with torch_threads(threads):
        train_config(task, configs[0], epochs=1, seed=0, family=family)  # warm-up: allocator, kernels
        train_population(task, configs[:2], epochs=1, seed=0, family=family)
        seq, t_seq = _timed(lambda: [train_config(task, c, epochs=epochs, seed=0, family=family) for c in configs])
        pop, t_pop = _timed(lambda: train_population(task, configs, epochs=epochs, seed=0, family=family,
                                                     dropout_masks=dropout_masks).results)
    same = float(np.mean([a.objective == b.objective for a, b in zip(seq, pop)]))
    seq_rate, pop_rate = len(configs) / t_seq, len(configs) / t_pop
    return {"sequential_configs_per_s": seq_rate, "population_configs_per_s": pop_rate,
            "speedup": pop_rate / seq_rate, "members": len(configs), "epochs": epochs,
            "same_objective_fraction": same}


def _mlp_shapes(task: Task, configs: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """(in, out) of the population's padded MLP layers, head included."""
    d = int(np.prod(task.input_shape))
    W = max(int(c.get("width", 64)) for c in configs)
    depth = max(int(c.get("depth", 2)) for c in configs)
    return [(d, W)] + [(W, W)] * (depth - 1) + [(W, task.n_classes)]


def mlp_flops(task: Task, configs: list[dict[str, Any]], epochs: int) -> float:
    """Floating-point operations of the population's padded MLP matrix products over training
    (forward 2*m*k*n per product, backward twice that), as computed, padding included."""
    n_train, n_val, n_test = len(task.y_train), len(task.y_val), len(task.y_test)
    per_example = sum(2 * k * n for k, n in _mlp_shapes(task, configs)) * len(configs)
    return float(per_example * (3 * n_train * epochs + n_val * epochs + n_test))


def matmul_reference_gflops(task: Task, configs: list[dict[str, Any]], batch: int, repeat: int = 50) -> float:
    """GFLOP/s of plain batched ``torch.matmul`` on the population's layer shapes (one thread as used)."""
    G, shapes = len(configs), _mlp_shapes(task, configs)
    mats = [(torch.randn(G, batch, k), torch.randn(G, k, n)) for k, n in shapes]
    flops = sum(2 * G * batch * k * n for k, n in shapes)
    for a, b in mats:  # warm-up
        torch.matmul(a, b)
    t0 = time.perf_counter()
    for _ in range(repeat):
        for a, b in mats:
            torch.matmul(a, b)
    return flops * repeat / (time.perf_counter() - t0) / 1e9


def matmul_fraction(threads: int = 1) -> dict[str, float]:
    """Achieved GFLOP/s of the population trainer (MLP workload) against ``torch.matmul`` of the same shapes."""
    family, task, configs, epochs = workload("mlp")
    with torch_threads(threads):
        _, t = _timed(lambda: train_population(task, configs, epochs=epochs, seed=0, family=family))
        ref = matmul_reference_gflops(task, configs, int(configs[0]["batch_size"]))
    achieved = mlp_flops(task, configs, epochs) / t / 1e9
    return {"population_gflops": achieved, "matmul_gflops": ref, "fraction": achieved / ref}


#: The replay throughput measured by ``perf``.
REPLAY = {"strategies": ("random", "portfolio", "mtl"), "budget": 50, "seeds": 2, "strategy_kwargs": {}}


def replay_throughput() -> dict[str, float]:
    """Simulated tuning runs per second of the replay benchmark on the default digits meta-dataset
    (fit once on the meta-train tasks, then ``budget``-trial replays of every meta-test task,
    settings in :data:`REPLAY`)."""
    strategies, budget, seeds = REPLAY["strategies"], REPLAY["budget"], REPLAY["seeds"]
    strategy_kwargs = REPLAY["strategy_kwargs"]
    from .benchmark import prepare, replay
    from .metadataset import default_metadataset
    from .strategies import make_strategy

    m = default_metadataset("digits")
    data = prepare(m.trials, space=m.space, task_features=m.tasks.set_index("task") if "task" in m.tasks else m.tasks)
    split = m.provenance.set_index("task")["split"]
    test = [t for t in data.tasks if split.get(t) == "meta-test"]
    train = [t for t in data.tasks if t not in test]
    out = {}
    for name in strategies:
        strat = make_strategy(name, **(strategy_kwargs or {}).get(name, {})).fit(data.table[data.table["task"].isin(train)],
                                        data.features.loc[train] if data.features is not None else None, space=data.space)
        _, t = _timed(lambda: [replay(strat, data, task, budget, seed) for task in test for seed in range(seeds)])
        out[name] = len(test) * seeds / t
    return out


#: The replay benchmark whose Dask speed-up ``perf`` measures, on the default digits meta-dataset (48 tasks).
BENCHMARK_DASK: dict[str, Any] = {"strategies": ("random", "portfolio", "adaptive-portfolio", "knn", "mtl", "tpe"),
                                  "budget": 20, "seeds": 2, "holdout": "kfold:4", "workers": 2}


def benchmark_dask_speedup() -> dict[str, Any]:
    """Wall seconds of the replay benchmark of :data:`BENCHMARK_DASK` in one process and on a Dask
    ``LocalCluster`` of ``workers`` processes (its start included: what a user waits for), the speed-up,
    whether both gave identical results (rows and the summary's regret and rank), and the share of a core the
    1-process run got (CPU over wall seconds: well below 1 means other jobs shared the machine)."""
    from .benchmark import prepare, run_benchmark
    from .metadataset import default_metadataset

    b = BENCHMARK_DASK
    m = default_metadataset("digits")
    data = prepare(m.trials, space=m.space, task_features=m.tasks.set_index("task") if "task" in m.tasks else m.tasks)
    kw = {"strategies": list(b["strategies"]), "budget": b["budget"], "seeds": b["seeds"], "holdout": b["holdout"],
          "progress": False}
    cpu = time.process_time()
    one, t1 = _timed(lambda: run_benchmark(data, **kw))
    cpu = time.process_time() - cpu  # below the wall time when other jobs share the cores
    two, t2 = _timed(lambda: run_benchmark(data, workers=b["workers"], **kw))
    same = one.results.equals(two.results) and all(
        one.summary["strategies"][s][k] == two.summary["strategies"][s][k]
        for s in kw["strategies"] for k in ("regret", "rank"))
    return {"workers_1_s": t1, f"workers_{b['workers']}_s": t2, "speedup": t1 / t2, "identical": bool(same),
            "workers": b["workers"], "runs": len(one.results.groupby(["strategy", "task", "seed"])),
            "workers_1_cpu_share": cpu / t1}


_COLLECT_CHILD = """
import json, resource, sys, tempfile, time
from pathlib import Path
from metahpo_utils.metadataset import collect
args = json.loads(sys.argv[1])
with tempfile.TemporaryDirectory() as tmp:
    t0 = time.perf_counter()
    rep = collect("digits", store=Path(tmp) / "s.sqlite", progress=False, **args)
    wall = time.perf_counter() - t0
print(json.dumps({"wall_s": wall, "trials": rep.trials_run, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


#: The collection measured by ``perf`` (digits suite); memory is compared at ``n_tasks`` and twice that.
COLLECT_SIZE = {"n_tasks": 12, "n_configs": 32, "epochs": 10}


def collect_run(workers: int = 1, n_tasks: int | None = None, n_configs: int | None = None, epochs: int | None = None,
                trainer: str = "population") -> dict[str, float]:
    """One ``collect`` of the digits suite in a fresh process: wall time, trials per second and the
    driver's peak resident memory (with ``workers > 1`` the workers' memory is not included)."""
    args = {"n_tasks": n_tasks or COLLECT_SIZE["n_tasks"], "n_configs": n_configs or COLLECT_SIZE["n_configs"],
            "epochs": epochs or COLLECT_SIZE["epochs"], "workers": workers, "trainer": trainer}
    out = _child(_COLLECT_CHILD, args)
    out["trials_per_s"] = out["trials"] / out["wall_s"]
    return out


_TUNE_CHILD = """
import json, sys, time
from metahpo_utils.tuning import tune
args = json.loads(sys.argv[1])
t0 = time.perf_counter()
res = tune(args.pop("task"), **args)
print(json.dumps({"wall_s": time.perf_counter() - t0, "trials": len(res.history)}))
"""

#: What ``perf --only load`` runs with and without a competing process: a real tuning run and a small collection.
LOAD = {"tune": {"task": "digits-005", "strategy": "random", "budget_trials": 8, "epochs": 5, "seed": 0, "device": "cpu"},
        "collect": {"n_tasks": 4, "n_configs": 16, "epochs": 5}, "repeats": 2}

#: The competing process: another torch job that keeps one core busy (one thread, matrix products).
_BUSY_CHILD = "import torch\ntorch.set_num_threads(1)\na = torch.randn(384, 384)\nwhile True:\n    a = torch.tanh(a @ a)\n"


def tune_run(**kwargs: Any) -> dict[str, float]:
    """One ``tune`` of :data:`LOAD` in a fresh process (the package imported there too, as a user runs it): its
    wall seconds and trials."""
    args = {**LOAD["tune"], **kwargs}
    return _child(_TUNE_CHILD, args)


def _child(script: str, args: dict[str, Any]) -> dict[str, Any]:
    """Run ``script`` in a fresh Python process with ``args`` (JSON) as its argument: the JSON of its last line."""
    done = subprocess.run([sys.executable, "-c", script, json.dumps(args)], check=True, capture_output=True,
                          text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return json.loads(done.stdout.strip().splitlines()[-1])


def under_load(repeats: int | None = None) -> dict[str, Any]:
    """Slowdown of ``tune`` and of a collection while another process keeps one core busy: the best of
    ``repeats`` wall times with the competing torch job running, over the best of ``repeats`` without
    (alternated, so that drift in the machine's load hits both). About 1 on a machine with a core to spare;
    a loop of small trainings that spawned a thread per core would stall (4-100x)."""
    repeats = repeats or LOAD["repeats"]

    def best(fn: Callable[[], dict[str, float]]) -> float:
        return min(fn()["wall_s"] for _ in range(repeats))

    c = LOAD["collect"]
    runs = {"tune": lambda: tune_run(), "collect": lambda: collect_run(workers=1, **c)}
    idle = {k: best(f) for k, f in runs.items()}
    busy = subprocess.Popen([sys.executable, "-c", _BUSY_CHILD])
    try:
        time.sleep(1.0)  # let it start
        loaded = {k: best(f) for k, f in runs.items()}
    finally:
        busy.kill()
        busy.wait()
    return {"cores": os.cpu_count(), "idle_s": idle, "loaded_s": loaded,
            "slowdown": {k: loaded[k] / idle[k] for k in runs}}
