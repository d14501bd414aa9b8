"""Interactive ipywidgets for notebooks: tasks, surrogate landscapes, tuning runs, importance.

Every widget only wires controls to package calls: a *data builder* (a pure function returning a
small dataclass, testable without a display) and a *drawing function* (returns a matplotlib
``Figure``). A widget's :meth:`refresh` is the single callback of all its controls::

    w = task_explorer("digits"); w            # show it in a notebook
    w.task.value = "digits-007"               # or drive it from code: refresh() runs, w.metafeatures changes

========================  ============================  ==========================
widget                    data builder                  drawing function
========================  ============================  ==========================
:func:`task_explorer`     :func:`task_view`             :func:`draw_task_view`
:func:`landscape_explorer` :func:`surface_data`         :func:`draw_surface`
:func:`tuning_replay`     :func:`replay_data`           :func:`draw_replay`
:func:`importance_explorer` :func:`importance_selection` :func:`draw_selected_importance`
========================  ============================  ==========================

Figures are plain ``matplotlib.figure.Figure`` objects (no pyplot state, any backend, headless
safe), drawn under the package style (:data:`~metahpo_utils.plotting.STYLE`) and put into the
widget's ``out`` (an ``ipywidgets.Output``) as PNG; tables go there as HTML. An error in a
callback is shown in ``out`` and kept in ``error`` instead of being lost in the kernel log.
"""
from __future__ import annotations

import base64
import io
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import ipywidgets as widgets
import numpy as np
import pandas as pd
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from .data.tasks import flat_recipe
from .plotting import SIZES, STYLE, SuiteView, draw_importance, draw_task_suite, style, task_suite_data
from .space import SearchSpace

__all__ = [
    "LOCAL_SUITES", "TaskView", "task_view", "draw_task_view", "TaskExplorer", "task_explorer",
    "Surface", "surface_data", "draw_surface", "LandscapeExplorer", "landscape_explorer",
    "Replay", "replay_data", "draw_replay", "TuningReplay", "tuning_replay",
    "ImportanceSelection", "importance_selection", "draw_selected_importance", "ImportanceExplorer",
    "importance_explorer",
]

#: Suites built without any download.
LOCAL_SUITES = ("digits", "mnist5k", "mnist1d", "text", "sentiment", "postag", "rl", "cartpole", "acrobot",
                "mountaincar", "pendulum")


# ---------------------------------------------------------------- shared plumbing
def _figure(size: tuple[float, float]):  # noqa: ANN202
    """A figure outside pyplot (nothing to close, nothing shown twice by an inline backend)."""
    from matplotlib.figure import Figure

    return Figure(figsize=size)


def _figure_output(fig) -> dict[str, Any]:  # noqa: ANN001
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150, bbox_inches="tight")
    return {"output_type": "display_data",
            "data": {"image/png": base64.b64encode(buf.getvalue()).decode("ascii"), "text/plain": "<Figure>"},
            "metadata": {}}


def _table_output(table: pd.DataFrame, float_format: str = "{:.4g}") -> dict[str, Any]:
    fmt = {c: float_format.format for c in table.columns if pd.api.types.is_float_dtype(table[c])}
    html = table.to_html(formatters=fmt, border=0, na_rep="")
    return {"output_type": "display_data", "data": {"text/html": html, "text/plain": table.to_string()}, "metadata": {}}


def _text_output(text: str) -> dict[str, Any]:
    return {"output_type": "stream", "name": "stdout", "text": text + "\n"}


class _Explorer(widgets.VBox):
    """A VBox of controls above an ``Output`` (``out``); subclasses implement :meth:`refresh`."""

    def __init__(self, rows: Sequence[widgets.Widget]):
        self.out = widgets.Output()
        self.error: Exception | None = None
        self._holding = False
        super().__init__([*rows, self.out])

    def refresh(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @contextmanager
    def _held(self) -> Iterator[None]:
        """Change several controls without a refresh per change."""
        before, self._holding = self._holding, True
        try:
            yield
        finally:
            self._holding = before

    def _watch(self, *controls: widgets.Widget) -> None:
        for c in controls:
            c.observe(self._changed, names="value")

    def _changed(self, change: Any = None) -> None:
        if self._holding:
            return
        try:
            self.refresh()
            self.error = None
        except Exception as err:  # noqa: BLE001 - a callback error belongs in the widget, not the kernel log
            self.error = err
            self.out.outputs = (_text_output(f"error: {type(err).__name__}: {err}"),)

    def _show(self, draw: Callable[[Any], Any], data: Any, tables: Sequence[pd.DataFrame] = ()) -> None:
        """Draw ``data`` under the package style and replace the output with the figure and ``tables``."""
        import matplotlib.style as mstyle

        with mstyle.context(STYLE):
            outputs = [_figure_output(draw(data))]
        self.out.outputs = tuple(outputs + [_table_output(t) for t in tables])


# ---------------------------------------------------------------- 1. task explorer
@dataclass
class TaskView:
    """One task: example inputs, class balance, meta-features and recipe.

    Attributes:
        name: the task.
        suite: :class:`~metahpo_utils.plotting.SuiteView` of the task's examples; its
            ``metafeatures`` are the whole suite's when known (else only this task's).
        bars: the domain's :class:`~metahpo_utils.domains.base.TaskBars` (training examples per class; for
            RL the random policy's return per validation episode).
        metafeatures: the domain's meta-features of the task.
        recipe: the task's provenance (classes, examples per class, label noise, ...; an RL task's physics).
        in_suite: whether ``suite.metafeatures`` covers the suite (the histograms mean something).
    """

    name: str
    suite: SuiteView
    bars: Any  # TaskBars of the task's domain (classification: training examples per class)
    metafeatures: dict[str, float]
    recipe: dict[str, Any] = field(default_factory=dict)
    in_suite: bool = False
    texts: pd.DataFrame | None = None  # text tasks: a few training texts and their labels

    @property
    def class_counts(self) -> pd.Series:
        """The bar chart's values (for classification: training examples per class)."""
        return self.bars.values


def task_view(task, suite_metafeatures: pd.DataFrame | None = None, per_task: int = 8,  # noqa: ANN001
              features: Sequence[str] | None = None, seed: int = 0) -> TaskView:
    """Build the :class:`TaskView` of a :class:`~metahpo_utils.data.tasks.Task`.

    Args:
        suite_metafeatures: meta-features of the task's suite (indexed by task or with a ``task``
            column) for the histograms; ``None``: only this task's.
        per_task: example inputs shown.
        features: meta-features with a histogram (default: the task's domain's).
        seed: seed of the meta-features' landmarkers.
    """
    from .domains import domain_of_task

    domain = domain_of_task(task)
    features = domain.suite_features if features is None else features
    mf = domain.metafeatures(task, seed=seed)
    table = pd.DataFrame([mf], index=pd.Index([task.name], name="task")) if suite_metafeatures is None else suite_metafeatures
    view = task_suite_data([task], table, per_task=per_task, features=tuple(features))
    recipe = flat_recipe(task.provenance)
    if hasattr(task, "n_classes"):
        recipe = {"k": task.n_classes, **recipe}
    texts = None
    if getattr(task, "texts", None):
        y = task.y_train.numpy()
        texts = pd.DataFrame({"label": [task.classes[int(v)] for v in y[:per_task]],
                              "text": [task.readable(t) for t in task.texts["train"][:per_task]]})
    return TaskView(task.name, view, domain.task_bars(task), mf, recipe, suite_metafeatures is not None, texts)


def draw_task_view(view: TaskView, fig=None):  # noqa: ANN001
    """Example inputs on top (:func:`~metahpo_utils.plotting.draw_task_suite`); below them the
    suite's meta-feature histograms with this task marked and, on the right, the training examples
    per class (without a suite table the class balance sits below the examples). Returns the Figure."""
    fig = fig if fig is not None else _figure((SIZES["page"][0], 2.9))
    if len(view.suite.metafeatures.columns) and view.in_suite:
        left, right = fig.subfigures(1, 2, width_ratios=[2.4, 1])
        axes = draw_task_suite(view.suite, left)
        n_examples = len(view.suite.examples[0][1])
        for ax, col in zip(axes[n_examples:], view.suite.metafeatures.columns):
            v = view.metafeatures.get(col, math.nan)
            if np.isfinite(v):
                ax.axvline(v, color="#D55E00", lw=1.2, label="this task")
        marked = [ax for ax in axes[n_examples:] if ax.get_legend_handles_labels()[0]]
        if marked:  # one legend for the orange lines, above the histograms (off the bars)
            marked[0].legend(loc="lower left", bbox_to_anchor=(0.0, 1.02), fontsize=6, frameon=False)
        ax = right.subplots()
    else:  # draw_task_suite leaves its histogram row (the lower 1.6 / 2.6) empty: the bar chart goes there
        draw_task_suite(SuiteView(view.suite.examples, view.suite.kind, view.suite.metafeatures.iloc[:, :0]), fig)
        ax = fig.add_axes((0.3, 0.1, 0.4, 0.42))
    bars = view.bars
    ax.bar(np.arange(len(bars.values)), bars.values.to_numpy(), color="#56B4E9", edgecolor="white", lw=0.5)
    ax.set_xticks(np.arange(len(bars.values)))
    ax.set_xticklabels(bars.values.index, fontsize=6)
    ax.set_xlabel(bars.xlabel)
    ax.set_ylabel(bars.ylabel)
    ax.set_title(f"{view.name}: {bars.title}", fontsize=7)
    return fig


class TaskExplorer(_Explorer):
    """Browse the tasks of the built-in suites (see :func:`task_explorer`).

    Controls: ``suite`` and ``task`` (Dropdowns). State: ``current`` (task name), ``metafeatures``
    (dict), ``view`` (:class:`TaskView`).
    """

    def __init__(self, suite: str = "digits", n_tasks: int | None = None, seed: int = 0,
                 suites: Sequence[str] = LOCAL_SUITES, per_task: int = 8,
                 suite_metafeatures: Mapping[str, pd.DataFrame] | None = None):
        if suite not in suites:
            raise ValueError(f"task_explorer: suite must be one of {list(suites)} (got {suite!r})")
        self.n_tasks, self.suite_seed, self.per_task = n_tasks, seed, per_task
        self._suites: dict[str, Any] = {}
        self._tables: dict[str, pd.DataFrame | None] = dict(suite_metafeatures or {})
        self.suite = widgets.Dropdown(options=list(suites), value=suite, description="suite")
        names = self._suite(suite).task_names
        self.task = widgets.Dropdown(options=names, value=names[0], description="task")
        super().__init__([widgets.HBox([self.suite, self.task])])
        self.suite.observe(self._suite_changed, names="value")
        self._watch(self.task)
        self.refresh()  # a failure here is raised, not shown

    def _suite(self, name: str):  # noqa: ANN202
        if name not in self._suites:
            from .data.tasks import build_suite

            self._suites[name] = build_suite(name, n_tasks=self.n_tasks, seed=self.suite_seed)
        return self._suites[name]

    def _suite_table(self, name: str) -> pd.DataFrame | None:
        """The suite's meta-features from its committed meta-dataset, when that is this very suite."""
        if name not in self._tables:
            from .metadataset import default_metadataset

            try:
                tables = default_metadataset(name)
            except Exception:  # noqa: BLE001 - no committed meta-dataset for this suite
                tables = None
            meta = tables.meta if tables is not None else {}
            same = (meta.get("suite") == name and int(meta.get("seed", -1)) == self.suite_seed
                    and int(meta.get("n_tasks", -1)) == len(self._suite(name)))
            self._tables[name] = tables.tasks if same and tables.tasks is not None and len(tables.tasks.columns) > 1 else None
        return self._tables[name]

    def _suite_changed(self, change: Any) -> None:
        with self._held():
            names = self._suite(change.new).task_names
            self.task.options = names
            self.task.value = names[0]
        self._changed()

    def refresh(self) -> None:
        """Rebuild the view of the chosen task and draw it."""
        name = self.suite.value
        self.view = task_view(self._suite(name).task(self.task.value), self._suite_table(name), self.per_task)
        self.current, self.metafeatures = self.view.name, self.view.metafeatures
        tables = [pd.DataFrame({"meta-feature": self.metafeatures}), pd.DataFrame({"recipe": self.view.recipe})]
        if self.view.texts is not None:  # the browser shows the characters a figure font may lack
            tables.append(self.view.texts)
        self._show(draw_task_view, self.view, tables)


def task_explorer(suite: str = "digits", n_tasks: int | None = None, seed: int = 0, **kwargs: Any) -> TaskExplorer:
    """Dropdowns ``suite`` (digits, mnist5k, mnist1d, and the text suites: no download) and ``task``;
    shows example inputs (for text: the character ids a model reads, and the texts below),
    the class balance, the meta-features (and where the task sits in the suite when its committed
    meta-dataset is known) and the task's recipe. ``kwargs``: ``suites``, ``per_task``,
    ``suite_metafeatures`` (suite name -> meta-feature table)."""
    return TaskExplorer(suite, n_tasks, seed, **kwargs)


# ---------------------------------------------------------------- 2. surrogate landscape
def _is_cat(space: SearchSpace, name: str) -> bool:
    return isinstance(space.params[name], CategoricalDistribution)


def _center(space: SearchSpace) -> dict[str, Any]:
    return space.decode(np.full(space.dim, 0.5))


def _axis_ticks(space: SearchSpace, name: str, n: int = 5) -> tuple[np.ndarray, list[str]]:
    """Encoded positions and decoded labels of a numeric hyperparameter's ticks (decades when log)."""
    dist = space.params[name]
    lo, hi = float(dist.low), float(dist.high)
    if dist.log:
        powers = np.arange(math.ceil(math.log10(lo) - 1e-9), math.floor(math.log10(hi) + 1e-9) + 1)
        if len(powers) >= 2 and not isinstance(dist, IntDistribution):
            # decades as powers of ten: one label style (never 0.001 next to 1e-05)
            base, j = _center(space), space.names.index(name)
            pos = np.array([space.encode({**base, name: 10.0 ** k})[j] for k in powers])
            return pos, [f"$10^{{{int(k)}}}$" for k in powers]
        vals = 10.0 ** powers if len(powers) >= 2 else np.geomspace(lo, hi, n)
    else:
        vals = np.linspace(lo, hi, n)
    if isinstance(dist, IntDistribution):
        vals = np.unique(np.round(vals).astype(int))
    base, j = _center(space), space.names.index(name)
    pos = np.array([space.encode({**base, name: v})[j] for v in vals])
    return pos, [f"{v:g}" for v in vals]


@dataclass
class Surface:
    """The surrogate's prediction over two hyperparameters, the others fixed.

    Attributes:
        x, y: the hyperparameters on the axes.
        x_encoded, y_encoded: the grid in the unit cube ``(g,)``; ``x_values``, ``y_values`` decoded.
        mean, sd: predicted mean and sd ``(g_y, g_x)`` (rows: y), in the surrogate's standardized units.
        fixed: the configuration the other hyperparameters are held at.
        observed: the task's observations: encoded ``x``, ``y`` and ``objective``.
        proposal: the strategy's next configuration for the task; ``proposal_encoded`` its ``(x, y)``.
        conditioned: whether prediction and proposal used the observations.
        task: the task's label.
    """

    x: str
    y: str
    x_encoded: np.ndarray
    y_encoded: np.ndarray
    x_values: np.ndarray
    y_values: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    fixed: dict[str, Any]
    observed: pd.DataFrame
    proposal: dict[str, Any]
    proposal_encoded: np.ndarray
    conditioned: bool = False
    task: str = ""


def surface_data(strategy, space: SearchSpace, x: str, y: str, fixed: Mapping[str, Any] | None = None,  # noqa: ANN001
                 task_features: Any = None, observations: Sequence[tuple[Mapping[str, Any], float]] = (),
                 condition: bool = False, grid: int = 30, seed: int = 0, task: str = "") -> Surface:
    """Predicted mean and sd of a fitted ``mtl``/``transfer`` strategy over ``x`` and ``y`` (a
    ``grid`` x ``grid`` grid of the unit cube; the other hyperparameters at ``fixed``, missing ones
    at the cube's centre) for a task with ``task_features``, and the strategy's next proposal for it
    (a session started with those features, ``suggest(1)``). With ``condition`` both first see
    ``observations`` (``[(config, value), ...]``), which are returned as points either way."""
    from .interpret import surrogate_predictor

    if x == y or _is_cat(space, x) or _is_cat(space, y):
        raise ValueError(f"surface_data: x and y must be two different numeric hyperparameters (got {x!r}, {y!r})")
    obs = list(observations)
    used = obs if condition else None
    predict = surrogate_predictor(strategy, task_features, used)
    base = space.encode({**_center(space), **dict(fixed or {})})
    ix, iy = space.names.index(x), space.names.index(y)
    ex = ey = np.linspace(0.0, 1.0, grid)
    X = np.tile(base, (grid * grid, 1))  # (g*g, d), row-major over (y, x)
    X[:, ix], X[:, iy] = np.tile(ex, grid), np.repeat(ey, grid)
    mean, sd = predict(X)
    session = strategy.start(space, task_features=task_features, seed=seed)
    for config, value in used or ():
        session.observe(config, value)
    proposal = session.suggest(1)[0]
    pe = space.encode(proposal)
    enc = space.encode_table(pd.DataFrame([c for c, _ in obs], columns=space.names)) if obs else np.zeros((0, space.dim))
    observed = pd.DataFrame({"x": enc[:, ix], "y": enc[:, iy], "objective": [float(v) for _, v in obs]})

    def decoded(col: int, e: np.ndarray) -> np.ndarray:
        return np.array([space.decode(np.where(np.arange(space.dim) == col, u, base))[space.names[col]] for u in e])

    return Surface(x, y, ex, ey, decoded(ix, ex), decoded(iy, ey), np.asarray(mean, float).reshape(grid, grid),
                   np.asarray(sd, float).reshape(grid, grid), space.decode(base), observed, proposal,
                   np.array([pe[ix], pe[iy]]), bool(condition), task)


def draw_surface(surface: Surface, space: SearchSpace | None = None, fig=None):  # noqa: ANN001
    """Heat maps of the predicted mean (left) and sd (right) over the two hyperparameters, with the
    task's observations (dots, darker = better, ringed = best) and the next proposal (red star).
    Axes are the unit cube with decoded tick labels (log-scaled parameters are evenly spaced
    decades). ``space`` gives the ticks (else grid values are used). Returns the Figure."""
    fig = fig if fig is not None else _figure(SIZES["page"])
    axes = fig.subplots(1, 2, sharey=True)
    obs = surface.observed
    for ax, values, title, cmap in ((axes[0], surface.mean, "predicted accuracy (standardized per task)", "viridis"),
                                   (axes[1], surface.sd, "predictive sd", "magma")):
        im = ax.imshow(values, origin="lower", extent=(0, 1, 0, 1), aspect="auto", cmap=cmap, interpolation="bilinear")
        fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02)
        ax.grid(False)
        v = obs["objective"].to_numpy(float)
        ok = np.isfinite(v)
        if ok.any():  # darker = better; the best one ringed
            ax.scatter(obs["x"][ok], obs["y"][ok], c=v[ok], cmap="Greys", vmin=v[ok].min() - 0.2 * np.ptp(v[ok]),
                       s=9, edgecolors="white", linewidths=0.4, label="observed")
            b = int(np.argmax(np.where(ok, v, -np.inf)))
            ax.scatter([obs["x"].iloc[b]], [obs["y"].iloc[b]], s=40, facecolors="none", edgecolors="white", linewidths=1.0)
        px, py = surface.proposal_encoded
        ax.scatter([px], [py], marker="*", s=90, color="#D55E00", edgecolors="white", linewidths=0.5, label="next proposal")
        ax.set_title(title, fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        for axis, name, enc, vals in ((ax.xaxis, surface.x, surface.x_encoded, surface.x_values),
                                     (ax.yaxis, surface.y, surface.y_encoded, surface.y_values)):
            if space is not None:
                pos, labels = _axis_ticks(space, name)
            else:
                pick = np.linspace(0, len(enc) - 1, 5).round().astype(int)
                pos, labels = enc[pick], [f"{float(vals[i]):.3g}" for i in pick]
            axis.set_ticks(pos)
            axis.set_ticklabels(labels)
        ax.set_xlabel(surface.x)
    axes[0].set_ylabel(surface.y)
    # under the panels, off the heat maps
    fig.legend(*axes[0].get_legend_handles_labels(), loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3,
               fontsize=7, frameon=False)
    fig.suptitle(f"{surface.task}{' (conditioned on observations)' if surface.conditioned else ''}", fontsize=8)
    return fig


class LandscapeExplorer(_Explorer):
    """The surrogate landscape of a fitted ``mtl``/``transfer`` strategy (see :func:`landscape_explorer`).

    Controls: ``task`` (Dropdown: tasks, or :attr:`NEW_TASK`), ``x`` and ``y`` (Dropdowns of the
    numeric hyperparameters), ``sliders`` (name -> control in real units for every hyperparameter;
    Dropdown for categoricals; those on an axis are disabled), ``features`` (meta-feature name ->
    FloatText, the new task's meta-features), ``condition`` (Checkbox: condition on the task's
    observations). State: ``surface`` (:class:`Surface`), ``grid_mean`` (its mean), ``proposal`` (dict).
    """

    NEW_TASK = "new task (meta-features below)"

    def __init__(self, strategy, space: SearchSpace, tables=None, seed: int = 0, grid: int = 30):  # noqa: ANN001
        if getattr(strategy, "meta", None) is None:
            raise ValueError("landscape_explorer: the strategy is not fitted")
        numeric = [n for n in space.names if not _is_cat(space, n)]
        if len(numeric) < 2:
            raise ValueError(f"landscape_explorer: need two numeric hyperparameters (space has {space.names})")
        self.strategy, self.space, self.tables, self.seed_, self.grid = strategy, space, tables, seed, grid
        meta = strategy.meta
        fitted = set(meta.tasks)
        tasks = sorted(tables.trials["task"].astype(str).unique()) if tables is not None else list(meta.tasks)
        options = [(f"{t} ({'meta-train' if t in fitted else 'not in fit'})", t) for t in tasks]
        options.append((self.NEW_TASK, self.NEW_TASK))
        self.task = widgets.Dropdown(options=options, value=tasks[0] if tasks else self.NEW_TASK, description="task")
        self.condition = widgets.Checkbox(value=False, description="condition on observed points", indent=False)
        x0 = "lr" if "lr" in numeric else numeric[0]
        self.x = widgets.Dropdown(options=numeric, value=x0, description="x")
        self.y = widgets.Dropdown(options=numeric, value=next(n for n in numeric if n != x0), description="y")
        center = _center(space)
        self.sliders = {n: self._control(n, center[n]) for n in space.names}
        names = list(meta.feature_names or [])
        means = meta.feature_mean if meta.feature_mean is not None else np.zeros(len(names))
        self.features = {n: widgets.FloatText(value=float(m), description=n, style={"description_width": "150px"})
                         for n, m in zip(names, means)}
        rows = [widgets.HBox([self.task, self.condition]), widgets.HBox([self.x, self.y]),
                widgets.GridBox(list(self.sliders.values()), layout=widgets.Layout(grid_template_columns="repeat(2, 50%)"))]
        if self.features:
            acc = widgets.Accordion([widgets.GridBox(list(self.features.values()),
                                                     layout=widgets.Layout(grid_template_columns="repeat(2, 50%)"))])
            acc.set_title(0, "new task meta-features")
            rows.append(acc)
        super().__init__(rows)
        self._enable()
        self.x.observe(self._axis_changed, names="value")
        self.y.observe(self._axis_changed, names="value")
        self.task.observe(lambda _: self._enable(), names="value")  # before the refresh (observers run in order)
        self._watch(self.task, self.condition, *self.sliders.values())
        for w in self.features.values():
            w.observe(self._feature_changed, names="value")
        self.refresh()

    def _control(self, name: str, value: Any) -> widgets.Widget:
        dist = self.space.params[name]
        kw = {"description": name, "continuous_update": False, "style": {"description_width": "90px"}}
        if isinstance(dist, CategoricalDistribution):
            return widgets.Dropdown(options=[(str(c), c) for c in dist.choices], value=value, description=name,
                                    style=kw["style"])
        if isinstance(dist, IntDistribution):
            return widgets.IntSlider(value=int(value), min=dist.low, max=dist.high, **kw)
        if isinstance(dist, FloatDistribution) and dist.log:
            return widgets.FloatLogSlider(value=float(value), base=10, min=math.log10(dist.low), max=math.log10(dist.high),
                                          step=(math.log10(dist.high) - math.log10(dist.low)) / 100, readout_format=".2e", **kw)
        return widgets.FloatSlider(value=float(value), min=dist.low, max=dist.high, step=(dist.high - dist.low) / 100,
                                   readout_format=".3g", **kw)

    def _enable(self) -> None:
        for n, w in self.sliders.items():
            w.disabled = n in (self.x.value, self.y.value)
        new = self.task.value == self.NEW_TASK
        for w in self.features.values():
            w.disabled = not new

    def _axis_changed(self, change: Any) -> None:
        other = self.y if change.owner is self.x else self.x
        with self._held():
            if other.value == change.new:  # keep two different axes: swap
                other.value = change.old
        self._enable()
        self._changed()

    def _feature_changed(self, change: Any) -> None:
        if self.task.value == self.NEW_TASK:
            self._changed()

    def fixed(self) -> dict[str, Any]:
        """The configuration the sliders hold (the axes' own values are ignored)."""
        return {n: w.value for n, w in self.sliders.items()}

    def task_features(self) -> dict[str, float] | None:
        """Meta-features of the chosen task: the FloatTexts for a new task, else from ``tables.tasks``
        or the strategy's meta-train data; ``None`` when the strategy uses none."""
        meta, task = self.strategy.meta, self.task.value
        if meta.feature_names is None:
            return None
        if task == self.NEW_TASK:
            return {n: float(w.value) for n, w in self.features.items()}
        if self.tables is not None and self.tables.tasks is not None and "task" in self.tables.tasks:
            rows = self.tables.tasks.set_index(self.tables.tasks["task"].astype(str))
            if task in rows.index:
                return {n: float(rows.at[task, n]) for n in meta.feature_names if n in rows.columns}
        if task in meta.tasks:
            return dict(zip(meta.feature_names, map(float, meta.raw_features[meta.tasks.index(task)])))
        return None

    def observations(self) -> list[tuple[dict[str, Any], float]]:
        """The chosen task's ``(config, objective)`` pairs (finite objectives) from ``tables.trials``
        or the strategy's meta-train data; none for a new task."""
        meta, task, space = self.strategy.meta, self.task.value, self.space
        if task == self.NEW_TASK:
            return []
        if self.tables is not None:
            t = self.tables.trials
            rows = t[(t["task"].astype(str) == task) & np.isfinite(pd.to_numeric(t["objective"], errors="coerce"))]
            if "status" in rows:
                rows = rows[rows["status"].astype(str).isin(("ok", "diverged"))]
            return list(zip(rows[space.names].to_dict("records"), rows["objective"].astype(float)))
        if task in meta.tasks:
            i = meta.tasks.index(task)
            return [(space.decode(x), float(v)) for x, v in zip(meta.X[i], meta.y[i])]
        return []

    def refresh(self) -> None:
        """Rebuild the surface for the controls' values and draw it."""
        self.surface = surface_data(self.strategy, self.space, self.x.value, self.y.value, self.fixed(), self.task_features(),
                                    self.observations(), self.condition.value, self.grid, self.seed_, self.task.label)
        self.grid_mean, self.proposal = self.surface.mean, self.surface.proposal
        self._show(lambda s: draw_surface(s, self.space), self.surface, [pd.DataFrame({"next proposal": self.proposal})])


def landscape_explorer(strategy, space: SearchSpace, tables=None, seed: int = 0, grid: int = 30) -> LandscapeExplorer:  # noqa: ANN001
    """For a fitted ``mtl``/``transfer`` strategy: choose a task (its meta-features from
    ``tables.tasks``, or typed in for a new task), the x/y hyperparameters and the others' values;
    shows the predicted mean and sd over ``grid`` x ``grid`` points, the task's observations
    (``tables.trials``, or the strategy's meta-train data) and the strategy's next proposal."""
    return LandscapeExplorer(strategy, space, tables, seed, grid)


# ---------------------------------------------------------------- 3. tuning replay
_REPLAY_KEYS = ("strategy", "task", "seed", "trial")
_REPLAY_SKIP = ("curve", "val_loss_curve", "baseline")


@dataclass
class Replay:
    """Tuning runs of one task and seed, up to a trial.

    Attributes:
        task, seed, trial: the selection (``seed`` ``None`` when the results have no seeds).
        curves: per strategy, its whole run: ``trial``, ``value`` (best so far) and ``objective`` if known.
        table: per strategy (index), its row at ``trial`` (its last one when its run is shorter):
            configuration and objective columns where the results have them.
        n_trials: the longest run; ``baseline``: the majority-class accuracy when known.
        column: the curve's column (``best_so_far``).
    """

    task: str
    seed: Any
    trial: int
    curves: dict[str, pd.DataFrame]
    table: pd.DataFrame
    n_trials: int
    baseline: float | None = None
    column: str = "best_so_far"


def replay_data(results: pd.DataFrame, task: str, seed: Any = None, trial: int | None = None,
                column: str = "best_so_far") -> Replay:
    """The :class:`Replay` of ``results`` (rows of :func:`~metahpo_utils.tuning.compare_tuning` or a
    benchmark ``results.csv``) for ``task`` and ``seed`` at ``trial`` (default: the last)."""
    if column not in results:
        raise ValueError(f"replay_data: results have no '{column}' column")
    r = results[results["task"].astype(str) == str(task)]
    if seed is not None and "seed" in r:
        r = r[r["seed"] == seed]
    if r.empty:
        raise ValueError(f"replay_data: no rows for task {task!r}, seed {seed!r}")
    n = int(r["trial"].max())
    trial = n if trial is None else int(trial)
    curves, rows = {}, {}
    for s, d in r.sort_values("trial").groupby("strategy", sort=False):
        cols = {"trial": d["trial"].to_numpy(int), "value": d[column].to_numpy(float)}
        if "objective" in d:
            cols["objective"] = pd.to_numeric(d["objective"], errors="coerce").to_numpy(float)
        curves[str(s)] = pd.DataFrame(cols)
        upto = d[d["trial"] <= trial]
        if len(upto):
            rows[str(s)] = upto.iloc[-1]
    keep = [c for c in r.columns if c not in _REPLAY_KEYS[:3] and c not in _REPLAY_SKIP]
    table = pd.DataFrame({s: row[keep] for s, row in rows.items()}).T if rows else pd.DataFrame(columns=keep)
    table.index.name = "strategy"
    table = table.infer_objects()
    base = float(r["baseline"].iloc[0]) if "baseline" in r and pd.notna(r["baseline"].iloc[0]) else None
    return Replay(str(task), seed, trial, curves, table, n, base, column)


def draw_replay(replay: Replay, fig=None):  # noqa: ANN001
    """Best-so-far per strategy up to the trial (dots: each trial's own objective), the trial marked
    by a vertical line; the axes span the whole runs so nothing jumps. Returns the Figure."""
    fig = fig if fig is not None else _figure(SIZES["page"])
    ax = fig.subplots()
    every = [c["value"].to_numpy() for c in replay.curves.values()]
    every += [c["objective"].to_numpy() for c in replay.curves.values() if "objective" in c]
    if replay.baseline is not None:
        every.append(np.array([replay.baseline]))
    v = np.concatenate(every)
    v = v[np.isfinite(v)]
    for s, c in replay.curves.items():
        st = style(s)
        d = c[c["trial"] <= replay.trial]
        ax.step(d["trial"], d["value"], where="post", color=st["color"], ls=st["ls"], label=s)
        if "objective" in d:
            ax.scatter(d["trial"], d["objective"], s=6, color=st["color"], alpha=0.5, lw=0)
        if len(d):
            ax.scatter([d["trial"].iloc[-1]], [d["value"].iloc[-1]], s=18, color=st["color"], zorder=3)
    if replay.baseline is not None:
        ax.axhline(replay.baseline, color="#999999", lw=0.7, ls=":", label="majority class")
    ax.axvline(replay.trial, color="black", lw=0.8)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0.5, replay.n_trials + 0.5)
    if len(v):
        pad = 0.05 * (np.ptp(v) or 1.0)
        ax.set_ylim(v.min() - pad, v.max() + pad)
    ax.set_xlabel("trial")
    ax.set_ylabel(replay.column.replace("_", " "))
    seed = f", seed {replay.seed}" if replay.seed is not None else ""
    ax.set_title(f"{replay.task}{seed}: trial {replay.trial}", fontsize=8)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    return fig


class TuningReplay(_Explorer):
    """Replay tuning runs trial by trial (see :func:`tuning_replay`).

    Controls: ``task`` and ``seed`` (Dropdowns), ``slider`` (IntSlider over the trials). State:
    ``trial`` (int), ``table`` (the DataFrame shown), ``replay`` (:class:`Replay`).
    """

    def __init__(self, results: pd.DataFrame, column: str = "best_so_far"):
        missing = [c for c in ("strategy", "task", "trial", column) if c not in results]
        if missing:
            raise ValueError(f"tuning_replay: results lack column(s) {missing}")
        self.results, self.column = results, column
        tasks = sorted(results["task"].astype(str).unique())
        self.task = widgets.Dropdown(options=tasks, value=tasks[0], description="task")
        seeds = sorted(results["seed"].unique().tolist()) if "seed" in results else [None]
        self.seed = widgets.Dropdown(options=[(str(s), s) for s in seeds], value=seeds[0], description="seed",
                                     disabled="seed" not in results)
        self.slider = widgets.IntSlider(value=1, min=1, max=1, description="trial", continuous_update=True)
        self.play = widgets.Play(interval=400, min=1, max=1, description="play")
        widgets.jslink((self.play, "value"), (self.slider, "value"))
        super().__init__([widgets.HBox([self.task, self.seed]), widgets.HBox([self.play, self.slider])])
        self.task.observe(self._run_changed, names="value")
        self.seed.observe(self._run_changed, names="value")
        self._watch(self.slider)
        self._fit_slider()
        self.refresh()

    def _run_changed(self, change: Any = None) -> None:
        self._fit_slider()
        self._changed()

    def _fit_slider(self) -> None:
        """The slider spans the chosen run and stands at its end."""
        r = self.results[self.results["task"].astype(str) == self.task.value]
        if self.seed.value is not None:
            r = r[r["seed"] == self.seed.value]
        n = int(r["trial"].max()) if len(r) else 1
        with self._held():
            self.slider.max = self.play.max = max(n, 1)
            self.slider.value = self.slider.max

    def refresh(self) -> None:
        """Rebuild the replay at the slider's trial and draw it."""
        self.replay = replay_data(self.results, self.task.value, self.seed.value, self.slider.value, self.column)
        self.trial, self.table = self.replay.trial, self.replay.table
        self._show(draw_replay, self.replay, [self.table])


def tuning_replay(results: pd.DataFrame, column: str = "best_so_far") -> TuningReplay:
    """Dropdowns for task and seed and a trial slider (with a play button) over tuning results (rows
    of :func:`~metahpo_utils.tuning.compare_tuning` or a benchmark ``results.csv``): each strategy's
    ``column`` curve up to the trial and a table of each strategy's row at that trial."""
    return TuningReplay(results, column)


# ---------------------------------------------------------------- 4. importance explorer
@dataclass
class ImportanceSelection:
    """Tasks whose properties lie in given ranges, and their hyperparameter importance.

    Attributes:
        ranges: property -> inclusive ``(low, high)``.
        selected: the tasks in every range.
        per_task: their rows of the importance table (tasks x hyperparameters).
        importance: mean importance per hyperparameter over them, largest first (NaN when none).
        n_total: tasks with both importances and properties.
    """

    ranges: dict[str, tuple[float, float]]
    selected: list[str]
    per_task: pd.DataFrame
    importance: pd.Series
    n_total: int


def _indexed(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.set_index("task") if "task" in frame.columns else frame.copy()
    out.index = out.index.astype(str)
    return out


def importance_selection(per_task: pd.DataFrame, task_properties: pd.DataFrame,
                         ranges: Mapping[str, tuple[float, float]]) -> ImportanceSelection:
    """Select the tasks of ``per_task`` (from :func:`~metahpo_utils.interpret.importance_per_task`)
    whose ``task_properties`` (indexed by task or with a ``task`` column) lie in every range
    (inclusive; a missing value is outside any range) and average their importances."""
    imp, props = _indexed(per_task), _indexed(task_properties)
    common = [t for t in imp.index if t in props.index]
    keep = pd.Series(True, index=common)
    for col, (lo, hi) in ranges.items():
        v = pd.to_numeric(props.loc[common, col], errors="coerce")
        tol = 1e-9 * max(abs(lo), abs(hi), 1.0)
        keep &= (v >= lo - tol) & (v <= hi + tol)
    selected = [t for t in common if keep[t]]
    sub = imp.loc[selected]
    mean = sub.mean().sort_values(ascending=False) if selected else pd.Series(np.nan, index=imp.columns)
    mean.name = "importance"
    return ImportanceSelection({k: (float(a), float(b)) for k, (a, b) in ranges.items()}, selected, sub, mean, len(common))


def draw_selected_importance(sel: ImportanceSelection, fig=None):  # noqa: ANN001
    """:func:`~metahpo_utils.plotting.draw_importance` of the selected tasks (a note when none).
    Returns the Figure."""
    fig = fig if fig is not None else _figure(SIZES["column"])
    ax = fig.subplots()
    if sel.selected:
        draw_importance(sel.per_task, ax)
    else:
        ax.text(0.5, 0.5, "no task in these ranges", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    ax.set_title(f"{len(sel.selected)} of {sel.n_total} tasks", fontsize=8)
    return fig


def _numeric_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
            and frame[c].notna().any() and frame[c].min() < frame[c].max()]


class ImportanceExplorer(_Explorer):
    """Hyperparameter importance of the tasks in chosen property ranges (see :func:`importance_explorer`).

    Controls: ``ranges`` (property -> FloatRangeSlider). State: ``selected`` (tasks), ``importance``
    (Series of mean importances), ``selection`` (:class:`ImportanceSelection`); ``status`` (HTML)
    says how many tasks are selected.
    """

    def __init__(self, per_task: pd.DataFrame, task_properties: pd.DataFrame, properties: Sequence[str] | None = None):
        self.per_task, self.task_properties = per_task, _indexed(task_properties)
        props = self.task_properties.loc[[t for t in self.task_properties.index if t in set(_indexed(per_task).index)]]
        numeric = _numeric_columns(props)
        chosen = list(properties) if properties is not None else numeric[:3]
        bad = [p for p in chosen if p not in numeric]
        if bad:
            raise ValueError(f"importance_explorer: {bad} are not varying numeric task properties (have {numeric})")
        self.ranges = {}
        for p in chosen:
            lo, hi = float(props[p].min()), float(props[p].max())
            self.ranges[p] = widgets.FloatRangeSlider(value=(lo, hi), min=lo, max=hi, step=(hi - lo) / 100, description=p,
                                                      readout_format=".3g", continuous_update=False,
                                                      style={"description_width": "120px"},
                                                      layout=widgets.Layout(width="480px"))
        self.status = widgets.HTML()
        super().__init__([*self.ranges.values(), self.status])
        self._watch(*self.ranges.values())
        self.refresh()

    def refresh(self) -> None:
        """Reselect the tasks in the sliders' ranges and draw their importance."""
        self.selection = importance_selection(self.per_task, self.task_properties, {p: w.value for p, w in self.ranges.items()})
        self.selected, self.importance = self.selection.selected, self.selection.importance
        self.status.value = f"<b>{len(self.selected)}</b> of {self.selection.n_total} tasks selected"
        self._show(draw_selected_importance, self.selection, [self.importance.to_frame()])


def importance_explorer(per_task: pd.DataFrame, task_properties: pd.DataFrame,
                        properties: Sequence[str] | None = None) -> ImportanceExplorer:
    """One range slider per task property (default: the first three varying numeric columns of
    ``task_properties``, e.g. meta-features or provenance); shows the importance
    (:func:`~metahpo_utils.plotting.draw_importance`) of the tasks inside every range."""
    return ImportanceExplorer(per_task, task_properties, properties)
