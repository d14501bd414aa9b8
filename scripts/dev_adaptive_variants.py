"""Development numbers of the default strategy (issue 16): adaptive-portfolio with its model phase chosen
in fit (``model_from="auto"``) and fixed at 4, 10 or never, plus reference strategies, replayed on one table.

    python scripts/dev_adaptive_variants.py TABLE STRATEGIES SEEDS OUT.csv

TABLE: ``hpobench``, ``hpolib_log``, ``nb201`` (exported first with ``python -m metahpo_utils hpobench
[--benchmark hpolib|nasbench201] --out runs/...``, see the README) or a committed suite (``digits``, ``text``,
``rl``: its meta-test tasks, fitted on meta-train + meta-val). ``hpolib_log`` is the HPOLib table with
log10(val_loss) as the objective: the raw loss has diverged runs at 10^2..10^7, which make every normalized
regret near 0. Prints regret at 1/5/10/25/50 (mean over tasks and seeds) and writes results.csv rows.
"""
from __future__ import annotations

import functools
import sys
import time

import numpy as np
import pandas as pd

from metahpo_utils.benchmark import run_benchmark
from metahpo_utils.benchmark_data import prepare
from metahpo_utils.space import load_space
from metahpo_utils.strategies import STRATEGIES
from metahpo_utils.strategies.meta import AdaptivePortfolioStrategy
from metahpo_utils.tables import default_metadataset

VARIANTS = {"ap-m4": {"model_from": 4}, "ap-m10": {"model_from": 10}, "ap-none": {"model_from": None}}
for _name, _kw in VARIANTS.items():
    STRATEGIES[_name] = functools.partial(AdaptivePortfolioStrategy, **_kw)


def load(name: str):
    if name == "hpobench":
        return prepare("runs/hpobench_mlp_2000.parquet", maximize=True,
                       space=load_space("runs/hpobench_mlp_2000_space.json")), "loo", None
    if name == "hpolib_log":
        t = pd.read_parquet("runs/hpolib_2000.parquet")
        t["objective"] = np.log10(t["objective"])
        return prepare(t, maximize=False, space=load_space("runs/hpolib_2000_space.json")), "loo", None
    if name == "nb201":
        return prepare("runs/nb201.parquet", maximize=True, space=load_space("runs/nb201_space.json")), "loo", None
    m = default_metadataset(name)
    t = m.trials.drop(columns=[c for c in ("curve", "val_loss_curve") if c in m.trials])
    data = prepare(t, maximize=True, space=m.space, task_features=m.tasks.set_index("task"))
    return data, "split", m.provenance.set_index("task")["split"]


if __name__ == "__main__":
    name, strategies, seeds, out = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]), sys.argv[4]
    data, holdout, splits = load(name)
    t0 = time.time()
    res = run_benchmark(data, strategies, 50, seeds, holdout, splits=splits, progress=False)
    res.results.to_csv(out, index=False)
    print(name, f"{time.time() - t0:.0f}s", flush=True)
    for st in strategies:
        r = res.summary["strategies"][st]["regret"]
        print(f"{st:20s}", " ".join(f"{r[k]:.4f}" if r.get(k) is not None else "  n/a " for k in ("1", "5", "10", "25", "50")))
