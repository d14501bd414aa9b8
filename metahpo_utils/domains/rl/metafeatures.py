"""Meta-features of an RL task: the environment's interface (observation and action dimensions,
discrete or continuous, episode limit), what a random policy earns and sees (return and its spread,
episode length, reward scale and sparsity, observation scale), and a cheap landmarker: the best of a
few random linear policies (a short random search), as a return and as a gain over random.
"""
from __future__ import annotations

import numpy as np

from .envs import is_continuous
from .tasks import RLTask

RL_METAFEATURE_NAMES = (
    "obs_dim", "action_dim", "continuous", "episode_steps", "log_episode_steps",
    "random_return", "random_return_std", "random_episode_length", "reward_scale", "reward_sparsity", "obs_scale",
    "landmark_linear", "landmark_linear_gain",
)

#: Random linear policies tried by the landmarker, and episodes each.
LINEAR_POLICIES, LINEAR_EPISODES = 8, 2


def _random_episodes(task: RLTask) -> dict[str, float]:
    """Per-step statistics of the random policy on the task's validation seeds."""
    rewards, lengths, obs_all = [], [], []
    for s in task.seeds("val"):
        env = task.make_env()
        env.action_space.seed(int(s))
        obs, _ = env.reset(seed=int(s))
        done, n = False, 0
        while not done:
            obs_all.append(np.asarray(obs, dtype=float).ravel())
            obs, r, term, trunc, _ = env.step(env.action_space.sample())
            rewards.append(float(r))
            n += 1
            done = term or trunc
        lengths.append(n)
        env.close()
    r = np.asarray(rewards)
    return {"random_episode_length": float(np.mean(lengths)), "reward_scale": float(np.abs(r).mean()),
            "reward_sparsity": float(np.mean(r == 0)), "obs_scale": float(np.stack(obs_all).std(0).mean())}


def linear_search_return(task: RLTask, seed: int = 0) -> float:
    """The best mean return of :data:`LINEAR_POLICIES` random linear policies (Gaussian weights; argmax
    over actions, or ``tanh`` scaled to the action bounds), each on :data:`LINEAR_EPISODES` landmark episodes."""
    from .envs import rollout_returns

    rng = np.random.default_rng([int(seed), task.seed])
    seeds = task.seeds("landmark")[:LINEAR_EPISODES]
    envs = [task.make_env() for _ in seeds]
    space = envs[0].action_space
    cont = is_continuous(envs[0])
    d = int(np.prod(envs[0].observation_space.shape))
    k = int(np.prod(space.shape)) if cont else int(space.n)
    best = -np.inf
    for _ in range(LINEAR_POLICIES):
        W, b = rng.standard_normal((d, k)), rng.standard_normal(k)

        def act(obs: np.ndarray, idx: np.ndarray) -> list:  # noqa: ANN001
            z = obs.reshape(len(obs), -1) @ W + b  # (batch, k)
            if cont:
                return list(np.tanh(z) * space.high)
            return list(z.argmax(1))

        best = max(best, float(rollout_returns(envs, seeds, act).mean()))
    for env in envs:
        env.close()
    return best


def rl_metafeatures(task: RLTask, seed: int = 0) -> dict[str, float]:
    """Meta-features of an RL task (names in :data:`RL_METAFEATURE_NAMES`).

    Args:
        task: the task.
        seed: seed of the landmarker's random linear policies.
    """
    info = task.info
    rnd = task.random_returns("val")
    lin = linear_search_return(task, seed)
    out = {"obs_dim": float(info["obs_dim"]), "action_dim": float(info["action_dim"]),
           "continuous": float(info["continuous"]), "episode_steps": float(info["episode_steps"]),
           "log_episode_steps": float(np.log(info["episode_steps"])),
           "random_return": float(rnd.mean()), "random_return_std": float(rnd.std()),
           **_random_episodes(task), "landmark_linear": lin,
           "landmark_linear_gain": float((lin - rnd.mean()) / max(abs(rnd.mean()), 1.0))}
    return {k: out[k] for k in RL_METAFEATURE_NAMES}
