"""The package leaves a user's global state as it found it (torch's random state and thread count,
matplotlib's backend, Optuna's verbosity) and gives the same numbers under any thread setting, under
load and on any x86 processor."""
from __future__ import annotations

import platform
import subprocess

import pytest
import torch

from conftest import PYTHON, ROOT
from metahpo_utils.strategies import make_strategy
from metahpo_utils.training import Trainer, train_config
from strategy_fixtures import shifting_space, shifting_table


@pytest.fixture(scope="module")
def meta():
    table, feats = shifting_table(n_tasks=6, n_configs=24)
    return table, feats


def _draws_after(action) -> float:
    torch.manual_seed(123)
    action()
    return float(torch.rand(1))


@pytest.mark.parametrize("what", ["mtl", "transfer", "train", "tune"])
def test_a_users_random_state_is_untouched(what, meta, tiny_suite):
    table, feats = meta
    actions = {
        "mtl": lambda: make_strategy("mtl", epochs=30).fit(table, feats, space=shifting_space()),
        "transfer": lambda: make_strategy("transfer", epochs=30).fit(table, feats, space=shifting_space()),
        "train": lambda: train_config(tiny_suite.task(tiny_suite.task_names[0]), {"lr": 0.05, "dropout": 0.3}, epochs=1),
        "tune": lambda: __import__("metahpo_utils").tune("digits-005", "random", budget_trials=2, epochs=1),
    }
    assert _draws_after(actions[what]) == _draws_after(lambda: None)


def test_training_runs_on_one_thread_and_restores_the_callers(tiny_suite, monkeypatch):
    seen = []
    original = Trainer._epoch

    def spy(self):
        seen.append(torch.get_num_threads())
        return original(self)

    monkeypatch.setattr(Trainer, "_epoch", spy)
    task = tiny_suite.task(tiny_suite.task_names[1])
    config = {"lr": 0.1, "optimizer": "sgd", "dropout": 0.2, "width": 64}
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (2, 1):
            torch.set_num_threads(threads)
            results.append(train_config(task, config, epochs=2, seed=4))
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    assert seen == [1] * 4
    assert results[0].curve == results[1].curve and results[0].val_loss == results[1].val_loss


def _proposals(table, feats, name: str) -> list[dict]:
    strat = make_strategy(name, epochs=60).fit(table[table.task != "t00"], feats.drop(index="t00"), space=shifting_space())
    session = strat.start(shifting_space(), task_features=feats.loc["t00"], seed=3)
    rows = table[table.task == "t00"].reset_index(drop=True)
    out = []
    for i in range(4):
        out += session.suggest(1)
        session.observe(rows.iloc[i][["x", "lr", "opt"]].to_dict(), float(rows.iloc[i]["objective"]))
    return out


@pytest.mark.parametrize("name", ["mtl", "transfer"])
def test_surrogates_propose_the_same_under_any_threads_and_load(name, meta):
    table, feats = meta
    before = torch.get_num_threads()
    runs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            runs.append(_proposals(table, feats, name))
        busy = subprocess.Popen([PYTHON, "-c", "import time\nt = time.time()\nwhile time.time() - t < 60: pass"])
        try:
            runs.append(_proposals(table, feats, name))
        finally:
            busy.kill()
            busy.wait()
    finally:
        torch.set_num_threads(before)
    assert runs[0] == runs[1] == runs[2]


def test_matplotlib_backend_and_optuna_verbosity_are_restored(tmp_path, meta):
    import matplotlib
    import optuna

    from metahpo_utils.benchmark import prepare, run_benchmark, write_outputs

    table, feats = meta
    res = run_benchmark(prepare(table, budget=4), ["random", "tpe"], 4, 1, "kfold:2", progress=False)
    previous_backend = matplotlib.get_backend()
    matplotlib.use("svg")
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.DEBUG)
    try:
        write_outputs(res, tmp_path / "b")
        assert matplotlib.get_backend() == "svg"
        session = make_strategy("tpe").start(shifting_space(), seed=0)
        cfg = session.suggest(1)[0]
        session.observe(cfg, 0.5)
        assert optuna.logging.get_verbosity() == optuna.logging.DEBUG
    finally:
        optuna.logging.set_verbosity(level)
        matplotlib.use(previous_backend)
    assert (tmp_path / "b" / "regret_curves.png").exists()


def _has_avx2() -> bool:
    try:
        return "avx2" in open("/proc/cpuinfo").read()
    except OSError:
        return False


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64") or not _has_avx2(),
                    reason="the kernel pin concerns x86 processors with AVX2")
def test_cpu_kernels_are_pinned_to_avx2(cli_env):
    """torch picks AVX2 or AVX-512 kernels by processor and they round differently: importing
    metahpo pins AVX2, so that the committed meta-dataset regenerates bit for bit on any of them."""
    env = {k: v for k, v in cli_env.items() if k not in ("ATEN_CPU_CAPABILITY", "METAHPO_NATIVE_KERNELS")}
    code = "import metahpo_utils, torch; print(torch.backends.cpu.get_cpu_capability())"
    r = subprocess.run([PYTHON, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "AVX2", r.stderr
    r = subprocess.run([PYTHON, "-c", code], cwd=ROOT, env={**env, "ATEN_CPU_CAPABILITY": "default"},
                       capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "DEFAULT"  # a caller's own choice wins
