"""Reinforcement-learning tasks and suites: a task is a classic-control environment plus a variant of
its physics or its reward, a step budget and fixed evaluation seeds.

Task i of a suite depends only on (suite seed, i). Each task perturbs every physics constant of its
environment within a range around the default (uniformly), and a fixed share of the tasks also get
observation noise (30%), a reward scale (30%) or a reward delay (25%), exactly that many in every
block of 20 tasks (as in the image suites). The episode limit is drawn per task.

The trial record: after every ``checkpoint_steps`` environment steps the deterministic policy is
evaluated on ``n_val_episodes`` episodes whose seeds come from the task (the validation seeds: the
same for every configuration, never used in training); the objective is the mean return at the last
checkpoint. The test objective is the mean return on ``n_test_episodes`` other seeds, evaluated once
at the end: tuning never sees it.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ...data.tasks import FLAG_BLOCK, Recipe, TaskError, split_names
from .envs import ENVIRONMENTS, EnvError, Variant, env_key, make_env, rollout_returns

#: Share of a suite's tasks that get each perturbation (exactly, per block of 20 tasks).
RL_PERTURBATION_RATES = {"obs_noise": 0.3, "reward_scale": 0.3, "reward_delay": 0.25}


@dataclass(frozen=True)
class RLTaskSpec(Recipe):
    """Recipe of one RL task.

    Attributes:
        env: the environment's short name (``cartpole``, ``acrobot``, ``mountaincar``, ``pendulum``) or
            gymnasium id.
        physics: attribute of ``env.unwrapped`` -> value (numbers, or lists for list attributes).
        obs_noise: standard deviation of Gaussian noise added to every observation, as a fraction of each
            dimension's scale (the half-width of its bounds where finite, else 1).
        reward_scale: factor on every reward.
        reward_delay: rewards are delivered every this many steps (summed); 1 = immediately.
        episode_steps: the episode limit (``None``: the environment's own).
        checkpoint_steps: environment steps between evaluations (one "epoch" of the trial record).
        n_checkpoints: checkpoints of a full training (its step budget is their product).
        n_val_episodes / n_test_episodes: evaluation episodes for the objective / the test objective.
        seed: seed of the evaluation seeds (training seeds come from the trial).
    """

    env: str
    physics: dict[str, Any] = field(default_factory=dict)
    obs_noise: float = 0.0
    reward_scale: float = 1.0
    reward_delay: int = 1
    episode_steps: int | None = None
    checkpoint_steps: int = 4096
    n_checkpoints: int = 5
    n_val_episodes: int = 10
    n_test_episodes: int = 20
    seed: int = 0

    @property
    def base(self) -> str:
        return env_key(self.env)

    @property
    def variant(self) -> Variant:
        return Variant(self.env, dict(self.physics), self.obs_noise, self.reward_scale, self.reward_delay, self.episode_steps)

    @property
    def total_steps(self) -> int:
        """The step budget of a full training."""
        return self.checkpoint_steps * self.n_checkpoints


def episode_seeds(seed: int, split: str, n: int) -> list[int]:
    """The evaluation episodes' seeds of a task: ``val`` and ``test`` streams never overlap with each
    other or with training (which seeds its environments with small integers from the trial seed)."""
    stream = {"val": 1, "test": 2, "landmark": 3}[split]
    # at least 2**20: a trial seeds its training environments with its seed + 0, 1, 2, 3
    return [int(s) | (1 << 20) for s in np.random.SeedSequence([int(seed), stream]).generate_state(n, dtype=np.uint32)]


@dataclass
class RLTask:
    """One RL task: a recipe, its name and provenance; environments are built on demand.

    Attributes:
        name: task name.
        spec: the recipe.
        provenance: the recipe as JSON (what a meta-dataset stores).
    """

    name: str
    spec: RLTaskSpec
    provenance: dict[str, Any] = field(default_factory=dict)
    _random: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False, compare=False)

    domain = "rl"
    kind = "rl"

    @property
    def seed(self) -> int:
        return int(self.spec.seed)

    def make_env(self, discrete_actions: bool = False) -> Any:
        """One fresh environment of the task's variant."""
        return make_env(self.spec.variant, discrete_actions=discrete_actions)

    @functools.cached_property
    def info(self) -> dict[str, Any]:
        """Observation and action dimensions, whether actions are continuous, the episode limit."""
        from .envs import is_continuous

        env = self.make_env()
        cont = is_continuous(env)
        info = {"obs_dim": int(np.prod(env.observation_space.shape)),
                "action_dim": int(np.prod(env.action_space.shape)) if cont else int(env.action_space.n),
                "continuous": cont, "episode_steps": int(env.spec.max_episode_steps)}
        env.close()
        return info

    def seeds(self, split: str) -> list[int]:
        """Evaluation seeds of ``val`` (the objective), ``test`` (never seen by tuning) or ``landmark``."""
        n = {"val": self.spec.n_val_episodes, "test": self.spec.n_test_episodes, "landmark": 8}[split]
        return episode_seeds(self.spec.seed, split, n)

    def random_returns(self, split: str = "val") -> np.ndarray:
        """Returns of the uniformly random policy on a split's episodes (its action space seeded per episode)."""
        cached = self._random
        if split not in cached:
            seeds = self.seeds(split)
            envs = [self.make_env() for _ in seeds]
            for env, s in zip(envs, seeds):
                env.action_space.seed(int(s))

            def act(obs: np.ndarray, idx: np.ndarray) -> list[Any]:
                return [envs[i].action_space.sample() for i in idx]

            cached[split] = rollout_returns(envs, seeds, act)
        return cached[split]

    def random_return(self, split: str = "val") -> float:
        """Mean return of the random policy (what a useless policy earns: a diverged run's objective)."""
        return float(np.mean(self.random_returns(split)))


def make_rl_task(spec: RLTaskSpec, name: str | None = None) -> RLTask:
    """A task from its recipe (the environment is built once to check the recipe).

    Raises:
        EnvError: an unknown environment, a physics attribute it lacks, or invalid settings.
    """
    for k in ("checkpoint_steps", "n_checkpoints", "n_val_episodes", "n_test_episodes"):
        if int(getattr(spec, k)) < 1:
            raise EnvError(f"task: {k} must be at least 1 (got {getattr(spec, k)})")
    make_env(spec.variant).close()
    return RLTask(name or f"{env_key(spec.env)}-s{spec.seed}", spec, spec.to_dict())


# ---------------------------------------------------------------- suites
@dataclass(frozen=True)
class RLSuiteDef:
    """Defaults of a named RL suite."""

    envs: tuple[str, ...]
    default_tasks: int = 24
    model: str = "sb3"
    epochs: int = 5  # checkpoints of a full training
    base: str = "classic-control"
    n_val_episodes: int = 10
    n_test_episodes: int = 20


RL_SUITES: dict[str, RLSuiteDef] = {
    "rl": RLSuiteDef(tuple(ENVIRONMENTS)),  # task i is of environment i mod 4
    **{k: RLSuiteDef((k,), default_tasks=24) for k in ENVIRONMENTS},
}


def rl_flags(task_index: int, seed: int) -> dict[str, bool]:
    """Which reward/observation perturbations task ``task_index`` gets (see :data:`RL_PERTURBATION_RATES`)."""
    block, pos = divmod(task_index, FLAG_BLOCK)
    rng = np.random.default_rng([seed, 15485863, block])
    return {name: bool(pos in rng.permutation(FLAG_BLOCK)[: int(round(rate * FLAG_BLOCK))])
            for name, rate in RL_PERTURBATION_RATES.items()}


@functools.lru_cache(maxsize=None)
def default_physics(env: str) -> dict[str, Any]:
    """The environment's own values of the physics constants a suite varies."""
    import gymnasium as gym

    d = ENVIRONMENTS[env_key(env)]
    e = gym.make(d.id)
    out = {a: getattr(e.unwrapped, a) for a in d.physics}
    e.close()
    return {a: (list(v) if isinstance(v, (list, tuple)) else float(v)) for a, v in out.items()}


def sample_rl_spec(env: str, sdef: RLSuiteDef, seed: int, flags: Mapping[str, bool] | None = None) -> RLTaskSpec:
    """Draw one RL task recipe (see the module docstring for what varies)."""
    key = env_key(env)
    d = ENVIRONMENTS[key]
    rng = np.random.default_rng(seed)
    defaults = default_physics(key)
    physics: dict[str, Any] = {}
    for attr, (lo, hi) in d.physics.items():
        v = float(rng.uniform(lo, hi))
        if isinstance(defaults[attr], list):  # a list constant (Acrobot's torques) scaled as a whole
            physics[attr] = [round(x * v, 4) for x in defaults[attr]]
        else:
            physics[attr] = float(f"{v:.4g}")
    steps = int(rng.integers(d.episode_steps[0], d.episode_steps[1] + 1)) if d.episode_steps[1] > d.episode_steps[0] \
        else d.episode_steps[0]
    flags = flags if flags is not None else {n: bool(rng.random() < r) for n, r in RL_PERTURBATION_RATES.items()}
    noise = round(float(rng.uniform(0.02, 0.1)), 4)
    scale = round(float(math.exp(rng.uniform(math.log(0.1), math.log(10.0)))), 4)
    delay = int(rng.integers(2, 11))
    return RLTaskSpec(key, physics, noise if flags["obs_noise"] else 0.0, scale if flags["reward_scale"] else 1.0,
                      delay if flags["reward_delay"] else 1, steps, d.checkpoint_steps, sdef.epochs,
                      sdef.n_val_episodes, sdef.n_test_episodes, int(seed))


def build_rl_specs(name: str, n: int, seed: int) -> dict[str, RLTaskSpec]:
    """The recipes of suite ``name``: task i's depends only on (seed, i)."""
    sdef = RL_SUITES[name]
    specs = {}
    for i in range(n):
        task_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
        specs[f"{name}-{i:03d}"] = sample_rl_spec(sdef.envs[i % len(sdef.envs)], sdef, task_seed, rl_flags(i, seed))
    return specs


__all__ = ["RLTaskSpec", "RLTask", "RLSuiteDef", "RL_SUITES", "RL_PERTURBATION_RATES", "make_rl_task",
           "sample_rl_spec", "build_rl_specs", "episode_seeds", "default_physics", "split_names", "TaskError"]
