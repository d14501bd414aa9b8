"""Tasks and task suites: a population of classification problems whose best
hyperparameters genuinely differ (few vs many examples, clean vs noisy, ...).

A :class:`TaskSpec` is the recipe (plain numbers, JSON-serialisable); :func:`make_task`
turns it into tensors deterministically. A :class:`Suite` is a named, seeded list of
specs with a meta-train / meta-val / meta-test split (like learn2learn's
``get_tasksets``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import MetahpoError
from .datasets import BaseDataset, load_dataset


class TaskError(MetahpoError, ValueError):
    """A task recipe that cannot be built from its base dataset."""


class Recipe:
    """JSON form of a task recipe dataclass (``classes``, where a recipe has them, a list in JSON and a tuple of
    ``CLASS_TYPE`` here)."""

    CLASS_TYPE: Any = int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if "classes" in d:
            d["classes"] = list(self.classes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        d = dict(d)
        if "classes" in d:
            d["classes"] = tuple(cls.CLASS_TYPE(c) for c in d["classes"])
        return cls(**d)


@dataclass(frozen=True)
class TaskSpec(Recipe):
    """Recipe of one task over a base dataset.

    Attributes:
        base: base dataset name.
        classes: base-class indices used, in order (task label i = base class classes[i]).
        n_per_class: training examples of the largest class.
        n_val_per_class / n_test_per_class: clean, balanced validation / test examples per class.
        label_noise: fraction of training labels replaced by a uniformly random other class.
        noise_std: std of additive Gaussian input noise (all splits).
        rotation: max absolute rotation in degrees, per example (images only).
        downsample: resolution divisor (1 = none; inputs are pooled then upsampled back).
        imbalance: ratio largest/smallest training class (1 = balanced, geometric in between).
        seed: seed of every random choice in the task.
    """

    base: str
    classes: tuple[int, ...]
    n_per_class: int
    n_val_per_class: int
    n_test_per_class: int
    label_noise: float = 0.0
    noise_std: float = 0.0
    rotation: float = 0.0
    downsample: int = 1
    imbalance: float = 1.0
    seed: int = 0


@dataclass
class Task:
    """One classification task: tensors, class names, provenance and seed."""

    name: str
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    provenance: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.X_train.shape[1:])

    @property
    def kind(self) -> str:
        return "image" if self.X_train.dim() == 4 else "signal"

    @property
    def domain(self) -> str:
        """The domain plug-in that trains this task (:mod:`metahpo_utils.domains`)."""
        return "vision"

    @classmethod
    def from_arrays(
        cls,
        X: Any,
        y: Any,
        X_val: Any = None,
        y_val: Any = None,
        X_test: Any = None,
        y_test: Any = None,
        name: str = "user-task",
        val_fraction: float = 0.2,
        seed: int = 0,
    ) -> "Task":
        """Build a task from a user's arrays (numpy or torch); splits off validation/test if not given.

        ``X`` is ``(N, D)`` (treated as a 1-channel signal), ``(N, C, L)`` or ``(N, C, H, W)``;
        ``y`` holds integer labels.
        """
        X, y = _checked_arrays(X, y, "X", "y")
        if X.dim() == 2:
            X = X.unsqueeze(1)
        if X.dim() not in (3, 4) or len(X) != len(y):
            raise TaskError(f"from_arrays: X must be (N, D), (N, C, L) or (N, C, H, W) with len(y) == N (got X {tuple(X.shape)}, y {tuple(y.shape)})")
        labels, y = torch.unique(y, return_inverse=True)
        if len(labels) < 2:
            raise TaskError(f"from_arrays: y holds a single class ({labels.tolist()}); a classification task needs at least 2")
        if len(y) < 10:
            raise TaskError(f"from_arrays: {len(y)} examples are too few to split into training, validation and test")
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(y), generator=g)
        parts: list[tuple[torch.Tensor, torch.Tensor]] = []
        n_hold = max(1, int(round(val_fraction * len(y))))
        rest = perm
        for given_X, given_y in ((X_val, y_val), (X_test, y_test)):
            if given_X is not None:
                which = "val" if given_X is X_val else "test"
                gX, gy = _checked_arrays(given_X, given_y, f"X_{which}", f"y_{which}")
                gX = gX.unsqueeze(1) if gX.dim() == 2 else gX
                unseen = sorted(set(gy.tolist()) - set(labels.tolist()))
                if unseen:
                    raise TaskError(f"from_arrays: held-out labels {unseen} never occur in y")
                parts.append((gX, torch.searchsorted(labels, gy)))
            else:
                parts.append((X[rest[:n_hold]], y[rest[:n_hold]]))
                rest = rest[n_hold:]
        return cls(name, X[rest], y[rest], *parts[0], *parts[1], [str(int(v)) for v in labels],
                   {"base": "user", "n_examples": int(len(y))}, seed)


def _checked_arrays(X: Any, y: Any, xname: str, yname: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs as float32 and labels as int64, or one :class:`TaskError` naming what is wrong."""
    if y is None:
        raise TaskError(f"from_arrays: {xname} is given without {yname}")
    try:
        Xa = np.asarray(X, dtype=np.float32)
        ya = np.asarray(y)
    except (TypeError, ValueError) as err:
        raise TaskError(f"from_arrays: {xname} must be numeric ({err})") from None
    bad = int((~np.isfinite(Xa)).sum())
    if bad:
        raise TaskError(f"from_arrays: {xname} holds {bad} NaN or infinite value(s); impute or drop them first")
    if ya.ndim != 1:
        raise TaskError(f"from_arrays: {yname} must be one label per example (got shape {ya.shape})")
    if ya.dtype.kind == "f":
        if not np.isfinite(ya).all() or not np.all(np.mod(ya, 1) == 0):
            raise TaskError(f"from_arrays: {yname} must hold integer class labels (found NaN or fractional values)")
    elif ya.dtype.kind not in "iub":
        raise TaskError(f"from_arrays: {yname} must hold integer class labels (got dtype {ya.dtype})")
    return torch.from_numpy(Xa), torch.as_tensor(ya.astype(np.int64))


# ---------------------------------------------------------------- transforms
def _rotate(X: torch.Tensor, max_deg: float, g: torch.Generator) -> torch.Tensor:
    """Rotate each image by its own uniform angle in [-max_deg, max_deg] (batched grid_sample)."""
    theta = (torch.rand(len(X), generator=g) * 2 - 1) * math.radians(max_deg)
    c, s = torch.cos(theta), torch.sin(theta)
    mat = torch.zeros(len(X), 2, 3)
    mat[:, 0, 0], mat[:, 0, 1], mat[:, 1, 0], mat[:, 1, 1] = c, -s, s, c
    grid = F.affine_grid(mat, list(X.shape), align_corners=False)
    return F.grid_sample(X, grid, align_corners=False, padding_mode="zeros")


def _downsample(X: torch.Tensor, factor: int) -> torch.Tensor:
    """Lose resolution but keep the shape: average-pool by ``factor`` then upsample (nearest)."""
    if X.dim() == 4:
        return F.interpolate(F.avg_pool2d(X, factor, ceil_mode=True), size=X.shape[-2:], mode="nearest")
    return F.interpolate(F.avg_pool1d(X, factor, ceil_mode=True), size=X.shape[-1], mode="nearest")


def _corrupt(X: torch.Tensor, spec: TaskSpec, g: torch.Generator) -> torch.Tensor:
    if spec.downsample > 1:
        X = _downsample(X, spec.downsample)
    if spec.rotation > 0:
        if X.dim() != 4:
            raise TaskError(f"task: rotation needs images, but '{spec.base}' holds 1-D signals")
        X = _rotate(X, spec.rotation, g)
    if spec.noise_std > 0:
        X = X + spec.noise_std * torch.randn(X.shape, generator=g)
    return X


def make_task(spec: TaskSpec, name: str | None = None, base: BaseDataset | None = None, root: str | None = None) -> Task:
    """Build a task from its recipe; the same spec always gives the same tensors.

    Args:
        spec: the recipe.
        name: task name (defaults to a description of the recipe).
        base: the base dataset (loaded by name if omitted).
        root: root folder for torchvision base datasets.

    Raises:
        TaskError: more classes or examples than the base dataset has.
    """
    base = base if base is not None else load_dataset(spec.base, root=root)
    k = len(spec.classes)
    if k < 2:
        raise TaskError(f"task: a task needs at least 2 classes (got {k})")
    if k > base.n_classes or max(spec.classes) >= base.n_classes or min(spec.classes) < 0 or len(set(spec.classes)) != k:
        raise TaskError(f"task: k-way={k} with classes {list(spec.classes)} does not fit the {base.n_classes} classes of '{base.name}'")
    g = torch.Generator().manual_seed(int(spec.seed))
    counts = base.class_counts()
    # Training counts per class: geometric decay from n_per_class to n_per_class / imbalance.
    ratios = [spec.imbalance ** (-i / (k - 1)) for i in range(k)]
    n_train = [max(2, int(round(spec.n_per_class * r))) for r in ratios]
    Xs = {"train": [], "val": [], "test": []}
    ys = {"train": [], "val": [], "test": []}
    for label, c in enumerate(spec.classes):
        need = n_train[label] + spec.n_val_per_class + spec.n_test_per_class
        if need > counts[c]:
            raise TaskError(
                f"task: class {base.classes[c]!r} of '{base.name}' has {counts[c]} examples, "
                f"{need} needed (n_per_class + val + test); lower n_per_class"
            )
        idx = torch.nonzero(base.y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        cuts = {"test": idx[: spec.n_test_per_class],
                "val": idx[spec.n_test_per_class: spec.n_test_per_class + spec.n_val_per_class],
                "train": idx[spec.n_test_per_class + spec.n_val_per_class: need]}
        for part, ids in cuts.items():
            Xs[part].append(base.X[ids])
            ys[part].append(torch.full((len(ids),), label, dtype=torch.int64))
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for part in ("train", "val", "test"):
        X = torch.cat(Xs[part])
        y = torch.cat(ys[part])
        perm = torch.randperm(len(y), generator=g)
        out[part] = (_corrupt(X[perm], spec, g).contiguous(), y[perm])
    X_tr, y_tr = out["train"]
    if spec.label_noise > 0:
        # Replace a fraction of training labels by a different, uniformly chosen class.
        flip = torch.rand(len(y_tr), generator=g) < spec.label_noise
        shift = torch.randint(1, k, (len(y_tr),), generator=g)
        y_tr = torch.where(flip, (y_tr + shift) % k, y_tr)
    prov = spec.to_dict()
    prov["class_names"] = [base.classes[c] for c in spec.classes]
    return Task(
        name or f"{spec.base}-k{k}-n{spec.n_per_class}-s{spec.seed}",
        X_tr, y_tr, *out["val"], *out["test"],
        classes=[base.classes[c] for c in spec.classes], provenance=prov, seed=int(spec.seed),
    )


# ---------------------------------------------------------------- suites
@dataclass(frozen=True)
class SuiteDef:
    """Defaults of a named suite."""

    base: str
    default_tasks: int = 48
    model: str = "mlp"  # default model family: mlp, cnn2d, cnn1d
    n_val_per_class: int = 30
    n_test_per_class: int = 30
    min_per_class: int = 8
    max_per_class: int = 120
    max_rotation: float = 45.0
    max_noise: float = 0.6
    epochs: int = 10


SUITES: dict[str, SuiteDef] = {
    "digits": SuiteDef("digits", model="mlp", n_val_per_class=30, n_test_per_class=30, max_per_class=110),
    "mnist5k": SuiteDef("mnist5k", model="mlp", n_val_per_class=60, n_test_per_class=60, max_per_class=350),
    "mnist1d": SuiteDef("mnist1d", model="cnn1d", n_val_per_class=60, n_test_per_class=60, max_per_class=350, max_noise=0.5),
    # torchvision-backed suites (need --root); image datasets with enough per class for large tasks
    "mnist": SuiteDef("mnist", model="cnn2d", n_val_per_class=100, n_test_per_class=100, max_per_class=1000),
    "fashionmnist": SuiteDef("fashionmnist", model="cnn2d", n_val_per_class=100, n_test_per_class=100, max_per_class=1000),
    "kmnist": SuiteDef("kmnist", model="cnn2d", n_val_per_class=100, n_test_per_class=100, max_per_class=1000),
    "cifar10": SuiteDef("cifar10", model="cnn2d", n_val_per_class=100, n_test_per_class=100, max_per_class=1000, max_rotation=20.0),
    "svhn": SuiteDef("svhn", model="cnn2d", n_val_per_class=100, n_test_per_class=100, max_per_class=1000, max_rotation=20.0),
}


#: Share of tasks that get each perturbation. Within every block of :data:`FLAG_BLOCK` consecutive
#: tasks exactly rate * FLAG_BLOCK get it (a seeded permutation per block, not a lucky or unlucky
#: draw), and task i's recipe depends only on (seed, i): the first N tasks of a suite are the same
#: whatever its size.
PERTURBATION_RATES = {"label_noise": 0.4, "noise_std": 0.3, "rotation": 0.25, "downsample": 0.2, "imbalance": 0.25}
FLAG_BLOCK = 20


def perturbation_flags(task_index: int, seed: int, image: bool = True) -> dict[str, bool]:
    """Which perturbations task ``task_index`` of a suite gets (see :data:`PERTURBATION_RATES`)."""
    block, pos = divmod(task_index, FLAG_BLOCK)
    rng = np.random.default_rng([seed, 7919, block])
    flags = {}
    for name, rate in PERTURBATION_RATES.items():
        chosen = rng.permutation(FLAG_BLOCK)[: int(round(rate * FLAG_BLOCK))]
        flags[name] = bool(pos in chosen) and (image or name != "rotation")
    return flags


def sample_spec(base: BaseDataset, sdef: SuiteDef, seed: int, ways: tuple[int, int] | None = None,
                flags: dict[str, bool] | None = None) -> TaskSpec:
    """Draw one task recipe: k-way subset, size, label noise, corruption, imbalance.

    Args:
        base: the base dataset.
        sdef: suite defaults (split sizes, size range, corruption ranges).
        seed: the task's seed.
        ways: inclusive range of classes per task (default 2..all).
        flags: which perturbations to apply (see :func:`perturbation_flags`); drawn
            independently at :data:`PERTURBATION_RATES` when omitted.
    """
    rng = np.random.default_rng(seed)
    lo, hi_k = ways or (2, base.n_classes)
    k = int(rng.integers(lo, hi_k + 1))
    classes = tuple(int(c) for c in sorted(rng.choice(base.n_classes, size=k, replace=False)))
    avail = int(base.class_counts()[list(classes)].min()) - sdef.n_val_per_class - sdef.n_test_per_class
    hi = min(sdef.max_per_class, avail)
    if hi < sdef.min_per_class:
        raise TaskError(f"suite: '{base.name}' has too few examples per class for validation/test splits")
    n = int(round(math.exp(rng.uniform(math.log(sdef.min_per_class), math.log(hi)))))
    drawn = {name: bool(rng.random() < rate) for name, rate in PERTURBATION_RATES.items()}
    on = flags if flags is not None else drawn
    label_noise = float(rng.uniform(0.05, 0.4))
    noise_std = float(rng.uniform(0.1, 1.0) * sdef.max_noise)
    rotation = float(rng.uniform(10.0, sdef.max_rotation))
    imbalance = float(rng.uniform(2.0, 8.0))
    return TaskSpec(base.name, classes, n, sdef.n_val_per_class, sdef.n_test_per_class,
                    round(label_noise, 4) if on["label_noise"] else 0.0,
                    round(noise_std, 4) if on["noise_std"] else 0.0,
                    round(rotation, 2) if on["rotation"] and base.kind == "image" else 0.0,
                    2 if on["downsample"] else 1,
                    round(imbalance, 3) if on["imbalance"] else 1.0, int(seed))


@dataclass
class Suite:
    """A named, seeded population of tasks with meta-train / meta-val / meta-test splits."""

    name: str
    seed: int
    specs: dict[str, Any]  # task name -> recipe (TaskSpec, or the domain's own), in order
    splits: dict[str, list[str]]
    definition: Any  # SuiteDef, or the domain's own suite defaults
    root: str | None = None
    ways: tuple[int, int] | None = None
    domain: str = "vision"
    _cache: dict[str, Task] = field(default_factory=dict, repr=False)

    @property
    def task_names(self) -> list[str]:
        return list(self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    def task(self, name: str) -> Task:
        """Build (and cache) a task by name."""
        if name not in self.specs:
            raise TaskError(f"suite '{self.name}' has no task '{name}'")
        if name not in self._cache:
            from ..domains import get_domain

            self._cache[name] = get_domain(self.domain).make_task(self.specs[name], name, self.root)
        return self._cache[name]

    def split_of(self, name: str) -> str:
        return next(s for s, names in self.splits.items() if name in names)

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the suite in a store (a store made for another suite is refused)."""
        fp = {"suite": self.name, "seed": self.seed, "n_tasks": len(self), "base": self.definition.base}
        if self.ways is not None:
            fp["ways"] = list(self.ways)
        return fp


def build_suite(name: str, n_tasks: int | None = None, seed: int = 0, root: str | None = None,
                ways: int | tuple[int, int] | None = None, download: bool = False,
                split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> Suite:
    """Build a named suite deterministically.

    Args:
        name: a suite of any domain (:data:`metahpo_utils.choices.SUITE_NAMES`): a key of :data:`SUITES`
            (``digits``, ``mnist5k``, ``mnist1d``; torchvision ones need ``root``) or a text suite.
        n_tasks: number of tasks (default: the suite's, at least 40).
        seed: suite seed; task i gets a seed derived from (seed, i).
        root: root folder of a torchvision base dataset.
        ways: classes per task, an int or an inclusive (min, max) range (default 2..all classes).
        download: let torchvision download a missing base dataset (off by default).
        split_fractions: meta-train / meta-val / meta-test fractions.

    Returns:
        The :class:`Suite` (tasks are built lazily).
    """
    if name not in SUITES:  # a suite of another domain (text, ...), or an unknown name
        from ..domains import domain_of_suite

        return domain_of_suite(name).build_suite(name, n_tasks=n_tasks, seed=seed, root=root, ways=ways,
                                                 download=download, split_fractions=split_fractions)
    return _build_image_suite(name, n_tasks, seed, root, ways, download, split_fractions)


def _build_image_suite(name: str, n_tasks: int | None, seed: int, root: str | None,
                       ways: int | tuple[int, int] | None, download: bool,
                       split_fractions: tuple[float, float, float]) -> Suite:
    """The image / vector suites (the ``vision`` domain's :meth:`build_suite`)."""
    sdef = SUITES[name]
    n = sdef.default_tasks if n_tasks is None else int(n_tasks)
    if n < 3:
        raise TaskError(f"suite: n_tasks={n} must be at least 3 to fill meta-train/val/test")
    base = load_dataset(sdef.base, root=root, download=download)
    if ways is not None:
        ways = (int(ways), int(ways)) if isinstance(ways, (int, np.integer)) else (int(ways[0]), int(ways[1]))
        if ways[0] < 2 or ways[0] > ways[1]:
            raise TaskError(f"suite: ways= must be at least 2 and min <= max (got {ways[0]}..{ways[1]})")
        if ways[1] > base.n_classes:
            raise TaskError(f"suite: k-way={ways[1]} is larger than the {base.n_classes} classes of '{base.name}'")
    specs: dict[str, TaskSpec] = {}
    for i in range(n):
        task_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
        flags = perturbation_flags(i, seed, image=base.kind == "image")
        specs[f"{name}-{i:03d}"] = sample_spec(base, sdef, task_seed, ways, flags)
    return Suite(name, seed, specs, split_names(list(specs), seed, split_fractions), sdef, root, ways)


def flat_recipe(recipe: dict[str, Any]) -> dict[str, Any]:
    """A recipe's scalar fields, with dict fields flattened (``physics.gravity``) and lists left out."""
    out: dict[str, Any] = {}
    for k, v in dict(recipe).items():
        if isinstance(v, dict):
            out.update({f"{k}.{sub}": x for sub, x in v.items() if not isinstance(x, (list, tuple, dict))})
        elif not isinstance(v, (list, tuple)):
            out[k] = v
    return out


def split_names(names: list[str], seed: int, split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> dict[str, list[str]]:
    """Seeded meta-train / meta-val / meta-test split of a suite's task names (every domain's suites)."""
    n = len(names)
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(split_fractions[1] * n)))
    n_test = max(1, int(round(split_fractions[2] * n)))
    n_train = n - n_val - n_test
    return {
        "meta-train": sorted(names[i] for i in order[:n_train]),
        "meta-val": sorted(names[i] for i in order[n_train:n_train + n_val]),
        "meta-test": sorted(names[i] for i in order[n_train + n_val:]),
    }


def get_tasksets(name: str, n_tasks: int | None = None, seed: int = 0, **kwargs: Any) -> dict[str, list[Task]]:
    """Named splits of a suite as lists of built tasks (meta-train / meta-val / meta-test);
    ``kwargs`` go to :func:`build_suite`."""
    suite = build_suite(name, n_tasks=n_tasks, seed=seed, **kwargs)
    return {split: [suite.task(t) for t in names] for split, names in suite.splits.items()}
