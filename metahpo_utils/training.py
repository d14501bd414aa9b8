"""Training and evaluation of one configuration on one task, multi-task training and transfer.

Deterministic given a seed (parameter init, shuffling, dropout), records the
per-epoch learning curve and wall time, and stops a diverging run (non-finite or
exploding loss) with ``status="diverged"`` instead of crashing.
"""
from __future__ import annotations

import copy
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .data.tasks import Task
from .errors import MetahpoError
from .models import Classifier, MultiTaskModel, build_model, freeze_blocks

#: A batch loss above this (or non-finite) marks the run as diverged.
DIVERGENCE_LOSS = 100.0


@dataclass
class TrialResult:
    """Outcome of training one configuration.

    Attributes:
        objective: validation accuracy after the last epoch (higher is better). For a
            diverged run: the accuracy of predicting the majority class (what a useless model earns).
        test_objective: test accuracy, same convention.
        status: ``ok`` or ``diverged`` (``failed`` is set by the collector on an exception).
        curve: per-epoch validation accuracy (shorter than ``epochs`` if it diverged).
        val_loss / train_loss: per-epoch validation loss and mean training loss.
        cost_s: wall time of training and evaluation.
        model: the trained model (not stored).
    """

    objective: float
    test_objective: float
    status: str
    curve: list[float]
    val_loss: list[float]
    train_loss: list[float]
    cost_s: float
    model: nn.Module | None = field(default=None, repr=False)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch on ``n`` intra-op threads inside the block (the previous number restored after)."""
    prev = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


@contextmanager
def seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """torch's global random state seeded with ``seed`` inside the block (initialisation and dropout
    draw from it), and the caller's own state restored after: a user's ``torch.manual_seed`` sequence
    is the same whether or not metahpo trained something in between."""
    devices = [device.index or 0] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


#: Intra-op threads for training and fitting the package's small models: one is the fastest and
#: the same numbers on every machine; on a busy machine more threads stall (OpenMP barriers).
SMALL_MODEL_THREADS = 1


class DeviceError(MetahpoError, ValueError):
    """A training device that does not exist here or is not a device at all."""


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The training device: ``None``/``"auto"`` is CUDA when available, else CPU; ``"cpu"``, ``"cuda"``
    and ``"cuda:N"`` are taken as they are.

    Raises:
        DeviceError: not a device name, or CUDA (that GPU) asked for where there is none.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N' (got {device!r})") from None
    if dev.type not in ("cpu", "cuda"):
        raise DeviceError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N' (got {device!r})")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r}: CUDA is not available on this machine (use 'auto' or 'cpu')")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def make_optimizer(params: Any, config: Mapping[str, Any]) -> torch.optim.Optimizer:
    """SGD with momentum or AdamW (``momentum`` is beta1) from a configuration."""
    lr = float(config.get("lr", 1e-2))
    wd = float(config.get("weight_decay", 0.0))
    mom = float(config.get("momentum", 0.9))
    opt = config.get("optimizer", "adamw")
    if opt == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=mom, weight_decay=wd)
    if opt == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=(mom, 0.999), weight_decay=wd)
    raise ValueError(f"config: unknown optimizer '{opt}' (use sgd or adamw)")


@torch.no_grad()
def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch: int = 2048) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of ``model`` on ``(X, y)``."""
    model.eval()
    correct, loss = 0, 0.0
    for i in range(0, len(y), batch):
        logits = model(X[i:i + batch])
        loss += F.cross_entropy(logits, y[i:i + batch], reduction="sum").item()
        correct += (logits.argmax(1) == y[i:i + batch]).sum().item()
    return correct / len(y), loss / len(y)


def majority_accuracy(y_train: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy on ``y`` of predicting the most frequent class of ``y_train`` (a model that learned nothing)."""
    return (y == torch.bincount(y_train).argmax()).float().mean().item()


class Trainer:
    """Resumable training of one model on one task: :meth:`run` adds epochs, :meth:`result` reports.

    ``run(a)`` then ``run(b)`` gives exactly the model of one ``run(a + b)``, even when other
    trainers run in between: the trainer keeps its own shuffling generator and saves and restores
    the global random state that dropout draws from. Successive halving resumes configurations
    this way instead of retraining them.
    """

    def __init__(self, model: nn.Module, task: Task, config: Mapping[str, Any], seed: int, device: torch.device):
        t0 = time.perf_counter()
        self.model, self.task, self.config, self.device = model.to(device), task, config, device
        self.Xtr, self.ytr = task.X_train.to(device), task.y_train.to(device)
        self.Xva, self.yva = task.X_val.to(device), task.y_val.to(device)
        self.opt = make_optimizer([p for p in model.parameters() if p.requires_grad], config)
        self.bs = int(config.get("batch_size", 32))
        # linear learning-rate warm-up over the first ``warmup_steps`` optimizer steps (0: none)
        self.warmup = int(config.get("warmup_steps", 0))
        self.base_lrs = [g["lr"] for g in self.opt.param_groups]
        self.steps = 0
        self.g = torch.Generator().manual_seed(seed + 1)
        self.curve: list[float] = []
        self.val_loss: list[float] = []
        self.train_loss: list[float] = []
        self.status = "ok"
        self._rng = self._get_rng()
        self.cost_s = time.perf_counter() - t0

    @property
    def epochs_done(self) -> int:
        return len(self.curve)

    def _get_rng(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return torch.get_rng_state(), cuda

    def _set_rng(self, state: tuple[torch.Tensor, torch.Tensor | None]) -> None:
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1], self.device)

    def run(self, epochs: int) -> "Trainer":
        """Train ``epochs`` more epochs (none once diverged)."""
        t0 = time.perf_counter()
        outer = self._get_rng()
        self._set_rng(self._rng)
        try:
            with torch_threads(SMALL_MODEL_THREADS):
                for _ in range(epochs):
                    if self.status != "ok":
                        break
                    self._epoch()
        finally:
            self._rng = self._get_rng()
            self._set_rng(outer)
        self.cost_s += time.perf_counter() - t0
        return self

    def _epoch(self) -> None:
        model, opt, bs, Xtr, ytr = self.model, self.opt, self.bs, self.Xtr, self.ytr
        model.train()
        perm = torch.randperm(len(ytr), generator=self.g).to(self.device)
        total, seen = 0.0, 0
        for i in range(0, len(perm), bs):
            idx = perm[i:i + bs]
            loss = F.cross_entropy(model(Xtr[idx]), ytr[idx])
            lv = loss.item()
            if not math.isfinite(lv) or lv > DIVERGENCE_LOSS:
                self.status = "diverged"
                return
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.steps < self.warmup:
                for group, lr in zip(opt.param_groups, self.base_lrs):
                    group["lr"] = lr * (self.steps + 1) / self.warmup
            elif self.steps == self.warmup and self.warmup:
                for group, lr in zip(opt.param_groups, self.base_lrs):
                    group["lr"] = lr
            opt.step()
            self.steps += 1
            total += lv * len(idx)
            seen += len(idx)
        acc, vl = evaluate(model, self.Xva, self.yva)
        if not math.isfinite(vl):
            self.status = "diverged"
            return
        self.curve.append(acc)
        self.val_loss.append(vl)
        self.train_loss.append(total / max(seen, 1))

    def result(self) -> TrialResult:
        """The outcome so far (test accuracy evaluated now; a diverged run scores the majority class)."""
        t0 = time.perf_counter()
        task = self.task
        if self.status == "ok":
            objective = self.curve[-1] if self.curve else majority_accuracy(task.y_train, task.y_val)
            with torch_threads(SMALL_MODEL_THREADS):
                test_objective = evaluate(self.model, task.X_test.to(self.device), task.y_test.to(self.device))[0]
        else:
            objective = majority_accuracy(task.y_train, task.y_val)
            test_objective = majority_accuracy(task.y_train, task.y_test)
        cost = self.cost_s + time.perf_counter() - t0
        return TrialResult(objective, test_objective, self.status, list(self.curve), list(self.val_loss),
                           list(self.train_loss), cost, self.model)


def fit(model: nn.Module, task: Task, config: Mapping[str, Any], epochs: int, seed: int,
        device: torch.device) -> TrialResult:
    """Train the trainable parameters of ``model`` on ``task`` with the optimiser settings of
    ``config``; see :func:`train_config`."""
    return Trainer(model, task, config, seed, device).run(epochs).result()


def train_config(task: Task, config: Mapping[str, Any], epochs: int = 10, seed: int = 0,
                 family: str = "mlp", device: str | torch.device | None = None) -> TrialResult:
    """Train and evaluate one configuration on one task.

    Args:
        task: the task (train / val / test tensors).
        config: hyperparameters (``lr``, ``weight_decay``, ``batch_size``, ``width``, ``depth``,
            ``dropout``, ``optimizer``, ``momentum``, optionally ``warmup_steps``); missing ones take defaults.
        epochs: training epochs.
        seed: seed of initialisation, shuffling and dropout.
        family: model family (``mlp``, ``cnn2d``, ``cnn1d``).
        device: ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda"``.

    Returns:
        The :class:`TrialResult`, with the trained model in ``.model``.
    """
    dev = resolve_device(device)
    with seeded(seed, dev):  # the Trainer runs on SMALL_MODEL_THREADS
        model = build_model(family, task.input_shape, task.n_classes, config)
        return fit(model, task, config, epochs, seed, dev)


# ---------------------------------------------------------------- multi-task and transfer
def train_multitask(tasks: Sequence[Task], config: Mapping[str, Any], epochs: int = 10, seed: int = 0,
                    family: str = "mlp", device: str | torch.device | None = None) -> tuple[MultiTaskModel, list[list[float]]]:
    """Train a shared trunk with one head per task on L_MTL = sum over tasks of each task's loss.

    Each step draws one mini-batch from every task, passes it through the shared
    trunk and that task's own head, and sums the cross-entropies against that
    task's own labels.

    Returns:
        The model and per-task validation-accuracy curves ``[task][epoch]``.
    """
    if len({t.input_shape for t in tasks}) != 1:
        raise ValueError("multitask: all tasks must share one input shape (same base dataset)")
    dev = resolve_device(device)
    with seeded(seed, dev), torch_threads(SMALL_MODEL_THREADS):
        return _train_multitask(tasks, config, epochs, seed, family, dev)


def _train_multitask(tasks: Sequence[Task], config: Mapping[str, Any], epochs: int, seed: int, family: str,
                     dev: torch.device) -> tuple[MultiTaskModel, list[list[float]]]:
    proto = build_model(family, tasks[0].input_shape, 2, config)
    model = MultiTaskModel(proto.trunk, proto.feature_dim, [t.n_classes for t in tasks]).to(dev)
    opt = make_optimizer(model.parameters(), config)
    bs = int(config.get("batch_size", 32))
    g = torch.Generator().manual_seed(seed + 1)
    data = [(t.X_train.to(dev), t.y_train.to(dev)) for t in tasks]
    steps = max(math.ceil(len(y) / bs) for _, y in data)
    curves: list[list[float]] = [[] for _ in tasks]
    for _ in range(epochs):
        model.train()
        perms = [torch.randperm(len(y), generator=g) for _, y in data]
        for s in range(steps):
            loss = torch.zeros((), device=dev)
            for t, ((X, y), perm) in enumerate(zip(data, perms)):
                idx = perm[(s * bs) % len(y):(s * bs) % len(y) + bs].to(dev)  # smaller tasks cycle
                loss = loss + F.cross_entropy(model(X[idx], t), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        for t, task in enumerate(tasks):
            head = _HeadView(model, t)
            curves[t].append(evaluate(head, task.X_val.to(dev), task.y_val.to(dev))[0])
    return model, curves


class _HeadView(nn.Module):
    """A single-task view of a :class:`MultiTaskModel` (shares its parameters)."""

    def __init__(self, model: MultiTaskModel, task: int):
        super().__init__()
        self.model, self.task = model, task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, self.task)


def finetune(trunk: nn.Sequential, feature_dim: int, task: Task, config: Mapping[str, Any],
             n_frozen: int = 0, epochs: int = 10, seed: int = 0,
             device: str | torch.device | None = None) -> TrialResult:
    """Transfer: copy a pretrained trunk, add a fresh head, freeze the first ``n_frozen`` blocks
    and fine-tune the rest on the target task (L_TL: the target's loss, with ``config['lr']``
    as the fine-tuning learning rate).
    """
    dev = resolve_device(device)
    with seeded(seed, dev):
        model = Classifier(copy.deepcopy(trunk), feature_dim, task.n_classes)
        freeze_blocks(model.trunk, n_frozen)
        return fit(model, task, config, epochs, seed, dev)


def pretrain_trunk(sources: Sequence[Task], config: Mapping[str, Any], epochs: int = 10, seed: int = 0,
                   family: str = "mlp", device: str | torch.device | None = None) -> tuple[nn.Sequential, int]:
    """Transfer, step 1: pretrain a trunk on source tasks (multi-task, one head each; heads dropped).

    Returns:
        ``(trunk, feature_dim)`` for :func:`finetune`.
    """
    model, _ = train_multitask(sources, config, epochs=epochs, seed=seed, family=family, device=device)
    return model.trunk.cpu(), model.feature_dim
