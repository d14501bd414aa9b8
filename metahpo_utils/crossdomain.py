"""Transfer across domains: does a strategy fitted on one domain's tasks help on another's?

On the target's meta-test tasks (replayed as in :mod:`metahpo_utils.benchmark`: same seeds, regret,
intervals), the same strategy is fitted on (a) the target domain's own meta-train and meta-val tasks,
over its full space and over the hyperparameters the domains share; (b) the source domain's tasks
only, mapped onto the shared hyperparameters (:class:`~metahpo_utils.strategies.CrossDomainStrategy`),
without and with the guard that notices an unlike task (by meta-features and first observations, or by
first observations alone); (c) both domains' tasks together on the shared hyperparameters. Random search
and TPE on the target space are the references.

    python -m metahpo_utils crossdomain --out runs/crossdomain      # text targets, digits source
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .benchmark import RESULT_COLUMNS, BenchmarkResult, regret_curve, prepare, run_seed, summarize
from .metadataset import MetaTables
from .strategies import CrossDomainStrategy, make_strategy, shared_space

#: The arms of the experiment, in the order the figure and table show them.
ARMS = ("own domain", "own domain, shared hps", "other domain", "other domain + guard",
        "other domain + guard (observations only)", "both domains", "random", "tpe")


def _training(tables: MetaTables) -> list[str]:
    from .tuning import training_tasks

    return training_tasks(tables)


def _meta_test(tables: MetaTables) -> list[str]:
    prov = tables.provenance
    return sorted(prov.loc[prov["split"] == "meta-test", "task"].astype(str))


def _features(tables: MetaTables) -> pd.DataFrame | None:
    if tables.tasks is None or len(tables.tasks.columns) <= 1:
        return None
    return tables.tasks.set_index("task")


def cross_domain_benchmark(target: MetaTables, source: MetaTables, strategy: str = "adaptive-portfolio",
                           budget: int = 50, seeds: int = 5, log: Callable[[str], None] | None = None) -> BenchmarkResult:
    """Replay the target's meta-test tasks with ``strategy`` fitted on each arm's tasks (see :data:`ARMS`).

    Args:
        target: the meta-dataset whose meta-test tasks are tuned (e.g. the committed text one).
        source: the other domain's meta-dataset (e.g. the committed digits one); its meta-train and
            meta-val tasks are used.
        strategy: the strategy every meta-learned arm uses (guard off in "other domain", on elsewhere).
        budget, seeds: trials per run and replicates (session seed ``run_seed(seed, task)``).

    Returns:
        A :class:`~metahpo_utils.benchmark.BenchmarkResult` (``results``, ``summary``) over the arms;
        ``summary["cross_domain"]`` records which tasks each arm was fitted on and the guard's decisions.
    """
    feats = _features(target)
    data = prepare(target.trials, space=target.space, task_features=feats, budget=budget)
    test = [t for t in _meta_test(target) if t in data.tasks]
    own = [t for t in _training(target) if t in data.tasks]
    src = source.trials[source.trials["task"].astype(str).isin(_training(source))]
    src_feats = _features(source)
    own_table = data.table[data.table["task"].isin(own)]
    shared = shared_space(source.space, target.space)
    both = pd.concat([own_table.assign(task="target:" + own_table["task"]), src.assign(task="source:" + src["task"].astype(str))])

    def arm(name: str) -> tuple[Any, bool]:  # (fitted strategy, whether it sees meta-features)
        if name in ("random", "tpe"):
            return make_strategy(name).fit(own_table, feats.loc[own] if feats is not None else None, space=data.space), False
        if name == "own domain":
            return make_strategy(strategy).fit(own_table, feats.loc[own] if feats is not None else None, space=data.space), True
        if name == "own domain, shared hps":
            s = CrossDomainStrategy(strategy).fit(own_table, feats.loc[own] if feats is not None else None, space=shared)
            return s, True
        if name.startswith("other domain"):
            guard = "guard" in name
            s = CrossDomainStrategy(strategy, guard=guard).fit(src, src_feats, space=source.space)
            return s, "observations only" not in name
        # both domains: two meta-feature vocabularies do not stand on one scale, so none are used
        return CrossDomainStrategy(strategy).fit(both, None, space=shared), False

    rows, decisions = [], {}
    for name in ARMS:
        strat, with_features = arm(name)
        view = data if with_features else _without_features(data)
        for task in test:
            for seed in range(seeds):
                reg, bsf = regret_curve(_Recording(strat, decisions, name, task, seed), view, task, budget,
                                         run_seed(seed, task))
                shown = bsf if data.maximize else -bsf  # best so far in the table's own units
                rows += [(name, task, seed, k + 1, shown[k], reg[k]) for k in range(len(reg))]
        if log:
            log(f"{name}: done")
    res = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    summary = summarize(res, data, budget, seeds, list(ARMS))
    guard = {n: _guard_summary(decisions.get(n, [])) for n in ARMS if decisions.get(n)}
    summary["cross_domain"] = {"strategy": strategy, "target_suite": target.meta.get("suite"),
                               "source_suite": source.meta.get("suite"), "meta_test_tasks": test,
                               "own_training_tasks": len(own), "source_training_tasks": int(src["task"].nunique()),
                               "shared_hyperparameters": shared.names, "guard": guard}
    return BenchmarkResult(res, summary, {})


def _without_features(data: Any) -> Any:
    from dataclasses import replace

    return replace(data, features=None)


class _Recording:
    """Starts sessions of a strategy and keeps each session's guard state (for the summary)."""

    def __init__(self, strategy: Any, decisions: dict[str, list], arm: str, task: str, seed: int):
        self.strategy, self.decisions, self.arm, self.task, self.seed = strategy, decisions, arm, task, seed

    def start(self, *args: Any, **kwargs: Any) -> Any:
        session = self.strategy.start(*args, **kwargs)
        guard = getattr(session, "guard", None)
        if isinstance(guard, dict):
            self.decisions.setdefault(self.arm, []).append(guard)
        return session


def _guard_summary(states: list[dict[str, Any]]) -> dict[str, Any]:
    switched = [s["model_based_from"] for s in states if s.get("model_based_from") is not None]
    return {"runs": len(states), "unlike_by_features_runs": sum(bool(s.get("unlike_by_features")) for s in states),
            "model_based_runs": len(switched),
            "median_switch_trial": float(np.median(switched)) if switched else None,
            "novelty_median": _median([s.get("novelty") for s in states])}


def _median(xs: list[Any]) -> float | None:
    v = [float(x) for x in xs if x is not None]
    return float(np.median(v)) if v else None


def write_cross_domain(result: BenchmarkResult, out: str | Path) -> dict[str, Path]:
    """results.csv, summary.json and the figure ``cross_domain`` (PNG and PDF) into ``out``."""
    import matplotlib.pyplot as plt

    from . import plotting as P
    from .benchmark import write_results

    paths = write_results(result, out)
    fig = P.cross_domain_figure(result.results, result.summary)
    paths["figure"] = P.savefig(fig, "cross_domain", out)["cross_domain_png"]
    plt.close(fig)
    return paths
