"""Meta-features of a text task: sizes, classes, lengths, vocabulary, out-of-vocabulary rate and
two landmarkers (naive Bayes and logistic regression on character 1-2-gram counts)."""
from __future__ import annotations

import warnings

import numpy as np

from .tasks import TextTask

TEXT_METAFEATURE_NAMES = (
    "n_examples", "log_n_examples", "n_classes", "class_entropy", "class_imbalance",
    "mean_length", "p10_length", "p90_length", "vocab_size", "log_vocab_size", "type_token_ratio",
    "oov_rate", "landmark_nb", "landmark_logreg",
)


def text_metafeatures(task: TextTask, seed: int = 0, max_landmark: int = 600) -> dict[str, float]:
    """Meta-features of a text task, from its training texts (the OOV rate also reads validation).

    Args:
        task: the task.
        seed: seed of the landmarkers' subsample and folds.
        max_landmark: subsample size of the landmarkers (3-fold stratified cross-validation).

    Returns:
        ``{name: value}`` for every name in :data:`TEXT_METAFEATURE_NAMES`.
    """
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.naive_bayes import MultinomialNB

    texts, y = task.texts["train"], task.y_train.numpy()
    counts = np.bincount(y)
    counts = counts[counts > 0]
    p = counts / counts.sum()
    lengths = np.array([len(t) for t in texts], dtype=float)
    tokens = sum(len(t) for t in texts)
    types = len({c for t in texts for c in t})
    train_chars = set(task.vocab)
    val_tokens = [c for t in task.texts["val"] for c in t]
    oov = float(np.mean([c not in train_chars for c in val_tokens])) if val_tokens else 0.0
    out = {
        "n_examples": float(len(y)), "log_n_examples": float(np.log(len(y))), "n_classes": float(task.n_classes),
        "class_entropy": float(-(p * np.log(p)).sum() / np.log(max(task.n_classes, 2))),
        "class_imbalance": float(counts.max() / counts.min()),
        "mean_length": float(lengths.mean()), "p10_length": float(np.percentile(lengths, 10)),
        "p90_length": float(np.percentile(lengths, 90)),
        "vocab_size": float(types), "log_vocab_size": float(np.log(max(types, 1))),
        "type_token_ratio": float(types / max(tokens, 1)), "oov_rate": oov,
    }
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.permutation(len(y))[:max_landmark])
    sub_t, sub_y = [texts[i] for i in idx], y[idx]
    n_folds = int(min(3, np.bincount(sub_y)[np.bincount(sub_y) > 0].min()))
    if n_folds < 2:
        out.update(landmark_nb=float("nan"), landmark_logreg=float("nan"))
        return out
    X = CountVectorizer(analyzer="char", ngram_range=(1, 2), lowercase=False).fit_transform(sub_t)
    folds = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["landmark_nb"] = float(cross_val_score(MultinomialNB(), X, sub_y, cv=folds).mean())
        out["landmark_logreg"] = float(cross_val_score(LogisticRegression(max_iter=300), X, sub_y, cv=folds).mean())
    return out
