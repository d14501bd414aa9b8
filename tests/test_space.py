from __future__ import annotations

import json

import numpy as np
import pytest
from optuna.distributions import CategoricalDistribution

from metahpo_utils.space import SearchSpace, SpaceError, default_space, float_param, int_param, load_space


def test_default_space_has_required_hyperparameters():
    names = set(default_space().names)
    assert {"lr", "weight_decay", "batch_size", "width", "depth", "dropout", "optimizer", "momentum"} <= names


def test_encode_decode_round_trip_and_unit_cube():
    space = default_space()
    rng = np.random.default_rng(0)
    for _ in range(200):
        u = rng.random(space.dim)
        cfg = space.decode(u)
        v = space.encode(cfg)
        assert np.all((v >= 0) & (v <= 1))
        again = space.decode(v)
        for k in cfg:
            if isinstance(cfg[k], float):
                assert again[k] == pytest.approx(cfg[k], rel=1e-9)
            else:
                assert again[k] == cfg[k]
    cfg = space.decode(np.zeros(space.dim))
    assert cfg["lr"] == pytest.approx(1e-4) and cfg["width"] == 16 and cfg["depth"] == 1
    cfg = space.decode(np.ones(space.dim))
    assert cfg["lr"] == pytest.approx(1.0) and cfg["width"] == 256 and cfg["depth"] == 3


def test_integers_are_equally_likely():
    space = SearchSpace({"depth": int_param(1, 3)})
    vals = [space.decode(np.array([u]))["depth"] for u in np.linspace(0, 1, 3001)]
    counts = np.bincount(vals)[1:]
    assert counts.min() / counts.max() > 0.99


def test_design_is_deterministic_and_space_filling():
    space = default_space()
    a, b = space.design(64, seed=1), space.design(64, seed=1)
    assert a == b
    assert a != space.design(64, seed=2)
    lrs = np.log10([c["lr"] for c in a])
    # Sobol: every decade of the learning-rate range gets configurations
    assert np.histogram(lrs, bins=4, range=(-4, 0))[0].min() >= 10
    assert {c["optimizer"] for c in a} == {"sgd", "adamw"}
    for method in ("lhs", "random"):
        assert len(space.design(10, seed=0, method=method)) == 10
    with pytest.raises(SpaceError, match="unknown method"):
        space.design(4, method="grid")


@pytest.mark.parametrize("dist, msg", [
    (float_param(1.0, 1.0), "low < high"),
    (float_param(0.0, 1.0, log=True), "low > 0"),
    (int_param(5, 2), "low < high"),
])
def test_invalid_bounds_name_the_parameter(dist, msg):
    with pytest.raises(SpaceError, match=msg) as err:
        SearchSpace({"lr": dist})
    assert "'lr'" in str(err.value)


def test_json_round_trip_and_short_form(tmp_path):
    space = default_space()
    assert SearchSpace.from_json(space.to_json()) == space
    short = {"lr": {"type": "float", "low": 1e-3, "high": 1, "log": True},
             "opt": {"type": "categorical", "choices": ["sgd", "adamw"]},
             "depth": {"type": "int", "low": 1, "high": 4}}
    path = tmp_path / "space.json"
    path.write_text(json.dumps(short))
    loaded = load_space(path)
    assert loaded.names == ["lr", "opt", "depth"]
    assert isinstance(loaded.params["opt"], CategoricalDistribution)
    path.write_text(json.dumps({"lr": {"type": "float", "low": 0, "high": 1, "log": True}}))
    with pytest.raises(SpaceError, match="'lr'.*low > 0"):
        load_space(path)
    path.write_text("{not json")
    with pytest.raises(SpaceError, match="not valid JSON"):
        load_space(path)


def test_encode_rejects_unknown_choice_and_missing_keys():
    space = default_space()
    cfg = space.decode(np.full(space.dim, 0.5))
    with pytest.raises(SpaceError, match="not one of"):
        space.encode({**cfg, "optimizer": "rmsprop"})
    cfg.pop("lr")
    with pytest.raises(SpaceError, match="lacks"):
        space.encode(cfg)


def test_choice_indices_read_categoricals_as_decode_does():
    space = SearchSpace({"lr": float_param(1e-4, 1.0, log=True), "op": CategoricalDistribution(("a", "b", "c"))})
    X = np.array([[0.5, 0.0], [0.5, 0.34], [0.5, 0.99], [0.5, 1.0]])
    assert space.choice_indices(X, 1).tolist() == [0, 1, 2, 2]
    assert [space.decode(x)["op"] for x in X] == [("a", "b", "c")[i] for i in space.choice_indices(X, 1)]
