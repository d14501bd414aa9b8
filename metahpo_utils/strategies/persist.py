"""Save and load fitted strategies: tensors via ``torch.save``, read back with
``torch.load(weights_only=True)`` (no pickle of code), plus human-readable JSON metadata.

A saved strategy is a folder::

    strategy.json   format, format_version, package_version, strategy name and settings, space,
                    meta-train task names, meta-feature names, tensor names and the SHA-256 of state.pt
    state.pt        the meta-train data (encoded configurations, values, meta-features) and learned
                    weights (the ``mtl`` network and heads, the ``transfer`` ensemble)

Loading refuses, with one clear message, a folder from another format or package version, another
search space (when the caller says which it expects), a state file that does not match its
metadata (checksum), a file that is not a tensor archive, and settings the strategy does not take.
Derived state (a portfolio order, a GP kernel) is recomputed deterministically on load.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..space import SearchSpace, SpaceError
from .base import MetaData, Strategy, StrategyError

FORMAT = "metahpo-strategy"
FORMAT_VERSION = 1


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_strategy(strategy: Strategy, path: str | os.PathLike) -> Path:
    """Write a fitted strategy (or an unfitted baseline) into folder ``path``.

    Args:
        strategy: a strategy from :func:`make_strategy`, fitted if it is meta-learned.
        path: the folder to create (existing files in it are replaced).

    Returns:
        The folder.
    """
    if strategy.meta_learned and strategy.meta is None:
        raise StrategyError(f"save: {strategy.name} is not fitted (call fit first)")
    try:
        params = json.loads(json.dumps(strategy.init_params))
    except TypeError as err:
        raise StrategyError(f"save: {strategy.name} settings are not JSON values ({err})") from None
    state = {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else torch.as_tensor(v))
             for k, v in strategy.state_dict().items()}
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "state.pt")
    meta = strategy.meta
    info = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "package_version": __version__,
        "strategy": strategy.name, "params": params,
        "space": None if meta is None else meta.space.to_json(),  # a string: its key order is the cube's
        "tasks": None if meta is None else list(meta.tasks),
        "feature_names": None if meta is None or meta.feature_names is None else list(meta.feature_names),
        "tensors": sorted(state), "sha256": _sha256(folder / "state.pt"),
    }
    (folder / "strategy.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    return folder


def read_strategy_info(path: str | os.PathLike) -> dict[str, Any]:
    """The checked ``strategy.json`` of a saved strategy."""
    folder = Path(path)
    info_path = folder / "strategy.json"
    if not info_path.is_file():
        raise StrategyError(f"load: '{folder}' holds no strategy.json (not a saved strategy)")
    try:
        info = json.loads(info_path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise StrategyError(f"load: '{info_path}' is not valid JSON ({err})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise StrategyError(f"load: '{info_path}' is not a metahpo strategy file")
    if info.get("format_version") != FORMAT_VERSION:
        raise StrategyError(f"load: '{folder}' has format version {info.get('format_version')}, this metahpo reads "
                            f"{FORMAT_VERSION}; fit the strategy again")
    saved = str(info.get("package_version"))
    if _major_minor(saved) != _major_minor(__version__):
        raise StrategyError(f"load: '{folder}' was saved by metahpo {saved}, this is {__version__}; fit the strategy again")
    return info


def load_strategy(path: str | os.PathLike, space: SearchSpace | None = None) -> Strategy:
    """Load a strategy saved by :func:`save_strategy`.

    Args:
        path: the folder.
        space: the search space the caller will use; a strategy fitted on another space is refused.

    Returns:
        The strategy, ready for ``start``.
    """
    from . import STRATEGIES

    folder = Path(path)
    info = read_strategy_info(folder)
    name = info.get("strategy")
    if name not in STRATEGIES:
        raise StrategyError(f"load: '{folder}' holds strategy '{name}', not available here ({', '.join(STRATEGIES)})")
    state_path = folder / "state.pt"
    if not state_path.is_file():
        raise StrategyError(f"load: '{folder}' lacks state.pt")
    if _sha256(state_path) != info.get("sha256"):
        raise StrategyError(f"load: '{state_path}' does not match its strategy.json (checksum differs: modified or corrupt)")
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as err:
        raise StrategyError(f"load: '{state_path}' is not a tensor archive ({type(err).__name__})") from None
    if not isinstance(state, dict) or sorted(state) != sorted(info.get("tensors", [])) \
            or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise StrategyError(f"load: '{state_path}' holds other tensors than strategy.json lists")
    try:
        strategy = STRATEGIES[name](**info.get("params", {}))
    except TypeError as err:
        raise StrategyError(f"load: settings {info.get('params')} do not fit strategy '{name}' ({err})") from None
    if info.get("space") is None:
        return strategy
    try:
        saved_space = SearchSpace.from_json(str(info["space"]))
    except SpaceError as err:
        raise StrategyError(f"load: '{folder}': {err}") from None
    if space is not None and space != saved_space:
        raise StrategyError(f"load: '{folder}' was fitted on space {saved_space.names} with other bounds or choices "
                            f"than the space given {space.names}" if saved_space.names == space.names else
                            f"load: '{folder}' was fitted on space {saved_space.names}, not {space.names}")
    strategy.meta = MetaData.from_state(saved_space, info["tasks"], info.get("feature_names"), state)
    strategy._restore(state)
    return strategy


__all__ = ["FORMAT_VERSION", "load_strategy", "read_strategy_info", "save_strategy"]
