"""Development numbers of the default strategy (issue 16): adaptive-portfolio with its model phase chosen
in fit (``model_from="auto"``) and fixed at 4, 10 or never, its model phase restricted to the learned box
(``ap-box``, or chosen by the fit's check: ``ap-boxcv``), in a TuRBO trust region (``ap-tr``), on learned
categorical coordinates (``ap-embed``), with the box as a regressor of its prior mean (``ap-boxfeat``,
``ap-boxdist``), hedged with BoundingBox's draws (``ap-hedge``), or on the Gaussian copula of the task's values
(``ap-copula``), plus reference strategies, replayed on one table.

    python scripts/dev_adaptive_variants.py TABLE STRATEGIES SEEDS OUT.csv
    python scripts/dev_adaptive_variants.py TABLE --choices STRATEGY    # the hand-over its fit chose per fold

TABLE: ``hpobench``, ``hpolib_log``, ``nb201`` (exported first with ``python -m metahpo_utils hpobench
[--benchmark hpolib|nasbench201] --out runs/...``, see the README) or a committed suite (``digits``, ``text``,
``rl``: its meta-test tasks, fitted on meta-train + meta-val). ``hpolib_log`` is the HPOLib table with
log10(val_loss) as the objective: the raw loss has diverged runs at 10^2..10^7, which make every normalized
regret near 0. Prints regret at 1/5/10/25/50 (mean over tasks and seeds) and writes results.csv rows.
"""
from __future__ import annotations

import functools
import sys
import time
import weakref

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from metahpo_utils.benchmark import run_benchmark
from metahpo_utils.benchmark_data import prepare
from metahpo_utils.space import CategoricalDistribution, load_space
from metahpo_utils.strategies import STRATEGIES
from metahpo_utils.strategies.meta import AdaptivePortfolioStrategy, _AdaptiveSession
from metahpo_utils.tables import default_metadataset

VARIANTS = {"ap-m4": {"model_from": 4}, "ap-m10": {"model_from": 10}, "ap-none": {"model_from": None}}
for _name, _kw in VARIANTS.items():
    STRATEGIES[_name] = functools.partial(AdaptivePortfolioStrategy, **_kw)


class _BoxSession(_AdaptiveSession):
    """The model phase searches the box of the meta-train tasks' best configurations (Perrone et al. 2019) as
    Syne Tune's BoundingBox reaches it on a table: every open candidate inside the box, plus the open candidate
    nearest to each of 512 uniform draws in the box (a neighbourhood of it). Tried for issue 16, not adopted."""

    box = True

    def pool(self, n_random: int = 1024):
        if not self.box or self.open is None:
            return super().pool(n_random)
        if getattr(self, "_tree", None) is None:  # the box and the candidates' tree are the same all session
            B = self.meta.best_points()
            self._box = B.min(0), B.max(0)
            self._in_box = np.all((self.cand_X >= self._box[0] - 1e-9) & (self.cand_X <= self._box[1] + 1e-9), axis=1)
            self._tree = cKDTree(self.cand_X)
        lo, hi = self._box
        draws = lo + (hi - lo) * self.rng.random((512, self.space.dim))
        _, nn = self._tree.query(draws, k=min(len(self.cand_X), 16))
        near = []
        for i, row in enumerate(np.atleast_2d(nn)):
            row = row[self.open[row]]  # the 16 nearest that are open, else the nearest open one
            near.append(row[0] if len(row) else self._nearest_open(draws[i]))
        idx = np.unique(np.concatenate([near, np.flatnonzero(self.open & self._in_box)]).astype(int))
        return self.cand_X[idx], idx


class BoxVariant(AdaptivePortfolioStrategy):
    """``ap-box``: the default with the box model phase. ``ap-boxcv``: the fit's check chooses among the default's
    hand-overs and the box at 4 or 10 (encoded as -4 and -10; ties keep the default's)."""

    def __init__(self, cv: bool = False, **kw):
        super().__init__(**kw)
        self.cv = cv
        if cv:
            self.model_from_choices = (4, 10, None, -4, -10)

    def _session(self, space, task_features, candidates, seed, model_from):
        box = (not self.cv) or (model_from is not None and model_from < 0)
        s = super()._session(space, task_features, candidates, seed, None if model_from is None else abs(model_from))
        s.__class__, s.box = _BoxSession, box
        return s


STRATEGIES["ap-box"] = BoxVariant
STRATEGIES["ap-boxcv"] = functools.partial(BoxVariant, cv=True)


# ---- Tried for issue 16 in a later session, not adopted: a trust region, and the box as a learned regressor
#: TuRBO's constants (Eriksson et al. 2019), fixed in advance: side length start / max / min, successes to grow
TR_L_INIT, TR_L_MAX, TR_L_MIN, TR_SUCC_TOL = 0.8, 1.6, 0.5 ** 7, 3


class _TRSession(_AdaptiveSession):
    """``ap-tr``: the model phase's GP chooses only inside a TuRBO trust region around the task's incumbent
    (numeric hyperparameters within half the side length on the unit encoding; categorical ones differing in at
    most max(1, round(L/2 x their count))); the side doubles after 3 improvements in a row, halves after
    max(4, d) failures in a row, restarts below 0.5^7."""

    def _length(self, y: np.ndarray) -> float:
        L, succ, fail = TR_L_INIT, 0, 0
        start = self.model_from or len(y)
        best = y[:start].max() if start else -np.inf
        for v in y[start:]:
            succ, fail = (succ + 1, 0) if v > best + 1e-3 * abs(best) else (0, fail + 1)
            best = max(best, v)
            if succ == TR_SUCC_TOL:
                L, succ = min(2 * L, TR_L_MAX), 0
            if fail == max(4, self.space.dim):
                L, fail = L / 2, 0
            if L < TR_L_MIN:
                L = TR_L_INIT
        return L

    def pool(self, n_random: int = 1024):
        X, y = self.observed()
        if self.open is None or not len(y):
            return super().pool(n_random)
        L, inc, cat = self._length(y), X[int(np.argmax(y))], _categorical(self.space)
        idx = np.flatnonzero(self.open)
        C = self.cand_X[idx]
        ok = np.all(np.abs(C[:, ~cat] - inc[~cat]) <= L / 2 + 1e-9, axis=1)
        if cat.any():
            ok &= (~np.isclose(C[:, cat], inc[cat])).sum(1) <= max(1, round(L / 2 * cat.sum()))
        return (C[ok], idx[ok]) if ok.any() else (C, idx)


def _categorical(space) -> np.ndarray:
    return np.array([isinstance(d, CategoricalDistribution) for d in space.params.values()])


def box_outside(space, B: np.ndarray, X: np.ndarray) -> np.ndarray:
    """How far each row of ``X`` (encoded) lies outside the box of the rows of ``B``, per hyperparameter ``(d, n)``:
    a numeric one beyond the interval on the unit encoding, a categorical one 1 for a choice none of ``B`` has (the
    set of choices seen, as Syne Tune's BoundingBox), 0 inside."""
    cat = _categorical(space)
    return np.array([(~np.isin(space.choice_indices(X, j), space.choice_indices(B, j))).astype(float) if cat[j]
                     else np.maximum(0.0, np.maximum(B[:, j].min() - X[:, j], X[:, j] - B[:, j].max()))
                     for j in range(space.dim)])


def in_box_fraction(space, B: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Per row of ``X``, the fraction of hyperparameters inside the box of the rows of ``B``."""
    return np.mean(box_outside(space, B, X) <= 1e-9, axis=0)


def minus_box_distance(space, B: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Minus the root-mean-square over hyperparameters of how far a row of ``X`` lies outside the box."""
    return -np.sqrt(np.mean(np.square(box_outside(space, B, X)), axis=0))


class _BoxFeatSession(_AdaptiveSession):
    """``ap-boxfeat`` / ``ap-boxdist``: the model phase's prior mean regresses the task's standardized values on
    the weighted meta-train tasks' values (slope kept >= 0, as the default) **and** on a box feature
    (:func:`in_box_fraction` or :func:`minus_box_distance`; its coefficient free, ``prior_fit["extra"]``): the
    task's own results say how much to trust the box of the meta-train tasks' bests."""

    feature = staticmethod(in_box_fraction)

    def _prior_extras(self, X, pts):
        B = self.meta.best_points()
        return self.feature(self.space, B, X)[:, None], self.feature(self.space, B, pts)[:, None]


class _BoxDistSession(_BoxFeatSession):
    feature = staticmethod(minus_box_distance)


def _variant(session_class):
    class Variant(AdaptivePortfolioStrategy):
        def _session(self, space, task_features, candidates, seed, model_from):
            s = super()._session(space, task_features, candidates, seed, model_from)
            s.__class__ = session_class
            return s
    return Variant


STRATEGIES["ap-tr"] = _variant(_TRSession)
STRATEGIES["ap-boxfeat"] = _variant(_BoxFeatSession)
STRATEGIES["ap-boxdist"] = _variant(_BoxDistSession)


# ---- Tried for issue 16: a meta-learned distance between the choices of a categorical hyperparameter
def choice_embeddings(meta, space) -> dict[int, np.ndarray]:
    """Per categorical hyperparameter with more than two choices, coordinates of its choices learned from the
    meta-train tasks: the distance of choices a and b is the mean |difference in normalized value| between two
    configurations of one task that differ only in that hyperparameter (a -> b with everything else kept),
    embedded by classical multidimensional scaling and scaled to a mean distance of 1 (as one-hot's). A
    hyperparameter with a pair of choices never swapped that way keeps one-hot."""
    out = {}
    cat = _categorical(space)
    for j in np.flatnonzero(cat):
        k = len(list(space.params.values())[j].choices)
        if k <= 2:
            continue
        S, N = np.zeros((k, k)), np.zeros((k, k))
        for t in range(meta.n_tasks):
            X, y = meta.X[t], meta.yn[t]
            c = space.choice_indices(X, j)
            rest = np.round(np.delete(X, j, axis=1), 9)
            _, g = np.unique(rest, axis=0, return_inverse=True)
            order = np.argsort(g, kind="stable")
            bounds = np.flatnonzero(np.diff(g[order])) + 1
            for grp in np.split(order, bounds):
                if len(grp) < 2:
                    continue
                a, b = np.triu_indices(len(grp), 1)
                ca, cb, d = c[grp][a], c[grp][b], np.abs(y[grp][a] - y[grp][b])
                np.add.at(S, (ca, cb), d)
                np.add.at(S, (cb, ca), d)
                np.add.at(N, (ca, cb), 1)
                np.add.at(N, (cb, ca), 1)
        off = ~np.eye(k, dtype=bool)
        if (N[off] == 0).any():
            continue
        D = np.where(off, S / np.maximum(N, 1), 0.0)
        J = np.eye(k) - 1.0 / k
        lam, V = np.linalg.eigh(-0.5 * J @ (D ** 2) @ J)
        coords = V[:, lam > 1e-12] * np.sqrt(lam[lam > 1e-12])
        dist = np.sqrt(((coords[:, None] - coords[None]) ** 2).sum(-1))
        if dist[off].mean() <= 0:
            continue
        out[int(j)] = coords / dist[off].mean()
    return out


class _EmbeddedSpace:
    """The search space with model inputs where a categorical hyperparameter's choices sit at learned coordinates."""

    def __init__(self, space, emb: dict[int, np.ndarray]):
        self._space, self._emb = space, emb

    def __getattr__(self, name):
        return getattr(self._space, name)

    def model_inputs(self, X):
        X = np.asarray(X, dtype=float).reshape(-1, self._space.dim)
        plain = self._space.model_inputs(X)
        blocks = self._space.model_blocks
        cols = []
        for j in range(self._space.dim):
            cols.append(self._emb[j][self._space.choice_indices(X, j)] if j in self._emb else plain[:, blocks == j])
        return np.hstack(cols)

    @property
    def model_blocks(self):
        blocks = self._space.model_blocks
        return np.concatenate([np.full(self._emb[j].shape[1], j) if j in self._emb else blocks[blocks == j]
                               for j in range(self._space.dim)])


class _EmbedSession(_AdaptiveSession):
    """``ap-embed``: the default, with the model phase's GP on :func:`choice_embeddings` inputs (computed once per
    fitted meta-train set: the fit's inner check fits on subsets, which get their own)."""

    def _model_space(self):
        if self.meta not in _EMBEDDINGS:
            _EMBEDDINGS[self.meta] = choice_embeddings(self.meta, self.space)
        return _EmbeddedSpace(self.space, _EMBEDDINGS[self.meta])


_EMBEDDINGS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


STRATEGIES["ap-embed"] = _variant(_EmbedSession)


class _HedgeSession(_AdaptiveSession):
    """``ap-hedge``: after the hand-over every third proposal is BoundingBox's (a uniform draw in the box of the
    meta-train tasks' bests on the unit encoding, snapped to the nearest open candidate), the others the GP's."""

    def _propose(self):
        X, y = self.observed()
        if self._model_phase(y) and not self._guarded(X, y) and (len(y) - self.model_from) % 3 == 2:
            B = self.meta.best_points()
            return B.min(0) + (B.max(0) - B.min(0)) * self.rng.random(self.space.dim)
        return super()._propose()


STRATEGIES["ap-hedge"] = _variant(_HedgeSession)


def copula(y: np.ndarray) -> np.ndarray:
    """Gaussian copula of ``y``: the normal quantile of each value's rank (ties share their mean rank)."""
    from scipy.stats import norm, rankdata
    return norm.ppf((rankdata(y) - 0.5) / len(y))


class _CopulaSession(_AdaptiveSession):
    """``ap-copula``: the default, with the model phase's GP and prior regression on the Gaussian copula of the
    task's values instead of their standardization (robust to a few diverged results; Salinas et al. 2020)."""

    value_transform = staticmethod(copula)


STRATEGIES["ap-copula"] = _variant(_CopulaSession)


def load(name: str):
    if name == "hpobench":
        return prepare("runs/hpobench_mlp_2000.parquet", maximize=True,
                       space=load_space("runs/hpobench_mlp_2000_space.json")), "loo", None
    if name == "hpolib_log":
        t = pd.read_parquet("runs/hpolib_2000.parquet")
        t["objective"] = np.log10(t["objective"])
        return prepare(t, maximize=False, space=load_space("runs/hpolib_2000_space.json")), "loo", None
    if name == "nb201":
        return prepare("runs/nb201.parquet", maximize=True, space=load_space("runs/nb201_space.json")), "loo", None
    m = default_metadataset(name)
    t = m.trials.drop(columns=[c for c in ("curve", "val_loss_curve") if c in m.trials])
    data = prepare(t, maximize=True, space=m.space, task_features=m.tasks.set_index("task"))
    return data, "split", m.provenance.set_index("task")["split"]


def choices(name: str, strategy: str) -> list[tuple[str, object]]:
    """The hand-over the fit's check chose in each fold of ``name`` (held-out task, ``model_from``)."""
    from metahpo_utils.benchmark import _fit, folds
    from metahpo_utils.strategies import make_strategy
    data, holdout, splits = load(name)
    out = []
    for train, held in folds(data.tasks, holdout, splits=splits):
        s = make_strategy(strategy)
        _fit(s, strategy, data, train)
        out.append((",".join(held) if len(held) < 4 else f"{len(held)} tasks", s.model_report.get("model_from")))
    return out


if __name__ == "__main__":
    if sys.argv[2] == "--choices":  # python scripts/dev_adaptive_variants.py TABLE --choices STRATEGY
        for held, chosen in choices(sys.argv[1], sys.argv[3]):
            print(f"{held:30s} model_from={chosen}  (negative: the box, ap-boxcv)")
        sys.exit(0)
    name, strategies, seeds, out = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]), sys.argv[4]
    data, holdout, splits = load(name)
    t0 = time.time()
    res = run_benchmark(data, strategies, 50, seeds, holdout, splits=splits, progress=False)
    res.results.to_csv(out, index=False)
    print(name, f"{time.time() - t0:.0f}s", flush=True)
    for st in strategies:
        r = res.summary["strategies"][st]["regret"]
        print(f"{st:20s}", " ".join(f"{r[k]:.4f}" if r.get(k) is not None else "  n/a " for k in ("1", "5", "10", "25", "50")))
