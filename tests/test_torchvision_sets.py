"""Tests for metahpo_utils.data.torchvision_sets on tiny files in torchvision's real formats."""

from __future__ import annotations

import os
import pickle
import struct
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from metahpo_utils.data.torchvision_sets import (
    TORCHVISION_DATASETS,
    DatasetNotFoundError,
    load_torchvision,
)

N_TRAIN, N_TEST = 12, 6
MNIST_DIRS = {"mnist": "MNIST", "fashionmnist": "FashionMNIST", "kmnist": "KMNIST"}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail loudly if anything tries to download."""
    import torchvision.datasets.cifar as tv_cifar
    import torchvision.datasets.mnist as tv_mnist
    import torchvision.datasets.svhn as tv_svhn
    import torchvision.datasets.utils as tv_utils

    def forbidden(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    # The dataset modules bind these names at import time, so patch them there too.
    for mod, attr in [
        (tv_utils, "download_url"),
        (tv_utils, "download_and_extract_archive"),
        (tv_mnist, "download_and_extract_archive"),
        (tv_cifar, "download_and_extract_archive"),
        (tv_svhn, "download_url"),
        (urllib.request, "urlopen"),
        (urllib.request, "urlretrieve"),
    ]:
        monkeypatch.setattr(mod, attr, forbidden)


def _labels(n: int) -> np.ndarray:
    return (np.arange(n) * 7 % 10).astype(np.uint8)  # covers several classes


# ---------------------------------------------------------------- writers


def _write_idx(path: Path, arr: np.ndarray) -> None:
    """IDX ubyte: magic 0x0000 08 <ndim> (2049 labels, 2051 images), big-endian int32 dims."""
    assert arr.dtype == np.uint8
    with open(path, "wb") as f:
        f.write(struct.pack(">I", 0x0800 | arr.ndim))
        f.write(struct.pack(f">{arr.ndim}I", *arr.shape))
        f.write(arr.tobytes())


def write_mnist_like(root: Path, name: str, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write <ClassName>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte (uncompressed)."""
    rng = np.random.default_rng(seed)
    raw = root / MNIST_DIRS[name] / "raw"
    raw.mkdir(parents=True)
    out = {}
    for split, prefix, n in [("train", "train", N_TRAIN), ("test", "t10k", N_TEST)]:
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = _labels(n)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", x)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", y)
        out[split] = (x, y)
    return out


def write_cifar10(root: Path, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write cifar-10-batches-py/ like the real (latin1-decoded Python 2) pickles.

    The real batches are dicts with str keys once loaded with encoding="latin1",
    which torchvision does: "data" uint8 (N, 3072) in CHW row-major order,
    "labels" list of int; batches.meta has "label_names".
    """
    rng = np.random.default_rng(seed)
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    per_batch = N_TRAIN // 4  # uneven sizes, including an empty batch, are fine
    sizes = [per_batch, per_batch, per_batch, N_TRAIN - 3 * per_batch, 0]
    chunks = [rng.integers(0, 256, size=(n, 3072), dtype=np.uint8) for n in sizes]
    train_x = np.concatenate(chunks)
    train_y = _labels(N_TRAIN)
    start = 0
    for i, (x, n) in enumerate(zip(chunks, sizes), start=1):
        batch = {"batch_label": f"training batch {i} of 5", "labels": train_y[start : start + n].tolist(),
                 "data": x, "filenames": [f"img_{start + j}.png" for j in range(n)]}
        start += n
        (base / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=2))
    test_x = rng.integers(0, 256, size=(N_TEST, 3072), dtype=np.uint8)
    test_y = _labels(N_TEST)
    test = {"batch_label": "testing batch 1 of 1", "labels": test_y.tolist(), "data": test_x,
            "filenames": [f"t_{j}.png" for j in range(N_TEST)]}
    (base / "test_batch").write_bytes(pickle.dumps(test, protocol=2))
    meta = {"num_cases_per_batch": 10000, "num_vis": 3072,
            "label_names": ["airplane", "automobile", "bird", "cat", "deer",
                            "dog", "frog", "horse", "ship", "truck"]}
    (base / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return {"train": (train_x.reshape(-1, 3, 32, 32), train_y),
            "test": (test_x.reshape(-1, 3, 32, 32), test_y)}


def write_svhn(root: Path, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write {train,test}_32x32.mat: X uint8 (32, 32, 3, N) = (H, W, C, N), y (N, 1) in 1..10."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in [("train", N_TRAIN), ("test", N_TEST)]:
        x_nchw = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        digits = _labels(n).astype(np.int64)
        y_mat = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(n, 1)  # SVHN: 10 means digit 0
        savemat(root / f"{split}_32x32.mat", {"X": x_nchw.transpose(2, 3, 1, 0), "y": y_mat})
        out[split] = (x_nchw, digits)
    return out


def write_dataset(root: Path, name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if name in MNIST_DIRS:
        return write_mnist_like(root, name)
    if name == "cifar10":
        return write_cifar10(root)
    return write_svhn(root)


SHAPES = {"mnist": (1, 28, 28), "fashionmnist": (1, 28, 28), "kmnist": (1, 28, 28),
          "cifar10": (3, 32, 32), "svhn": (3, 32, 32)}

# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("name", TORCHVISION_DATASETS)
@pytest.mark.parametrize("split", ["train", "test"])
def test_roundtrip(tmp_path: Path, name: str, split: str) -> None:
    written = write_dataset(tmp_path, name)
    x_u8, y = written[split]
    X, Y, classes = load_torchvision(name, tmp_path, split=split)

    n = N_TRAIN if split == "train" else N_TEST
    assert X.dtype == torch.float32 and Y.dtype == torch.int64
    assert X.shape == (n, *SHAPES[name]) and Y.shape == (n,)
    assert X.is_contiguous()
    assert float(X.min()) >= 0.0 and float(X.max()) <= 1.0
    assert torch.equal(Y, torch.as_tensor(y, dtype=torch.int64))
    expected = torch.from_numpy(x_u8).reshape(X.shape)  # MNIST-like: add the channel axis
    assert torch.equal(X * 255, expected.to(torch.float32))  # k / 255 * 255 is exact in float32
    assert len(classes) == 10 and all(isinstance(c, str) for c in classes)


def test_class_names(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "c")
    write_svhn(tmp_path / "s")
    write_mnist_like(tmp_path / "f", "fashionmnist")
    assert load_torchvision("cifar10", tmp_path / "c")[2][:2] == ["airplane", "automobile"]
    assert load_torchvision("svhn", tmp_path / "s")[2] == [str(d) for d in range(10)]
    assert load_torchvision("fashionmnist", tmp_path / "f")[2][0] == "T-shirt/top"


def test_svhn_label_10_is_digit_0(tmp_path: Path) -> None:
    write_svhn(tmp_path)
    _, y, _ = load_torchvision("svhn", tmp_path)
    assert int(y.max()) <= 9 and (y == 0).any()
    assert torch.equal(y, torch.as_tensor(_labels(N_TRAIN), dtype=torch.int64))


def test_name_case_insensitive_and_pathlike(tmp_path: Path) -> None:
    write_mnist_like(tmp_path, "kmnist")
    X, _, _ = load_torchvision("KMNIST", os.fspath(tmp_path))
    X2, _, _ = load_torchvision("KMnist", tmp_path)
    assert torch.equal(X, X2)


@pytest.mark.parametrize("name", ["cifar10", "svhn", "mnist"])
def test_download_true_with_files_present_does_not_download(tmp_path: Path, name: str) -> None:
    # Tiny files have the wrong MD5; they must be accepted without re-fetching.
    write_dataset(tmp_path, name)
    X, _, _ = load_torchvision(name, tmp_path, download=True)
    assert X.shape[0] == N_TRAIN


@pytest.mark.parametrize("name", TORCHVISION_DATASETS)
def test_missing_dataset(tmp_path: Path, name: str) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    with pytest.raises(DatasetNotFoundError) as info:
        load_torchvision(name, root)
    msg = str(info.value)
    assert str(root) in msg and "download=True" in msg and "--download" in msg
    assert isinstance(info.value, FileNotFoundError)
    assert list(root.iterdir()) == []  # nothing created, nothing fetched


def test_partial_cifar_is_not_found(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "batches.meta").unlink()
    with pytest.raises(DatasetNotFoundError, match="cifar-10-batches-py"):
        load_torchvision("cifar10", tmp_path)


def test_bad_name_and_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cifar10"):
        load_torchvision("imagenet", tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_torchvision("mnist", tmp_path, split="extra")


def test_tune_a_torchvision_dataset_folder(tmp_path: Path) -> None:
    """A new task from a torchvision dataset under --root (no download), tuned on the CLI."""
    import json

    from metahpo_utils.cli import main
    from metahpo_utils.tuning import resolve_task

    write_mnist_like(tmp_path, "fashionmnist")
    task = resolve_task("FashionMNIST", root=tmp_path, max_examples=N_TRAIN - 1)
    assert task.name == "fashionmnist" and task.input_shape == (1, 28, 28)
    assert len(task.y_train) + len(task.y_val) + len(task.y_test) == N_TRAIN - 1
    assert set(task.classes) <= {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                 "Sneaker", "Bag", "Ankle boot"}
    out = tmp_path / "out"
    assert main(["tune", "--torchvision", "fashionmnist", "--root", str(tmp_path), "--strategy", "random",
                 "--budget-trials", "1", "--epochs", "1", "--out", str(out), "--no-progress"]) == 0
    assert json.loads((out / "best.json").read_text())["task"] == "fashionmnist"
