"""Hyperparameter-search strategies behind one ask/tell interface (DESIGN.md).

``make_strategy(name)`` builds one by name; :data:`STRATEGIES` lists them.
"""
from __future__ import annotations

from typing import Any, Callable

from .base import Explanation, MetaData, Session, Strategy, StrategyError
from .baselines import GridStrategy, RandomStrategy, TaskSetStrategy
from .cross_domain import CrossDomainStrategy, shared_space
from .meta import AdaptivePortfolioStrategy, KnnStrategy, MappingStrategy, PortfolioStrategy, greedy_portfolio
from .surrogates import MtlStrategy, TransferStrategy

STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "random": RandomStrategy, "grid": GridStrategy, "taskset": TaskSetStrategy,
    "portfolio": PortfolioStrategy, "adaptive-portfolio": AdaptivePortfolioStrategy,
    "knn": KnnStrategy, "mapping": MappingStrategy, "mtl": MtlStrategy, "transfer": TransferStrategy,
}

try:  # Optuna adapters (tpe, cmaes, ws-cmaes)
    from .optuna_adapters import CmaEsStrategy, TPEStrategy, WarmStartCmaEsStrategy

    STRATEGIES.update({"tpe": TPEStrategy, "cmaes": CmaEsStrategy, "ws-cmaes": WarmStartCmaEsStrategy})
except ImportError:  # pragma: no cover - optuna is a hard dependency; cmaes may be missing
    pass

try:  # Syne Tune peers (optional extra "peers")
    from .peers import PEERS_AVAILABLE, PEER_STRATEGIES

    STRATEGIES.update(PEER_STRATEGIES)
except ImportError:  # pragma: no cover
    PEERS_AVAILABLE = False


def make_strategy(name: str, **kwargs: Any) -> Strategy:
    """Build a strategy by name (see :data:`STRATEGIES`)."""
    if name not in STRATEGIES:
        raise StrategyError(f"unknown strategy '{name}' (available: {', '.join(STRATEGIES)})")
    return STRATEGIES[name](**kwargs)


__all__ = ["Explanation", "MetaData", "Session", "Strategy", "StrategyError", "STRATEGIES", "make_strategy", "greedy_portfolio",
           "GridStrategy", "RandomStrategy", "TaskSetStrategy", "PortfolioStrategy", "AdaptivePortfolioStrategy",
           "KnnStrategy", "MappingStrategy", "MtlStrategy", "TransferStrategy", "CrossDomainStrategy", "shared_space"]
