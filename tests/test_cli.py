"""The CLI: --help everywhere, and bad input -> one line on stderr, exit 2, store untouched."""
from __future__ import annotations

import hashlib
import json
import subprocess

import pytest

from conftest import PYTHON, ROOT
from metahpo_utils.cli import main


def run(args, env, timeout=300):
    return subprocess.run([PYTHON, "-m", "metahpo_utils", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("cmd", ["suite", "collect", "export", "reproduce", "tune", "from-optuna", "benchmark", "perf",
                                 "crossdomain", "compare"])
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as ex:
        main([cmd, "--help"])
    assert ex.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_suite_lists_tasks_and_splits(tmp_path, capsys):
    assert main(["suite", "--suite", "mnist1d", "--tasks", "5", "--out", str(tmp_path / "s.csv")]) == 0
    out = capsys.readouterr().out
    assert "mnist1d-004" in out and "meta-test" in out
    assert (tmp_path / "s.csv").read_text().count("\n") == 6


def _one_error_line(capsys, *words):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for w in words:
        assert w in err[0], err[0]


def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    args = ["--tasks", "3", "--configs", "2", "--epochs", "1", "--store", str(store), "--no-progress"]
    assert main(["collect", "--suite", "imagenet", *args]) == 2
    _one_error_line(capsys, "unknown suite 'imagenet'")
    assert main(["collect", "--suite", "digits", "--ways", "2:11", *args]) == 2
    _one_error_line(capsys, "k-way=11", "10 classes")
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"lr": {"type": "float", "low": 0.1, "high": 0.01, "log": True}}))
    assert main(["collect", "--space", str(space), *args]) == 2
    _one_error_line(capsys, "'lr'", "low < high")
    assert main(["collect", "--suite", "cifar10", "--root", str(tmp_path / "nothing"), *args]) == 2
    _one_error_line(capsys, "cifar10", str(tmp_path / "nothing"), "--download")
    assert main(["collect", "--scheduler", "tcp://127.0.0.1:9", *args]) == 2
    _one_error_line(capsys, "--scheduler", "tcp://127.0.0.1:9")
    assert not store.exists()  # nothing written on bad input

    assert main(["collect", "--suite", "digits", *args]) == 0
    capsys.readouterr()
    digest = hashlib.sha256(store.read_bytes()).hexdigest()
    assert main(["collect", "--suite", "mnist1d", *args]) == 2
    _one_error_line(capsys, "different suite")
    assert main(["collect", "--suite", "digits", *args[:-3], "--epochs", "2", "--store", str(store)]) == 2
    _one_error_line(capsys, "different epochs")
    assert hashlib.sha256(store.read_bytes()).hexdigest() == digest

    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"\x00garbage" * 512)
    assert main(["export", "--store", str(corrupt), "--out", str(tmp_path / "x")]) == 2
    _one_error_line(capsys, "corrupt")
    assert main(["export", "--store", str(tmp_path / "missing.sqlite"), "--out", str(tmp_path / "x")]) == 2
    _one_error_line(capsys, "does not exist")
    assert not (tmp_path / "x").exists()


def test_argument_errors_exit_2_in_a_subprocess(cli_env):
    r = run(["collect", "--store", "x.sqlite", "--configs", "0"], cli_env)
    assert r.returncode == 2 and "--configs" in r.stderr
    r = run(["collect", "--suite", "nope", "--store", "/nonexistent/dir/s.sqlite"], cli_env)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "unknown suite 'nope'" in r.stderr


def test_collect_and_export_end_to_end(tmp_path, cli_env):
    store = tmp_path / "e.sqlite"
    r = run(["collect", "--suite", "mnist1d", "--tasks", "3", "--configs", "3", "--epochs", "2",
             "--store", str(store), "--no-progress"], cli_env)
    assert r.returncode == 0, r.stderr
    assert "9 trials" in r.stdout and "ran 9" in r.stdout
    r = run(["export", "--store", str(store), "--out", str(tmp_path / "out"), "--format", "parquet"], cli_env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "trials.parquet").exists() and (tmp_path / "out" / "tasks.parquet").exists()


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_never_writes_a_store(tmp_path, capsys):
    """An empty or foreign file, or a folder, given as a store is refused untouched (export used to
    turn a 0-byte file into a 32 KB SQLite database)."""
    import sqlite3

    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    assert main(["export", "--store", str(empty), "--out", str(tmp_path / "x")]) == 2
    _one_error_line(capsys, "empty")
    assert empty.stat().st_size == 0
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE people (name TEXT)")
    conn.close()
    before = _digest(foreign)
    assert main(["export", "--store", str(foreign), "--out", str(tmp_path / "x")]) == 2
    _one_error_line(capsys, "not a metahpo store")
    assert _digest(foreign) == before and not (tmp_path / "x").exists()
    assert main(["export", "--store", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    _one_error_line(capsys, "is a folder")


def test_output_paths_are_checked_before_any_work(tmp_path, capsys):
    from strategy_fixtures import shifting_table

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    table, _ = shifting_table(n_tasks=3, n_configs=8)
    t = tmp_path / "t.csv"
    table.to_csv(t, index=False)
    cases = [
        ["collect", "--tasks", "3", "--configs", "2", "--store", str(blocker / "sub" / "s.sqlite")],
        ["benchmark", "--table", str(t), "--maximize", "--budget", "3", "--seeds", "1", "--holdout", "loo",
         "--strategies", "random", "--out", str(blocker / "out")],
        ["tune", "--task", "digits-005", "--budget-trials", "1", "--out", str(blocker)],
        ["suite", "--tasks", "3", "--out", str(blocker / "s.csv")],
        ["figures", "--out", str(blocker)],
    ]
    for args in cases:
        assert main(args) == 2, args
        _one_error_line(capsys, str(blocker))
    assert blocker.read_text() == "x"


def test_collect_with_every_trial_failing_exits_non_zero(tmp_path, capsys):
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True},
                                 "optimizer": {"type": "categorical", "choices": ["rmsprop"]}}))
    store = tmp_path / "s.sqlite"
    code = main(["collect", "--tasks", "3", "--configs", "2", "--epochs", "1", "--space", str(space),
                 "--store", str(store), "--no-progress", "--trainer", "sequential"])
    assert code == 1
    err = capsys.readouterr().err
    assert "every one of the 6 trials run failed" in err and "rmsprop" in err


@pytest.mark.parametrize("arrays, message", [
    ({"X": [[float("nan"), 1.0]] * 20, "y": [0, 1] * 10}, "NaN or infinite"),
    ({"X": [[0.0, 1.0]] * 20, "y": [3] * 20}, "single class"),
    ({"X": [[0.0, 1.0]] * 20, "y": [0.5, 1.0] * 10}, "integer class labels"),
])
def test_tune_data_problems_are_one_line(tmp_path, capsys, arrays, message):
    import numpy as np

    path = tmp_path / "mine.npz"
    np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})
    assert main(["tune", "--data", str(path), "--budget-trials", "1", "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    _one_error_line(capsys, message)
    assert not (tmp_path / "o").exists()


def test_help_imports_no_heavy_module(cli_env):
    """``--help`` stays instant: the CLI module imports neither torch nor pandas nor optuna (each
    command imports what it needs when it runs)."""
    code = ("import sys, metahpo_utils.cli as c; c.build_parser(); "
            "print(sorted(m for m in ('torch', 'pandas', 'optuna', 'sklearn', 'matplotlib') if m in sys.modules))")
    r = subprocess.run([PYTHON, "-c", code], cwd=ROOT, env=cli_env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


def test_one_error_base_class_and_no_cli_flags_in_library_messages():
    import ast
    import importlib
    import pkgutil

    import metahpo_utils
    from metahpo_utils.errors import MetahpoError

    names = {"BenchmarkError", "StrategyError", "CollectError", "DatasetError", "DatasetNotFoundError", "TaskError",
             "SpaceError", "StoreError", "TableError", "ModelError", "TuneError", "OptunaInteropError", "FigureError",
             "InterpretError"}
    found = {}
    for mod in pkgutil.walk_packages(metahpo_utils.__path__, "metahpo_utils."):
        if mod.name.endswith(("cli", "__main__")):
            continue
        m = importlib.import_module(mod.name)
        found.update({n: getattr(m, n) for n in names if hasattr(m, n)})
        source = ast.parse(open(m.__file__).read())
        for node in ast.walk(source):
            if isinstance(node, ast.Raise) and node.exc is not None:
                text = " ".join(c.value for c in ast.walk(node.exc) if isinstance(c, ast.Constant) and isinstance(c.value, str))
                assert " --" not in f" {text}", f"{mod.name}: a library error names a CLI flag: {text!r}"
    assert set(found) == names and all(issubclass(c, MetahpoError) for c in found.values())


def test_library_argument_names_become_flags():
    from metahpo_utils.cli import build_parser, translate

    sub = build_parser()._subparsers._group_actions[0].choices
    assert translate("holdout='half': K must be an integer", sub["benchmark"]) == "--holdout 'half': K must be an integer"
    assert translate("collect: group_by= must be one of", sub["collect"]) == "collect: --group-by must be one of"
    assert translate("suite: n_tasks=2 must be at least 3", sub["collect"]) == "suite: --tasks 2 must be at least 3"
    assert translate("lr=0.1 is fine", sub["benchmark"]) == "lr=0.1 is fine"
