"""Load small torchvision image datasets as whole in-memory tensors.

The datasets are read through the real ``torchvision.datasets`` classes, but
their raw array attributes (``.data``, ``.targets`` / ``.labels``) are used
directly instead of iterating PIL images, so loading a full dataset takes
seconds. Nothing is downloaded unless ``download=True``.

Expected on-disk layouts under ``root`` (torchvision's own):

* ``mnist`` / ``fashionmnist`` / ``kmnist``: ``<ClassName>/raw/`` holding the
  four uncompressed IDX files ``{train,t10k}-{images-idx3,labels-idx1}-ubyte``.
* ``cifar10``: ``cifar-10-batches-py/`` with ``data_batch_1..5``,
  ``test_batch`` and ``batches.meta``.
* ``svhn``: ``train_32x32.mat`` / ``test_32x32.mat``.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np
import torch

from ..errors import MetahpoError

__all__ = ["TORCHVISION_DATASETS", "DatasetNotFoundError", "load_torchvision"]

TORCHVISION_DATASETS = ("mnist", "fashionmnist", "kmnist", "cifar10", "svhn")

_MNIST_LIKE = {"mnist": "MNIST", "fashionmnist": "FashionMNIST", "kmnist": "KMNIST"}
_SPLITS = ("train", "test")


class DatasetNotFoundError(MetahpoError, FileNotFoundError):
    """A torchvision dataset's files are not under the given root."""


def _not_found(name: str, root: str, expected: str, download: bool) -> DatasetNotFoundError:
    msg = f"torchvision dataset {name!r} not found under root {root!r} (expected {expected})"
    if download:
        msg += "; the download did not produce the expected files"
    else:
        msg += "; pass download=True (CLI: --download) to fetch it"
    return DatasetNotFoundError(msg)


@functools.lru_cache(maxsize=None)
def _fast_classes() -> tuple[type, type]:
    """Subclasses of CIFAR10 / SVHN whose integrity checks only test file existence.

    torchvision MD5-checks every file on each load (hundreds of MB for SVHN),
    which is slow and rejects user-made or test files. Downloads still verify
    the MD5 of what they fetch.
    """
    from torchvision.datasets import CIFAR10, SVHN

    class _CIFAR10(CIFAR10):
        def _files(self) -> list[str]:
            names = [f for f, _ in self.train_list + self.test_list] + [self.meta["filename"]]
            return [os.path.join(self.root, self.base_folder, f) for f in names]

        def _check_integrity(self) -> bool:
            return all(os.path.isfile(p) for p in self._files())

        def _load_meta(self) -> None:
            # The parent re-checks the MD5 of batches.meta here.
            import pickle

            path = os.path.join(self.root, self.base_folder, self.meta["filename"])
            with open(path, "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    class _SVHN(SVHN):
        def _check_integrity(self) -> bool:
            return os.path.isfile(os.path.join(self.root, self.filename))

        def download(self) -> None:
            if not self._check_integrity():
                super().download()

    return _CIFAR10, _SVHN


def load_torchvision(
    name: str,
    root: str | os.PathLike,
    download: bool = False,
    split: str = "train",
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Load a torchvision image dataset split as tensors.

    Args:
        name: Dataset name, case-insensitive; one of ``TORCHVISION_DATASETS``.
        root: Directory holding the dataset in torchvision's layout.
        download: Fetch the dataset if it is missing. Never downloads otherwise.
        split: ``"train"`` or ``"test"``.

    Returns:
        ``(X, y, classes)``: ``X`` float32 of shape ``(N, C, H, W)`` scaled to
        ``[0, 1]``, ``y`` int64 of shape ``(N,)``, and the class names.

    Raises:
        ValueError: Unknown ``name`` or ``split``.
        DatasetNotFoundError: The files are missing (and were not downloaded).
    """
    key = str(name).lower()
    if key not in TORCHVISION_DATASETS:
        raise ValueError(f"unknown torchvision dataset {name!r}; valid: {', '.join(TORCHVISION_DATASETS)}")
    if split not in _SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(_SPLITS)}")
    root = os.path.expanduser(os.fspath(root))
    train = split == "train"

    kwargs: dict[str, Any] = {"train": train}
    if key in _MNIST_LIKE:
        import torchvision.datasets as tvd

        cls: type = getattr(tvd, _MNIST_LIKE[key])
        expected = os.path.join(root, cls.__name__, "raw")
    elif key == "cifar10":
        cls = _fast_classes()[0]
        expected = os.path.join(root, cls.base_folder)
    else:
        cls = _fast_classes()[1]
        expected = os.path.join(root, cls.split_list[split][1])
        kwargs = {"split": split}
    try:
        ds = cls(root, download=download, **kwargs)
    except RuntimeError as e:  # torchvision: "Dataset not found [or corrupted]. ..."
        if "Dataset not found" not in str(e):
            raise
        raise _not_found(key, root, expected, download) from None

    if key in _MNIST_LIKE:
        images = ds.data.unsqueeze(1)  # uint8 (N, 28, 28) -> (N, 1, 28, 28)
        labels = ds.targets
        classes = list(ds.classes)
    elif key == "cifar10":
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
        labels = ds.targets
        classes = list(ds.classes)
    else:
        images = torch.from_numpy(np.ascontiguousarray(ds.data))  # already (N, C, H, W)
        labels = np.asarray(ds.labels).reshape(-1)  # torchvision already maps label 10 -> 0
        classes = [str(d) for d in range(10)]

    X = images.contiguous().to(torch.float32).div_(255.0)
    y = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
    return X, y, classes
