"""At how many budgets 1..B each strategy has the lowest mean normalized regret (ties counted for each), and
at how many the default is at or below the best of the named peers.

    python scripts/best_budgets.py runs/bench_hpobench/results.csv
"""
from __future__ import annotations

import sys

import pandas as pd

PEERS = ["portfolio", "st-zeroshot", "st-boundingbox", "st-quantile", "tpe", "ws-cmaes"]


def main(path: str, default: str = "adaptive-portfolio") -> None:
    r = pd.read_csv(path)
    m = r.groupby(["strategy", "task", "trial"])["normalized_regret"].mean().groupby(["strategy", "trial"]).mean().unstack(0)
    best = m.min(axis=1)
    wins = {s: int((m[s] <= best + 1e-12).sum()) for s in m.columns}
    print("lowest mean regret at (of", len(m), "budgets):", ", ".join(f"{s} {n}" for s, n in sorted(wins.items(), key=lambda x: -x[1]) if n))
    peers = [p for p in PEERS if p in m.columns]
    behind = m.index[m[default] > m[peers].min(axis=1) + 1e-12].tolist()
    print(f"{default} at or below the best peer ({', '.join(peers)}) at {len(m) - len(behind)} of {len(m)}; behind at trials {behind}")


if __name__ == "__main__":
    main(*sys.argv[1:])
