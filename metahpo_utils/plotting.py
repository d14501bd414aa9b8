"""Paper-style plotting: one style file, one colour and line style per strategy, pure data
builders (unit-tested) and thin drawing functions that return the Axes."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
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
#: the arms of the cross-domain experiment (:mod:`metahpo_utils.crossdomain`), drawn with random and TPE
ARM_STYLES: dict[str, dict[str, str]] = {
    "own domain": {"color": _OKABE_ITO[2], "ls": "-"}, "own domain, shared hps": {"color": _OKABE_ITO[2], "ls": "--"},
    "other domain": {"color": _OKABE_ITO[3], "ls": "-"}, "other domain + guard": {"color": _OKABE_ITO[0], "ls": "-"},
    "other domain + guard (observations only)": {"color": _OKABE_ITO[0], "ls": ":"},
    "both domains": {"color": _OKABE_ITO[4], "ls": "-."},
}


def style(name: str) -> dict[str, str]:
    """Colour and line style of a strategy; ``name+sh`` (successive halving) is dotted in the same colour,
    ``name+mf`` (the learning-curve model's early stopping) dashed."""
    if name.endswith("+sh"):
        return {**style(name[:-3]), "ls": ":"}
    if name.endswith("+mf"):
        return {**style(name[:-3]), "ls": "--"}
    return STRATEGY_STYLES.get(name) or ARM_STYLES.get(name, {"color": "#333333", "ls": "-"})


@dataclass
class Curves:
    """Mean and 95% interval per strategy over trials: arrays ``(trials,)``; ``reference``: named
    curves drawn as thin black lines without a band (e.g. random search's exact expectation)."""

    trials: np.ndarray
    mean: dict[str, np.ndarray]
    low: dict[str, np.ndarray]
    high: dict[str, np.ndarray]
    reference: dict[str, np.ndarray] = field(default_factory=dict)


def benchmark_curves(results: pd.DataFrame, column: str = "normalized_regret",
                     summary: dict | None = None) -> Curves:
    """Mean over tasks per strategy and trial, with a 95% bootstrap interval over tasks (seeds are
    averaged within a task first: tasks are the unit of replication, as in ``summary.json``).
    With a benchmark ``summary`` that holds it, the exact expected regret of random search is
    added as a reference curve (regret only)."""
    from .benchmark import per_task_curves, task_bootstrap

    budget = int(results["trial"].max())
    trials = np.arange(1, budget + 1)
    mean, low, high = {}, {}, {}
    for s, wide in per_task_curves(results, column, budget).items():
        mean[s] = wide.mean(skipna=False).to_numpy()
        low[s], high[s] = task_bootstrap(wide.to_numpy())
    ref = {}
    curve = ((summary or {}).get("random_expected") or {}).get("curve")
    if column == "normalized_regret" and curve:
        ref["random (exact expectation)"] = np.asarray(curve[:budget], dtype=float)
    return Curves(trials, mean, low, high, ref)


#: The main comparison of the headline figures: the default strategy, the plain portfolio, the best-known
#: peer (Syne Tune's zero-shot), random search and TPE; every other strategy goes to a second panel.
MAIN_STRATEGIES = ("adaptive-portfolio", "portfolio", "st-zeroshot", "random", "tpe")


def split_curves(curves: Curves, main: tuple[str, ...] = MAIN_STRATEGIES) -> tuple[Curves, Curves]:
    """The main comparison and the rest, as two :class:`Curves`; random search (the baseline) and the
    reference curves appear in both."""
    def pick(names: list[str]) -> Curves:
        return Curves(curves.trials, {s: curves.mean[s] for s in names}, {s: curves.low[s] for s in names},
                      {s: curves.high[s] for s in names}, dict(curves.reference))

    first = [s for s in curves.mean if s in main]
    rest = [s for s in curves.mean if s not in main or s == "random"]
    return pick(first), pick(rest)


def draw_curves_panels(curves: Curves, axes, ylabel: str, log: bool, main: tuple[str, ...] = MAIN_STRATEGIES):  # noqa: ANN001
    """Two panels side by side: the main comparison, then the other strategies (legends under each)."""
    for ax, part, title in zip(axes, split_curves(curves, main), ("main comparison", "other strategies")):
        draw_curves(part, ax, ylabel, log, legend="below")
        ax.set_title(title)
    axes[1].set_ylabel("")
    return axes


def curves_figure(curves: Curves, ylabel: str, log: bool):  # noqa: ANN201
    """A page-wide two-panel figure of :class:`Curves` (see :func:`draw_curves_panels`)."""
    import matplotlib.pyplot as plt

    n = max(len(p.mean) + len(p.reference) for p in split_curves(curves))
    fig, axes = plt.subplots(1, 2, figsize=(SIZES["page"][0], 2.6 + 0.16 * ((n + 1) // 2)), sharey=True,
                             layout="constrained")
    draw_curves_panels(curves, axes, ylabel, log)
    return fig


def draw_curves(curves: Curves, ax=None, ylabel: str = "normalized regret", log: bool = True,  # noqa: ANN001
                legend: str = "right"):
    """Draw :class:`Curves` (mean line, shaded 95% interval, reference lines) and return the Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=SIZES["column"])
    for s, m in curves.mean.items():
        st = style(s)
        ax.plot(curves.trials, m, color=st["color"], ls=st["ls"], label=s)
        ax.fill_between(curves.trials, curves.low[s], curves.high[s], color=st["color"], alpha=0.12, lw=0)
    for name, r in curves.reference.items():
        ax.plot(curves.trials[:len(r)], r, color="black", lw=0.8, ls=(0, (1, 1)), label=name)
    if log:
        # symmetric log: logarithmic above 1e-3, linear down to 0, so a curve that reaches the
        # optimum (regret 0) stays visible instead of dropping off a log axis
        ax.set_yscale("symlog", linthresh=1e-3, linscale=0.5)
        ax.set_ylim(bottom=0)
    ax.set_xlabel("trials")
    ax.set_ylabel(ylabel)
    n = len(curves.mean) + len(curves.reference)
    if legend == "below":
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, fontsize="small", frameon=False)
    else:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 if n <= 8 else 2)
    return ax


def tuning_curves(results: pd.DataFrame, x: str = "trial", points: int = 60) -> Curves:
    """Best validation accuracy so far per strategy against trials (``x="trial"``) or wall-clock
    seconds (``x="seconds"``, a log-spaced grid). Before its first final result a run holds the
    majority-class ``baseline`` (what one has without a trained model: successive halving's first
    rungs do not count), after its last it keeps its final value.

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


def draw_new_task_tuning(results: pd.DataFrame, axes=None, metric: str = "accuracy"):  # noqa: ANN001
    """Two panels: best validation ``metric`` vs trials and vs wall-clock seconds; returns the Axes."""
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
    axes[0].set_ylabel(f"best validation {metric}")
    axes[1].legend(loc="lower right", fontsize="small")
    return axes


def new_task_tuning_figure(results: pd.DataFrame, out: str | Path, name: str = "new_task_tuning",
                           metric: str = "accuracy") -> dict[str, Path]:
    """Write the new-task tuning figure (see :func:`draw_new_task_tuning`) into ``out``."""
    import matplotlib.pyplot as plt  # the caller's backend stays (figures are saved and closed, never shown)

    with plt.style.context(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=SIZES["page"], sharey=True)
        draw_new_task_tuning(results, axes, metric)
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
        # no creation date in the PDF: the same data give the same bytes
        fig.savefig(paths[f"{name}_{ext}"], metadata={"CreationDate": None} if ext == "pdf" else None)
    return paths


def benchmark_figures(results: pd.DataFrame, out: str | Path, summary: dict | None = None) -> dict[str, Path]:
    """Regret-vs-trials and rank-vs-trials figures of a benchmark run (with its ``summary``, the
    regret figure also shows random search's exact expected curve)."""
    import matplotlib.pyplot as plt  # the caller's backend stays (figures are saved and closed, never shown)

    paths = {}
    with plt.style.context(STYLE):
        for column, name, label, log in (("normalized_regret", "regret_curves", "normalized regret", True),
                                         ("rank", "rank_curves", "average rank", False)):
            fig = curves_figure(benchmark_curves(results, column, summary), label, log)
            paths.update(savefig(fig, name, out))
            plt.close(fig)
    return paths


# ---------------------------------------------------------------- the task suite
@dataclass
class SuiteView:
    """Example inputs of a few tasks and the distribution of meta-features over the suite.

    Attributes:
        examples: per task ``(name, inputs, labels)``: ``inputs`` ``(n, H, W)`` images or ``(n, L)``
            signals (first channel), ``labels`` the class names of those examples.
        kind: ``image`` or ``signal``.
        metafeatures: task x selected meta-features.
    """

    examples: list[tuple[str, np.ndarray, list[str]]]
    kind: str
    metafeatures: pd.DataFrame


#: Meta-features shown by the suite figure (those that exist in the table are used).
SUITE_FEATURES = ("n_classes", "log_n_examples", "class_imbalance", "landmark_1nn")


def task_suite_data(tasks, metafeatures: pd.DataFrame, per_task: int = 6,  # noqa: ANN001
                    features: tuple[str, ...] = SUITE_FEATURES) -> SuiteView:
    """Examples of each task in ``tasks`` (its domain's :meth:`~metahpo_utils.domains.base.Domain.examples`:
    one per class first for classification, observation traces for RL) and the chosen meta-feature
    columns (``metafeatures`` indexed by task or with a ``task`` column)."""
    from .domains import domain_of_task

    examples = []
    kind = "image"
    for task in tasks:
        # (n, H, W) images, (n, L) signals or (n, L) character ids, with a label each
        inputs, labels, kind = domain_of_task(task).examples(task, per_task)
        examples.append((task.name, inputs, labels))
    mf = metafeatures.set_index("task") if "task" in metafeatures.columns else metafeatures
    cols = [c for c in features if c in mf.columns]
    return SuiteView(examples, kind, mf[cols].astype(float))


def draw_task_suite(view: SuiteView, fig=None):  # noqa: ANN001
    """Top: a row of example inputs per task; bottom: a histogram per meta-feature. Returns the Axes."""
    import matplotlib.pyplot as plt

    rows, per = len(view.examples), max(len(e[1]) for e in view.examples)
    n_mf = max(1, len(view.metafeatures.columns))
    if fig is None:
        fig = plt.figure(figsize=(SIZES["page"][0], 0.75 * rows + 1.6))
    gs = fig.add_gridspec(rows + 1, max(per, n_mf) * n_mf, height_ratios=[1] * rows + [1.6], hspace=0.5)
    axes = []
    for r, (name, inputs, labels) in enumerate(view.examples):
        width = max(per, n_mf) * n_mf // per
        for j in range(len(inputs)):
            ax = fig.add_subplot(gs[r, j * width:(j + 1) * width])
            if view.kind == "image":
                ax.imshow(inputs[j], cmap="gray_r")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_frame_on(False)
            elif view.kind == "text":  # what the model reads: a strip of character ids (rarer = brighter)
                ids = inputs[j][inputs[j] > 0]
                ax.imshow(np.log1p(ids)[None, :], aspect="auto", cmap="viridis", vmin=0, vmax=np.log1p(4000))
                ax.set_xlim(-0.5, inputs.shape[1] - 0.5)
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_frame_on(False)
            else:  # signals (and an RL episode's observation traces): no axes, but the task's name stays
                ax.plot(inputs[j], lw=0.8, color="#0072B2")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_frame_on(False)
            ax.set_title(labels[j], fontsize=6, pad=1, loc="left" if view.kind == "text" else "center")
            ax.grid(False)
            if j == 0:
                ax.set_ylabel(name, fontsize=6, rotation=0, ha="right", va="center")
            axes.append(ax)
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    width = max(per, n_mf)
    for k, col in enumerate(view.metafeatures.columns):
        # one grid column of gap between histograms, so neighbouring tick labels never collide
        ax = fig.add_subplot(gs[rows, k * width:(k + 1) * width - (1 if width > 2 else 0)])
        v = view.metafeatures[col].dropna().to_numpy()
        integer = np.all(np.mod(v, 1) == 0) and np.ptp(v) <= 30
        bins = np.arange(v.min() - 0.5, v.max() + 1.5) if integer else 12
        ax.hist(v, bins=bins, color="#56B4E9", edgecolor="white", lw=0.5)
        ax.xaxis.set_major_locator(MaxNLocator(3))
        if np.abs(v).max() >= 1000:  # RL returns: "-8k" where "-8000" would run into its neighbour
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k" if abs(x) >= 1000 else f"{x:g}"))
        ax.yaxis.set_major_locator(MaxNLocator(3, integer=True))
        ax.tick_params(labelsize=6)
        ax.set_xlabel(col.replace("_", " "), fontsize=7)
        if k == 0:
            ax.set_ylabel("tasks")
        axes.append(ax)
    return axes


# ---------------------------------------------------------------- the meta-dataset landscape
@dataclass
class Landscape:
    """Tasks x configurations, and accuracy against learning rate per task.

    Attributes:
        matrix: ``(tasks, configs)`` min-max normalized objective (1 = the task's best), rows ordered
            by the task's best learning rate, columns by mean normalized value (best first).
        tasks, configs: the row and column labels (task names, config ids) in that order.
        best_lr: the best learning rate of each row's task.
        lr_curves: ``task``, ``lr`` (bin centre), ``objective`` (the best accuracy in that
            learning-rate bin) for the accuracy-vs-learning-rate panel.
    """

    matrix: np.ndarray
    tasks: list[str]
    configs: list[int]
    best_lr: np.ndarray
    lr_curves: pd.DataFrame


def landscape_data(trials: pd.DataFrame, lr_bins: int = 8) -> Landscape:
    """Build the :class:`Landscape` of a tidy table with ``task``, ``config_id``, ``objective`` (and ``lr``)."""
    t = trials[trials["objective"].notna()]
    piv = t.pivot_table(index="task", columns="config_id", values="objective")  # (tasks, configs)
    lo, hi = piv.min(axis=1), piv.max(axis=1)
    norm = piv.sub(lo, axis=0).div((hi - lo).replace(0, 1), axis=0)
    col_order = norm.mean(axis=0).sort_values(ascending=False).index
    best = t.loc[t.groupby("task")["objective"].idxmax()].set_index("task")
    best_lr = best["lr"].astype(float) if "lr" in best else pd.Series(0.0, index=best.index)
    row_order = best_lr.reindex(norm.index).sort_values().index
    curves = []
    if "lr" in t:
        edges = np.geomspace(t["lr"].min(), t["lr"].max() * (1 + 1e-9), lr_bins + 1)
        centres = np.sqrt(edges[:-1] * edges[1:])
        b = np.clip(np.searchsorted(edges, t["lr"].to_numpy(), side="right") - 1, 0, lr_bins - 1)
        g = t.assign(bin=b).groupby(["task", "bin"])["objective"].max().reset_index()
        curves = [{"task": r.task, "lr": centres[int(r.bin)], "objective": r.objective} for r in g.itertuples()]
    return Landscape(norm.loc[row_order, col_order].to_numpy(), list(row_order), [int(c) for c in col_order],
                     best_lr.reindex(row_order).to_numpy(), pd.DataFrame(curves, columns=["task", "lr", "objective"]))


def draw_landscape(land: Landscape, axes=None, n_curves: int = 8, metric: str = "accuracy"):  # noqa: ANN001
    """Left: heat map of normalized accuracy (tasks by best learning rate, configurations by mean
    rank); right: best accuracy per learning-rate bin for ``n_curves`` tasks spread over that order,
    coloured by their best learning rate. Returns both Axes."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=SIZES["page"], gridspec_kw={"width_ratios": [1.4, 1]}, layout="constrained")
    ax = axes[0]
    im = ax.imshow(land.matrix, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xlabel(f"configuration (sorted by mean normalized {metric})")
    ax.set_ylabel("task (sorted by best learning rate)")
    ax.set_yticks([])
    ax.grid(False)
    plt.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label=f"normalized {metric}")
    ax = axes[1]
    if len(land.lr_curves):
        pick = [land.tasks[i] for i in np.unique(np.linspace(0, len(land.tasks) - 1, n_curves).round().astype(int))]
        lrs = dict(zip(land.tasks, land.best_lr))
        cmap, norm = plt.get_cmap("viridis"), LogNorm(vmin=min(land.best_lr), vmax=max(land.best_lr))
        for task in pick:
            d = land.lr_curves[land.lr_curves["task"] == task].sort_values("lr")
            ax.plot(d["lr"], d["objective"], marker="o", ms=2, color=cmap(norm(lrs[task])), lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel(f"best {metric} in bin")
        sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
        plt.colorbar(sm, ax=ax, fraction=0.046, pad=0.02, label="task's best learning rate")
    return axes


# ---------------------------------------------------------------- meta-training of the surrogates
@dataclass
class MetaTrainingCurves:
    """Per surrogate: ``train`` and (if held out) ``val`` loss per epoch."""

    curves: dict[str, dict[str, np.ndarray]]


def meta_training_data(strategies) -> MetaTrainingCurves:  # noqa: ANN001
    """Loss curves of fitted surrogates (a mapping name -> strategy with ``history`` and ``val_history``)."""
    out = {}
    for name, s in strategies.items():
        if not getattr(s, "history", None):
            raise ValueError(f"meta_training_data: strategy '{name}' has no training history (fit it first)")
        out[name] = {"train": np.asarray(s.history, float)}
        if getattr(s, "val_history", None):
            out[name]["val"] = np.asarray(s.val_history, float)
    return MetaTrainingCurves(out)


def draw_meta_training(data: MetaTrainingCurves, ax=None, metric: str = "accuracy"):  # noqa: ANN001
    """Training (solid) and held-out (dashed) loss per epoch of each surrogate; returns the Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=SIZES["column"])
    for name, c in data.curves.items():
        color = style(name)["color"]
        ax.plot(np.arange(1, len(c["train"]) + 1), c["train"], color=color, ls="-", label=f"{name} train")
        if "val" in c:
            ax.plot(np.arange(1, len(c["val"]) + 1), c["val"], color=color, ls="--", label=f"{name} held-out")
    ax.set_yscale("log")
    log_ticks(ax.yaxis)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"MSE ({metric} standardized per task)")
    ax.legend()
    return ax


# ---------------------------------------------------------------- equivalent random trials
def equivalent_trials_data(summary: dict) -> pd.DataFrame:
    """Long table ``strategy``, ``k``, ``ert``, ``low``, ``high`` (the 95% bootstrap interval over
    tasks, where the summary has one) from a benchmark ``summary.json``; a missing value is NaN."""
    def num(x: float | None) -> float:
        return float("nan") if x is None else float(x)

    rows = []
    for s, d in summary["strategies"].items():
        for k, v in d["equivalent_random_trials"].items():
            lo, hi = d.get("equivalent_random_trials_ci", {}).get(k, [None, None])
            rows.append({"strategy": s, "k": int(k), "ert": num(v), "low": num(lo), "high": num(hi)})
    return pd.DataFrame(rows)


def draw_equivalent_trials(df: pd.DataFrame, ax=None):  # noqa: ANN001
    """Equivalent random trials against trials per strategy (log-log; the diagonal is random search)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=SIZES["column"])
    for s, d in df.groupby("strategy", sort=False):
        st = style(s)
        ax.plot(d["k"], d["ert"], marker="o", ms=3, color=st["color"], ls=st["ls"], label=s)
        if {"low", "high"} <= set(d.columns) and d["low"].notna().any():
            ax.fill_between(d["k"], d["low"], d["high"], color=st["color"], alpha=0.08, lw=0)
    from matplotlib.ticker import FormatStrFormatter

    ks = np.sort(df["k"].unique())
    ax.plot(ks, ks, color="black", lw=0.6, ls=":", label="= random")
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FormatStrFormatter("%g"))
    ax.set_xlabel("trials of the strategy")
    ax.set_ylabel("equivalent random trials")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 if df["strategy"].nunique() <= 8 else 2)
    return ax


# ---------------------------------------------------------------- interpretability
def draw_importance(per_task: pd.DataFrame, ax=None):  # noqa: ANN001
    """Per-task importance (dots) and its mean over tasks with a 95% bootstrap interval over tasks
    (bar; seaborn's estimator, 2,000 resamples, seeded) per hyperparameter, most important first.
    ``per_task``: tasks x hyperparameters. Returns the Axes."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=SIZES["column"])
    order = list(per_task.mean().sort_values(ascending=False).index)  # top to bottom
    long = per_task.melt(var_name="hyperparameter", value_name="importance").dropna()
    sns.barplot(data=long, x="importance", y="hyperparameter", order=order, errorbar=("ci", 95), n_boot=2000,
                seed=0, color="#56B4E9", alpha=0.8, width=0.6, err_kws={"linewidth": 0.8}, ax=ax)
    state = np.random.get_state()  # seaborn jitters the dots with numpy's global generator: seed it here only
    np.random.seed(0)
    try:
        sns.stripplot(data=long, x="importance", y="hyperparameter", order=order, size=2, color="#333333", alpha=0.5,
                      jitter=0.18, ax=ax)
    finally:
        np.random.set_state(state)
    ax.set_ylabel("")
    ax.set_xlabel("importance (share of variance)")
    return ax


def draw_importance_by_group(gi, ax=None, group_label: str = "group"):  # noqa: ANN001
    """Heat map of mean importance per hyperparameter (rows, most important overall first) and group of
    tasks (columns, with their task counts), each cell annotated; a * after a hyperparameter's name where
    its importance differs between the groups (Kruskal-Wallis, Benjamini-Hochberg q < 0.05).
    ``gi``: :class:`~metahpo_utils.interpret.GroupImportance`. Returns the Axes."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=(SIZES["column"][0], 0.28 * len(gi.mean) + 1.2))
    data = gi.mean.copy()
    data.index = [f"{h} *" if gi.q_value.get(h, math.nan) < 0.05 else h for h in data.index]
    data.columns = [f"{c}\n({int(gi.n[c])})" for c in data.columns]
    sns.heatmap(data, annot=True, fmt=".2f", annot_kws={"fontsize": 6}, cmap="Blues", vmin=0,
                cbar_kws={"label": "mean importance (share of variance)", "fraction": 0.05, "pad": 0.02}, ax=ax)
    ax.set_xlabel(f"{group_label} (tasks)   * importance differs between them, q < 0.05")
    ax.set_ylabel("")
    ax.grid(False)
    ax.tick_params(axis="x", rotation=0)
    return ax


def draw_importance_vs_metafeatures(corr: pd.DataFrame, ax=None):  # noqa: ANN001
    """Heat map of Spearman rho (hyperparameter importance vs meta-feature over tasks), with * where
    the Benjamini-Hochberg adjusted p-value over all the map's tests (``q_value``) is below 0.05
    (raw ``p_value`` when the table has no ``q_value``); the x-axis label says which."""
    import matplotlib.pyplot as plt

    piv = corr.pivot(index="hyperparameter", columns="meta_feature", values="rho")
    which = "q_value" if "q_value" in corr else "p_value"
    pv = corr.pivot(index="hyperparameter", columns="meta_feature", values=which).reindex_like(piv)
    if ax is None:
        _, ax = plt.subplots(figsize=(SIZES["page"][0], 0.3 * len(piv) + 1.2))
    im = ax.imshow(piv.to_numpy(float), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(piv.shape[1]))
    ax.set_xticklabels([c.replace("_", " ") for c in piv.columns], rotation=45, ha="right")
    ax.set_yticks(range(piv.shape[0]))
    ax.set_yticklabels(piv.index)
    ax.grid(False)
    for i in range(piv.shape[0]):
        for j in range(piv.shape[1]):
            if pv.iat[i, j] < 0.05:
                ax.text(j, i, "*", ha="center", va="center", fontsize=8)
    n_tests = int(corr[which].notna().sum())
    ax.set_xlabel("* " + (f"Benjamini-Hochberg q < 0.05 over {n_tests} tests" if which == "q_value"
                          else "p < 0.05, uncorrected") + f" ({int(corr['n'].max())} tasks)")
    plt.colorbar(im, ax=ax, fraction=0.03, pad=0.02, label="Spearman rho")
    return ax


def draw_task_similarity(df: pd.DataFrame, axes=None, color_by: str = "best_lr"):  # noqa: ANN001
    """Tasks in 2-D from meta-features (and from the ``mtl`` head weights when present), coloured
    by ``color_by`` (a numeric column, e.g. ``best_lr``, or a categorical one, e.g. ``base``)."""
    import matplotlib.pyplot as plt

    panels = [("x_mf", "y_mf", "from meta-features")]
    if "x_head" in df:
        panels.append(("x_head", "y_head", "from mtl task heads"))
    if axes is None:
        _, axes = plt.subplots(1, len(panels), figsize=SIZES["page"] if len(panels) > 1 else SIZES["column"])
    axes = np.atleast_1d(axes)
    numeric = pd.api.types.is_numeric_dtype(df[color_by])
    for ax, (x, y, title) in zip(axes, panels):
        if numeric:
            sc = ax.scatter(df[x], df[y], c=df[color_by], cmap="viridis", s=14, lw=0)
        else:
            for i, (v, d) in enumerate(df.groupby(color_by)):
                ax.scatter(d[x], d[y], s=14, lw=0, color=_OKABE_ITO[i % len(_OKABE_ITO)], label=str(v))
            ax.legend(title=color_by)
        ax.set_title(title)
        ax.set_xlabel("component 1")
        ax.set_ylabel("component 2")
    if numeric:
        label = "best learning rate (log10)" if color_by == "best_lr" else color_by.replace("_", " ")
        plt.colorbar(sc, ax=list(axes), fraction=0.03, pad=0.02, label=label)
    return axes


def draw_partial_dependence(pdp, ax=None, max_ice: int = 30, ylabel: bool = True, metric: str = "accuracy"):  # noqa: ANN001
    """A :class:`~metahpo_utils.interpret.PartialDependence`: 1-D as the PD line over thin ICE curves,
    2-D as a filled contour (categoricals as their choices). Returns the Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=SIZES["column"])
    if len(pdp.params) == 1:
        x = np.arange(len(pdp.values[0])) if pdp.categorical[0] else pdp.values[0]
        if pdp.ice is not None:
            for curve in pdp.ice[:max_ice]:
                ax.plot(x, curve, color="#7f7f7f", lw=0.4, alpha=0.35)
        ax.plot(x, pdp.pd, color="#D55E00", lw=1.8, label="partial dependence")
        _param_axis(ax.xaxis, ax.set_xscale, pdp, 0)
        ax.set_xlabel(pdp.params[0])
        ax.set_ylabel(f"predicted {metric} (standardized per task)" if ylabel else "")
        return ax
    xs = [np.arange(len(v)) if c else v for v, c in zip(pdp.values, pdp.categorical)]
    cs = ax.contourf(xs[0], xs[1], pdp.pd.T, levels=14, cmap="viridis")  # pd: (g_1, g_2), rows = first param
    plt.colorbar(cs, ax=ax, fraction=0.046, pad=0.02, label=f"predicted {metric} (standardized)")
    _param_axis(ax.xaxis, ax.set_xscale, pdp, 0)
    _param_axis(ax.yaxis, ax.set_yscale, pdp, 1)
    ax.set_xlabel(pdp.params[0])
    ax.set_ylabel(pdp.params[1])
    ax.grid(False)
    return ax


def log_ticks(axis) -> None:  # noqa: ANN001
    """One label style per log axis: plain numbers (0.4, 0.6, 1) when the data span less than two
    decades, powers of ten (10^-5, 10^-3) otherwise; never a mix, never minor-tick labels such as
    9x10^-1. Call after the data are drawn."""
    from matplotlib.ticker import FormatStrFormatter, LogFormatterSciNotation, LogLocator, NullFormatter

    lo, hi = sorted(abs(v) for v in axis.get_view_interval())
    if lo > 0 and hi / lo < 100:
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FormatStrFormatter("%g"))
    else:
        axis.set_major_formatter(LogFormatterSciNotation())
    axis.set_minor_formatter(NullFormatter())


def _param_axis(axis, set_scale, pdp, i: int) -> None:  # noqa: ANN001
    if pdp.categorical[i]:
        labels = [str(v) for v in pdp.values[i]]
        axis.set_ticks(range(len(labels)))
        # more than three choices under a narrow panel (RL's gamma: 0.9 ... 0.999) would overlap: slant them
        if axis.axis_name == "x" and len(labels) > 3:
            axis.set_ticklabels(labels, rotation=45, ha="right")
        else:
            axis.set_ticklabels(labels)
    elif pdp.log[i]:
        set_scale("log")
        log_ticks(axis)


def draw_mapping(md, ax=None, metric: str | None = "accuracy"):  # noqa: ANN001
    """A :class:`~metahpo_utils.interpret.MappingData`: each meta-train task's best value of the
    hyperparameter against its meta-feature (dots, coloured by the task's best ``metric``; one colour with
    ``metric=None``, for objectives on different scales per task), and the fitted ``mapping`` strategy's
    prediction along the meta-feature (line). Returns the Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=SIZES["column"])
    obs = md.observed
    colours = {"c": obs["best_objective"], "cmap": "viridis"} if metric is not None else {"color": "#0072B2"}
    sc = ax.scatter(obs["feature"], obs["best"], s=14, lw=0, label="observed best per task", **colours)
    pred = md.predicted.sort_values("feature")
    ax.plot(pred["feature"], pred["best"], color="#D55E00", lw=1.8, label="mapping prediction")
    if md.log:
        ax.set_yscale("log")
        log_ticks(ax.yaxis)
    ax.set_xlabel(md.feature.replace("_", " "))
    ax.set_ylabel(f"best {md.hyperparameter}")
    if metric is not None:
        plt.colorbar(sc, ax=ax, fraction=0.046, pad=0.02, label=f"best {metric}")
    # below the axes, never on the dots
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=2, fontsize="small", frameon=False)
    return ax


# ---------------------------------------------------------------- transfer across domains
def cross_domain_figure(results: pd.DataFrame, summary: dict):  # noqa: ANN201
    """Left: regret curves of the arms of :func:`metahpo_utils.crossdomain.cross_domain_benchmark`
    (95% intervals over tasks); right: regret at 1, 5, 10 and 25 trials per arm with those intervals."""
    import matplotlib.pyplot as plt

    curves = benchmark_curves(results, summary=summary)
    fig, axes = plt.subplots(1, 2, figsize=(SIZES["page"][0], 4.2), layout="constrained",
                             gridspec_kw={"width_ratios": [1.4, 1]})
    draw_curves(curves, axes[0], log=True, legend="below")
    cd = summary.get("cross_domain", {})
    axes[0].set_title(f"{cd.get('target_suite', 'target')} meta-test tasks", fontsize=8)
    draw_cross_domain_bars(summary, axes[1])
    return fig


def cross_domain_bars_data(summary: dict, at: tuple[int, ...] = (1, 5, 10, 25)) -> pd.DataFrame:
    """``arm``, ``trial``, ``regret``, ``low``, ``high`` from a cross-domain ``summary.json``."""
    rows = []
    for arm, v in summary["strategies"].items():
        for k in at:
            if str(k) in v["regret"] and v["regret"][str(k)] is not None:
                lo, hi = v["regret_ci"][str(k)]
                rows.append({"arm": arm, "trial": k, "regret": v["regret"][str(k)], "low": lo, "high": hi})
    return pd.DataFrame(rows)


def draw_cross_domain_bars(summary: dict, ax=None):  # noqa: ANN001
    """Grouped bars: one group per reported trial, one bar per arm (colour as in the curves)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=SIZES["column"])
    df = cross_domain_bars_data(summary)
    arms = list(dict.fromkeys(df["arm"]))
    ks = sorted(df["trial"].unique())
    w = 0.8 / len(arms)
    for j, arm in enumerate(arms):
        d = df[df["arm"] == arm].set_index("trial").reindex(ks)
        x = np.arange(len(ks)) + (j - (len(arms) - 1) / 2) * w
        st = style(arm)
        ax.bar(x, d["regret"], w, color=st["color"], alpha=0.85, hatch="//" if st["ls"] != "-" else None,
               edgecolor="white", lw=0.3)
        ax.errorbar(x, d["regret"], yerr=[d["regret"] - d["low"], d["high"] - d["regret"]], fmt="none",
                    ecolor="black", elinewidth=0.6, capsize=1.2)
    ax.set_xticks(np.arange(len(ks)))
    ax.set_xticklabels([str(k) for k in ks])
    ax.set_xlabel("trials")
    ax.set_yscale("symlog", linthresh=1e-2, linscale=0.5)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("normalized regret")
    ax.set_title("regret at 1, 5, 10, 25 trials (95% intervals)", fontsize=8)
    ax.grid(axis="x", visible=False)
    return ax
