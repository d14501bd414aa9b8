"""Domain plug-ins: images/vectors (``vision``), text (``text``) and reinforcement learning (``rl``); see :mod:`.base` for the interface.

    domain = get_domain("text")                 # or domain_of_suite("sentiment"), domain_of_task(task)
    suite = domain.build_suite("text", n_tasks=40, seed=0)
    result = domain.train(suite.task("text-003"), config, epochs=5, seed=0)
"""
from __future__ import annotations

import functools

from ..choices import DOMAINS, SUITE_DOMAINS, SUITE_NAMES
from ..data.datasets import DatasetError
from .base import Domain


@functools.lru_cache(maxsize=None)
def get_domain(name: str) -> Domain:
    """The plug-in of domain ``name`` (``vision``, ``text`` or ``rl``)."""
    if name == "vision":
        from .vision import VisionDomain

        return VisionDomain()
    if name == "text":
        from .text import TextDomain

        return TextDomain()
    if name == "rl":
        from .rl import RLDomain

        return RLDomain()
    raise DatasetError(f"unknown domain '{name}' (available: {', '.join(DOMAINS)})")


def domain_of_suite(suite: str) -> Domain:
    """The domain whose suite ``suite`` is (one clear error for an unknown suite)."""
    if suite not in SUITE_DOMAINS:
        raise DatasetError(f"unknown suite '{suite}' (available: {', '.join(SUITE_NAMES)})")
    return get_domain(SUITE_DOMAINS[suite])


def domain_of_task(task: object) -> Domain:
    """The domain that trains ``task`` (its ``domain`` attribute; ``vision`` for plain tasks)."""
    return get_domain(getattr(task, "domain", "vision"))


def is_task(obj: object) -> bool:
    """Whether ``obj`` is a built task of some domain (it names itself and its domain)."""
    return not isinstance(obj, (str, bytes, dict)) and hasattr(obj, "name") and getattr(obj, "domain", None) in DOMAINS


def domain_of_meta(meta: dict) -> Domain:
    """The domain a meta-dataset was collected in (its ``domain`` setting; older ones are ``vision``)."""
    return get_domain(meta.get("domain", "vision"))


__all__ = ["Domain", "get_domain", "domain_of_suite", "domain_of_task", "domain_of_meta", "is_task"]
