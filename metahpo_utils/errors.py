"""The package's one error base class.

Every error raised for bad input or misuse derives from :class:`MetahpoError` (each keeps its own
name and its old base, e.g. ``ValueError``), so the CLI catches one class and prints one line, and
library messages name arguments, never CLI flags (the CLI translates them).
"""
from __future__ import annotations


class MetahpoError(Exception):
    """Base of every metahpo error about the caller's input (a table, a space, a store, an argument)."""
