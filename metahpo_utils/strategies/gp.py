"""A small, fast Gaussian process for the model phase of the adaptive portfolio.

Matern-5/2 on :meth:`SearchSpace.model_inputs` with one length scale per hyperparameter (a categorical
one's one-hot block shares one), chosen by marginal likelihood without gradients: the best shared length
scale and noise on a fixed grid, then coordinate steps that shorten or lengthen one hyperparameter's scale
at a time (a long scale switches an irrelevant hyperparameter off). The signal variance is solved in
closed form. With at most a few hundred observations that is a few dozen small Cholesky factorizations,
milliseconds, where a gradient-based fit of sklearn's anisotropic kernel took a few hundred: too slow for
the cross-validation the strategy runs inside ``fit``.
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import cho_factor, cho_solve

#: The hyperparameter search (inputs live in the unit cube / one-hot blocks; targets are standardized).
LENGTH_SCALES = (0.15, 0.3, 0.6, 1.2, 2.4)
NOISES = (1e-4, 1e-3, 1e-2, 1e-1)
STEPS = (0.25, 0.5, 2.0, 4.0, 16.0)
PASSES = 2


def matern52(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Matern-5/2 correlation (unit length scale) between rows of ``A`` ``(n, D)`` and ``B`` ``(m, D)``."""
    d2 = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * A @ B.T
    r = np.sqrt(5.0 * np.maximum(d2, 0.0))
    return (1.0 + r + r * r / 3.0) * np.exp(-r)


class GaussianProcess:
    """``fit(F, r, blocks)`` then ``predict(P) -> (mean, sd)``.

    Args of ``fit``:
        F: inputs ``(n, D)``; r: targets ``(n,)``.
        blocks: the hyperparameter each input column belongs to ``(D,)`` (one length scale per block;
            ``None``: one per column).
        params: ``(lengths per block, noise)`` from an earlier fit, reused without a search.
    """

    def fit(self, F: np.ndarray, r: np.ndarray, blocks: np.ndarray | None = None,
            params: tuple[np.ndarray, float] | None = None) -> "GaussianProcess":
        self.F, self.r = np.asarray(F, dtype=float), np.asarray(r, dtype=float)
        self.blocks = np.arange(self.F.shape[1]) if blocks is None else np.asarray(blocks)
        nb = int(self.blocks.max()) + 1
        if params is not None:
            if self._score(np.asarray(params[0], dtype=float), float(params[1])) == -np.inf:
                raise np.linalg.LinAlgError("GaussianProcess.fit: the given hyperparameters are not usable")
            return self
        best = (-np.inf, None, None)
        for ell in LENGTH_SCALES:
            for eps in NOISES:
                s = self._score(np.full(nb, ell), eps, keep=False)
                if s > best[0]:
                    best = (s, np.full(nb, ell), eps)
        if best[1] is None:
            raise np.linalg.LinAlgError("GaussianProcess.fit: no grid point gave a positive-definite kernel")
        score, lengths, noise = best
        for _ in range(PASSES):
            for b in range(nb):
                for step in STEPS:
                    trial = lengths.copy()
                    trial[b] *= step
                    s = self._score(trial, noise, keep=False)
                    if s > score + 1e-9:
                        score, lengths = s, trial
        self._score(lengths, noise)
        return self

    def _score(self, lengths: np.ndarray, noise: float, keep: bool = True) -> float:
        """Log marginal likelihood (up to a constant, signal variance profiled out); ``keep`` stores the fit."""
        Z = self.F / lengths[self.blocks]
        n = len(self.r)
        K = matern52(Z, Z) + noise * np.eye(n)
        try:
            c = cho_factor(K, lower=True)
        except np.linalg.LinAlgError:
            return -np.inf
        alpha = cho_solve(c, self.r)
        var = max(float(self.r @ alpha) / n, 1e-12)
        if keep:
            self.lengths, self.noise, self.variance, self._c, self._alpha, self._Z = lengths, noise, var, c, alpha, Z
        return -0.5 * n * np.log(var) - float(np.log(np.diag(c[0])).sum())

    @property
    def params(self) -> tuple[np.ndarray, float]:
        """``(lengths per block, noise)``, to reuse in a later ``fit``."""
        return self.lengths, self.noise

    def predict(self, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        Ks = matern52(np.asarray(P, dtype=float) / self.lengths[self.blocks], self._Z)  # (q, n)
        mu = Ks @ self._alpha
        v = cho_solve(self._c, Ks.T)  # (n, q)
        var = self.variance * (1.0 + self.noise - (Ks * v.T).sum(1))
        return mu, np.sqrt(np.maximum(var, 1e-12))
