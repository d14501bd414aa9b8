"""Every paper figure from a meta-dataset (and benchmark / tuning results): ``make_figures`` and
``python -m metahpo_utils figures --store PATH --out figures/``.

Each figure is a data builder (in :mod:`metahpo_utils.plotting` or :mod:`metahpo_utils.interpret`)
and a thin drawing function; this module only wires them to one meta-dataset. Benchmark and
new-task tuning results are read from earlier runs when given (``benchmark=``, ``tuning=``), and
otherwise computed here with a smaller protocol (said in the log).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from . import plotting as P
from .errors import MetahpoError
from .domains import domain_of_meta
from .tuning import fit_strategy, load_metadataset

#: The figure set, in the order it is made.
FIGURES = ("task_suite", "metadataset_landscape", "meta_training", "regret_curves", "rank_curves",
           "equivalent_trials", "new_task_tuning", "importance", "importance_by_group", "importance_vs_metafeatures",
           "partial_dependence", "mapping", "task_similarity")

#: Benchmark strategies when ``figures`` runs the benchmark itself.
BENCHMARK_STRATEGIES = ("random", "tpe", "portfolio", "adaptive-portfolio", "knn", "mtl", "transfer", "mapping")


class FigureError(MetahpoError, ValueError):
    """Bad input to :func:`make_figures`."""


def _features(tables) -> pd.DataFrame | None:  # noqa: ANN001
    t = tables.tasks
    if t is None or len(t.columns) <= 1:
        return None
    return t.set_index("task") if "task" in t.columns else t


def _task_properties(tables) -> pd.DataFrame:  # noqa: ANN001
    """Meta-features joined with the numeric recipe columns of the provenance (k, n_per_class, label noise, ...)."""
    feats = _features(tables)
    out = feats.copy() if feats is not None else pd.DataFrame(index=sorted(tables.trials["task"].unique()))
    prov = tables.provenance
    if prov is not None and "task" in prov:
        num = prov.set_index("task").select_dtypes("number").drop(columns=["seed"], errors="ignore")
        num = num.loc[:, num.nunique() > 1]
        out = out.join(num[[c for c in num.columns if c not in out.columns]], how="left")
    return out


def make_figures(meta: Any = None, out: str | Path = "figures", benchmark: str | Path | None = None,
                 tuning: str | Path | None = None, fast: bool = False, only: tuple[str, ...] | None = None,
                 seed: int = 0, log: Callable[[str], None] = print) -> dict[str, list[Path]]:
    """Write the figure set into ``out`` (PNG and PDF each).

    Args:
        meta: the meta-dataset (``None``: the committed digits one; an exported folder; a store).
        out: output folder.
        benchmark: a folder with a benchmark's ``results.csv`` and ``summary.json`` (else run here).
        tuning: a folder with a ``tune`` comparison's ``results.csv`` (else run here).
        fast: smaller protocols and surrogate training (for tests and notebooks).
        only: a subset of :data:`FIGURES`.
        seed: seed of everything computed here.
        log: where progress lines go.

    Returns:
        Figure name -> the files written.
    """
    import matplotlib.pyplot as plt  # the caller's backend stays (figures are saved and closed, never shown)

    unknown = sorted(set(only or ()) - set(FIGURES))
    if unknown:
        raise FigureError(f"figures: unknown figure(s) {unknown} (available: {', '.join(FIGURES)})")
    wanted = [f for f in FIGURES if only is None or f in only]
    tables = load_metadataset(meta)
    domain = domain_of_meta(tables.meta)
    out = Path(out)
    cache: dict[str, Any] = {}
    written: dict[str, list[Path]] = {}

    def fitted(name: str, **kw: Any):  # noqa: ANN202
        if name not in cache:
            from .strategies import make_strategy

            cache[name] = fit_strategy(make_strategy(name, **kw), tables)
        return cache[name]

    def surrogate_kw() -> dict[str, Any]:
        return {"epochs": 200, "holdout": 0.2} if fast else {"holdout": 0.2}

    with plt.style.context(P.STYLE):
        for name in wanted:
            builder = _BUILDERS[name]
            fig = builder(tables, cache=cache, fitted=fitted, surrogate_kw=surrogate_kw, benchmark=benchmark,
                          tuning=tuning, fast=fast, seed=seed, log=log, out=out, domain=domain)
            if fig is None:
                continue
            written[name] = list(P.savefig(fig, name, out).values())
            plt.close(fig)
            log(f"figure {name}: {written[name][0]}")
    return written


# ---------------------------------------------------------------- one builder per figure
def _fig_task_suite(tables, log, seed, **_):  # noqa: ANN001, ANN202
    import matplotlib.pyplot as plt

    from .choices import SUITE_NAMES
    from .data.tasks import build_suite
    from .domains import domain_of_suite

    m = tables.meta
    if m.get("suite") not in SUITE_NAMES:
        log("figure task_suite: skipped (the meta-dataset does not come from a built-in suite)")
        return None
    suite = build_suite(m["suite"], n_tasks=m.get("n_tasks"), seed=m.get("seed", 0))
    names = [suite.splits[s][0] for s in ("meta-train", "meta-val", "meta-test")] + [suite.splits["meta-train"][1]]
    feats = _features(tables)
    view = P.task_suite_data([suite.task(n) for n in names], feats if feats is not None else pd.DataFrame(index=names),
                             features=domain_of_suite(m["suite"]).suite_features)
    fig = plt.figure(figsize=(P.SIZES["page"][0], 0.75 * len(names) + 1.6))
    P.draw_task_suite(view, fig)
    return fig


def _fig_metadataset_landscape(tables, domain, **_):  # noqa: ANN001, ANN202
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=P.SIZES["page"], gridspec_kw={"width_ratios": [1.4, 1]}, layout="constrained")
    P.draw_landscape(P.landscape_data(tables.trials), axes, metric=domain.objective_name)
    return fig


def _fig_meta_training(tables, fitted, surrogate_kw, domain, **_):  # noqa: ANN001, ANN202
    import matplotlib.pyplot as plt

    strategies = {n: fitted(f"{n}", **surrogate_kw()) for n in ("mtl", "transfer")}
    fig, ax = plt.subplots(figsize=P.SIZES["column"])
    P.draw_meta_training(P.meta_training_data(strategies), ax, metric=domain.objective_name)
    return fig


def _benchmark(tables, cache, benchmark, fast, log, out, **_) -> tuple[pd.DataFrame, dict]:  # noqa: ANN001
    if "benchmark" in cache:
        return cache["benchmark"]
    if benchmark is not None:
        folder = Path(benchmark)
        if not (folder / "results.csv").exists() or not (folder / "summary.json").exists():
            raise FigureError(f"figures: benchmark={folder} lacks results.csv or summary.json")
        cache["benchmark"] = (pd.read_csv(folder / "results.csv"), json.loads((folder / "summary.json").read_text()))
        return cache["benchmark"]
    from .benchmark import prepare, run_benchmark

    budget, seeds = (10, 1) if fast else (50, 3)
    names = ("random", "portfolio", "adaptive-portfolio") if fast else BENCHMARK_STRATEGIES
    log(f"running the replay benchmark here ({', '.join(names)}; budget {budget}, {seeds} seed(s), meta-test split)")
    data = prepare(tables.trials, space=tables.space, task_features=_features(tables), budget=budget)
    prov = tables.provenance
    splits = prov.assign(task=prov["task"].astype(str)).set_index("task")["split"] if "split" in prov else None
    holdout = "split" if splits is not None and (splits == "meta-test").any() else "kfold:5"
    kw = {"mtl": {"epochs": 200}, "transfer": {"epochs": 200}} if fast else None
    res = run_benchmark(data, list(names), budget, seeds, holdout, splits=splits, progress=False, strategy_kwargs=kw)
    cache["benchmark"] = (res.results, res.summary)
    return cache["benchmark"]


def _fig_regret_curves(tables, **kw):  # noqa: ANN001, ANN202
    return _curves_figure(*_benchmark(tables, **kw), "normalized_regret", "normalized regret", True)


def _fig_rank_curves(tables, **kw):  # noqa: ANN001, ANN202
    return _curves_figure(*_benchmark(tables, **kw), "rank", "average rank", False)


def _curves_figure(results: pd.DataFrame, summary: dict, column: str, label: str, log: bool):  # noqa: ANN202
    return P.curves_figure(P.benchmark_curves(results, column, summary), label, log)


def _fig_equivalent_trials(tables, **kw):  # noqa: ANN001, ANN202
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=P.SIZES["page"])
    P.draw_equivalent_trials(P.equivalent_trials_data(_benchmark(tables, **kw)[1]), ax)
    return fig


def _fig_new_task_tuning(tables, tuning, fast, seed, log, domain, **_):  # noqa: ANN001, ANN202
    import matplotlib.pyplot as plt

    from .tuning import compare_tuning

    if tuning is not None:
        path = Path(tuning) / "results.csv"
        if not path.exists():
            raise FigureError(f"figures: tuning={tuning} lacks results.csv")
        results = pd.read_csv(path)
    else:
        prov = tables.provenance
        test = sorted(prov.loc[prov["split"] == "meta-test", "task"]) if "split" in prov else []
        if not test:
            log("figure new_task_tuning: skipped (no meta-test tasks to tune)")
            return None
        tasks, seeds, budget = (test[:2], [seed], 5) if fast else (test[:3], [seed, seed + 1, seed + 2], 20)
        log(f"tuning {len(tasks)} meta-test tasks here (adaptive-portfolio, random, tpe; {budget} trials, {len(seeds)} seed(s))")
        results = compare_tuning(tasks, ["adaptive-portfolio", "random", "tpe"], seeds, budget, meta=tables,
                                 epochs=2 if fast else None)
    metric = domain.objective_name
    if domain.normalize_across_tasks:  # one scale: 0 = the untrained baseline, 1 = the best seen on the task
        from .tuning import normalize_results

        results, metric = normalize_results(results, tables), f"{metric} (normalized per task)"
    fig, axes = plt.subplots(1, 2, figsize=P.SIZES["page"], sharey=True)
    P.draw_new_task_tuning(results, axes, metric)
    return fig


def _importance(tables, cache, fast, seed, **_) -> pd.DataFrame:  # noqa: ANN001
    from .interpret import importance_per_task

    if "importance" not in cache:
        tasks = sorted(tables.trials["task"].unique())
        cache["importance"] = importance_per_task(tables.trials, tables.space, seed=seed,
                                                  tasks=tasks[:8] if fast else None)
    return cache["importance"]


def _fig_importance(tables, **kw):  # noqa: ANN001, ANN202
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=P.SIZES["column"])
    P.draw_importance(_importance(tables, **kw), ax)
    return fig


def _fig_importance_by_group(tables, domain, log, **kw):  # noqa: ANN001, ANN202
    import matplotlib.pyplot as plt

    from .interpret import importance_by_group

    col, prov = domain.task_group, tables.provenance
    if col is None or prov is None or col not in prov or prov[col].nunique() < 2:
        log("figure importance_by_group: skipped (the tasks form no groups: one environment or kind of task)")
        return None
    gi = importance_by_group(_importance(tables, log=log, **kw), prov.set_index(prov["task"].astype(str))[col])
    fig, ax = plt.subplots(figsize=(P.SIZES["column"][0] + 0.4 * len(gi.n), 0.28 * len(gi.mean) + 1.3),
                           layout="constrained")
    P.draw_importance_by_group(gi, ax, group_label=col)
    return fig


def _fig_importance_vs_metafeatures(tables, **kw):  # noqa: ANN001, ANN202
    import matplotlib.pyplot as plt

    from .interpret import importance_vs_metafeatures

    props = _task_properties(tables)
    keep = [c for c in ("n_per_class", "k", "label_noise", "noise_std", "log_n_examples", "log_examples_per_class",
                        "class_imbalance", "landmark_1nn", "landmark_logreg", "pca_95_fraction") if c in props.columns]
    corr = importance_vs_metafeatures(_importance(tables, **kw), props[keep] if keep else props)
    fig, ax = plt.subplots(figsize=(P.SIZES["page"][0], 0.3 * corr["hyperparameter"].nunique() + 1.4))
    P.draw_importance_vs_metafeatures(corr, ax)
    return fig


def _fig_partial_dependence(tables, fitted, surrogate_kw, domain, **_):  # noqa: ANN001, ANN202
    import matplotlib.pyplot as plt

    from .interpret import partial_dependence, surrogate_predictor

    mtl = fitted("mtl", **surrogate_kw())
    predict = surrogate_predictor(mtl)
    names = tables.space.names
    one = [n for n in ("lr", "weight_decay", "dropout", "gamma", "ent_coef") if n in names][:3] or names[:3]
    fig, axes = plt.subplots(1, len(one) + 1, figsize=(P.SIZES["page"][0], 2.4), layout="constrained")
    bg = mtl.meta.pool
    for i, (ax, name) in enumerate(zip(axes, one)):
        P.draw_partial_dependence(partial_dependence(predict, tables.space, name, bg), ax, ylabel=i == 0,
                                  metric=domain.objective_name)
    pair = tuple(one[:2]) if len(one) >= 2 else tuple(names[:2])
    P.draw_partial_dependence(partial_dependence(predict, tables.space, pair, bg, ice=False), axes[-1],
                              metric=domain.objective_name)
    return fig


def _fig_mapping(tables, fitted, log, domain, **_):  # noqa: ANN001, ANN202
    import matplotlib.pyplot as plt

    from .interpret import mapping_data

    if _features(tables) is None:
        log("figure mapping: skipped (no meta-features)")
        return None
    strategy = fitted("mapping")
    candidates = (("log_examples_per_class", "weight_decay"), ("landmark_1nn", "lr"),  # images and vectors
                  ("log_episode_steps", "gamma"), ("landmark_linear_gain", "lr"))  # RL: horizon -> discount
    pairs = [(f, h) for f, h in candidates if f in strategy.meta.feature_names and h in tables.space.names][:2]
    if not pairs:
        log("figure mapping: skipped (needs one of the meta-feature / hyperparameter pairs "
            + ", ".join(f"{f} / {h}" for f, h in candidates) + ")")
        return None
    fig, axes = plt.subplots(1, len(pairs), figsize=P.SIZES["page"] if len(pairs) > 1 else P.SIZES["column"],
                             layout="constrained")
    for ax, (f, h) in zip(np.atleast_1d(axes), pairs):
        P.draw_mapping(mapping_data(strategy, tables, f, h), ax,
                       metric=None if domain.normalize_across_tasks else domain.objective_name)
    return fig


def _fig_task_similarity(tables, fitted, surrogate_kw, seed, log, **_):  # noqa: ANN001, ANN202
    from .interpret import similarity_agreement, task_similarity

    if _features(tables) is None:
        log("figure task_similarity: skipped (no meta-features)")
        return None
    mtl = fitted("mtl", **surrogate_kw())
    df = task_similarity(mtl.meta, mtl=mtl, seed=seed, provenance=tables.provenance)
    axes = P.draw_task_similarity(df, color_by="best_lr" if "best_lr" in df else df.columns[-1])
    log(f"task similarity: meta-feature map and mtl-head map agree with Spearman {similarity_agreement(df):.2f}")
    return np.atleast_1d(axes)[0].figure


_BUILDERS: dict[str, Callable[..., Any]] = {name: globals()[f"_fig_{name}"] for name in FIGURES}

__all__ = ["FIGURES", "FigureError", "make_figures"]
