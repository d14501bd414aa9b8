"""Saving and loading fitted strategies: round trips, and every refused case."""
from __future__ import annotations

import json
import pickle

import pytest
import torch

from metahpo_utils.space import SearchSpace, float_param
from metahpo_utils.strategies import StrategyError, make_strategy
from metahpo_utils.strategies.persist import load_strategy, save_strategy
from strategy_fixtures import shifting_space, shifting_table

SETTINGS = {"portfolio": {"size": 7}, "adaptive-portfolio": {"k_features": 3}, "knn": {"k": 2}, "mapping": {},
            "mtl": {"epochs": 30}, "transfer": {"epochs": 20, "K": 2}, "ws-cmaes": {}, "random": {}}


@pytest.fixture(scope="module")
def data():
    table, feats = shifting_table(n_tasks=6, n_configs=24)
    return table, feats, shifting_space()


def _run(strategy, space, feats, n=6):
    session = strategy.start(space, task_features=feats, seed=3)
    out = []
    for _ in range(n):
        c = session.suggest(1)[0]
        session.observe(c, c["x"] - abs(c["x"] - 0.4))
        out.append(c)
    return out


@pytest.mark.parametrize("name", list(SETTINGS))
def test_round_trip_gives_the_same_suggestions(name, data, tmp_path):
    table, feats, space = data
    s = make_strategy(name, **SETTINGS[name]).fit(table, feats, space=space)
    save_strategy(s, tmp_path / name)
    loaded = load_strategy(tmp_path / name, space=space)
    assert type(loaded) is type(s) and loaded.init_params == s.init_params
    for key, value in SETTINGS[name].items():
        assert getattr(loaded, key) == value
    assert _run(loaded, space, feats.iloc[2]) == _run(s, space, feats.iloc[2])
    # the state file is plain tensors: it loads with weights_only=True on its own
    state = torch.load(tmp_path / name / "state.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_trained_weights_are_loaded_not_retrained(data, tmp_path, monkeypatch):
    table, feats, space = data
    s = make_strategy("mtl", epochs=30).fit(table, feats, space=space)
    save_strategy(s, tmp_path / "m")
    from metahpo_utils.strategies.surrogates import MtlStrategy

    monkeypatch.setattr(MtlStrategy, "_fit", lambda self: pytest.fail("retrained on load"))
    loaded = load_strategy(tmp_path / "m")
    assert loaded.history == s.history
    assert torch.equal(loaded.phi.net[0].weight, s.phi.net[0].weight)


@pytest.fixture
def saved(data, tmp_path):
    table, feats, space = data
    return save_strategy(make_strategy("portfolio").fit(table, feats, space=space), tmp_path / "p")


def _edit_info(folder, **changes):
    info = json.loads((folder / "strategy.json").read_text())
    info.update(changes)
    (folder / "strategy.json").write_text(json.dumps(info))


def test_refuses_another_space(saved):
    other = SearchSpace({"x": float_param(0.0, 2.0), "lr": float_param(1e-4, 1.0, log=True),
                         "opt": shifting_space().params["opt"]})
    with pytest.raises(StrategyError, match="other bounds or choices"):
        load_strategy(saved, space=other)
    with pytest.raises(StrategyError, match=r"fitted on space \['x', 'lr', 'opt'\], not \['lr'\]"):
        load_strategy(saved, space=SearchSpace({"lr": float_param(1e-4, 1.0, log=True)}))


def test_refuses_another_version_or_format(saved):
    _edit_info(saved, package_version="9.3.0")
    with pytest.raises(StrategyError, match="saved by metahpo 9.3.0"):
        load_strategy(saved)
    _edit_info(saved, package_version="0.1.7", format_version=99)
    with pytest.raises(StrategyError, match="format version 99"):
        load_strategy(saved)


def test_refuses_a_modified_or_corrupt_state(saved):
    data = bytearray((saved / "state.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (saved / "state.pt").write_bytes(bytes(data))
    with pytest.raises(StrategyError, match="checksum differs"):
        load_strategy(saved)


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_refuses_a_pickle_even_with_a_matching_checksum(saved, capsys):
    import hashlib

    torch.save({"meta.X": _Evil()}, saved / "state.pt")  # torch.save pickles arbitrary objects
    _edit_info(saved, sha256=hashlib.sha256((saved / "state.pt").read_bytes()).hexdigest())
    with pytest.raises(StrategyError, match="not a tensor archive"):
        load_strategy(saved)
    assert "code ran" not in capsys.readouterr().out
    (saved / "state.pt").write_bytes(pickle.dumps({"a": 1}))
    _edit_info(saved, sha256=hashlib.sha256((saved / "state.pt").read_bytes()).hexdigest())
    with pytest.raises(StrategyError, match="not a tensor archive"):
        load_strategy(saved)


def test_refuses_other_files_and_unfitted(saved, tmp_path, data):
    with pytest.raises(StrategyError, match="holds no strategy.json"):
        load_strategy(tmp_path / "nowhere")
    (saved / "strategy.json").write_text("{not json")
    with pytest.raises(StrategyError, match="not valid JSON"):
        load_strategy(saved)
    (saved / "strategy.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(StrategyError, match="not a metahpo strategy file"):
        load_strategy(saved)
    with pytest.raises(StrategyError, match="not fitted"):
        save_strategy(make_strategy("knn"), tmp_path / "k")


def test_refuses_tensors_that_do_not_fit(saved):
    state = torch.load(saved / "state.pt", weights_only=True)
    state["meta.X"] = state["meta.X"][:, :2]
    torch.save(state, saved / "state.pt")
    import hashlib

    _edit_info(saved, sha256=hashlib.sha256((saved / "state.pt").read_bytes()).hexdigest())
    with pytest.raises(StrategyError, match="do not fit"):
        load_strategy(saved)
