"""The default strategy's combination (issue 16): a conditional portfolio first, with meta-features only
where they proved useful on the meta-train tasks, then a GP whose prior mean is the weighted meta-train
tasks; surrogates on one-hot inputs warm-started from the portfolio. Synthetic tables with known structure."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution

from metahpo_utils.space import SearchSpace, float_param
from metahpo_utils.strategies import StrategyError, make_strategy
from metahpo_utils.strategies.meta import transfer_prior_ei
from strategy_fixtures import shifting_space, shifting_table, target_rows


def replay(strategy, rows, n, features=None, seed=0, space=None):
    space = space or shifting_space()
    session = strategy.start(space, task_features=features, candidates=rows[space.names], seed=seed)
    picked = []
    for _ in range(n):
        cfg = session.suggest(1)
        if not cfg:
            break
        i = session.suggested_indices[-1]
        session.observe(cfg[0], rows["objective"].iloc[i])
        picked.append(i)
    return np.array(picked), session


def final_regret(rows, picked):
    v = rows["objective"].to_numpy()
    return (v.max() - v[picked].max()) / np.ptp(v)


def test_model_inputs_put_every_pair_of_choices_at_distance_one():
    space = SearchSpace({"x": float_param(0, 1), "op": CategoricalDistribution(["a", "b", "c", "d", "e"])})
    assert space.model_dim == 6
    X = np.stack([space.encode({"x": 0.25, "op": c}) for c in "abcde"])
    F = space.model_inputs(X)
    assert F.shape == (5, 6) and np.allclose(F[:, 0], 0.25)
    D = np.sqrt(((F[:, None] - F[None]) ** 2).sum(-1))
    assert np.allclose(D[~np.eye(5, dtype=bool)], 1.0)  # a over e is no farther than a over b
    # on the unit-cube encoding alone they are not
    assert abs(X[0, 1] - X[4, 1]) > 3 * abs(X[0, 1] - X[1, 1])


def misleading_table(n_tasks: int = 12, n_configs: int = 60) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two kinds of task, optimum at x = 0.2 (even tasks) or 0.8 (odd), and a meta-feature (the task's
    index) whose two nearest neighbours are always of the other kind."""
    space = shifting_space()
    configs = space.design(n_configs, seed=0)
    rows = [{"task": f"t{t:02d}", **c, "objective": float(np.exp(-((c["x"] - (0.2 if t % 2 == 0 else 0.8)) ** 2) / 0.02)
                                                          + (0.1 if c["opt"] == "a" else 0.0))}
            for t in range(n_tasks) for c in configs]
    return pd.DataFrame(rows), pd.DataFrame({"z": np.arange(n_tasks, dtype=float)}, index=[f"t{t:02d}" for t in range(n_tasks)])


def test_feature_check_keeps_informative_meta_features_and_drops_misleading_ones():
    table, feats = shifting_table(n_tasks=12, n_configs=60, seed=0)
    space = shifting_space()
    good = make_strategy("adaptive-portfolio").fit(table, feats[["f"]], space)
    assert good.feature_report["use"] and good.feature_report["regret_with"] < good.feature_report["regret_without"]
    table, mislead = misleading_table()
    bad = make_strategy("adaptive-portfolio", k_features=2).fit(table, mislead, space)
    assert not bad.feature_report["use"]
    assert bad.feature_report["regret_with"] > bad.feature_report["regret_without"]
    noise = mislead
    # forced either way, and refused when misspelled
    assert make_strategy("adaptive-portfolio", features="always").fit(table, noise, space).feature_report["use"]
    assert not make_strategy("adaptive-portfolio", features="never").fit(table, feats, space).feature_report["use"]
    with pytest.raises(StrategyError, match="features"):
        make_strategy("adaptive-portfolio", features="sometimes")


@pytest.mark.parametrize("utility", ["regret", "rank", "mixed"])
def test_first_pick_is_the_plain_greedy_portfolios_unless_features_proved_useful(utility):
    table, mislead = misleading_table()
    space = shifting_space()
    rows = target_rows(0.2)
    port = make_strategy("portfolio").fit(table, mislead, space)
    ap = make_strategy("adaptive-portfolio", utility=utility, k_features=2).fit(table, mislead, space)
    assert not ap.feature_report["use"]
    for seed in range(3):
        first = replay(port, rows, 1, pd.Series({"z": 3.0}), seed)[0]
        assert list(replay(ap, rows, 1, pd.Series({"z": 3.0}), seed)[0]) == list(first)
    # with features that proved useful, the first pick follows the nearest tasks instead (and is better here)
    table, feats = shifting_table(n_tasks=12, n_configs=60, seed=0)
    port = make_strategy("portfolio").fit(table, feats, space)
    useful = make_strategy("adaptive-portfolio", utility=utility).fit(table, feats, space)
    near = replay(useful, target_rows(0.1), 1, pd.Series({"f": 0.1, "noise": 0.5}))[0]
    assert final_regret(target_rows(0.1), near) < final_regret(target_rows(0.1), replay(port, target_rows(0.1), 1)[0])


def test_transfer_prior_trusted_when_it_predicts_and_ignored_when_it_misleads():
    space = SearchSpace({"x": float_param(0, 1)})
    pts = np.linspace(0, 1, 101)[:, None]
    truth = lambda X: np.exp(-((X[:, 0] - 0.7) ** 2) / 0.01)  # noqa: E731
    X = np.array([[0.05], [0.3], [0.5], [0.9], [0.95]])
    y = truth(X)
    ei, fit = transfer_prior_ei(space, X, y, pts, truth(X), truth(pts))
    assert fit["slope"] > 0.5
    assert abs(pts[np.argmax(ei), 0] - 0.7) <= 0.03  # straight to the peak no observation is near
    ei, fit = transfer_prior_ei(space, X, y, pts, -truth(X), -truth(pts))
    assert fit["slope"] == 0.0  # a prior that orders the results the wrong way is dropped
    assert "extra" not in fit


def test_transfer_prior_extra_regressor_keeps_its_sign_when_the_meta_prior_is_dropped():
    """A further regressor of the prior mean (the hook development variants use) gets a free coefficient: here
    it is the truth and the meta-train prior misleads, so the prior is dropped and the regressor carries it."""
    space = SearchSpace({"x": float_param(0, 1)})
    pts = np.linspace(0, 1, 101)[:, None]
    truth = lambda X: np.exp(-((X[:, 0] - 0.7) ** 2) / 0.01)  # noqa: E731
    X = np.array([[0.05], [0.3], [0.5], [0.9], [0.95]])
    ei, fit = transfer_prior_ei(space, X, truth(X), pts, -truth(X), -truth(pts), extra_obs=truth(X),
                                extra_pts=truth(pts))
    assert fit["slope"] == 0.0 and fit["extra"][0] > 0.5
    assert abs(pts[np.argmax(ei), 0] - 0.7) <= 0.03


def _bump(c: dict, f: float) -> float:
    return float(np.exp(-((c["x"] - f) ** 2) / 0.02) + 0.3 * np.exp(-((np.log10(c["lr"]) + 2) ** 2) / 2)
                 + (0.1 if c["opt"] == "a" else 0.0))


def test_model_phase_refines_between_the_configurations_the_meta_train_tasks_know():
    """Nine meta-train tasks (optima at x = 0.1, ..., 0.9) know 40 configurations each; a target offers 500.
    After 10 results the GP with the transfer prior finds the target's own peak between theirs sooner
    than the conditional portfolio alone, which keeps to what the meta-train tasks tried: mean regret
    over trials 11..25, averaged over four targets, is lower. The first 10 trials are the same."""
    space = shifting_space()
    configs = space.design(40, seed=0)
    table = pd.DataFrame([{"task": f"t{t}", **c, "objective": _bump(c, 0.1 + 0.1 * t)} for t in range(9) for c in configs])
    with_model = make_strategy("adaptive-portfolio", model_from=10).fit(table, None, space)
    without = make_strategy("adaptive-portfolio", model_from=None).fit(table, None, space)
    late = {True: [], False: []}
    for f in (0.33, 0.37, 0.52, 0.66):
        cands = space.design(500, seed=11)
        rows = pd.DataFrame([{**c, "objective": _bump(c, f)} for c in cands])
        v = rows["objective"].to_numpy()
        for model, strat in ((True, with_model), (False, without)):
            for seed in range(3):
                picked, ses = replay(strat, rows, 25, seed=seed)
                assert ses.guard["model_based_from"] is None  # the rankings agree: the guard stays out of it
                late[model].append(((v.max() - np.maximum.accumulate(v[picked])) / np.ptp(v))[10:].mean())
                if model:
                    assert list(picked[:10]) == list(replay(without, rows, 10, seed=seed)[0])
    assert np.mean(late[True]) < 0.75 * np.mean(late[False])


def test_model_phase_explains_itself_and_records_the_prior_fit():
    table, _ = shifting_table(n_tasks=12, n_configs=60, seed=0)
    strat = make_strategy("adaptive-portfolio", model_from=4).fit(table, None, shifting_space())
    rows = target_rows(0.4)
    _, ses = replay(strat, rows, 4)
    e = ses.explain()
    assert "prior mean of a GP" in e.note and e.weights.sum() == pytest.approx(1.0)
    assert ses.prior_fit is None
    ses.suggest(1)
    assert set(ses.prior_fit) == {"intercept", "slope"} and ses.prior_fit["slope"] >= 0
    with pytest.raises(StrategyError, match="model_from"):
        make_strategy("adaptive-portfolio", model_from=1)


@pytest.mark.parametrize("name", ["mtl", "transfer"])
def test_surrogates_start_with_the_portfolios_first_picks_and_read_choices_one_hot(name):
    table, feats = shifting_table(n_tasks=12, n_configs=60, seed=0)
    space = shifting_space()
    kw = {"mtl": {"epochs": 50, "hidden": 8}, "transfer": {"epochs": 30, "K": 2, "hidden": 8, "finetune_steps": 3}}[name]
    strat = make_strategy(name, **kw).fit(table, feats, space)
    port = make_strategy("portfolio").fit(table, feats, space)
    rows = target_rows(0.5)
    assert list(replay(strat, rows, 3, feats.loc["t05"])[0]) == list(replay(port, rows, 3)[0])
    net_in = strat.phi.net[0].in_features if name == "mtl" else strat.pretrained["W1"].shape[1]
    assert net_in == space.model_dim + (0 if name == "mtl" else feats.shape[1])  # opt: two one-hot columns
    assert make_strategy(name, warm=0, **kw).fit(table, feats, space).warm_points.shape == (0, space.dim)


def test_model_check_chooses_among_the_hand_overs_a_subclass_offers():
    """``model_from_choices`` is what the fit's check chooses among: a subclass offering (None, 4) gets exactly
    those scored, with the same inner score per choice as the default's check, and one of them chosen."""
    from metahpo_utils.strategies.meta import MODEL_FROM_CHOICES, AdaptivePortfolioStrategy

    class NeverOrFour(AdaptivePortfolioStrategy):
        model_from_choices = (None, 4)

    table, _ = shifting_table(n_tasks=6, n_configs=30, seed=0)
    sub = NeverOrFour().fit(table, None, shifting_space())
    default = make_strategy("adaptive-portfolio").fit(table, None, shifting_space())
    assert list(sub.model_report["scores"]) == [None, 4]
    assert list(default.model_report["scores"]) == list(MODEL_FROM_CHOICES)
    for c in (None, 4):
        assert sub.model_report["scores"][c] == pytest.approx(default.model_report["scores"][c])
    best = min(sub.model_report["scores"].values())
    assert sub.model_report["scores"][sub.model_from_used] == best
