"""Does this machine regenerate the committed digits meta-dataset? Collect it afresh, exactly as `make reproduce`
does (48 tasks x 64 configurations x 10 epochs, sequential trainer, 2 Dask workers), into OUT (default
``runs/compare``), and compare every row with the committed one: objectives, statuses and validation-loss curves.

    python scripts/compare_collection.py [OUT]
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from metahpo_utils.metadataset import collect, default_metadataset, export_tables, load_exported
from metahpo_utils.reproduce import DEVICE, REPRODUCE as r


def main(out: Path) -> None:
    t0 = time.perf_counter()
    collect(r["suite"], n_tasks=r["n_tasks"], n_configs=r["n_configs"], epochs=r["epochs"], store=out / "digits.sqlite",
            seed=r["seed"], workers=2, trainer="sequential", device=DEVICE, progress=False)
    export_tables(out / "digits.sqlite", out / "digits", "csv")
    new = load_exported(out / "digits").trials.set_index(["task", "config_id"]).sort_index()
    old = default_metadataset("digits").trials.set_index(["task", "config_id"]).sort_index()
    d = (new["objective"] - old["objective"]).abs()
    loss = [len(a) != len(b) or bool(np.any(np.asarray(a) != np.asarray(b)))
            for a, b in zip(new["val_loss_curve"], old["val_loss_curve"])]
    print(f"{time.perf_counter() - t0:.0f} s; {len(new)} rows: objective differs in {int((d > 0).sum())} (max {d.max():.4f}), "
          f"status in {int((new['status'] != old['status']).sum())}, validation-loss curve in {int(np.sum(loss))}")
    if (d > 0).any():
        worst = d[d > 0].sort_values(ascending=False).head(10)
        cfg = old.loc[worst.index, ["lr", "optimizer"]]
        print(worst.to_frame("objective difference").join(cfg).to_string())


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/compare"))
