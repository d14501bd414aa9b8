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


@pytest.mark.parametrize("cmd", ["suite", "collect", "export", "reproduce", "tune", "from-optuna", "benchmark", "perf"])
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
