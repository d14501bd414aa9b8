"""Gymnasium classic-control environments and their variants (physics, observation noise, reward
scale and delay, episode limit), built from a recipe's plain numbers.

Physics is set through the environment's own attributes (``env.unwrapped.gravity = 12.0``); an
attribute the environment lacks is refused with the list of those it has. Quantities the
environment derives from others in its constructor are derived again (CartPole's total mass and
pole mass-length, Pendulum's action bounds), so a variant is the same environment a constructor
with those constants would build.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ...data.tasks import TaskError


@dataclass(frozen=True)
class EnvDef:
    """What the suites know of one environment.

    Attributes:
        id: the gymnasium id.
        short: the name task recipes and figures use.
        physics: attribute -> (low, high) range a suite samples it from (uniform; ``AVAIL_TORQUE``-like
            list attributes are scaled as a whole by a factor from the range).
        episode_steps: (low, high) range of the episode limit a suite samples (the environment's own
            limit when low == high).
        checkpoint_steps: environment steps between two evaluations (one "epoch" of the trial record).
        obs_labels: names of the observation dimensions (figures).
    """

    id: str
    short: str
    physics: Mapping[str, tuple[float, float]]
    episode_steps: tuple[int, int]
    checkpoint_steps: int
    obs_labels: tuple[str, ...] = ()


#: The classic-control environments the suites draw from. Ranges are chosen so that within the step
#: budget some configurations solve a task and others fail (see the README's RL section).
ENVIRONMENTS: dict[str, EnvDef] = {
    "cartpole": EnvDef("CartPole-v1", "cartpole", {"gravity": (6.0, 14.0), "masscart": (0.5, 2.0), "masspole": (0.05, 0.3),
                                                  "length": (0.3, 0.9), "force_mag": (6.0, 14.0)},
                       (200, 500), 4096, ("x", "x'", "angle", "angle'")),
    "acrobot": EnvDef("Acrobot-v1", "acrobot", {"LINK_MASS_1": (0.7, 1.3), "LINK_MASS_2": (0.7, 1.3),
                                                "LINK_LENGTH_1": (0.8, 1.2), "AVAIL_TORQUE": (1.0, 1.6)},
                      (300, 500), 4096, ("cos a1", "sin a1", "cos a2", "sin a2", "a1'", "a2'")),
    # force / gravity between 0.70 and 0.75: full throttle alone no longer climbs the hill (it does from
    # about 0.76), the car must swing, and a random policy never reaches the flag
    # (and a longer step budget: within 20,000 steps no configuration found the flag)
    "mountaincar": EnvDef("MountainCar-v0", "mountaincar", {"force": (0.00175, 0.001875), "max_speed": (0.07, 0.08)},
                          (250, 400), 6144, ("position", "velocity")),
    "pendulum": EnvDef("Pendulum-v1", "pendulum", {"g": (4.0, 10.0), "m": (0.7, 1.3), "l": (0.7, 1.3),
                                                  "max_torque": (2.0, 3.0)},
                       (200, 200), 4096, ("cos a", "sin a", "a'")),
}
ENV_IDS = {d.id: k for k, d in ENVIRONMENTS.items()}


class EnvError(TaskError):
    """An environment or variant that cannot be built (unknown id, missing attribute, bad value)."""


def env_key(env: str) -> str:
    """The short name of an environment given by short name or gymnasium id (one clear error otherwise)."""
    if env in ENVIRONMENTS:
        return env
    if env in ENV_IDS:
        return ENV_IDS[env]
    known = ", ".join(f"{k} ({d.id})" for k, d in ENVIRONMENTS.items())
    raise EnvError(f"task: unknown environment '{env}' (available: {known})")


def _derive(u: Any) -> None:
    """Recompute what an environment's constructor derived from the attributes just set."""
    from gymnasium import spaces

    name = type(u).__name__
    if name == "CartPoleEnv":
        u.total_mass = u.masspole + u.masscart
        u.polemass_length = u.masspole * u.length
    elif name == "PendulumEnv":
        u.action_space = spaces.Box(low=-u.max_torque, high=u.max_torque, shape=(1,), dtype=np.float32)


def set_physics(env: Any, physics: Mapping[str, Any]) -> None:
    """Set physics attributes on ``env.unwrapped`` (refusing one it lacks, or of the wrong type)."""
    u = env.unwrapped
    for attr, value in physics.items():
        if not hasattr(u, attr) or attr.startswith("_"):
            have = sorted(k for k in set(vars(u)) | set(vars(type(u)))
                          if not k.startswith("_") and isinstance(getattr(u, k, None), (int, float, list))
                          and not isinstance(getattr(u, k, None), bool))
            raise EnvError(f"task: {u.spec.id if u.spec else type(u).__name__} has no physics attribute '{attr}' "
                           f"(it has: {', '.join(have)})")
        old = getattr(u, attr)
        if isinstance(old, (list, tuple)):
            if not isinstance(value, (list, tuple)) or len(value) != len(old):
                raise EnvError(f"task: physics attribute '{attr}' is a list of {len(old)} numbers (got {value!r})")
            value = [float(v) for v in value]
        elif isinstance(old, (int, float)) and not isinstance(old, bool):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value):
                raise EnvError(f"task: physics attribute '{attr}' must be a finite number (got {value!r})")
            value = float(value)
        else:
            raise EnvError(f"task: attribute '{attr}' is not a physics constant (a {type(old).__name__})")
        setattr(u, attr, value)
    _derive(u)


# ---------------------------------------------------------------- wrappers
def _wrappers():  # noqa: ANN202 - gymnasium is imported when an environment is first built
    import gymnasium as gym

    class ObservationNoise(gym.ObservationWrapper):
        """Additive Gaussian noise on every observation, ``std`` times each dimension's scale (the
        half-width of its observation bounds where finite, else 1), from the wrapper's own generator
        (reseeded with the environment at ``reset(seed=...)``), so the dynamics' random stream is untouched."""

        def __init__(self, env: Any, std: float):
            super().__init__(env)
            box = env.observation_space
            half = (np.asarray(box.high, dtype=float) - np.asarray(box.low, dtype=float)) / 2
            self.std = float(std) * np.where(np.isfinite(half), half, 1.0)  # (obs_dim,)
            self._noise = np.random.default_rng(0)

        def reset(self, *, seed: int | None = None, options: dict | None = None):  # noqa: ANN201
            if seed is not None:
                self._noise = np.random.default_rng([int(seed), 104729])
            return super().reset(seed=seed, options=options)

        def observation(self, obs: np.ndarray) -> np.ndarray:
            return (obs + self.std * self._noise.standard_normal(obs.shape)).astype(obs.dtype)

    class RewardScaleDelay(gym.Wrapper):
        """Rewards times ``scale``, delivered every ``delay`` steps as the sum since the last delivery
        (and at the end of an episode): the return is the scaled return, the signal sparser."""

        def __init__(self, env: Any, scale: float = 1.0, delay: int = 1):
            super().__init__(env)
            self.scale, self.delay = float(scale), int(delay)
            self._held, self._t = 0.0, 0

        def reset(self, **kw: Any):  # noqa: ANN201
            self._held, self._t = 0.0, 0
            return self.env.reset(**kw)

        def step(self, action: Any):  # noqa: ANN201
            obs, r, term, trunc, info = self.env.step(action)
            self._held += self.scale * float(r)
            self._t += 1
            if self._t % self.delay == 0 or term or trunc:
                r, self._held = self._held, 0.0
            else:
                r = 0.0
            return obs, r, term, trunc, info

    class DiscreteActions(gym.ActionWrapper):
        """A continuous (1-D box) action space as ``n`` evenly spaced actions, for DQN."""

        def __init__(self, env: Any, n: int = 5):
            super().__init__(env)
            box = env.action_space
            self.values = np.linspace(box.low, box.high, n).astype(box.dtype)  # (n, dim)
            self.action_space = gym.spaces.Discrete(n)

        def action(self, a: Any) -> np.ndarray:
            return self.values[int(a)]

    return ObservationNoise, RewardScaleDelay, DiscreteActions


@dataclass(frozen=True)
class Variant:
    """One environment variant: everything :func:`make_env` needs (a recipe's environment part)."""

    env: str
    physics: Mapping[str, Any] = field(default_factory=dict)
    obs_noise: float = 0.0  # Gaussian noise std as a fraction of each observation dimension's scale
    reward_scale: float = 1.0
    reward_delay: int = 1
    episode_steps: int | None = None


#: Actions a continuous environment is split into when a DQN learner acts on it.
DQN_ACTIONS = 5


def make_env(variant: Variant, discrete_actions: bool = False) -> Any:
    """Build one environment of a variant (not yet reset).

    Args:
        variant: the environment, its physics and wrappers.
        discrete_actions: split a continuous action space into :data:`DQN_ACTIONS` actions.

    Raises:
        EnvError: an unknown environment, an attribute it lacks, or invalid wrapper settings.
    """
    import gymnasium as gym

    key = env_key(variant.env)
    if variant.reward_delay < 1:
        raise EnvError(f"task: reward_delay must be at least 1 step (got {variant.reward_delay})")
    if variant.obs_noise < 0 or not np.isfinite(variant.obs_noise):
        raise EnvError(f"task: obs_noise must be a non-negative number (got {variant.obs_noise})")
    if not np.isfinite(variant.reward_scale) or variant.reward_scale <= 0:
        raise EnvError(f"task: reward_scale must be positive (got {variant.reward_scale})")
    steps = variant.episode_steps
    if steps is not None and int(steps) < 1:
        raise EnvError(f"task: episode_steps must be at least 1 (got {steps})")
    env = gym.make(ENVIRONMENTS[key].id, max_episode_steps=None if steps is None else int(steps))
    set_physics(env, variant.physics)
    ObservationNoise, RewardScaleDelay, DiscreteActions = _wrappers()
    if variant.obs_noise > 0:
        env = ObservationNoise(env, variant.obs_noise)
    if variant.reward_scale != 1.0 or variant.reward_delay > 1:
        env = RewardScaleDelay(env, variant.reward_scale, variant.reward_delay)
    if discrete_actions and isinstance(env.action_space, gym.spaces.Box):
        env = DiscreteActions(env, DQN_ACTIONS)
    return env


def is_continuous(env: Any) -> bool:
    """Whether an environment's actions are continuous (a box)."""
    import gymnasium as gym

    return isinstance(env.action_space, gym.spaces.Box)


def rollout_returns(envs: list[Any], seeds: list[int], act: Any) -> np.ndarray:
    """Run one episode in each environment (reset with its seed), all in lockstep, and return the
    episode returns ``(n,)``. ``act(obs_batch (k, obs_dim), indices (k,)) -> (k, ...)`` actions for the
    environments still running (the policy sees a batch: one forward pass per step for all)."""
    obs = [env.reset(seed=int(s))[0] for env, s in zip(envs, seeds)]
    returns = np.zeros(len(envs))
    alive = list(range(len(envs)))
    while alive:
        actions = act(np.stack([obs[i] for i in alive]), np.array(alive))
        still = []
        for a, i in zip(actions, alive):
            o, r, term, trunc, _ = envs[i].step(a)
            returns[i] += float(r)
            obs[i] = o
            if not (term or trunc):
                still.append(i)
        alive = still
    return returns
