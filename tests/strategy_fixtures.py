"""Synthetic meta-datasets with known structure, built in code."""
from __future__ import annotations

import numpy as np
import pandas as pd
from optuna.distributions import CategoricalDistribution

from metahpo_utils.space import SearchSpace, float_param


def shifting_space() -> SearchSpace:
    return SearchSpace({"x": float_param(0.0, 1.0), "lr": float_param(1e-4, 1.0, log=True),
                        "opt": CategoricalDistribution(["a", "b"])})


def shifting_table(n_tasks: int = 12, n_configs: int = 60, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tasks whose optimum in ``x`` equals their meta-feature ``f``; ``lr`` best near 1e-2 everywhere;
    ``opt='a'`` slightly better. The same design of configurations for every task."""
    rng = np.random.default_rng(seed)
    space = shifting_space()
    configs = space.design(n_configs, seed=seed)
    fs = np.linspace(0.05, 0.95, n_tasks)
    rows, feats = [], []
    for t, f in enumerate(fs):
        for cid, c in enumerate(configs):
            v = np.exp(-((c["x"] - f) ** 2) / 0.02) + 0.3 * np.exp(-((np.log10(c["lr"]) + 2) ** 2) / 2) \
                + (0.1 if c["opt"] == "a" else 0.0) + 0.01 * rng.standard_normal()
            rows.append({"task": f"t{t:02d}", **c, "objective": v, "config_id": cid})
        feats.append({"task": f"t{t:02d}", "f": f, "noise": rng.random()})
    return pd.DataFrame(rows), pd.DataFrame(feats).set_index("task")


def target_rows(f: float, n_configs: int = 60, seed: int = 0) -> pd.DataFrame:
    space = shifting_space()
    configs = space.design(n_configs, seed=seed)
    vals = [np.exp(-((c["x"] - f) ** 2) / 0.02) + 0.3 * np.exp(-((np.log10(c["lr"]) + 2) ** 2) / 2)
            + (0.1 if c["opt"] == "a" else 0.0) for c in configs]
    return pd.DataFrame(configs).assign(objective=vals)
