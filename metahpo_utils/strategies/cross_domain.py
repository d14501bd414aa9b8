"""A strategy fitted in one domain, used in another on the hyperparameters the two share.

    s = CrossDomainStrategy("adaptive-portfolio").fit(image_table, image_features, space=image_space)
    session = s.start(text_space, candidates=text_configs)   # proposes on lr, batch_size, ... only

The wrapped strategy is fitted on the source table restricted to the hyperparameters that the target
space has too, with identical distributions (for the built-in domains: lr, weight_decay, batch_size,
width, depth, dropout, optimizer, momentum). A proposal fixes those; the target's own hyperparameters
come from its candidates (replay on a table) or are drawn uniformly (real tuning). Any other strategy
refuses a space it was not fitted on.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..space import SearchSpace
from .base import Strategy, StrategyError, as_candidates


def shared_space(source: SearchSpace, target: SearchSpace) -> SearchSpace:
    """The hyperparameters of ``target`` that ``source`` has with the same distribution (target order).

    Raises:
        StrategyError: none in common.
    """
    src = {n: SearchSpace({n: d}).to_json() for n, d in source.params.items()}
    common = {n: d for n, d in target.params.items() if n in src and SearchSpace({n: d}).to_json() == src[n]}
    if not common:
        raise StrategyError(f"cross-domain: the spaces share no hyperparameter (source {source.names}, target {target.names})")
    return SearchSpace(common)


class CrossDomainStrategy(Strategy):
    """Wraps a strategy so that it moves to another domain's space on their shared hyperparameters.

    Args:
        base: name of the wrapped strategy.
        **kwargs: its constructor arguments.
    """

    name = "cross-domain"
    meta_learned = True
    cross_domain = True

    def __init__(self, base: str = "adaptive-portfolio", **kwargs: Any):
        super().__init__()
        from . import make_strategy

        self.base_name, self.base_kwargs = base, dict(kwargs)
        self._make = lambda: make_strategy(base, **kwargs)
        self.meta_learned = self._make().meta_learned
        self._fitted: dict[str, Strategy] = {}
        self._source: tuple[pd.DataFrame, pd.DataFrame | None, SearchSpace] | None = None

    def fit(self, meta_table: pd.DataFrame | None, task_features: pd.DataFrame | None = None,
            space: SearchSpace | None = None) -> "CrossDomainStrategy":
        """Keep the source table; the wrapped strategy is fitted per target space at :meth:`start`."""
        if space is None or meta_table is None:
            raise StrategyError("cross-domain: fit needs the source meta-train table and its space")
        self._source, self._fitted = (meta_table, task_features, space), {}
        return self

    def inner(self, target: SearchSpace) -> tuple[Strategy, SearchSpace]:
        """The wrapped strategy fitted on the source tasks over the space shared with ``target``."""
        if self._source is None:
            raise StrategyError("cross-domain: call fit(source_table, ...) before start()")
        table, feats, source = self._source
        shared = shared_space(source, target)
        key = shared.to_json()
        if key not in self._fitted:
            s = self._make()
            keep = ["task", *shared.names, "objective"] + [c for c in ("status",) if c in table]
            self._fitted[key] = s.fit(table[keep], feats, space=shared) if s.meta_learned else s
        return self._fitted[key], shared

    def start(self, space: SearchSpace, task_features: Any = None, candidates: Any = None, seed: int = 0) -> "ProjectedSession":
        strategy, shared = self.inner(space)
        cands = as_candidates(candidates, space)
        projected = None if cands is None else [{n: c[n] for n in shared.names} for c in cands]
        return ProjectedSession(strategy.start(shared, task_features=task_features, candidates=projected, seed=seed),
                                space, shared, cands, seed)


class ProjectedSession:
    """A session on the shared hyperparameters, seen from the target space (same ask/tell API)."""

    def __init__(self, inner: Any, space: SearchSpace, shared: SearchSpace, candidates: list[dict[str, Any]] | None,
                 seed: int):
        self.inner, self.space, self.shared, self.candidates = inner, space, shared, candidates
        self.rng = np.random.default_rng([seed, 7])

    @property
    def suggested_indices(self) -> list[int]:
        return self.inner.suggested_indices

    @property
    def guard(self) -> dict[str, Any] | None:
        """The wrapped session's guard state, when it has one."""
        return getattr(self.inner, "guard", None)

    def suggest(self, n: int = 1) -> list[dict[str, Any]]:
        configs = self.inner.suggest(n)
        if self.candidates is not None:
            return [dict(self.candidates[i]) for i in self.inner.suggested_indices[len(self.inner.suggested_indices) - len(configs):]]
        out = []
        for c in configs:
            rest = self.space.decode(self.rng.random(self.space.dim))  # the target's own hyperparameters: uniform
            out.append({n: (c[n] if n in c else rest[n]) for n in self.space.names})
        return out

    def observe(self, config: Mapping[str, Any], value: float) -> None:
        self.inner.observe({n: config[n] for n in self.shared.names}, value)
