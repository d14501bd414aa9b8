"""Device selection (issue 17): ``device="auto"`` trains on CUDA where present and on the CPU elsewhere,
for the population trainer, the sequential trainer and ``tune``; a bad device name or a GPU that is not
there gets one clear error; ``reproduce`` stays on the CPU (its committed numbers are CPU numbers).
The CUDA path itself is exercised only where a GPU is present."""
from __future__ import annotations

import inspect

import pytest
import torch

from metahpo_utils import reproduce, tuning
from metahpo_utils.cli import build_parser
from metahpo_utils.data.datasets import load_dataset
from metahpo_utils.data.tasks import Task
from metahpo_utils.population import train_population
from metahpo_utils.training import DeviceError, resolve_device, train_config

CONFIGS = [dict(depth=1, batch_size=32, lr=0.05, weight_decay=1e-4, width=16, dropout=0.1, optimizer="sgd", momentum=0.9),
           dict(depth=2, batch_size=32, lr=0.003, weight_decay=1e-3, width=24, dropout=0.0, optimizer="adamw", momentum=0.9)]


def test_auto_picks_cuda_only_where_it_is_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") and resolve_device(None) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(DeviceError, match="1 CUDA device"):
        resolve_device("cuda:3")
    assert resolve_device("cpu") == torch.device("cpu")  # asked for explicitly: the CPU even with a GPU


def test_bad_devices_get_one_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for bad in ("gpu", "tpu", "cuda-0", 3.5):
        with pytest.raises(DeviceError, match="device must be 'auto', 'cpu', 'cuda'"):
            resolve_device(bad)
    with pytest.raises(DeviceError, match="CUDA is not available"):
        resolve_device("cuda")


def test_tune_and_its_cli_default_to_auto_and_reproduce_pins_the_cpu():
    assert inspect.signature(tuning.tune).parameters["device"].default == "auto"
    assert inspect.signature(tuning.compare_tuning).parameters["device"].default == "auto"
    args = build_parser().parse_args(["tune", "--task", "digits-005", "--strategy", "random", "--out", "x"])
    assert args.device == "auto"
    assert reproduce.DEVICE == "cpu"
    src = inspect.getsource(reproduce)
    assert src.count("device=DEVICE") == 3  # both collections and the tuning step


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA comparison needs a GPU")
def test_population_on_cuda_matches_the_cpu():  # pragma: no cover - runs where a GPU is present
    ds = load_dataset("digits")
    task = Task.from_arrays(ds.X[:300], ds.y[:300], name="digits-300", seed=0)
    cpu = train_population(task, CONFIGS, epochs=2, seed=0, device="cpu")
    gpu = train_population(task, CONFIGS, epochs=2, seed=0, device="cuda")
    for a, b in zip(cpu.results, gpu.results):
        assert a.val_loss == pytest.approx(b.val_loss, abs=1e-4)


def test_auto_on_this_machine_gives_the_cpu_numbers():
    ds = load_dataset("digits")
    task = Task.from_arrays(ds.X[:300], ds.y[:300], name="digits-300", seed=0)
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: 'auto' is CUDA here (compared by test_population_on_cuda_matches_the_cpu)")
    auto = train_population(task, CONFIGS, epochs=2, seed=0, device="auto")
    cpu = train_population(task, CONFIGS, epochs=2, seed=0, device="cpu")
    assert [r.curve for r in auto.results] == [r.curve for r in cpu.results]
    one = train_config(task, CONFIGS[0], epochs=2, seed=0, device="auto")
    assert one.curve == train_config(task, CONFIGS[0], epochs=2, seed=0, device="cpu").curve
