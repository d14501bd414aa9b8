"""Search spaces over ``optuna.distributions`` with an encoding to the unit cube.

Every strategy and the collection work in the unit cube ``[0, 1]^d``; the
space maps points there to configurations (dicts) and back.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
    json_to_distribution,
)

from .errors import MetahpoError


class SpaceError(MetahpoError, ValueError):
    """Invalid search-space definition or configuration."""


def _check(name: str, dist: BaseDistribution) -> None:
    if isinstance(dist, (FloatDistribution, IntDistribution)):
        if not dist.low < dist.high:
            raise SpaceError(f"space: hyperparameter '{name}' needs low < high (got low={dist.low}, high={dist.high})")
        if dist.log and dist.low <= 0:
            raise SpaceError(f"space: hyperparameter '{name}' is log-scaled and needs low > 0 (got low={dist.low})")
        if isinstance(dist, FloatDistribution) and dist.step is not None and dist.log:
            raise SpaceError(f"space: hyperparameter '{name}' cannot have both step and log")
    elif isinstance(dist, CategoricalDistribution):
        if len(dist.choices) < 1:
            raise SpaceError(f"space: hyperparameter '{name}' has no choices")
    else:
        raise SpaceError(f"space: hyperparameter '{name}' has unsupported distribution {type(dist).__name__}")


def float_param(low: float, high: float, log: bool = False) -> FloatDistribution:
    """A float hyperparameter; bounds are validated by :class:`SearchSpace`."""
    # Construct without optuna's own checks so our error (naming the parameter) is the one users see.
    dist = FloatDistribution.__new__(FloatDistribution)
    dist.low, dist.high, dist.log, dist.step = float(low), float(high), bool(log), None
    return dist


def int_param(low: int, high: int, log: bool = False) -> IntDistribution:
    """An integer hyperparameter (step 1); bounds are validated by :class:`SearchSpace`."""
    dist = IntDistribution.__new__(IntDistribution)
    dist.low, dist.high, dist.log, dist.step = int(low), int(high), bool(log), 1
    return dist


def _int_bounds(dist: IntDistribution) -> tuple[float, float]:
    """Encoding range of an integer: equal-width bins per integer (in log space when log-scaled)."""
    lo, hi = dist.low - 0.5, dist.high + 0.5
    if dist.log:
        return math.log(lo if lo > 0 else dist.low), math.log(hi)
    return lo, hi


@dataclass(frozen=True)
class SearchSpace:
    """An ordered mapping name -> optuna distribution.

    Args:
        params: hyperparameter name -> ``FloatDistribution`` / ``IntDistribution`` /
            ``CategoricalDistribution``. Order defines the unit-cube dimensions.
    """

    params: Mapping[str, BaseDistribution]

    def __post_init__(self) -> None:
        if not self.params:
            raise SpaceError("space: no hyperparameters given")
        for name, dist in self.params.items():
            _check(name, dist)

    @property
    def names(self) -> list[str]:
        return list(self.params)

    @property
    def dim(self) -> int:
        return len(self.params)

    # ---- unit-cube encoding -------------------------------------------------
    def decode(self, u: np.ndarray) -> dict[str, Any]:
        """Map a point of ``[0, 1]^d`` to a configuration."""
        u = np.clip(np.asarray(u, dtype=float), 0.0, 1.0)
        if u.shape != (self.dim,):
            raise SpaceError(f"space: expected a point of dimension {self.dim}, got shape {u.shape}")
        config: dict[str, Any] = {}
        for x, (name, dist) in zip(u, self.params.items()):
            if isinstance(dist, CategoricalDistribution):
                k = len(dist.choices)
                config[name] = dist.choices[min(int(x * k), k - 1)]
            elif isinstance(dist, IntDistribution):
                # Equal-width bins over [low - .5, high + .5] so every integer is equally likely.
                lo, hi = _int_bounds(dist)
                val = lo + x * (hi - lo)
                if dist.log:
                    val = math.exp(val)
                config[name] = int(min(max(round(val), dist.low), dist.high))
            else:
                if dist.log:
                    lo, hi = math.log(dist.low), math.log(dist.high)
                    config[name] = float(math.exp(lo + x * (hi - lo)))
                else:
                    config[name] = float(dist.low + x * (dist.high - dist.low))
        return config

    def encode(self, config: Mapping[str, Any]) -> np.ndarray:
        """Map a configuration to the unit cube (categoricals to their bin centre)."""
        missing = [n for n in self.params if n not in config]
        if missing:
            raise SpaceError(f"space: configuration lacks hyperparameter(s) {missing}")
        out = np.empty(self.dim)
        for i, (name, dist) in enumerate(self.params.items()):
            v = config[name]
            if isinstance(dist, CategoricalDistribution):
                if v not in dist.choices:
                    raise SpaceError(f"space: '{name}'={v!r} is not one of {list(dist.choices)}")
                k = len(dist.choices)
                out[i] = (dist.choices.index(v) + 0.5) / k
            elif isinstance(dist, IntDistribution):
                lo, hi = _int_bounds(dist)
                x = math.log(float(v)) if dist.log else float(v)
                out[i] = (x - lo) / (hi - lo)
            else:
                if dist.log:
                    out[i] = (math.log(float(v)) - math.log(dist.low)) / (math.log(dist.high) - math.log(dist.low))
                else:
                    out[i] = (float(v) - dist.low) / (dist.high - dist.low)
        return np.clip(out, 0.0, 1.0)

    @property
    def model_dim(self) -> int:
        """Width of :meth:`model_inputs`: one column per numeric hyperparameter, one per choice of a
        categorical one."""
        return sum(len(d.choices) if isinstance(d, CategoricalDistribution) else 1 for d in self.params.values())

    def model_inputs(self, X: np.ndarray) -> np.ndarray:
        """Inputs for a surrogate model from encoded points ``(n, dim)`` -> ``(n, model_dim)``.

        Numeric hyperparameters stay as encoded (unit interval); a categorical one becomes a one-hot
        block scaled by 1/sqrt(2), so that any two different choices lie at distance 1, as the ends of a
        numeric axis do. On the unit-cube encoding alone, choice 0 would look nearer to choice 1 than to
        choice 4, an order that categories do not have.
        """
        X = np.asarray(X, dtype=float).reshape(-1, self.dim)
        cols = []
        for j, dist in enumerate(self.params.values()):
            if isinstance(dist, CategoricalDistribution):
                cols.append(np.eye(len(dist.choices))[self.choice_indices(X, j)] / math.sqrt(2.0))
            else:
                cols.append(X[:, j:j + 1])
        return np.hstack(cols)

    def choice_indices(self, X: np.ndarray, j: int) -> np.ndarray:
        """The index of the choice of categorical hyperparameter ``j`` at each encoded point ``(n, dim)`` -> ``(n,)``
        (as :meth:`decode` reads it)."""
        k = len(list(self.params.values())[j].choices)
        return np.minimum((np.clip(np.asarray(X, dtype=float)[:, j], 0.0, 1.0) * k).astype(int), k - 1)

    @property
    def model_blocks(self) -> np.ndarray:
        """For each column of :meth:`model_inputs`, the index of its hyperparameter ``(model_dim,)``."""
        return np.concatenate([np.full(len(d.choices) if isinstance(d, CategoricalDistribution) else 1, j)
                               for j, d in enumerate(self.params.values())])

    def encode_table(self, table: Any) -> np.ndarray:
        """Encode the hyperparameter columns of a DataFrame, vectorised: ``(rows, dim)`` in [0, 1]."""
        missing = [n for n in self.params if n not in table.columns]
        if missing:
            raise SpaceError(f"space: table lacks hyperparameter column(s) {missing}")
        out = np.empty((len(table), self.dim))
        for i, (name, dist) in enumerate(self.params.items()):
            col = table[name].to_numpy()
            if isinstance(dist, CategoricalDistribution):
                lookup = {c: j for j, c in enumerate(dist.choices)}
                lookup.update({str(c): j for j, c in enumerate(dist.choices)})
                try:
                    idx = np.array([lookup[v] if v in lookup else lookup[str(v)] for v in col], dtype=float)
                except KeyError as err:
                    raise SpaceError(f"space: column '{name}' holds {err} which is not one of {list(dist.choices)}") from None
                out[:, i] = (idx + 0.5) / len(dist.choices)
            else:
                x = col.astype(float)
                if isinstance(dist, IntDistribution):
                    lo, hi = _int_bounds(dist)
                else:
                    lo, hi = (math.log(dist.low), math.log(dist.high)) if dist.log else (dist.low, dist.high)
                x = np.log(x) if dist.log else x
                out[:, i] = (x - lo) / (hi - lo)
        return np.clip(out, 0.0, 1.0)

    def design(self, n: int, seed: int = 0, method: str = "sobol") -> list[dict[str, Any]]:
        """A space-filling design of ``n`` configurations.

        Args:
            n: number of configurations.
            seed: scrambling seed (the same seed gives the same design).
            method: ``"sobol"`` (scrambled Sobol), ``"lhs"`` (Latin hypercube) or ``"random"``.
        """
        from scipy.stats import qmc

        if n < 1:
            raise SpaceError(f"design: need at least one configuration (got {n})")
        if method == "sobol":
            with warnings.catch_warnings():  # balance is best at powers of 2, but any n is a valid design
                warnings.simplefilter("ignore", UserWarning)
                pts = qmc.Sobol(self.dim, scramble=True, seed=seed).random(n)
        elif method == "lhs":
            pts = qmc.LatinHypercube(self.dim, seed=seed).random(n)
        elif method == "random":
            pts = np.random.default_rng(seed).random((n, self.dim))
        else:
            raise SpaceError(f"design: unknown method '{method}' (use sobol, lhs or random)")
        return [self.decode(p) for p in pts]

    # ---- serialisation ----------------------------------------------------
    def to_json(self) -> str:
        # Parameter order is meaningful (cube dimensions); attribute order is canonicalised.
        return json.dumps({n: json.loads(json.dumps(json.loads(distribution_to_json(d)), sort_keys=True))
                           for n, d in self.params.items()})

    @classmethod
    def from_json(cls, text: str) -> "SearchSpace":
        """Parse :meth:`to_json` output, or the short form
        ``{"lr": {"type": "float", "low": 1e-4, "high": 1, "log": true},
        "opt": {"type": "categorical", "choices": ["sgd", "adamw"]}}``."""
        try:
            raw = json.loads(text)
        except ValueError as err:
            raise SpaceError(f"space: not valid JSON ({err})") from err
        if not isinstance(raw, dict):
            raise SpaceError("space: expected a JSON object of name -> distribution")
        return cls({name: _parse_param(name, d) for name, d in raw.items()})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(self.to_json())


def _parse_param(name: str, d: Any) -> BaseDistribution:
    if not isinstance(d, dict):
        raise SpaceError(f"space: hyperparameter '{name}' must be a JSON object")
    if "type" in d:
        kind = d["type"]
        try:
            if kind == "float":
                return float_param(d["low"], d["high"], d.get("log", False))
            if kind == "int":
                return int_param(d["low"], d["high"], d.get("log", False))
            if kind == "categorical":
                return CategoricalDistribution(list(d["choices"]))
        except KeyError as err:
            raise SpaceError(f"space: hyperparameter '{name}' lacks field {err}") from err
        raise SpaceError(f"space: hyperparameter '{name}' has unknown type '{kind}' (float, int, categorical)")
    try:
        attrs = d["attributes"]
        if d["name"] == "FloatDistribution" and attrs.get("step") is None:
            return float_param(attrs["low"], attrs["high"], attrs.get("log", False))
        if d["name"] == "IntDistribution" and attrs.get("step", 1) == 1:
            return int_param(attrs["low"], attrs["high"], attrs.get("log", False))
        return json_to_distribution(json.dumps(d))
    except (KeyError, ValueError, TypeError) as err:
        raise SpaceError(f"space: hyperparameter '{name}' is not a valid distribution ({err})") from err


def load_space(path: str | os.PathLike) -> SearchSpace:
    """Read a search space from a JSON file (see :meth:`SearchSpace.from_json`)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise SpaceError(f"space: cannot read '{path}' ({err.strerror})") from err
    return SearchSpace.from_json(text)


def default_space() -> SearchSpace:
    """The default space of the built-in suites (optimiser, regularisation, architecture)."""
    return SearchSpace(
        {
            "lr": float_param(1e-4, 1.0, log=True),
            "weight_decay": float_param(1e-6, 1e-1, log=True),
            "batch_size": CategoricalDistribution([16, 32, 64, 128]),
            "width": int_param(16, 256, log=True),
            "depth": int_param(1, 3),
            "dropout": float_param(0.0, 0.5),
            "optimizer": CategoricalDistribution(["sgd", "adamw"]),
            "momentum": float_param(0.5, 0.99),
        }
    )


#: Columns of a tidy table that are never hyperparameters.
RESERVED_COLUMNS = frozenset({"task", "objective", "test_objective", "status", "cost_s", "seed", "config_id",
                              "curve", "val_loss_curve", "objective_std", "split"})


def infer_space(table: Any, exclude: Any = (), max_categories: int = 8) -> SearchSpace:
    """Infer a search space from the hyperparameter columns of a tidy table.

    Rules: strings or booleans, or numeric columns with at most ``max_categories`` distinct values
    that do not span two decades -> categorical; positive numeric spanning over two decades -> log
    scale; integer-valued -> integer; otherwise float.

    Args:
        table: DataFrame with hyperparameter columns.
        exclude: further columns that are not hyperparameters (e.g. the task and objective columns).
    """
    import pandas as pd

    skip = set(RESERVED_COLUMNS) | set(exclude)
    params: dict[str, BaseDistribution] = {}
    for col in table.columns:
        if col in skip:
            continue
        s = table[col].dropna()
        if s.empty:
            continue
        if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            params[col] = CategoricalDistribution(sorted({str(v) if not isinstance(v, (bool, np.bool_)) else bool(v) for v in s}, key=str))
            continue
        v = s.astype(float).to_numpy()
        lo, hi = float(v.min()), float(v.max())
        uniq = np.unique(v)
        log = lo > 0 and hi / lo > 100
        if lo == hi:
            continue  # a constant column carries no choice
        if len(uniq) <= max_categories and not log:
            choices = [int(u) if float(u).is_integer() else float(u) for u in uniq]
            params[col] = CategoricalDistribution(choices)
        elif np.all(np.equal(np.mod(v, 1), 0)):
            params[col] = int_param(int(lo), int(hi), log=log)
        else:
            params[col] = float_param(lo, hi, log=log)
    if not params:
        raise SpaceError("space: the table has no hyperparameter columns to infer a space from")
    return SearchSpace(params)
