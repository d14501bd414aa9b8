"""Where the replay benchmark's Dask speed-up goes (the workload of `perf --only benchmark`): the units' own
seconds in one process and on 2 workers side by side, and the cost of starting a LocalCluster with the package
imported on its workers, and of closing it.

    python scripts/dask_overhead.py
"""
from __future__ import annotations

import logging
import time

from metahpo_utils import benchmark as bm


def timed_unit(unit, data):
    t = time.perf_counter()
    res = bm.replay_unit(unit, data)
    res["wall"] = time.perf_counter() - t
    return res


def _imports() -> float:
    t = time.perf_counter()
    import torch  # noqa: F401

    import metahpo_utils.benchmark  # noqa: F401
    from metahpo_utils.strategies import peers  # noqa: F401
    return time.perf_counter() - t


def main() -> None:
    from distributed import Client, LocalCluster

    from metahpo_utils.collection import run_jobs
    from metahpo_utils.metadataset import default_metadataset
    from metahpo_utils.perf import BENCHMARK_DASK as b

    m = default_metadataset("digits")
    data = bm.prepare(m.trials, space=m.space, task_features=m.tasks.set_index("task") if "task" in m.tasks else m.tasks)
    units = bm.make_units(bm.folds(data.tasks, b["holdout"]), b["strategies"], b["budget"], b["seeds"])
    units = sorted(bm._split_units(units), key=lambda u: -bm._unit_cost(u))
    sums = {}
    for w in (1, b["workers"]):
        t0 = time.perf_counter()
        res = list(run_jobs(units, w, fn=timed_unit, shared=data))
        sums[w] = sum(r["wall"] for r in res)
        print(f"{w} worker(s): wall {time.perf_counter() - t0:.1f} s, the {len(res)} units' own seconds {sums[w]:.1f}")
    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=b["workers"], threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR)
    client = Client(cluster)
    client.run(_imports)  # already imported where the workers load this script as their main module
    t2 = time.perf_counter()
    client.close()
    cluster.close()
    t3 = time.perf_counter()
    over = t3 - t0
    print(f"cluster start with the package imported on the workers {t2 - t0:.1f} s, close {t3 - t2:.1f} s")
    k = b["workers"]
    print(f"best speed-up these allow: {sums[1]:.1f} / ({sums[k]:.1f} / {k} + {over:.1f}) = x{sums[1] / (sums[k] / k + over):.2f}")


if __name__ == "__main__":
    main()
