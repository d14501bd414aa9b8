"""The one interface a domain implements (DESIGN.md, "Domains are plug-ins").

A domain supplies suites of JSON-able, seeded task recipes with meta-train / meta-val / meta-test
splits, its model families and default search space, a way to build a model for one configuration
(from which training to the standard trial record follows), and its meta-features. Everything
downstream (store, collection, benchmark, strategies, tuning, interpretability, figures, widgets)
calls these methods and never branches on which domain it holds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from torch import nn

from ..data.tasks import Suite, Task
from ..space import SearchSpace


@dataclass
class TaskBars:
    """A bar chart of one task (the task explorer's): values by label, axis labels and a title."""

    values: Any  # pandas Series: label -> value
    xlabel: str
    ylabel: str
    title: str


class Domain:
    """Base class of a domain plug-in.

    Attributes:
        name: the domain's name (recorded in every meta-dataset it collects).
        suites: suite name -> the suite's defaults (``model``: default family, ``epochs``, ``base``).
        families: model families the domain trains.
        suite_features: meta-features that figures and widgets show for the domain's suites.
        supports_population: whether collections may train its trials as batched populations
            (:mod:`metahpo_utils.population`); otherwise they train one at a time.
    """

    name = "base"
    #: meta-features the suite figure and the task explorer show as histograms
    suite_features: tuple[str, ...] = ("n_classes", "log_n_examples", "class_imbalance")
    #: the committed meta-dataset (:func:`metahpo_utils.tables.default_metadataset`) tuning uses by default
    committed: str = "digits"
    suites: Mapping[str, Any] = {}
    families: tuple[str, ...] = ()
    supports_population = False
    #: what the objective measures (axis labels, tables)
    objective_name = "accuracy"
    #: whether objectives of different tasks stand on different scales, so that comparisons across tasks
    #: normalise each task between its baseline and the best value seen on it (RL returns)
    normalize_across_tasks = False
    #: provenance column that groups a suite's tasks (figures compare importance between the groups)
    task_group: str | None = None

    # ---- suites and tasks
    def build_suite(self, name: str, n_tasks: int | None = None, seed: int = 0, root: str | None = None,
                    ways: int | tuple[int, int] | None = None, download: bool = False,
                    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> Suite:
        """A named suite of task recipes, deterministic per seed, with its splits."""
        raise NotImplementedError

    def _suite(self, name: str, sdef: Any, n_tasks: int | None, seed: int, root: str | None, ways: Any,
               split_fractions: tuple[float, float, float], specs_of: Any) -> Suite:
        """A suite of ``n_tasks`` (default: the suite's) recipes ``specs_of(n)`` with its seeded splits."""
        from ..data.tasks import TaskError, split_names

        n = sdef.default_tasks if n_tasks is None else int(n_tasks)
        if n < 3:
            raise TaskError(f"suite: n_tasks={n} must be at least 3 to fill meta-train/val/test")
        specs = specs_of(n)
        return Suite(name, seed, specs, split_names(list(specs), seed, split_fractions), sdef, root, ways, domain=self.name)

    def make_task(self, spec: Any, name: str, root: str | None = None) -> Task:
        """Build a task from one recipe of a suite (the same recipe always gives the same task)."""
        raise NotImplementedError

    def spec_from_dict(self, d: Mapping[str, Any]) -> Any:
        """A recipe from its JSON form (as stored in a meta-dataset's provenance)."""
        raise NotImplementedError

    def task_size(self, spec: Any) -> int:
        """Approximate training-set size of a recipe (collections group tasks of similar size)."""
        return int(spec.n_per_class) * len(spec.classes)

    # ---- models and spaces
    def default_space(self, family: str | None = None) -> SearchSpace:
        """The search space the domain's suites are collected on."""
        raise NotImplementedError

    def default_family(self, task: Task) -> str:
        """The model family for a task when none is named."""
        raise NotImplementedError

    def build_model(self, family: str, task: Task, config: Mapping[str, Any]) -> nn.Module:
        """An untrained model for one configuration (initialised from torch's global random state)."""
        raise NotImplementedError

    # ---- meta-features
    def metafeatures(self, task: Task, seed: int = 0) -> dict[str, float]:
        """The task's meta-features (names fixed per domain)."""
        raise NotImplementedError

    def baseline(self, task: Task, split: str = "val") -> float:
        """The objective (``split="val"``) or test objective (``"test"``) of a model that learned nothing (a
        diverged run's): here the majority-class accuracy."""
        from ..training import majority_accuracy

        return majority_accuracy(task.y_train, task.y_test if split == "test" else task.y_val)

    # ---- what figures and widgets show of a task
    def examples(self, task: Task, per_task: int = 6) -> tuple[Any, list[str], str]:
        """Example inputs of a task for the suite figure and the task explorer: ``(inputs, labels, kind)``
        with ``inputs`` ``(n, H, W)`` images (``kind="image"``), ``(n, L)`` signals (``"signal"``) or
        ``(n, L)`` token ids (``"text"``), one label each; one example per class first, then in order."""
        import numpy as np

        X, y = task.X_train.numpy(), task.y_train.numpy()
        first = [int(np.flatnonzero(y == c)[0]) for c in np.unique(y)]
        rest = [i for i in range(len(y)) if i not in set(first)]
        idx = (first + rest)[:per_task]
        kind = task.kind
        inputs = X[idx] if kind == "text" else X[idx, 0]
        return inputs, [task.classes[int(y[i])] for i in idx], kind

    def task_bars(self, task: Task) -> TaskBars:
        """What the task explorer's bar chart shows: training examples per class."""
        import numpy as np
        import pandas as pd

        counts = np.bincount(task.y_train.numpy(), minlength=task.n_classes)
        return TaskBars(pd.Series(counts, index=[str(c) for c in task.classes], name="examples"),
                        "class", "training examples", "class balance")

    # ---- training: the same for every domain whose models map a batch of inputs to logits
    def trainer(self, task: Task, config: Mapping[str, Any], seed: int, family: str, device: Any = None) -> Any:
        """A resumable :class:`~metahpo_utils.training.Trainer` of one configuration (the model is
        initialised under ``seed``; the caller's random state is restored)."""
        from ..training import Trainer, resolve_device, seeded

        dev = resolve_device(device)
        with seeded(seed, dev):
            return Trainer(self.build_model(family, task, config), task, config, seed, dev)

    def train(self, task: Task, config: Mapping[str, Any], epochs: int, seed: int = 0, family: str | None = None,
              device: Any = None) -> Any:
        """Train one configuration on one task: the standard trial record
        (:class:`~metahpo_utils.training.TrialResult`: objective, test objective, per-epoch curve,
        cost, status ``ok``/``diverged``)."""
        from ..training import fit, resolve_device, seeded

        dev = resolve_device(device)
        with seeded(seed, dev):
            model = self.build_model(family or self.default_family(task), task, config)
            return fit(model, task, config, epochs, seed, dev)

    def train_group(self, members: list[tuple[Task, Mapping[str, Any]]], epochs: int, seed: int, family: str,
                    device: Any = None) -> list[Any]:
        """Train several (task, configuration) pairs; domains with ``supports_population`` batch them."""
        return [self.train(t, c, epochs, seed, family, device) for t, c in members]
