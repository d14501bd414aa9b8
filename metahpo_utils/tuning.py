"""Tune a new task for real: a meta-learned strategy proposes, each proposal is trained, observed,
and the loop returns the best configuration, its trained model and the full history.

    result = tune("digits-003", "adaptive-portfolio", budget_trials=10)    # a built-in task
    result = tune((X, y), "adaptive-portfolio", budget_seconds=60)         # your own arrays
    result.best_config, result.best_value, result.model, result.history

The strategy is fitted on a stored meta-dataset (by default the committed one of the task's domain) without the
new task and without the meta-test tasks; the new task's meta-features are computed from its
training split. ``multi_fidelity="sh"`` runs successive halving over epochs: the strategy's order
decides which configurations start, the learning curves decide which continue. ``multi_fidelity="model"``
lets a learning-curve model fitted on the same meta-train tasks (:mod:`.curves`) predict each configuration's
final value from its first epochs and stop it early when that prediction is confidently below the best so far.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .choices import SUITE_NAMES
from .data.tasks import Task, TaskError, build_suite
from .domains import domain_of_meta, domain_of_task, is_task
from .benchmark import run_seed
from .curves import CurveError, CurveModel, StopRule, early_stopping
from .errors import MetahpoError
from .metadataset import MetaDatasetStore, MetaTables, default_metadataset, load_exported
from .space import SearchSpace
from .strategies import Strategy, make_strategy
from .training import Trainer, TrialResult, resolve_device

#: Multi-fidelity modes: none, successive halving, learning-curve model with early stopping.
MULTI_FIDELITY = (None, "sh", "model")


class TuneError(MetahpoError, ValueError):
    """Bad input to :func:`tune` (task, budget, strategy, meta-dataset)."""


# ---------------------------------------------------------------- the new task
def resolve_task(source: Any, root: str | os.PathLike | None = None, val_fraction: float = 0.2, seed: int = 0,
                 image_size: int = 28, max_examples: int | None = None, n_tasks: int | None = None,
                 suite_seed: int = 0) -> Task:
    """Turn what a user has into a :class:`Task`.

    Args:
        source: a :class:`Task`; the name of a built-in suite task (``"digits-007"``); a folder of
            images in torchvision ``ImageFolder`` layout (one sub-folder per class); the name of a
            torchvision dataset found under ``root`` (``"fashionmnist"``, never downloaded); a tuple
            ``(X, y)`` or ``(X, y, X_val, y_val)``; a dict with ``X``, ``y`` and optionally
            ``X_val``, ``y_val``, ``X_test``, ``y_test`` (numpy arrays or tensors); or a dict with
            ``texts`` and ``labels`` (and optionally ``texts_val``, ``labels_val``): a text task; or a dict
            with ``env`` (a classic-control environment) and optionally ``physics`` and the other fields of
            :class:`~metahpo_utils.domains.rl.RLTaskSpec`: an RL task.
        root: root folder of a torchvision dataset.
        val_fraction: share split off for validation (and again for test) when not given.
        seed: seed of those splits.
        image_size: side length images from a folder are resized to.
        max_examples: keep at most this many examples (a seeded subsample) of a folder or torchvision set.
        n_tasks, suite_seed: the suite a built-in task name refers to (default: the suite's size, seed 0).
    """
    if is_task(source):
        return source
    if isinstance(source, Mapping) and "env" in source:
        from .domains.rl import RLTaskSpec, make_rl_task

        known = set(RLTaskSpec.__dataclass_fields__) | {"name"}
        extra = sorted(set(source) - known)
        if extra:
            raise TuneError(f"task: an environment task takes keys {sorted(known)} (got unknown {extra})")
        try:
            spec = RLTaskSpec(**{k: v for k, v in source.items() if k != "name"})
            return make_rl_task(spec, source.get("name", f"user-{spec.base}"))
        except (TaskError, TypeError) as err:
            raise TuneError(str(err)) from None
    if isinstance(source, Mapping) and "texts" in source:
        from .domains.text import TextTask

        if "labels" not in source:
            raise TuneError(f"task: a dict of texts needs keys 'texts' and 'labels' (got {sorted(source)})")
        try:
            return TextTask.from_texts(source["texts"], source["labels"], source.get("texts_val"), source.get("labels_val"),
                                       name=source.get("name", "user-text"), val_fraction=val_fraction, seed=seed)
        except TaskError as err:
            raise TuneError(str(err)) from None
    if isinstance(source, Mapping):
        if "X" not in source or "y" not in source:
            raise TuneError(f"task: a dict needs keys 'X' and 'y' (or 'texts' and 'labels'; got {sorted(source)})")
        kw = {k: source[k] for k in ("X_val", "y_val", "X_test", "y_test") if k in source}
        return _from_arrays(source["X"], source["y"], kw, source.get("name", "user-task"), val_fraction, seed)
    if isinstance(source, (tuple, list)):
        if len(source) not in (2, 4):
            raise TuneError(f"task: give (X, y) or (X, y, X_val, y_val), not a sequence of {len(source)}")
        kw = {"X_val": source[2], "y_val": source[3]} if len(source) == 4 else {}
        return _from_arrays(source[0], source[1], kw, "user-task", val_fraction, seed)
    if isinstance(source, (str, os.PathLike)):
        text = str(source)
        suite = text.rsplit("-", 1)[0]
        if suite in SUITE_NAMES and text.rsplit("-", 1)[-1].isdigit():
            s = build_suite(suite, n_tasks=n_tasks, seed=suite_seed, root=None if root is None else str(root))
            if text not in s.specs:
                raise TuneError(f"task: suite '{suite}' ({len(s)} tasks) has no task '{text}'")
            return s.task(text)
        if Path(text).is_dir():
            X, y, classes = _image_folder(Path(text), image_size)
            return _subsampled(X, y, classes, Path(text).name, max_examples, val_fraction, seed)
        from .data.torchvision_sets import TORCHVISION_DATASETS, load_torchvision

        if text.lower() in TORCHVISION_DATASETS:
            if root is None:
                raise TuneError(f"task: torchvision dataset '{text}' needs root= (the folder that holds it)")
            X, y, classes = load_torchvision(text, root)
            return _subsampled(X, y, classes, text.lower(), max_examples, val_fraction, seed)
        raise TuneError(f"task: '{text}' is not a built-in task (e.g. digits-007), an image folder or a "
                        f"torchvision dataset ({', '.join(TORCHVISION_DATASETS)})")
    raise TuneError(f"task: cannot use a {type(source).__name__} (give a Task, a task name, a folder, (X, y) or a dict)")


def _from_arrays(X: Any, y: Any, kw: Mapping[str, Any], name: str, val_fraction: float, seed: int) -> Task:
    try:
        return Task.from_arrays(_np(X), _np(y), **{k: _np(v) for k, v in kw.items()}, name=name,
                                val_fraction=val_fraction, seed=seed)
    except TaskError as err:
        raise TuneError(str(err)) from None


def _np(a: Any) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _subsampled(X: torch.Tensor, y: torch.Tensor, classes: Sequence[str], name: str, max_examples: int | None,
                val_fraction: float, seed: int) -> Task:
    if max_examples is not None and len(y) > max_examples:
        keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:max_examples]
        X, y = X[keep], y[keep]
    task = _from_arrays(X, y, {}, name, val_fraction, seed)
    task.classes = [str(classes[int(c)]) for c in task.classes]
    return task


def _image_folder(folder: Path, size: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Images of an ``ImageFolder`` layout as ``(N, C, size, size)`` floats in [0, 1]."""
    from torchvision import datasets, transforms

    from PIL import Image

    def load(path: str) -> Image.Image:  # grey stays one channel (ImageFolder's default makes everything RGB)
        with Image.open(path) as img:
            return img.convert("L" if img.mode in ("1", "L", "I", "I;16", "F") else "RGB")

    tf = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor()])
    try:
        ds = datasets.ImageFolder(str(folder), transform=tf, loader=load)
    except (FileNotFoundError, RuntimeError) as err:
        raise TuneError(f"task: '{folder}' is not an image folder with one sub-folder per class ({err})") from None
    if len(ds.classes) < 2:
        raise TuneError(f"task: '{folder}' has {len(ds.classes)} class folder(s); need at least 2")
    xs, ys = zip(*(ds[i] for i in range(len(ds))))
    channels = max(x.shape[0] for x in xs)
    X = torch.stack([x.expand(channels, -1, -1) for x in xs])  # grey images join colour ones as 3 equal channels
    return X, torch.tensor(ys), list(ds.classes)


# ---------------------------------------------------------------- the meta-dataset and the strategy
def load_metadataset(meta: Any = None) -> MetaTables:
    """``None`` (the committed digits meta-dataset), a :class:`MetaTables`, an exported folder or a store."""
    if meta is None:
        return default_metadataset("digits")
    if isinstance(meta, MetaTables):
        return meta
    path = Path(meta)
    if path.is_dir():
        return load_exported(path)
    with MetaDatasetStore(path, readonly=True) as st:
        return MetaTables(st.trials_table(), st.tasks_table(), st.provenance_table(), st.read_meta())


def committed_metadataset(source: Any) -> MetaTables:
    """The committed meta-dataset of the domain a task source belongs to (without building the task):
    text for a text task or a dict of texts, rl for an RL task or a dict with ``env``, the suite's domain for a
    built-in task name, else digits."""
    from .domains import domain_of_suite, get_domain

    if is_task(source):
        domain = domain_of_task(source)
    elif isinstance(source, Mapping) and "texts" in source:
        domain = get_domain("text")
    elif isinstance(source, Mapping) and "env" in source:
        domain = get_domain("rl")
    elif isinstance(source, str) and source.rsplit("-", 1)[0] in SUITE_NAMES:
        domain = domain_of_suite(source.rsplit("-", 1)[0])
    else:
        domain = get_domain("vision")
    return default_metadataset(domain.committed)


def default_family(tables: MetaTables, task: Task) -> str:
    """The model family a task trains with: the meta-dataset's when it is of the task's domain, else the
    domain's default."""
    domain = domain_of_task(task)
    same = domain_of_meta(tables.meta).name == domain.name
    return (tables.meta.get("family") if same else None) or domain.default_family(task)


def training_tasks(tables: MetaTables, exclude: Sequence[str] = ()) -> list[str]:
    """Tasks a strategy may learn from: all but the meta-test split and ``exclude``."""
    tasks = sorted(tables.trials["task"].astype(str).unique())
    test = set()
    if tables.provenance is not None and "split" in tables.provenance:
        prov = tables.provenance
        test = set(prov.loc[prov["split"] == "meta-test", "task"].astype(str))
    return [t for t in tasks if t not in test and t not in set(exclude)]


def fit_strategy(strategy: str | Strategy, tables: MetaTables, exclude: Sequence[str] = ()) -> Strategy:
    """A strategy fitted on the meta-dataset's meta-train and meta-val tasks (never ``exclude``);
    a strategy object that is already fitted is returned as it is (its space checked)."""
    space = tables.space
    if isinstance(strategy, Strategy):
        if strategy.meta_learned and strategy.meta is None:
            strategy = strategy.fit(*_fit_inputs(tables, exclude), space=space)
        elif strategy.meta is not None and strategy.meta.space != space:
            raise TuneError(f"strategy: fitted on space {strategy.meta.space.names}, the meta-dataset has {space.names}")
        return strategy
    s = make_strategy(strategy)
    return s.fit(*_fit_inputs(tables, exclude), space=space) if s.meta_learned else s


def fit_curve_model(tables: MetaTables, exclude: Sequence[str] = (), epochs: int | None = None,
                    rule: StopRule | None = None, use_metafeatures: bool = True, seed: int = 0) -> CurveModel:
    """A learning-curve model fitted on the tasks a strategy learns from (:func:`training_tasks`: never the
    meta-test tasks nor ``exclude``), predicting the value at ``epochs`` from the rungs of ``rule`` below it."""
    trials, feats = _fit_inputs(tables, exclude)
    epochs = int(epochs if epochs is not None else tables.meta.get("epochs", 10))
    try:
        return CurveModel(horizon=epochs, ks=(rule or StopRule()).rungs(epochs)[:-1] or [1], seed=seed).fit(
            trials, tables.space, feats if use_metafeatures else None)
    except CurveError as err:
        raise TuneError(f"multi_fidelity='model': {err}") from None


def _fit_inputs(tables: MetaTables, exclude: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    keep = training_tasks(tables, exclude)
    if not keep:
        raise TuneError("meta-dataset: no task left to learn from")
    trials = tables.trials[tables.trials["task"].astype(str).isin(keep)]
    feats = None
    if tables.tasks is not None and len(tables.tasks.columns) > 1:
        feats = tables.tasks.set_index("task") if "task" in tables.tasks else tables.tasks
    return trials, feats


# ---------------------------------------------------------------- the loop
@dataclass
class TuneResult:
    """Outcome of :func:`tune`.

    Attributes:
        best_config: the best configuration trained to the full number of epochs.
        best_value: its validation accuracy.
        model: its trained model.
        history: one row per configuration tried: ``trial``, the hyperparameters, ``objective``
            (validation accuracy at the last epoch trained), ``test_objective``, ``status``,
            ``epochs`` (trained), ``curve`` (per-epoch validation accuracy), ``cost_s`` (its
            training time), ``elapsed_s`` (seconds since the start when it finished),
            ``best_so_far`` (best full-fidelity value up to it).
        stopped_by: ``"trials"``, ``"seconds"`` (the budget that ran out first).
        task, strategy: names; ``metafeatures``: the new task's meta-features (or ``None``).
    """

    best_config: dict[str, Any]
    best_value: float
    model: nn.Module | None
    history: pd.DataFrame
    stopped_by: str
    task: str
    strategy: str
    metafeatures: dict[str, float] | None = None
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def tune(task_or_data: Any, strategy: str | Strategy = "adaptive-portfolio", budget_trials: int | None = None,
         budget_seconds: float | None = None, meta: Any = None, epochs: int | None = None, seed: int = 0,
         family: str | None = None, device: str | None = "auto", multi_fidelity: str | None = None,
         eta: int | None = None, min_epochs: int | None = None, use_metafeatures: bool = True, root: str | os.PathLike | None = None,
         callback: Callable[[dict[str, Any]], None] | None = None, session_seed: int | None = None,
         curve_model: CurveModel | None = None, stop_rule: StopRule | None = None, **task_kwargs: Any) -> TuneResult:
    """Tune a new task: propose, train for real, observe, until a budget runs out.

    Args:
        task_or_data: see :func:`resolve_task`.
        strategy: a strategy name (fitted here on ``meta``) or a strategy object (fitted or not).
        budget_trials: most configurations to train.
        budget_seconds: most wall-clock seconds; checked before each training (a training under way
            completes, so the overrun is at most one training).
        meta: the meta-dataset (see :func:`load_metadataset`); gives the space, model family and epochs
            (default: the committed one of the task's domain: digits for images and arrays, text for texts).
        epochs: training epochs of a full trial (default: the meta-dataset's).
        seed: seed of the strategy and of every training (same initialisation for every configuration).
        family: model family (default: the meta-dataset's).
        device: ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        multi_fidelity: ``None`` (every configuration trained ``epochs``), ``"sh"`` (successive
            halving, rungs ``epochs / eta**k`` down to ``min_epochs``; configurations resume, not restart) or
            ``"model"`` (each configuration trains rung by rung; at each rung the curve model predicts its final
            value and ``stop_rule`` stops it or promotes it to the next rung; a stopped configuration's session
            observation is its predicted final value, a finished one's its final value; see
            :func:`~metahpo_utils.curves.early_stopping`).
        eta: the halving rate (default 3 for ``"sh"``, the stop rule's for ``"model"``).
        min_epochs: the smallest rung (default 1 for ``"sh"``, the stop rule's for ``"model"``).
        use_metafeatures: give the strategy the new task's meta-features.
        root: root of a torchvision dataset.
        callback: called with each history row as it is recorded.
        session_seed: seed of the strategy's session alone (default ``seed``); comparisons derive it
            from (seed, task) so that random search draws differently on every task.
        curve_model: ``"model"``: a fitted :class:`~metahpo_utils.curves.CurveModel` whose horizon is ``epochs``
            (default: :func:`fit_curve_model` on the strategy's tasks, the new task excluded).
        stop_rule: ``"model"``: the :class:`~metahpo_utils.curves.StopRule` (default: the one chosen on the
            digits meta-train tasks; ``eta``/``min_epochs`` given here replace its own).
        **task_kwargs: more arguments of :func:`resolve_task`.

    Returns:
        A :class:`TuneResult`.
    """
    if budget_trials is None and budget_seconds is None:
        raise TuneError("tune: give budget_trials or budget_seconds (or both)")
    if budget_trials is not None and int(budget_trials) < 1:
        raise TuneError(f"tune: budget_trials must be at least 1 (got {budget_trials})")
    if budget_seconds is not None and not budget_seconds > 0:
        raise TuneError(f"tune: budget_seconds must be positive (got {budget_seconds})")
    if multi_fidelity not in MULTI_FIDELITY:
        raise TuneError(f"tune: multi_fidelity must be None, 'sh' or 'model' (got {multi_fidelity!r})")
    if eta is not None and int(eta) < 2:
        raise TuneError(f"tune: eta must be at least 2 (got {eta})")
    if min_epochs is not None and int(min_epochs) < 1:
        raise TuneError(f"tune: min_epochs must be at least 1 (got {min_epochs})")
    task = resolve_task(task_or_data, root=root, seed=seed, **task_kwargs)
    tables = load_metadataset(meta) if meta is not None else committed_metadataset(task)
    fitted = fit_strategy(strategy, tables, exclude=[task.name])
    space = tables.space
    epochs = int(epochs if epochs is not None else tables.meta.get("epochs", 10))
    if epochs < 1:
        raise TuneError(f"tune: epochs must be at least 1 (got {epochs})")
    domain = domain_of_task(task)
    stored = domain_of_meta(tables.meta)
    if stored.name != domain.name and not getattr(fitted, "cross_domain", False):
        raise TuneError(f"tune: the meta-dataset was collected in the '{stored.name}' domain but task '{task.name}' "
                        f"is a '{domain.name}' task (use a {domain.name} meta-dataset, or a CrossDomainStrategy)")
    family = family or default_family(tables, task)
    mf = domain.metafeatures(task, seed=seed) if use_metafeatures and fitted.meta_learned else None
    session = fitted.start(space, task_features=mf, seed=seed if session_seed is None else session_seed)
    if multi_fidelity == "model":
        stop_rule = stop_rule or StopRule()
        stop_rule = replace(stop_rule, eta=int(eta or stop_rule.eta), min_epochs=int(min_epochs or stop_rule.min_epochs))
        rungs = stop_rule.rungs(epochs)
        if curve_model is None:
            curve_model = fit_curve_model(tables, [task.name], epochs, stop_rule, use_metafeatures)
        elif curve_model.horizon != epochs or (len(rungs) > 1 and min(curve_model.ks) > rungs[0]):
            raise TuneError(f"tune: curve_model predicts epoch {curve_model.horizon} from k >= {min(curve_model.ks)} "
                            f"epochs; this run has {epochs} epochs and rungs {rungs}")
        curve_feats = None
        if curve_model.feature_names:
            curve_feats = mf if mf is not None else domain.metafeatures(task, seed=seed)
    loop = _Loop(task, space, session, epochs, seed, family, resolve_device(device), budget_trials, budget_seconds, callback)
    if multi_fidelity == "sh":
        loop.successive_halving(int(eta or 3), int(min_epochs or 1))
    elif multi_fidelity == "model":
        loop.model_based(curve_model, stop_rule, curve_feats)
    else:
        loop.plain()
    return loop.result(fitted.name, mf)


class _Loop:
    """The state of one tuning run (history, best model, budgets)."""

    def __init__(self, task: Task, space: SearchSpace, session: Any, epochs: int, seed: int, family: str,
                 device: torch.device, budget_trials: int | None, budget_seconds: float | None,
                 callback: Callable[[dict[str, Any]], None] | None):
        self.task, self.space, self.session, self.epochs, self.seed = task, space, session, epochs, seed
        self.family, self.device, self.callback = family, device, callback
        self.budget_trials, self.budget_seconds = budget_trials, budget_seconds
        self.rows: list[dict[str, Any]] = []
        self.best: tuple[float, dict[str, Any], nn.Module | None] = (-math.inf, {}, None)
        self.stopped_by = ""
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def out_of_budget(self, starting: int = 1) -> bool:
        """Whether starting ``starting`` more configurations is not allowed (and which budget says so)."""
        if self.budget_seconds is not None and self.elapsed() >= self.budget_seconds:
            self.stopped_by = "seconds"
        elif self.budget_trials is not None and len(self.rows) + starting > self.budget_trials:
            self.stopped_by = "trials"
        return bool(self.stopped_by)

    def trainer(self, config: Mapping[str, Any]) -> Trainer:
        # the task's domain builds the model under the seed; the trainer keeps that random state
        return domain_of_task(self.task).trainer(self.task, config, self.seed, self.family, self.device)

    def record(self, config: dict[str, Any], res: TrialResult, rung: int | None = None, row: dict[str, Any] | None = None,
               extra: Mapping[str, Any] | None = None) -> None:
        """Add (or, for a promoted configuration, update) its history row (with ``extra`` columns) and the best
        model."""
        full = len(res.curve) >= self.epochs or res.status != "ok"
        if full and res.objective > self.best[0]:
            self.best = (res.objective, dict(config), res.model)
        best = self.best[0] if self.best[0] > -math.inf else math.nan
        new = {**config, "objective": res.objective, "test_objective": res.test_objective, "status": res.status,
               "epochs": len(res.curve), "curve": list(res.curve), "cost_s": res.cost_s, "elapsed_s": self.elapsed()}
        if rung is not None:
            new["rung"] = rung
        new.update(extra or {})
        if row is None:
            row = {"trial": len(self.rows) + 1}
            self.rows.append(row)
        row.update(new)
        row["best_so_far"] = best
        if self.callback is not None:
            self.callback(dict(row))

    def plain(self) -> None:
        while not self.out_of_budget():
            suggested = self.session.suggest(1)
            if not suggested:
                self.stopped_by = "exhausted"
                break
            config = suggested[0]
            res = self.trainer(config).run(self.epochs).result()
            self.session.observe(config, res.objective)
            self.record(config, res)

    def successive_halving(self, eta: int, min_epochs: int) -> None:
        """Repeated brackets: ``eta**s`` configurations (in the strategy's order) at the lowest rung,
        the best ``1/eta`` continue to the next, until one reaches ``epochs``."""
        s_max = max(0, int(math.floor(math.log(self.epochs / min_epochs, eta) + 1e-9)))
        rungs = [max(min_epochs, int(round(self.epochs / eta ** (s_max - i)))) for i in range(s_max + 1)]
        while not self.out_of_budget():
            n = eta ** s_max
            if self.budget_trials is not None:
                n = min(n, self.budget_trials - len(self.rows))
            configs = self.session.suggest(n)
            if not configs:
                self.stopped_by = "exhausted"
                break
            alive = []  # (config, trainer, history row)
            for c in configs:
                if self.out_of_budget():
                    break
                tr = self.trainer(c).run(rungs[0])
                res = tr.result()
                self.record(c, res, rung=0)
                alive.append((c, tr, self.rows[-1]))
            for k in range(1, len(rungs)):
                keep = max(1, len(alive) // eta)
                alive.sort(key=lambda a: -(a[2]["objective"] if a[1].status == "ok" else -math.inf))
                for c, tr, row in alive[keep:]:  # stopped here: the strategy learns their last value
                    self.session.observe(c, row["objective"])
                alive = alive[:keep]
                if self.budget_seconds is not None and self.elapsed() >= self.budget_seconds:
                    break
                for c, tr, row in alive:
                    res = tr.run(rungs[k] - tr.epochs_done).result()
                    self.record(c, res, rung=k, row=row)
            for c, tr, row in alive:
                self.session.observe(c, row["objective"])

    def model_based(self, model: CurveModel, rule: StopRule, task_features: Mapping[str, float] | None) -> None:
        """:func:`~metahpo_utils.curves.early_stopping` with real training (a started configuration runs to its
        decision whatever the budget). The history row says ``decision`` (``"stopped"``, ``"completed"`` or
        ``"diverged"``), ``predicted``/``predicted_sd`` (the last prediction) and ``decisions`` (one dict per rung
        decided: epochs, value, prediction, best so far, decision)."""

        def start(config: dict[str, Any]) -> _TrainerRun:
            return _TrainerRun(self.trainer(config), config, self.epochs)

        def room() -> int:
            if self.out_of_budget():
                return 0
            return self.budget_trials - len(self.rows) if self.budget_trials is not None else 1 << 30

        def report(run: _TrainerRun, rung: int, decision: str, mean: float, sd: float, decisions: list) -> None:
            self.record(run.config, run.res, rung=rung, row=run.row, extra={
                "decision": decision, "predicted": mean, "predicted_sd": sd, "decisions": list(decisions)})
            if run.row is None:
                run.row = self.rows[-1]

        if early_stopping(self.session, start, model, rule, self.epochs, task_features, room, report):
            self.stopped_by = "exhausted"

    def result(self, strategy: str, mf: dict[str, float] | None) -> TuneResult:
        domain = domain_of_task(self.task)
        hist = pd.DataFrame(self.rows)
        value, config, model = self.best
        if model is None and self.rows:  # nothing reached full fidelity (budget ran out mid-bracket)
            top = max(self.rows, key=lambda r: r["objective"])
            value, config = top["objective"], {n: top[n] for n in self.space.names}
        return TuneResult(config, float(value) if self.rows else math.nan, model, hist, self.stopped_by or "trials",
                          self.task.name, strategy, mf, self.elapsed(),
                          {"epochs": self.epochs, "baseline": domain.baseline(self.task),
                           "test_baseline": domain.baseline(self.task, "test"), "objective_name": domain.objective_name})


class _TrainerRun:
    """A configuration trained for real, rung by rung, as :func:`~metahpo_utils.curves.early_stopping` drives it."""

    def __init__(self, trainer: Trainer, config: dict[str, Any], epochs: int):
        self.trainer, self.config, self.epochs = trainer, config, epochs
        self.res: TrialResult | None = None
        self.row: dict[str, Any] | None = None  # its history row, once recorded

    def advance(self, epochs: int) -> None:
        """Train on to ``epochs`` epochs in all (resumed; nothing more once diverged)."""
        if self.res is None or (self.trainer.epochs_done < epochs and self.trainer.status == "ok"):
            self.res = self.trainer.run(epochs - self.trainer.epochs_done).result()

    curve = property(lambda self: self.res.curve)
    val_loss = property(lambda self: self.res.val_loss)
    objective = property(lambda self: self.res.objective)
    status = property(lambda self: self.res.status)
    final = property(lambda self: self.res.status != "ok" or len(self.res.curve) >= self.epochs)
    seconds_per_epoch = property(lambda self: self.trainer.cost_s / max(1, self.trainer.epochs_done))


# ---------------------------------------------------------------- side-by-side comparison
#: Suffix of a strategy name that runs it with successive halving (``adaptive-portfolio+sh``).
SH_SUFFIX = "+sh"
#: Suffix of a strategy name that runs it with the learning-curve model's early stopping (``multi_fidelity="model"``).
MF_SUFFIX = "+mf"


def split_fidelity(label: str) -> tuple[str, str | None]:
    """``"adaptive-portfolio+mf"`` -> ``("adaptive-portfolio", "model")``; ``+sh`` -> ``"sh"``; else ``None``."""
    for suffix, mode in ((SH_SUFFIX, "sh"), (MF_SUFFIX, "model")):
        if label.endswith(suffix):
            return label[:-len(suffix)], mode
    return label, None


#: Trials at which :func:`comparison_summary` reports the best value.
SUMMARY_TRIALS = (1, 3, 5, 10, 20, 30, 50)


def compare_tuning(tasks: Sequence[Any], strategies: Sequence[str] = ("adaptive-portfolio", "random", "tpe"),
                   seeds: Sequence[int] = (0, 1, 2), budget_trials: int = 20, meta: Any = None,
                   epochs: int | None = None, device: str | None = "auto", progress: bool = False,
                   workers: int = 1, scheduler: str | None = None) -> pd.DataFrame:
    """Tune every task with every strategy and seed for real, with the same trial budget.

    A name ending in ``+sh`` runs that strategy with successive halving, ``+mf`` with the learning-curve model's
    early stopping (``multi_fidelity="model"``). Strategies and curve models are fitted once per process
    (meta-training is offline and not timed); the clock of each run covers its proposals and
    trainings. With ``workers > 1`` (a Dask ``LocalCluster``) or ``scheduler`` (an existing cluster) the
    (strategy, task, seed) runs are spread over worker processes, one run per worker at a time: every value
    is the same as in one process (each run's seeds derive from its seed and task, fitting is deterministic);
    only the timings depend on what else the machine does.

    Returns:
        One row per (strategy, task, seed, trial): ``objective``, ``test_objective``, ``status``,
        ``epochs``, ``best_so_far`` (full-fidelity), ``elapsed_s``, ``cost_s``, ``baseline`` (the
        validation accuracy of predicting the majority class: what one has before any result),
        ``best_test_objective`` (test accuracy of the best configuration so far), ``test_baseline`` (the
        majority class's test accuracy). For RL both baselines are the random policy's return. Rows are in the
        order of tasks, then seeds, then strategies, whatever order the runs finished in.
    """
    import uuid

    from .collection import connect_scheduler, run_jobs

    resolved = [resolve_task(t) for t in tasks]
    tables = load_metadataset(meta) if meta is not None else committed_metadataset(resolved[0])
    token = uuid.uuid4().hex  # fitted strategies are cached per process for this comparison only
    jobs = [{"index": i, "label": s, "task": t, "seed": seed, "budget_trials": budget_trials, "epochs": epochs,
             "device": device, "token": token}
            for i, (t, seed, s) in enumerate((t, seed, s) for t in resolved for seed in seeds for s in strategies)]
    client = connect_scheduler(scheduler) if scheduler is not None else None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="tuning runs")
    done: dict[int, list[dict[str, Any]]] = {}
    try:
        for index, rows in run_jobs(jobs, workers, client, fn=_tuning_run, shared=tables):
            done[index] = rows
            if bar is not None:
                bar.update()
    finally:
        if bar is not None:
            bar.close()
        if client is not None:
            client.close()
    return pd.DataFrame([row for i in range(len(jobs)) for row in done[i]])


#: Per process: the comparison's token, its fitted strategies, and the domains warmed up (torch's start-up
#: paid before the first timed run).
_RUN_CACHE: dict[str, Any] = {"token": None, "fitted": {}, "warm": set()}


def _tuning_run(job: dict[str, Any], tables: MetaTables) -> tuple[int, list[dict[str, Any]]]:
    """One (strategy, task, seed) run of :func:`compare_tuning` (in-process or on a Dask worker): its rows."""
    cache = _RUN_CACHE
    if cache["token"] != job["token"]:
        cache.update(token=job["token"], fitted={})
    task, label, seed = job["task"], job["label"], job["seed"]
    warm = (domain_of_task(task).name, job["device"])
    if warm not in cache["warm"]:
        _warm_up(task, tables, job["device"])
        cache["warm"].add(warm)
    name, mode = split_fidelity(label)
    key = (name, tuple(training_tasks(tables, [task.name])))
    if key not in cache["fitted"]:
        cache["fitted"][key] = fit_strategy(name, tables, exclude=[task.name])
    curve_model = None
    if mode == "model":
        ckey = ("curve model", job["epochs"], key[1])
        if ckey not in cache["fitted"]:
            cache["fitted"][ckey] = fit_curve_model(tables, [task.name], job["epochs"])  # the default rule's rungs
        curve_model = cache["fitted"][ckey]
    res = tune(task, cache["fitted"][key], budget_trials=job["budget_trials"], meta=tables, epochs=job["epochs"],
               seed=seed, device=job["device"], multi_fidelity=mode, session_seed=run_seed(seed, task.name),
               curve_model=curve_model)
    h = res.history.sort_values("elapsed_s")  # successive halving finishes trials out of order
    best = best_so_far(h, res.extra["epochs"])
    best_test = _test_of_best(h, res.extra["epochs"])
    rows = [{"strategy": label, "task": task.name, "seed": seed, "trial": i + 1,
             "objective": r["objective"], "test_objective": r["test_objective"], "status": r["status"],
             "epochs": r["epochs"], "best_so_far": best.iloc[i], "elapsed_s": r["elapsed_s"],
             "cost_s": r["cost_s"], "baseline": res.extra["baseline"], "best_test_objective": best_test[i],
             "test_baseline": res.extra["test_baseline"]} for i, r in enumerate(h.to_dict("records"))]
    return job["index"], rows


def best_so_far(history: pd.DataFrame, epochs: int) -> pd.Series:
    """Best final validation accuracy up to each row of a history in time order: rows trained the full
    ``epochs`` or diverged (a diverged run's majority-class accuracy is its final result) count; a
    lower rung of successive halving does not. NaN until the first final result."""
    return history["objective"].where(_full(history, epochs)).cummax().ffill()


def _full(h: pd.DataFrame, epochs: int) -> pd.Series:
    return (h["epochs"] >= epochs) | (h["status"] != "ok")


def _test_of_best(h: pd.DataFrame, epochs: int) -> list[float]:
    """Per row of a history in time order: the test accuracy of the configuration with the best final
    validation accuracy so far (the first of equals; NaN before the first final result)."""
    out, best, test = [], -math.inf, math.nan
    for obj, tst, full in zip(h["objective"], h["test_objective"], _full(h, epochs)):
        if full and obj > best:
            best, test = obj, float(tst)
        out.append(test)
    return out


def _warm_up(task: Task, tables: MetaTables, device: str | None) -> None:
    """One untimed training first, so the first timed run does not pay torch's start-up."""
    domain_of_task(task).train(task, tables.space.design(1, seed=0)[0], epochs=1, family=default_family(tables, task),
                               device=device)


def normalize_results(results: pd.DataFrame, reference: MetaTables | None = None) -> pd.DataFrame:
    """A comparison's values on one scale per task, for tasks whose objectives stand on different scales (RL
    returns): 0 is the untrained ``baseline`` (the random policy), 1 the best value seen on the task (in these
    runs, or in ``reference``'s rows of the task when given). Validation values (``objective``,
    ``best_so_far``, ``baseline``) use the validation baseline and best; test values (``test_objective``,
    ``best_test_objective``) use ``test_baseline`` and the best test value seen.

    Returns:
        A copy of ``results`` with those columns normalized (the others unchanged).
    """
    out = results.copy()
    ref = None
    if reference is not None:
        ref = reference.trials.assign(task=reference.trials["task"].astype(str)).groupby("task")[["objective", "test_objective"]].max()
    for task, idx in out.groupby(out["task"].astype(str)).groups.items():
        d = out.loc[idx]
        for lo_col, hi_col, cols in (("baseline", "objective", ["objective", "best_so_far", "baseline"]),
                                     ("test_baseline", "test_objective", ["test_objective", "best_test_objective"])):
            lo = float(d[lo_col].iloc[0])
            hi = float(d[hi_col].max())
            if ref is not None and task in ref.index:
                hi = max(hi, float(ref.at[task, hi_col]))
            span = hi - lo if hi > lo else 1.0
            out.loc[idx, cols] = (d[cols].astype(float) - lo) / span
        out.loc[idx, "test_baseline"] = 0.0
    return out


def comparison_summary(results: pd.DataFrame, seconds: Sequence[float] | None = None) -> pd.DataFrame:
    """Per strategy: mean (over tasks and seeds) best validation accuracy at given trials and
    seconds, the test accuracy of the configuration chosen at the end, and the mean wall time."""
    out = []
    budget = int(results["trial"].max())
    trials = [k for k in SUMMARY_TRIALS if k <= budget]
    if seconds is None:  # an eighth, a quarter, half and all of the median run's duration
        end = float(results.groupby(["strategy", "task", "seed"])["elapsed_s"].max().median())
        seconds = [float(f"{end * f:.2g}") for f in (0.125, 0.25, 0.5, 1.0)]
    for s, d in results.groupby("strategy", sort=False):
        row: dict[str, Any] = {"strategy": s}
        for k in trials:
            row[f"val@{k}"] = d[d["trial"] == k]["best_so_far"].mean()
        for sec in seconds:
            row[f"val@{sec:g}s"] = np.mean([_best_at(r, sec) for _, r in d.groupby(["task", "seed"])])
        last = d[d["trial"] == d.groupby(["task", "seed"])["trial"].transform("max")]
        row["test_of_chosen"] = last["best_test_objective"].mean()
        row["wall_s"] = last["elapsed_s"].mean()
        out.append(row)
    return pd.DataFrame(out)


def _best_at(run: pd.DataFrame, t: float) -> float:
    """Best final value a run had reached at ``t`` seconds; before its first result, the majority-class
    ``baseline`` (NaN if the rows lack it)."""
    done = run[run["elapsed_s"] <= t]["best_so_far"].dropna()
    if len(done):
        return float(done.iloc[-1])
    return float(run["baseline"].iloc[0]) if "baseline" in run else math.nan


def comparison_markdown(summary: pd.DataFrame) -> str:
    """A comparison summary as a Markdown table (NaN: no full-fidelity result yet)."""
    cols = list(summary.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in summary.iterrows():
        cells = [f"`{r[c]}`" if c == "strategy" else ("—" if r[c] != r[c] else f"{r[c]:.4f}" if c != "wall_s" else f"{r[c]:.1f}")
                 for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
