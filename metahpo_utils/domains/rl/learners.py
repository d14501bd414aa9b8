"""The learners of the RL domain: stable-baselines3's ``DQN`` (Q-learning), ``PPO`` and ``A2C`` (policy
gradient) on torch, built from one configuration, trained checkpoint by checkpoint and evaluated on
the task's fixed evaluation seeds.

Determinism: SB3 seeds python's, numpy's and torch's global generators and the environments from
the trial seed. The trainer keeps those generators' states as its own (the caller's are restored
after every call), runs on one torch thread, and trains in chunks of ``checkpoint_steps`` (a
multiple of every on-policy rollout), so ``run(a)`` then ``run(b)`` gives exactly ``run(a + b)``. DQN's
exploration schedule runs over the task's step budget, not over the chunk being learned.
"""
from __future__ import annotations

import math
import random
import re
import time
import warnings
from typing import Any, Mapping

import numpy as np
import torch

from ...data.tasks import TaskError
from .tasks import RLTask

#: The algorithms a configuration chooses from (``algo``).
ALGORITHMS = ("dqn", "ppo", "a2c")
#: Parallel training environments of the on-policy learners (DQN trains on one).
ON_POLICY_ENVS = 4
#: PPO's passes over each rollout (fixed: the step budget leaves little room for more).
PPO_EPOCHS = 5
#: Steps DQN collects before its first update.
DQN_LEARNING_STARTS = 500


class RLConfigError(TaskError):
    """A configuration the RL learners cannot train (unknown algorithm, invalid value)."""


def _net_arch(config: Mapping[str, Any]) -> list[int]:
    width, depth = int(config.get("width", 64)), int(config.get("depth", 2))
    if width < 1 or depth < 1:
        raise RLConfigError(f"config: width and depth must be at least 1 (got width={width}, depth={depth})")
    return [width] * depth


def build_learner(task: RLTask, config: Mapping[str, Any], seed: int, device: Any = "cpu") -> Any:
    """An untrained SB3 learner of ``config`` on ``task`` (seeds SB3's global generators: call it inside
    a saved random state, as :class:`RLTrainer` does).

    Raises:
        RLConfigError: an unknown ``algo`` or a value SB3 refuses.
    """
    from stable_baselines3 import A2C, DQN, PPO
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    algo = config.get("algo", "ppo")
    if algo not in ALGORITHMS:
        raise RLConfigError(f"config: unknown algorithm algo={algo!r} (use {', '.join(ALGORITHMS)})")
    common = {"learning_rate": float(config.get("lr", 3e-4)), "gamma": float(config.get("gamma", 0.99)),
              "policy_kwargs": {"net_arch": _net_arch(config)}, "seed": int(seed), "device": device, "verbose": 0}
    n_envs = 1 if algo == "dqn" else ON_POLICY_ENVS
    venv = DummyVecEnv([lambda: Monitor(task.make_env(discrete_actions=algo == "dqn")) for _ in range(n_envs)])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SB3's notes on mini-batch sizes and CPU use
            if algo == "dqn":
                return DQN("MlpPolicy", venv, batch_size=int(config.get("batch_size", 64)),
                           buffer_size=int(config.get("buffer_size", 10_000)), learning_starts=DQN_LEARNING_STARTS,
                           train_freq=int(config.get("train_freq", 4)), gradient_steps=1,
                           target_update_interval=int(config.get("target_update_interval", 500)),
                           exploration_fraction=float(config.get("exploration_fraction", 0.2)),
                           exploration_final_eps=float(config.get("exploration_final_eps", 0.05)), **common)
            on_policy = {"n_steps": int(config.get("n_steps", 128)), "gae_lambda": float(config.get("gae_lambda", 0.95)),
                         "ent_coef": float(config.get("ent_coef", 0.0))}
            if algo == "ppo":
                return PPO("MlpPolicy", venv, batch_size=int(config.get("batch_size", 64)), n_epochs=PPO_EPOCHS,
                           clip_range=float(config.get("clip_range", 0.2)), **on_policy, **common)
            return A2C("MlpPolicy", venv, **on_policy, **common)
    except (ValueError, AssertionError, TypeError) as err:
        raise RLConfigError(f"config: {algo} refuses this configuration ({err})") from None


def _global_rng() -> tuple[Any, Any, torch.Tensor]:
    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def _set_global_rng(state: tuple[Any, Any, torch.Tensor]) -> None:
    random.setstate(state[0])
    np.random.set_state(state[1])
    torch.set_rng_state(state[2])


def _finite(model: Any) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.policy.parameters())


def _is_nan_error(err: BaseException) -> bool:
    """Whether an exception during learning is SB3 / torch meeting NaN (a diverged run, not a crash)."""
    return isinstance(err, (ValueError, RuntimeError)) and bool(_NAN_WORDS.search(str(err).lower()))


#: What SB3 / torch say when a training met NaN or overflowed (e.g. "found invalid values: tensor([[nan, nan]])").
_NAN_WORDS = re.compile(r"\bnan\b|invalid values|\binf\b|overflow")


class RLTrainer:
    """Resumable training of one configuration on one RL task (the interface of
    :class:`metahpo_utils.training.Trainer`: :meth:`run` adds checkpoints, :meth:`result` reports).

    Attributes:
        curve: mean validation return after each checkpoint.
        train_return: mean return of the last training episodes at each checkpoint (SB3's monitor).
        status: ``ok`` or ``diverged`` (NaN in the policy, its training or its returns).
    """

    def __init__(self, task: RLTask, config: Mapping[str, Any], seed: int, device: Any = "cpu"):
        from ...training import SMALL_MODEL_THREADS, torch_threads

        t0 = time.perf_counter()
        self.task, self.config, self.seed = task, dict(config), int(seed)
        outer = _global_rng()
        try:
            with torch_threads(SMALL_MODEL_THREADS):
                self.model = build_learner(task, config, seed, device)
            self._rng = _global_rng()
        finally:
            _set_global_rng(outer)
        if self.config.get("algo", "ppo") == "dqn":  # exploration over the task's step budget, whatever the chunks
            base, model, horizon = self.model.exploration_schedule, self.model, task.spec.total_steps
            self.model.exploration_schedule = lambda _progress: base(1.0 - min(1.0, model.num_timesteps / horizon))
        discrete = self.config.get("algo") == "dqn"
        self._eval_envs = {s: [task.make_env(discrete_actions=discrete) for _ in task.seeds(s)] for s in ("val", "test")}
        self.curve: list[float] = []
        self.train_return: list[float] = []
        self.status = "ok"
        self.error: str | None = None
        self.cost_s = time.perf_counter() - t0

    @property
    def epochs_done(self) -> int:
        return len(self.curve)

    def evaluate(self, split: str) -> np.ndarray:
        """Returns of the deterministic policy on a split's episodes ``(n_episodes,)``."""
        from .envs import rollout_returns

        def act(obs: np.ndarray, idx: np.ndarray) -> np.ndarray:
            return self.model.predict(obs, deterministic=True)[0]

        return rollout_returns(self._eval_envs[split], self.task.seeds(split), act)

    def run(self, checkpoints: int) -> "RLTrainer":
        """Train ``checkpoints`` more chunks of ``checkpoint_steps`` steps, evaluating after each (none once diverged)."""
        from ...training import SMALL_MODEL_THREADS, torch_threads

        t0 = time.perf_counter()
        outer = _global_rng()
        _set_global_rng(self._rng)
        try:
            with torch_threads(SMALL_MODEL_THREADS), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for _ in range(checkpoints):
                    if self.status != "ok":
                        break
                    self._checkpoint()
        finally:
            self._rng = _global_rng()
            _set_global_rng(outer)
        self.cost_s += time.perf_counter() - t0
        return self

    def _checkpoint(self) -> None:
        try:
            self.model.learn(self.task.spec.checkpoint_steps, reset_num_timesteps=False)
        except (ValueError, RuntimeError) as err:
            if not _is_nan_error(err):
                raise
            self.status, self.error = "diverged", f"{type(err).__name__}: {str(err).splitlines()[0]}"
            return
        if not _finite(self.model):
            self.status, self.error = "diverged", "non-finite policy parameters"
            return
        value = float(np.mean(self.evaluate("val")))
        if not math.isfinite(value):
            self.status, self.error = "diverged", "non-finite evaluation return"
            return
        self.curve.append(value)
        episodes = [e["r"] for e in self.model.ep_info_buffer] if self.model.ep_info_buffer else []
        self.train_return.append(float(np.mean(episodes)) if episodes else float("nan"))

    def result(self) -> Any:
        """The trial record so far (the test return evaluated now; a diverged run scores the random policy's).
        Its ``model`` is the trained SB3 policy (a ``torch.nn.Module``: ``model.predict(obs, deterministic=True)``)."""
        from ...training import SMALL_MODEL_THREADS, TrialResult, torch_threads

        t0 = time.perf_counter()
        if self.status == "ok" and self.curve:
            objective = self.curve[-1]
            with torch_threads(SMALL_MODEL_THREADS):
                test = float(np.mean(self.evaluate("test")))
        else:
            objective, test = self.task.random_return("val"), self.task.random_return("test")
        cost = self.cost_s + time.perf_counter() - t0
        return TrialResult(objective, test, self.status, list(self.curve), [], [], cost, self.model.policy)
