"""The reinforcement-learning domain: recipes and suites, environment variants through the
environments' own attributes, SB3 learners (determinism, resuming, evaluation on held-out seeds,
diverging and crashing runs), meta-features, bad input, tuning and the command line."""
from __future__ import annotations

import dataclasses
import json
import random

import numpy as np
import pandas as pd
import pytest
import torch

from metahpo_utils.choices import SUITE_DOMAINS
from metahpo_utils.data.tasks import TaskError, build_suite
from metahpo_utils.domains import domain_of_suite, get_domain, is_task
from metahpo_utils.domains.rl import (ALGORITHMS, DQN_ACTIONS, ENVIRONMENTS, RL_METAFEATURE_NAMES, RL_SUITES, EnvError,
                                      RLConfigError, RLTaskSpec, Variant, episode_seeds, make_env, make_rl_task, rl_space)
from metahpo_utils.domains.rl.envs import rollout_returns
from metahpo_utils.domains.rl.tasks import RL_PERTURBATION_RATES
from metahpo_utils.errors import MetahpoError

RL = get_domain("rl")
#: Tiny trainings for the tests: 2 checkpoints of 512 steps, few evaluation episodes.
SMALL = dict(checkpoint_steps=512, n_checkpoints=2, n_val_episodes=3, n_test_episodes=4)
PPO = dict(algo="ppo", lr=1e-3, gamma=0.99, batch_size=64, width=32, depth=1, n_steps=64, gae_lambda=0.95,
           clip_range=0.2, ent_coef=0.0)
DQN = dict(algo="dqn", lr=1e-3, gamma=0.99, batch_size=32, width=32, depth=1, train_freq=4, buffer_size=2000,
           target_update_interval=100, exploration_fraction=0.3, exploration_final_eps=0.05)


def small(env: str = "cartpole", **kw):  # noqa: ANN201
    return make_rl_task(RLTaskSpec(env, **{**SMALL, **kw}), f"test-{env}")


def episode(env, seed: int, actions) -> tuple[list[float], list[np.ndarray]]:  # noqa: ANN001
    """Rewards and observations of one episode driven by a fixed action sequence (cycled)."""
    obs, _ = env.reset(seed=seed)
    rewards, seen, done, t = [], [obs], False, 0
    while not done:
        obs, r, term, trunc, _ = env.step(actions[t % len(actions)])
        rewards.append(float(r))
        seen.append(obs)
        done, t = term or trunc, t + 1
    return rewards, seen


# ---------------------------------------------------------------- suites and recipes
def test_rl_suites_are_registered_deterministic_and_json():
    assert {n for n, d in SUITE_DOMAINS.items() if d == "rl"} == set(RL_SUITES)
    assert domain_of_suite("pendulum").name == "rl"
    a, b = build_suite("rl", n_tasks=8, seed=0), build_suite("rl", n_tasks=8, seed=0)
    assert a.domain == "rl" and [s.to_dict() for s in a.specs.values()] == [s.to_dict() for s in b.specs.values()]
    assert [s.base for s in a.specs.values()] == list(ENVIRONMENTS) * 2  # task i is of environment i mod 4
    first = build_suite("rl", n_tasks=4, seed=0)
    assert all(first.specs[n] == a.specs[n] for n in first.task_names)  # task i depends only on (seed, i)
    assert build_suite("rl", n_tasks=8, seed=1).specs["rl-000"] != a.specs["rl-000"]
    for spec in a.specs.values():
        d = json.loads(json.dumps(spec.to_dict()))
        assert RL.spec_from_dict(d) == spec and set(spec.physics) == set(ENVIRONMENTS[spec.base].physics)
        for attr, (lo, hi) in ENVIRONMENTS[spec.base].physics.items():
            v = spec.physics[attr]
            v = max(abs(x) for x in v) if isinstance(v, list) else v  # a list constant scaled as a whole
            assert lo * 0.999 <= v <= hi * 1.001
    full = build_suite("rl", n_tasks=20, seed=0)
    assert sorted(sum(full.splits.values(), [])) == full.task_names
    assert {k: len(v) for k, v in full.splits.items()} == {"meta-train": 12, "meta-val": 4, "meta-test": 4}
    counts = {"obs_noise": 0, "reward_scale": 0, "reward_delay": 0}
    for s in full.specs.values():
        counts["obs_noise"] += s.obs_noise > 0
        counts["reward_scale"] += s.reward_scale != 1.0
        counts["reward_delay"] += s.reward_delay > 1
    assert counts == {k: round(r * 20) for k, r in RL_PERTURBATION_RATES.items()}  # exact shares per block of 20
    assert {s.base for s in build_suite("acrobot", n_tasks=5).specs.values()} == {"acrobot"}


def test_physics_are_set_through_the_environments_own_attributes():
    env = make_env(Variant("CartPole-v1", {"gravity": 12.0, "masspole": 0.2, "length": 0.8}))
    u = env.unwrapped
    assert (u.gravity, u.masspole, u.length) == (12.0, 0.2, 0.8)
    assert u.total_mass == pytest.approx(u.masscart + 0.2) and u.polemass_length == pytest.approx(0.16)  # derived again
    default = make_env(Variant("cartpole"))
    _, changed = episode(env, 3, [0, 1, 1])
    _, same = episode(default, 3, [0, 1, 1])
    assert np.allclose(changed[0], same[0]) and not np.allclose(changed[3], same[3])  # same start, other dynamics
    pend = make_env(Variant("pendulum", {"max_torque": 3.0}))
    assert float(pend.action_space.high[0]) == 3.0
    acro = make_env(Variant("acrobot", {"AVAIL_TORQUE": [-1.5, 0.0, 1.5]}))
    assert acro.unwrapped.AVAIL_TORQUE == [-1.5, 0.0, 1.5] and type(acro.unwrapped).AVAIL_TORQUE == [-1.0, 0.0, 1]
    assert make_env(Variant("acrobot", episode_steps=77)).spec.max_episode_steps == 77


def test_reward_scale_delay_and_observation_noise():
    actions = [0, 1, 1, 0, 1]
    base, _ = episode(make_env(Variant("cartpole")), 5, actions)
    scaled, _ = episode(make_env(Variant("cartpole", reward_scale=2.5)), 5, actions)
    assert sum(scaled) == pytest.approx(2.5 * sum(base)) and len(scaled) == len(base)
    delayed, _ = episode(make_env(Variant("cartpole", reward_delay=4)), 5, actions)
    assert sum(delayed) == pytest.approx(sum(base))  # the same return, delivered every 4 steps and at the end
    assert [i for i, r in enumerate(delayed) if r] == [i for i in range(len(base)) if (i + 1) % 4 == 0 or i == len(base) - 1]
    noisy = make_env(Variant("cartpole", obs_noise=0.05))
    _, o1 = episode(noisy, 5, actions)
    _, o2 = episode(noisy, 5, actions)
    _, clean = episode(make_env(Variant("cartpole")), 5, actions)
    assert all(np.array_equal(a, b) for a, b in zip(o1, o2))  # the noise is seeded with the episode
    noise = np.stack(o1) - np.stack(clean)  # (steps, 4): the wrapper leaves the dynamics alone
    scale = np.array([2.4 * 2, 1.0, 0.2095 * 2, 1.0])  # half-widths of CartPole's bounds, 1 where unbounded
    assert np.allclose(noise.std(0) / scale, 0.05, rtol=0.5)


def test_bad_rl_input_is_one_clear_error():
    cases = [
        (lambda: make_env(Variant("Hopper-v4")), EnvError, "unknown environment 'Hopper-v4' \\(available: cartpole"),
        (lambda: make_env(Variant("acrobot", {"gravity": 9.8})), EnvError,
         "Acrobot-v1 has no physics attribute 'gravity' \\(it has: .*LINK_MASS_1"),
        (lambda: make_env(Variant("cartpole", {"gravity": "strong"})), EnvError, "'gravity' must be a finite number"),
        (lambda: make_env(Variant("acrobot", {"AVAIL_TORQUE": [1.0]})), EnvError, "'AVAIL_TORQUE' is a list of 3 numbers"),
        (lambda: make_env(Variant("cartpole", reward_delay=0)), EnvError, "reward_delay must be at least 1"),
        (lambda: make_rl_task(RLTaskSpec("cartpole", checkpoint_steps=0)), EnvError, "checkpoint_steps must be at least 1"),
        (lambda: RL.train(small(), {**PPO, "algo": "sac"}, epochs=1), RLConfigError,
         "unknown algorithm algo='sac' \\(use dqn, ppo, a2c\\)"),
        (lambda: RL.train(small(), {**PPO, "width": 0}, epochs=1), RLConfigError, "width and depth must be at least 1"),
        (lambda: RL.train(small(), PPO, epochs=1, family="mlp"), TaskError, "trains family 'sb3'"),
        (lambda: build_suite("rl", n_tasks=4, ways=3), TaskError, "RL tasks have no classes"),
    ]
    for call, cls, pattern in cases:
        with pytest.raises(cls, match=pattern) as err:
            call()
        assert isinstance(err.value, MetahpoError) and "\n" not in str(err.value)
    from metahpo_utils.tuning import TuneError, resolve_task

    with pytest.raises(TuneError, match="unknown environment 'Hopper-v4'"):
        resolve_task({"env": "Hopper-v4"})
    with pytest.raises(TuneError, match="unknown \\['gravity'\\]"):
        resolve_task({"env": "cartpole", "gravity": 3})


# ---------------------------------------------------------------- training
@pytest.mark.parametrize("config", [PPO, DQN, {**PPO, "algo": "a2c", "n_steps": 8}], ids=["ppo", "dqn", "a2c"])
def test_training_is_deterministic_resumes_and_leaves_global_state_alone(config):
    task = small()

    def draws(seeded: bool) -> tuple:
        if seeded:
            torch.manual_seed(123), np.random.seed(7), random.seed(5)
        return torch.rand(1).item(), np.random.rand(), random.random()

    threads = torch.get_num_threads()
    draws(True)
    torch.manual_seed(123), np.random.seed(7), random.seed(5)
    a = RL.train(task, config, epochs=2, seed=3)
    assert draws(False) == draws(True)  # the caller's generators continue as if nothing had run
    assert torch.get_num_threads() == threads
    b = RL.train(task, config, epochs=2, seed=3)
    assert a.status == b.status == "ok" and len(a.curve) == 2
    assert (a.objective, a.test_objective, a.curve) == (b.objective, b.test_objective, b.curve)
    tr = RL.trainer(task, config, seed=3, family="sb3")
    other = RL.trainer(task, config, seed=4, family="sb3")
    tr.run(1)
    other.run(2)  # another training in between changes nothing
    r = tr.run(1).result()
    assert (r.objective, r.test_objective, r.curve) == (a.objective, a.test_objective, a.curve)
    assert tr.epochs_done == 2 and tr.model.num_timesteps == 2 * SMALL["checkpoint_steps"]


def test_evaluation_uses_fixed_seeds_never_seen_in_training_or_tuning():
    task = small()
    val, test = task.seeds("val"), task.seeds("test")
    assert len(val) == 3 and len(test) == 4 and not set(val) & set(test)
    assert val == episode_seeds(task.spec.seed, "val", 3) and min(val + test) >= 2**20  # training seeds are small
    assert small().seeds("val") == val and small(seed=1).seeds("val") != val
    res = RL.train(task, PPO, epochs=2, seed=0)
    assert res.objective == res.curve[-1]
    policy = res.model  # the trained SB3 policy, a torch module
    assert isinstance(policy, torch.nn.Module)
    envs = [task.make_env() for _ in test]
    again = rollout_returns(envs, test, lambda obs, idx: policy.predict(obs, deterministic=True)[0])
    assert res.test_objective == pytest.approx(float(again.mean()))
    vals = rollout_returns([task.make_env() for _ in val], val, lambda obs, idx: policy.predict(obs, deterministic=True)[0])
    assert res.objective == pytest.approx(float(vals.mean()))


def test_dqn_acts_on_continuous_actions_through_evenly_spaced_torques():
    task = small("pendulum", physics={"max_torque": 2.5})
    env = task.make_env(discrete_actions=True)
    assert env.action_space.n == DQN_ACTIONS and np.allclose(env.values[[0, -1]].ravel(), [-2.5, 2.5])
    res = RL.train(task, DQN, epochs=1, seed=0)
    assert res.status == "ok" and np.isfinite(res.objective)
    assert task.make_env().action_space.shape == (1,)  # PPO and A2C act on the continuous torque itself


def test_a_diverging_run_is_recorded_with_the_random_policys_return():
    task = small()
    for algo in ALGORITHMS:
        res = RL.train(task, {**(DQN if algo == "dqn" else PPO), "algo": algo, "lr": 1e30}, epochs=2, seed=0)
        assert res.status == "diverged" and len(res.curve) < 2  # stopped at the checkpoint where it diverged
        assert (res.objective, res.test_objective) == (task.random_return("val"), task.random_return("test"))
    assert RL.baseline(task) == task.random_return("val")


def test_collection_records_crashes_and_resumes(tmp_path, monkeypatch):
    """A run that raises is stored as failed (the collection goes on) and retried on the next run."""
    from metahpo_utils.domains.rl import learners
    from metahpo_utils.domains.rl import envs as rl_envs
    from metahpo_utils.metadataset import MetaDatasetStore, collect, recompute_trial

    from metahpo_utils.collection import _suite

    _suite.cache_clear()  # workers rebuild the suite from its recipe: under the tiny budgets below
    tiny = {k: dataclasses.replace(d, checkpoint_steps=256) for k, d in rl_envs.ENVIRONMENTS.items()}
    monkeypatch.setattr(rl_envs, "ENVIRONMENTS", tiny)
    monkeypatch.setattr("metahpo_utils.domains.rl.tasks.ENVIRONMENTS", tiny)
    real = learners.RLTrainer._checkpoint

    def crash_on_dqn(self):  # noqa: ANN001, ANN202
        if self.config["algo"] == "dqn":
            raise RuntimeError("simulator crashed")
        return real(self)

    monkeypatch.setattr(learners.RLTrainer, "_checkpoint", crash_on_dqn)
    store = tmp_path / "rl.sqlite"
    rep = collect("cartpole", n_tasks=3, n_configs=3, epochs=1, store=store, progress=False)
    with MetaDatasetStore(store, readonly=True) as st:
        trials, meta = st.trials_table(), st.read_meta()
        assert meta["domain"] == "rl" and meta["family"] == "sb3" and st.space == rl_space()
        assert set(st.tasks_table().columns) == {"task", *RL_METAFEATURE_NAMES}
    failed = trials[trials["status"] == "failed"]
    n_dqn = int((trials["algo"] == "dqn").sum())
    assert n_dqn > 0 and rep.statuses["failed"] == len(failed) == n_dqn
    assert set(trials.loc[trials["algo"] != "dqn", "status"]) == {"ok"}
    assert "RuntimeError: simulator crashed" in rep.first_error
    monkeypatch.setattr(learners.RLTrainer, "_checkpoint", real)
    rep = collect("cartpole", n_tasks=3, n_configs=3, epochs=1, store=store, progress=False)
    assert rep.trials_run == len(failed) and rep.statuses == {"ok": len(failed)}
    with MetaDatasetStore(store, readonly=True) as st:
        row = st.trials_table().iloc[4]
    res = recompute_trial(meta, row["task"], int(row["config_id"]))
    assert (res["objective"], res["test_objective"], res["curve"]) == (row["objective"], row["test_objective"], list(row["curve"]))
    _suite.cache_clear()


# ---------------------------------------------------------------- meta-features
def test_rl_metafeatures_describe_the_environment():
    cart = RL.metafeatures(small(episode_steps=300))
    assert list(cart) == list(RL_METAFEATURE_NAMES) and cart == RL.metafeatures(small(episode_steps=300))
    assert (cart["obs_dim"], cart["action_dim"], cart["continuous"], cart["episode_steps"]) == (4, 2, 0, 300)
    assert cart["random_return"] > 0 and cart["random_return_std"] >= 0 and cart["reward_sparsity"] == 0
    pend = RL.metafeatures(small("pendulum"))
    assert (pend["obs_dim"], pend["action_dim"], pend["continuous"]) == (3, 1, 1) and pend["random_return"] < 0
    delayed = RL.metafeatures(small(reward_delay=5))
    assert delayed["reward_sparsity"] > 0.6  # 4 of every 5 steps pay nothing
    scaled = RL.metafeatures(small(reward_scale=3.0))
    assert scaled["reward_scale"] == pytest.approx(3.0) and scaled["random_return"] == pytest.approx(3 * cart["random_return"], rel=0.5)


def test_rl_space_covers_what_practitioners_tune():
    space = rl_space()
    assert {"algo", "lr", "gamma", "batch_size", "n_steps", "gae_lambda", "clip_range", "ent_coef", "width", "depth",
            "exploration_fraction", "target_update_interval", "train_freq", "buffer_size"} <= set(space.names)
    assert list(space.params["algo"].choices) == list(ALGORITHMS) and RL.default_space() == space
    for c in space.design(6, seed=0):  # every design point builds a learner
        tr = RL.trainer(small(), c, seed=0, family="sb3")
        assert tr.status == "ok"


# ---------------------------------------------------------------- tuning and the command line
def test_task_explorer_and_suite_figure_show_rl_tasks():
    from metahpo_utils.plotting import task_suite_data
    from metahpo_utils.widgets import task_explorer, task_view

    task = small("acrobot", physics={"LINK_MASS_1": 1.2})
    view = task_view(task)
    assert view.bars.values.tolist() == task.random_returns("val").tolist() and view.recipe["physics.LINK_MASS_1"] == 1.2
    suite = task_suite_data([task], pd.DataFrame(index=[task.name]))
    name, inputs, labels = suite.examples[0]
    assert suite.kind == "signal" and inputs.shape[0] == len(labels) == 6 and labels[0] == "cos a1"
    w = task_explorer("cartpole", n_tasks=3)
    assert w.error is None and w.current == "cartpole-000"
    w.task.value = "cartpole-002"
    assert w.current == "cartpole-002" and w.metafeatures["obs_dim"] == 4


def test_tune_an_environment_variant_from_the_command_line(tmp_path, capsys):
    """`tune --env --physics`: bad input is one line naming what is wrong (nothing written); a good variant is
    tuned for real with the committed RL meta-dataset's space and learners."""
    from metahpo_utils.cli import main

    out = tmp_path / "t"
    base = ["tune", "--strategy", "adaptive-portfolio", "--budget-trials", "1", "--epochs", "1", "--out", str(out)]
    for extra, words in ((["--env", "Hopper-v4"], ["unknown environment 'Hopper-v4'", "CartPole-v1"]),
                         (["--env", "acrobot", "--physics", "gravity=3"], ["Acrobot-v1 has no physics attribute 'gravity'",
                                                                          "LINK_MASS_1"]),
                         (["--env", "cartpole", "--physics", "gravity=heavy"], ["--physics", "gravity=heavy"])):
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and all(w in err[0] for w in words), err
        assert not out.exists()
    assert main(base + ["--env", "CartPole-v1", "--physics", "gravity=15,length=0.9"]) == 0
    capsys.readouterr()
    history = pd.read_csv(out / "history.csv")
    assert len(history) == 1 and history["algo"].iloc[0] in ALGORITHMS and np.isfinite(history["objective"]).all()


# ---------------------------------------------------------------- the committed RL meta-dataset
def test_committed_rl_metadataset_contract_spread_and_recomputed_rows():
    """The committed RL meta-dataset (README: command, size, wall time): a complete grid, something to tune on
    every task, and a DQN, a PPO and an A2C row retrained from the recorded settings alone giving the same
    numbers (SB3 with a fixed seed on one CPU thread repeats itself exactly)."""
    from metahpo_utils.domains.rl.report import task_spread
    from metahpo_utils.metadataset import RESOURCES, default_metadataset, recompute_trial
    from metahpo_utils.reproduce import RL_JOB

    tables = default_metadataset("rl")
    size = sum(p.stat().st_size for p in (RESOURCES / "rl").iterdir())
    assert size < 1 * 2**20
    t = tables.trials
    n_tasks, n_configs = RL_JOB["n_tasks"], RL_JOB["n_configs"]
    assert n_tasks >= 24 and n_configs >= 32
    assert t["task"].nunique() == n_tasks and t["config_id"].nunique() == n_configs and len(t) == n_tasks * n_configs
    assert tables.meta["domain"] == "rl" and tables.space == rl_space() and tables.meta["epochs"] == RL_JOB["epochs"]
    assert set(t["status"]) <= {"ok", "diverged", "failed"} and (t["status"] == "ok").mean() > 0.8
    assert set(t["algo"]) == set(ALGORITHMS)
    assert set(tables.tasks.columns) == {"task", *RL_METAFEATURE_NAMES}
    assert set(tables.provenance["env"]) == set(ENVIRONMENTS)
    spread = task_spread(tables)
    assert (spread["best"] > spread["random"]).all() and (spread["gain"] > 0.1).all()  # the best clearly beats random
    assert (spread["solving"] > 0).all() and (spread["failing"] > 0).all()  # configurations spread on every task
    ok = t[t["status"] == "ok"]
    picks = [ok[ok["algo"] == a].sort_values("cost_s").iloc[2] for a in ALGORITHMS]  # cheap rows keep the test quick
    for row in picks:
        res = recompute_trial(tables.meta, row["task"], int(row["config_id"]))
        assert res["config"]["algo"] == row["algo"] and res["status"] == row["status"]
        assert (res["objective"], res["test_objective"], res["curve"]) == \
            (row["objective"], row["test_objective"], list(row["curve"]))
