"""Task meta-features in the style of auto-sklearn (Feurer et al. 2015).

Three groups, all computed on the training split flattened to ``(N, D)``:
simple (sizes, classes, imbalance, log-ratios), statistical (skewness and kurtosis
summaries, PCA components for 95% variance) and landmarkers (cross-validated
accuracy of 1-NN, logistic regression and naive Bayes on a subsample).
A task takes well under a second on the built-in suites.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

from .tasks import Task

METAFEATURE_NAMES = (
    "n_examples", "n_classes", "n_features", "log_n_examples", "log_n_features",
    "log_examples_per_class", "log_features_per_example", "class_imbalance", "class_entropy",
    "skew_mean", "skew_std", "kurt_mean", "kurt_std", "pca_95", "pca_95_fraction", "pca_first_ratio",
    "landmark_1nn", "landmark_logreg", "landmark_nb",
)


def metafeatures_from_arrays(X: np.ndarray, y: np.ndarray, seed: int = 0, max_landmark: int = 600) -> dict[str, float]:
    """Meta-features of a labelled sample.

    Args:
        X: inputs ``(N, ...)``, flattened to ``(N, D)``.
        y: integer labels ``(N,)``.
        seed: seed of the landmarkers' subsample and folds.
        max_landmark: subsample size for the landmarkers.

    Returns:
        ``{name: value}`` for every name in :data:`METAFEATURE_NAMES`.
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier

    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)  # (N, D)
    y = np.asarray(y)
    n, d = X.shape
    counts = np.bincount(y)
    counts = counts[counts > 0]
    k = len(counts)
    p = counts / counts.sum()
    out: dict[str, float] = {
        "n_examples": float(n), "n_classes": float(k), "n_features": float(d),
        "log_n_examples": float(np.log(n)), "log_n_features": float(np.log(d)),
        "log_examples_per_class": float(np.log(n / k)), "log_features_per_example": float(np.log(d / n)),
        "class_imbalance": float(counts.min() / counts.max()),
        "class_entropy": float(-(p * np.log(p)).sum() / np.log(k)) if k > 1 else 0.0,
    }
    varying = X[:, X.std(0) > 1e-8]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sk = stats.skew(varying, axis=0) if varying.size else np.zeros(1)
        ku = stats.kurtosis(varying, axis=0) if varying.size else np.zeros(1)
    out.update(skew_mean=float(np.mean(sk)), skew_std=float(np.std(sk)), kurt_mean=float(np.mean(ku)), kurt_std=float(np.std(ku)))
    pca = PCA(random_state=seed).fit(X)
    ratio = np.cumsum(pca.explained_variance_ratio_)
    n95 = int(np.searchsorted(ratio, 0.95) + 1)
    out.update(pca_95=float(n95), pca_95_fraction=float(n95 / d), pca_first_ratio=float(pca.explained_variance_ratio_[0]))

    rng = np.random.default_rng(seed)
    idx = rng.permutation(n)[:max_landmark]
    Xs, ys = X[idx], y[idx]
    folds = int(min(3, np.bincount(ys)[np.bincount(ys) > 0].min()))
    models = {
        "landmark_1nn": KNeighborsClassifier(1),
        "landmark_logreg": LogisticRegression(max_iter=200),
        "landmark_nb": GaussianNB(),
    }
    for name, model in models.items():
        if folds >= 2:
            cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out[name] = float(cross_val_score(model, Xs, ys, cv=cv).mean())
        else:  # too few examples of some class for CV: fall back to resubstitution accuracy
            out[name] = float(model.fit(Xs, ys).score(Xs, ys))
    return out


def compute_metafeatures(task: Task, seed: int = 0) -> dict[str, float]:
    """Meta-features of a task's training split (see :func:`metafeatures_from_arrays`)."""
    return metafeatures_from_arrays(task.X_train.numpy(), task.y_train.numpy(), seed=seed)
