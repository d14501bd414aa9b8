"""Neural surrogates meta-trained on many tasks.

``mtl``: multi-task surrogate in the spirit of ABLR (Perrone et al. 2018): a shared network
phi(x) over hyperparameters with one linear head per meta-train task, meta-trained on the sum
of the tasks' squared errors (L_MTL = sum_t L_t); a new task gets a Bayesian linear regression
head on phi whose prior is learned from the meta-train heads (mean and covariance, weighted by
meta-feature similarity when given), and expected improvement picks the next configuration.

``transfer``: a deep ensemble pretrained on the pooled meta-train data (hyperparameters, and
meta-features when given, -> per-task standardized value), then fine-tuned on the new task's
observations (L_TL, with a pull towards the pretrained weights); the ensemble spread is the
uncertainty and expected improvement the acquisition.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from scipy.stats import norm
from torch import nn

from ..space import SearchSpace
from ..training import SMALL_MODEL_THREADS, seeded, torch_threads
from .base import Explanation, MetaData, Session, Strategy, StrategyError


def expected_improvement(mu: np.ndarray, sd: np.ndarray, best: float) -> np.ndarray:
    sd = np.maximum(sd, 1e-9)
    z = (mu - best) / sd
    return (mu - best) * norm.cdf(z) + sd * norm.pdf(z)


def standardize(y: np.ndarray) -> np.ndarray:
    """Zero mean, unit standard deviation (a constant stays centred at 0)."""
    s = y.std()
    return (y - y.mean()) / (s if s > 0 else 1.0)


def _holdout_rows(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Training and held-out row indices (a seeded random ``fraction`` held out; none when 0)."""
    if not 0.0 <= fraction < 1.0:
        raise StrategyError(f"holdout must be in [0, 1) (got {fraction})")
    if fraction == 0.0:
        return torch.arange(n), None
    held = np.random.default_rng(seed + 1).random(n) < fraction
    return torch.as_tensor(np.flatnonzero(~held)), torch.as_tensor(np.flatnonzero(held))


def _task_rows(meta: MetaData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stacked meta-train rows: model inputs ``(N, space.model_dim)`` (categoricals one-hot), per-task
    standardized value ``(N,)``, task id ``(N,)``."""
    X = meta.space.model_inputs(np.concatenate(meta.X))
    z = np.concatenate([standardize(y) for y in meta.yn])
    tid = np.concatenate([np.full(len(x), t) for t, x in enumerate(meta.X)])
    return X, z, tid


class _TorchSurrogate(Strategy):
    """A strategy that trains a torch network in ``fit``: seeded from ``self.seed`` and on one
    thread (the same numbers under any thread setting or load), leaving the caller's random state
    and thread count as they were. Subclasses implement ``_train``.

    Its sessions start with the plain greedy portfolio's first ``warm`` configurations (the strongest
    zero-shot picks; the surrogate learns from their results) before the surrogate proposes."""

    seed: int
    warm: int

    def _fit(self) -> None:
        with seeded(self.seed), torch_threads(SMALL_MODEL_THREADS):
            self._train()
        self._warm_start()

    def _warm_start(self) -> None:
        from .meta import greedy_portfolio

        self.warm_points = self.meta.pool[greedy_portfolio(self.meta.Y, self.warm)] if self.warm else self.meta.pool[:0]

    def _train(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class _WarmSession(Session):
    """A surrogate session: the owner's warm-start points first (each one new), then ``_model_propose``."""

    o: "_TorchSurrogate"
    _warm_i = 0  # warm-start points used

    def _propose(self) -> np.ndarray:
        # the first len(warm_points) trials (suggested or observed) come from the warm start
        used = int((~self.open).sum()) if self.open is not None else len(self._used)  # suggested or observed
        while self._warm_i < len(self.o.warm_points) and used < len(self.o.warm_points):
            point = self.o.warm_points[self._warm_i]
            self._warm_i += 1
            if self.candidates is not None or self.is_new(point):  # on a table: the nearest open candidate
                return point
        return self._model_propose()

    def _model_propose(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


# ---------------------------------------------------------------- mtl (ABLR-style)
class _Phi(nn.Module):
    def __init__(self, d: int, h: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, h), nn.Tanh(), nn.Linear(h, h), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _MtlSession(_WarmSession):
    def __init__(self, owner: "MtlStrategy", space: SearchSpace, candidates: Any, seed: int, prior_w: np.ndarray):
        super().__init__(space, candidates, seed)
        self.o, self.meta = owner, owner.meta
        heads = owner.heads  # (T, h+1)
        self.prior_weights = w = prior_w / prior_w.sum()
        self.mu0 = w @ heads
        diff = heads - self.mu0
        self.S0 = (diff.T * w) @ diff + 1e-2 * np.eye(heads.shape[1])  # learned prior covariance

    def features(self, X: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            f = self.o.phi(torch.as_tensor(self.space.model_inputs(X), dtype=torch.float32)).numpy().astype(float)
        return np.hstack([f, np.ones((len(X), 1))])

    def posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """The new task's head: mean ``(h+1,)`` and covariance ``(h+1, h+1)`` given its observations
        (the prior while fewer than two distinct values are in)."""
        X, y = self.observed()
        if len(y) < 2 or np.ptp(y) == 0:
            return self.mu0, self.S0
        Phi = self.features(X)
        P0 = np.linalg.inv(self.S0)
        Sn = np.linalg.inv(P0 + Phi.T @ Phi / self.o.noise)
        return Sn @ (P0 @ self.mu0 + Phi.T @ standardize(y) / self.o.noise), Sn

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mun, Sn = self.posterior()
        F = self.features(np.asarray(X, dtype=float).reshape(-1, self.space.dim))  # (q, h+1)
        var = np.einsum("ij,jk,ik->i", F, Sn, F) + self.o.noise
        return F @ mun, np.sqrt(np.maximum(var, 1e-12))

    def explain(self) -> Explanation:
        return Explanation(self.prior_weights, "task weights of the prior (mean and covariance of the new task's head)")

    def _model_propose(self) -> np.ndarray:
        X, y = self.observed()
        pts, idx = self.pool()
        if len(y) < 2 or np.ptp(y) == 0:
            return self._choose(self.features(pts) @ self.mu0, pts, idx)  # the prior alone: the (weighted) average task
        if self.o.acquisition == "ts":
            mun, Sn = self.posterior()
            wdraw = self.rng.multivariate_normal(mun, Sn)
            return self._choose(self.features(pts) @ wdraw, pts, idx)
        mu, sd = self.predict(pts)
        return self._choose(expected_improvement(mu, sd, standardize(y).max()), pts, idx)


class MtlStrategy(_TorchSurrogate):
    """Multi-task surrogate: shared phi(x), one linear head per task, BLR head for the new task."""

    name = "mtl"
    meta_learned = True

    def __init__(self, hidden: int = 32, epochs: int = 600, lr: float = 3e-3, noise: float = 0.1,
                 acquisition: str = "ei", seed: int = 0, holdout: float = 0.0, warm: int = 3):
        super().__init__()
        self.warm = warm
        self.hidden, self.epochs, self.lr, self.noise, self.acquisition, self.seed = hidden, epochs, lr, noise, acquisition, seed
        self.holdout = holdout
        self.history: list[float] = []
        self.val_history: list[float] = []

    def _train(self) -> None:
        X, z, tid = _task_rows(self.meta)
        train, val = _holdout_rows(len(z), self.holdout, self.seed)
        T = self.meta.n_tasks
        self.phi = _Phi(X.shape[1], self.hidden)  # X: model inputs (categoricals one-hot)
        W = nn.Parameter(0.1 * torch.randn(T, self.hidden))
        b = nn.Parameter(torch.zeros(T))
        Xt, zt, tt = (torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(z, dtype=torch.float32),
                      torch.as_tensor(tid))

        def counts(rows: torch.Tensor) -> torch.Tensor:
            return torch.bincount(tt[rows], minlength=T).float().clamp(min=1)

        def l_mtl(rows: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
            """L_MTL = sum over tasks of each task's mean squared error (on ``rows``; ``n`` rows per task)."""
            tr = tt[rows]
            pred = (self.phi(Xt[rows]) * W[tr]).sum(1) + b[tr]
            return (torch.zeros(T).index_add_(0, tr, (pred - zt[rows]) ** 2) / n).sum()

        n_train = counts(train)
        n_val = None if val is None else counts(val)

        opt = torch.optim.Adam([*self.phi.parameters(), W, b], lr=self.lr)
        self.history, self.val_history = [], []
        for _ in range(self.epochs):
            loss = l_mtl(train, n_train)
            opt.zero_grad()
            loss.backward()
            opt.step()
            self.history.append(loss.item() / T)
            if val is not None:
                with torch.no_grad():
                    self.val_history.append(l_mtl(val, n_val).item() / T)
        self.heads = torch.cat([W, b[:, None]], 1).detach().numpy().astype(float)  # (T, h+1)
        self.phi.eval()

    def _extra_state(self) -> dict[str, Any]:
        return {**{f"phi.{k}": v for k, v in self.phi.state_dict().items()},
                "heads": torch.as_tensor(self.heads), "history": torch.tensor(self.history, dtype=torch.float64),
                "val_history": torch.tensor(self.val_history, dtype=torch.float64)}

    def _restore(self, state: Mapping[str, Any]) -> None:
        """Trained weights come back as saved (no retraining)."""
        self._warm_start()
        with torch.random.fork_rng(devices=[]):  # loading leaves the caller's random state alone
            self.phi = _Phi(self.meta.space.model_dim, self.hidden)
        self.phi.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("phi.")})
        self.phi.eval()
        self.heads = state["heads"].numpy().astype(float)
        if self.heads.shape != (self.meta.n_tasks, self.hidden + 1):
            raise StrategyError(f"mtl: saved heads {tuple(self.heads.shape)} do not fit {self.meta.n_tasks} tasks")
        self.history = state["history"].tolist()
        self.val_history = state["val_history"].tolist() if "val_history" in state else []

    def start(self, space: SearchSpace, task_features: Any = None, candidates: Any = None, seed: int = 0) -> Session:
        meta = self._require_fit(space)
        w = meta.feature_weights(task_features)
        w = np.full(meta.n_tasks, 1.0 / meta.n_tasks) if w is None else w
        return _MtlSession(self, space, candidates, seed, w)


# ---------------------------------------------------------------- transfer (pretrained, fine-tuned deep ensemble)
class BatchedMLP(nn.Module):
    """``K`` independent MLPs evaluated as one batched computation: x ``(K, n, d)`` -> ``(K, n)``."""

    def __init__(self, K: int, d: int, h: int):
        super().__init__()
        def init(i: int, o: int) -> nn.Parameter:
            return nn.Parameter(torch.randn(K, i, o) / np.sqrt(i))
        self.W1, self.b1 = init(d, h), nn.Parameter(torch.zeros(K, 1, h))
        self.W2, self.b2 = init(h, h), nn.Parameter(torch.zeros(K, 1, h))
        self.W3, self.b3 = init(h, 1), nn.Parameter(torch.zeros(K, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply_params(x, self.W1, self.b1, self.W2, self.b2, self.W3, self.b3)

    @staticmethod
    def apply_params(x: torch.Tensor, W1: torch.Tensor, b1: torch.Tensor, W2: torch.Tensor, b2: torch.Tensor,
                     W3: torch.Tensor, b3: torch.Tensor) -> torch.Tensor:
        """The forward pass with explicit parameters (in the order of ``state_dict``)."""
        h = torch.relu(torch.bmm(x, W1) + b1)
        h = torch.relu(torch.bmm(h, W2) + b2)
        return (torch.bmm(h, W3) + b3).squeeze(-1)


class _TransferSession(_WarmSession):
    def __init__(self, owner: "TransferStrategy", space: SearchSpace, candidates: Any, seed: int, fz: np.ndarray | None):
        super().__init__(space, candidates, seed)
        self.o, self.fz, self.meta = owner, fz, owner.meta
        self.net = BatchedMLP(owner.K, owner.in_dim, owner.hidden)
        self.net.load_state_dict(owner.pretrained)
        self._tuned_on = 0  # observations the ensemble was last fine-tuned on
        self._offset: np.ndarray | float = 0.0  # per-member offset to the standardized observations (K, 1)

    def _update(self) -> None:
        """Bring the ensemble up to date with the observations: borrow a meta-train task's features when
        the task has none, fine-tune from the pretrained weights, align each member's offset. A function
        of the observations alone (fine-tuning always restarts from the pretrained weights)."""
        X, y = self.observed()
        if self._tuned_on == len(y):
            return
        self._tuned_on = len(y)
        if self.fz is None and self.o.meta.features is not None and len(y) >= 2:
            # no meta-features for this task: use those of the meta-train task that agrees best so far
            self.fz = self.o.meta.features[int(np.argmax(self.o.meta.observation_weights(X, y)))]
        if len(y) >= 2 and np.ptp(y) > 0:
            z = standardize(y)
            self._finetune(X, z)
            with torch.no_grad():
                self._offset = (self.net(self._inputs(X)).numpy() - z).mean(1, keepdims=True)  # (K, 1)

    def members(self, X: np.ndarray) -> np.ndarray:
        """Per-member predictions ``(K, q)`` at encoded points, offsets aligned to the observations;
        before any fine-tuning, for a task without meta-features, averaged over the meta-train tasks'."""
        X = np.asarray(X, dtype=float).reshape(-1, self.space.dim)
        with torch_threads(1):  # tiny matrices: one thread is faster than several
            self._update()
        with torch.no_grad(), torch_threads(1):
            feats = self.o.meta.features
            if self.fz is not None or feats is None:
                return self.net(self._inputs(X)).numpy() - self._offset
            return np.mean([self.net(self._inputs(X, f)).numpy() for f in feats], axis=0)

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        P = self.members(X)  # (K, q)
        return P.mean(0), P.std(0)

    def _inputs(self, X: np.ndarray, fz: np.ndarray | None = None) -> torch.Tensor:
        fz = self.fz if fz is None else fz
        X = self.space.model_inputs(X)
        if fz is not None:
            X = np.hstack([X, np.repeat(fz[None, :], len(X), 0)])
        x = torch.as_tensor(X, dtype=torch.float32)
        return x.unsqueeze(0).expand(self.o.K, -1, -1).contiguous()

    def _finetune(self, X: np.ndarray, z: np.ndarray) -> None:
        """Fine-tune all weights from the pretrained ones on the observations (L_TL).

        The parameters are optimised as one flat vector (Adam is elementwise, so this is the same
        optimisation as per tensor, with a fraction of the per-step overhead).
        """
        pre = self.o.pretrained
        names = list(pre)
        shapes = [pre[k].shape for k in names]
        anchor = torch.cat([pre[k].flatten() for k in names])
        flat = anchor.clone().requires_grad_(True)
        opt = torch.optim.Adam([flat], lr=self.o.finetune_lr)
        x, zt = self._inputs(X), torch.as_tensor(z, dtype=torch.float32)
        sizes = [int(np.prod(sh)) for sh in shapes]
        for _ in range(self.o.finetune_steps):
            parts = [t.view(sh) for t, sh in zip(torch.split(flat, sizes), shapes)]
            pred = BatchedMLP.apply_params(x, *parts)  # (K, n)
            # each member fits the observations up to its own offset (scale-free L_TL), kept near its
            # pretrained weights: L_TL = mean squared residual + anchor * ||theta - theta_pretrained||^2
            res = pred - zt
            res = res - res.mean(1, keepdim=True)
            loss = (res ** 2).mean()
            opt.zero_grad()
            loss.backward()
            with torch.no_grad():  # gradient of the anchor term, added in place
                flat.grad.add_(flat - anchor, alpha=2 * self.o.anchor)
            opt.step()
        with torch.no_grad():
            self.net.load_state_dict({k: t.view(sh).clone() for k, t, sh in zip(names, torch.split(flat, sizes), shapes)})

    def _model_propose(self) -> np.ndarray:
        X, y = self.observed()
        pts, idx = self.pool()
        P = self.members(pts)  # (K, n_pts)
        if len(y) < 2 or np.ptp(y) == 0:
            return self._choose(P.mean(0), pts, idx)  # the pretrained prior mean
        return self._choose(expected_improvement(P.mean(0), P.std(0), standardize(y).max()), pts, idx)


class TransferStrategy(_TorchSurrogate):
    """Deep ensemble pretrained on pooled meta-train data, fine-tuned on the new task."""

    name = "transfer"
    meta_learned = True

    def __init__(self, K: int = 5, hidden: int = 32, epochs: int = 400, lr: float = 3e-3, finetune_steps: int = 30,
                 finetune_lr: float = 3e-3, anchor: float = 1e-3, seed: int = 0, holdout: float = 0.0, warm: int = 3):
        super().__init__()
        self.warm = warm
        self.K, self.hidden, self.epochs, self.lr = K, hidden, epochs, lr
        self.finetune_steps, self.finetune_lr, self.anchor, self.seed = finetune_steps, finetune_lr, anchor, seed
        self.holdout = holdout
        self.history: list[float] = []
        self.val_history: list[float] = []

    def _train(self) -> None:
        meta = self.meta
        X, z, tid = _task_rows(meta)
        if meta.features is not None:
            X = np.hstack([X, meta.features[tid]])
        self.in_dim = X.shape[1]
        net = BatchedMLP(self.K, self.in_dim, self.hidden)
        rng = np.random.default_rng(self.seed)
        # each member sees its own bootstrap of tasks: diversity that reflects task-to-task variation
        masks = np.stack([np.isin(tid, rng.choice(meta.n_tasks, meta.n_tasks, replace=True)) for _ in range(self.K)])
        Xt = torch.as_tensor(X, dtype=torch.float32).unsqueeze(0).expand(self.K, -1, -1)
        zt = torch.as_tensor(z, dtype=torch.float32)
        train, val = _holdout_rows(len(z), self.holdout, self.seed)
        if val is not None:  # held-out rows leave every member's training set
            masks[:, val.numpy()] = False
        mt = torch.as_tensor(masks, dtype=torch.float32)  # (K, N)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        self.history, self.val_history = [], []
        for _ in range(self.epochs):
            loss = (((net(Xt) - zt) ** 2) * mt).sum() / mt.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            self.history.append(loss.item())
            if val is not None:
                with torch.no_grad():  # the ensemble mean on held-out rows
                    self.val_history.append(((net(Xt[:, val]).mean(0) - zt[val]) ** 2).mean().item())
        self.pretrained = {k: v.detach().clone() for k, v in net.state_dict().items()}

    def _extra_state(self) -> dict[str, Any]:
        return {**{f"pretrained.{k}": v for k, v in self.pretrained.items()},
                "history": torch.tensor(self.history, dtype=torch.float64),
                "val_history": torch.tensor(self.val_history, dtype=torch.float64)}

    def _restore(self, state: Mapping[str, Any]) -> None:
        """Trained weights come back as saved (no retraining); shapes are checked against a fresh net."""
        self._warm_start()
        meta = self.meta
        self.in_dim = meta.space.model_dim + (len(meta.feature_names) if meta.features is not None else 0)
        K, d, h = self.K, self.in_dim, self.hidden
        ref = {"W1": (K, d, h), "b1": (K, 1, h), "W2": (K, h, h), "b2": (K, 1, h), "W3": (K, h, 1), "b3": (K, 1, 1)}
        got = {k[len("pretrained."):]: v for k, v in state.items() if k.startswith("pretrained.")}
        if set(got) != set(ref) or any(tuple(got[k].shape) != ref[k] for k in ref):
            raise StrategyError("transfer: saved ensemble weights do not fit the saved settings")
        self.pretrained = got
        self.history = state["history"].tolist()
        self.val_history = state["val_history"].tolist() if "val_history" in state else []

    def start(self, space: SearchSpace, task_features: Any = None, candidates: Any = None, seed: int = 0) -> Session:
        meta = self._require_fit(space)
        fz = meta.standardize_features(task_features) if meta.features is not None else None
        return _TransferSession(self, space, candidates, seed, fz)
