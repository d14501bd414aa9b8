"""Paper-style plotting: one style file, one colour and line style per strategy, pure data
builders (unit-tested) and thin drawing functions that return the Axes."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

STYLE = Path(__file__).resolve().parent / "metahpo.mplstyle"
#: page-width presets (inches): one column, two columns
SIZES = {"column": (3.4, 2.4), "page": (7.0, 2.8)}

_OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
#: one colour and line style per strategy, shared by every figure
STRATEGY_STYLES: dict[str, dict[str, str]] = {
    "random": {"color": "#7f7f7f", "ls": "--"}, "grid": {"color": "#bdbdbd", "ls": ":"},
    "tpe": {"color": _OKABE_ITO[5], "ls": "--"}, "cmaes": {"color": _OKABE_ITO[6], "ls": "--"},
    "ws-cmaes": {"color": _OKABE_ITO[1], "ls": "-."}, "taskset": {"color": "#000000", "ls": ":"},
    "portfolio": {"color": _OKABE_ITO[4], "ls": "-"}, "adaptive-portfolio": {"color": _OKABE_ITO[3], "ls": "-"},
    "knn": {"color": _OKABE_ITO[2], "ls": "-"}, "mapping": {"color": "#8c564b", "ls": "-"},
    "mtl": {"color": _OKABE_ITO[0], "ls": "-"}, "transfer": {"color": "#17becf", "ls": "-"},
    "st-zeroshot": {"color": "#9467bd", "ls": "-."}, "st-boundingbox": {"color": "#bcbd22", "ls": "-."},
    "st-quantile": {"color": "#e377c2", "ls": "-."},
}


def style(name: str) -> dict[str, str]:
    """Colour and line style of a strategy; ``name+sh`` (successive halving) is dotted in the same colour."""
    if name.endswith("+sh"):
        return {**style(name[:-3]), "ls": ":"}
    return STRATEGY_STYLES.get(name, {"color": "#333333", "ls": "-"})


@dataclass
class Curves:
    """Mean and 95% interval per strategy over trials: arrays ``(trials,)``."""

    trials: np.ndarray
    mean: dict[str, np.ndarray]
    low: dict[str, np.ndarray]
    high: dict[str, np.ndarray]


def benchmark_curves(results: pd.DataFrame, column: str = "normalized_regret") -> Curves:
    """Mean with a 95% normal interval over (task, seed) runs, per strategy and trial."""
    if column == "rank":
        results = results.assign(rank=results.groupby(["task", "seed", "trial"])["normalized_regret"].rank(method="average"))
    g = results.groupby(["strategy", "trial"])[column]
    stats = g.agg(["mean", "std", "count"]).reset_index()
    trials = np.sort(results["trial"].unique())
    mean, low, high = {}, {}, {}
    for s, d in stats.groupby("strategy", sort=False):
        d = d.set_index("trial").reindex(trials)
        half = 1.96 * d["std"].fillna(0) / np.sqrt(d["count"].clip(lower=1))
        mean[s], low[s], high[s] = d["mean"].to_numpy(), (d["mean"] - half).to_numpy(), (d["mean"] + half).to_numpy()
    order = sorted(mean, key=lambda s: list(results["strategy"].unique()).index(s))
    return Curves(trials, {s: mean[s] for s in order}, low, high)


def draw_curves(curves: Curves, ax=None, ylabel: str = "normalized regret", log: bool = True):  # noqa: ANN001
    """Draw :class:`Curves` (mean line, shaded 95% interval) and return the Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=SIZES["column"])
    for s, m in curves.mean.items():
        st = style(s)
        ax.plot(curves.trials, m, color=st["color"], ls=st["ls"], label=s)
        ax.fill_between(curves.trials, np.maximum(curves.low[s], 1e-6) if log else curves.low[s], curves.high[s],
                        color=st["color"], alpha=0.12, lw=0)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("trials")
    ax.set_ylabel(ylabel)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 if len(curves.mean) <= 8 else 2)
    return ax


def tuning_curves(results: pd.DataFrame, x: str = "trial", points: int = 60) -> Curves:
    """Best validation accuracy so far per strategy against trials (``x="trial"``) or wall-clock
    seconds (``x="seconds"``, a log-spaced grid; before its first result a run holds the
    majority-class ``baseline``, after its last it keeps its final value).

    The line is the mean over (task, seed) runs. The band is a 95% *within-task* interval: each run
    is centred on its task's mean over all strategies before the spread is taken, so that the band
    shows how sure the difference between strategies is, not how much the tasks differ in difficulty.

    Args:
        results: the rows of :func:`metahpo_utils.tuning.compare_tuning`.
    """
    if x not in ("trial", "seconds"):
        raise ValueError(f"tuning_curves: x must be 'trial' or 'seconds' (got {x!r})")
    runs = [(key, r.sort_values("elapsed_s" if x == "seconds" else "trial"))
            for key, r in results.groupby(["strategy", "task", "seed"], sort=False)]
    if x == "trial":
        grid = np.sort(results["trial"].unique()).astype(float)
    else:
        first = [r["elapsed_s"][r["best_so_far"].notna()].min() for _, r in runs]
        lo = min(first) if "baseline" in results else max(first)
        grid = np.geomspace(max(lo, 1e-3), max(r["elapsed_s"].max() for _, r in runs), points)
    values = {}  # (strategy, task, seed) -> (grid,)
    for key, r in runs:
        b = r["best_so_far"].to_numpy(dtype=float)
        pos = r["trial" if x == "trial" else "elapsed_s"].to_numpy(dtype=float)
        i = np.searchsorted(pos, grid, side="right") - 1  # the last result at or before each grid point
        v = np.where(i >= 0, b[np.maximum(i, 0)], np.nan)
        if "baseline" in r:
            v = np.where(np.isnan(v), float(r["baseline"].iloc[0]), v)
        values[key] = v
    task_mean = {t: np.nanmean([v for (s, tt, _), v in values.items() if tt == t], axis=0)
                 for t in results["task"].unique()}  # (grid,) per task, over strategies and seeds
    mean, low, high = {}, {}, {}
    for s in results["strategy"].unique():
        v = np.array([val for (ss, _, _), val in values.items() if ss == s])  # (runs, grid)
        c = np.array([val - task_mean[t] for (ss, t, _), val in values.items() if ss == s])
        n = np.sum(~np.isnan(v), 0).clip(min=1)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # columns without any result yet
            m = np.nanmean(v, 0)
            half = 1.96 * np.nanstd(c, 0, ddof=1) / np.sqrt(n) if len(v) > 1 else np.zeros_like(m)
        mean[s], low[s], high[s] = m, m - half, m + half
    return Curves(grid, mean, low, high)


def draw_new_task_tuning(results: pd.DataFrame, axes=None):  # noqa: ANN001
    """Two panels: best validation accuracy vs trials and vs wall-clock seconds; returns the Axes."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=SIZES["page"], sharey=True)
    for ax, x, label in ((axes[0], "trial", "trials"), (axes[1], "seconds", "wall-clock seconds")):
        curves = tuning_curves(results, x)
        for s, m in curves.mean.items():
            st = style(s)
            ax.plot(curves.trials, m, color=st["color"], ls=st["ls"], label=s)
            ax.fill_between(curves.trials, curves.low[s], curves.high[s], color=st["color"], alpha=0.12, lw=0)
        ax.set_xlabel(label)
        if x == "seconds":
            from matplotlib.ticker import FormatStrFormatter, NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(NullFormatter())
    axes[0].set_ylabel("best validation accuracy")
    axes[1].legend(loc="lower right", fontsize="small")
    return axes


def new_task_tuning_figure(results: pd.DataFrame, out: str | Path, name: str = "new_task_tuning") -> dict[str, Path]:
    """Write the new-task tuning figure (see :func:`draw_new_task_tuning`) into ``out``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    with plt.style.context(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=SIZES["page"], sharey=True)
        draw_new_task_tuning(results, axes)
        paths = savefig(fig, name, out)
        plt.close(fig)
    return paths


def savefig(fig, name: str, folder: str | Path = "figures") -> dict[str, Path]:  # noqa: ANN001
    """Write ``name``.png and ``name``.pdf into ``folder``; returns both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for ext in ("png", "pdf"):
        paths[f"{name}_{ext}"] = folder / f"{name}.{ext}"
        fig.savefig(paths[f"{name}_{ext}"])
    return paths


def benchmark_figures(results: pd.DataFrame, out: str | Path) -> dict[str, Path]:
    """Regret-vs-trials and rank-vs-trials figures of a benchmark run."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    paths = {}
    with plt.style.context(STYLE):
        for column, name, label, log in (("normalized_regret", "regret_curves", "normalized regret", True),
                                         ("rank", "rank_curves", "average rank", False)):
            fig, ax = plt.subplots(figsize=SIZES["page"])
            draw_curves(benchmark_curves(results, column), ax, label, log)
            paths.update(savefig(fig, name, out))
            plt.close(fig)
    return paths
