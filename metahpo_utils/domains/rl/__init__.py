"""The reinforcement-learning domain: gymnasium's classic-control environments (CartPole, Acrobot,
MountainCar, Pendulum) with varied physics and rewards, stable-baselines3's DQN (Q-learning), PPO and
A2C (policy gradient) as the learners, and environment meta-features.

A trial trains one configuration for ``n_checkpoints`` chunks of ``checkpoint_steps`` environment
steps (an "epoch" of the trial record is one chunk) and records the mean return of the deterministic
policy on the task's validation episodes after each; the objective is the last one, the test
objective the mean return on other episodes, never seen by tuning.
"""
from __future__ import annotations

from typing import Any, Mapping

from optuna.distributions import CategoricalDistribution

from ...data.tasks import Suite, TaskError
from ...space import SearchSpace, float_param, int_param
from ..base import Domain
from .envs import DQN_ACTIONS, ENVIRONMENTS, EnvError, Variant, env_key, make_env, set_physics
from .learners import ALGORITHMS, ON_POLICY_ENVS, PPO_EPOCHS, RLConfigError, RLTrainer, build_learner
from .metafeatures import RL_METAFEATURE_NAMES, rl_metafeatures
from .tasks import RL_SUITES, RLTask, RLTaskSpec, build_rl_specs, episode_seeds, make_rl_task


def rl_space() -> SearchSpace:
    """The RL domain's default space: the algorithm, what every learner shares (learning rate, discount,
    batch size, network width and depth), the on-policy settings (rollout length, GAE lambda, PPO's clip
    range, entropy bonus) and DQN's (exploration schedule, target updates, training frequency, replay
    buffer), with ranges after the RL Baselines3 Zoo's Optuna samplers, narrowed to budgets of about
    20,000 steps. A learner ignores the hyperparameters of the others."""
    cat = CategoricalDistribution
    return SearchSpace({
        "algo": cat(list(ALGORITHMS)),
        "lr": float_param(1e-5, 1e-1, log=True),
        "gamma": cat([0.9, 0.95, 0.98, 0.99, 0.995, 0.999]),
        "batch_size": cat([16, 32, 64, 128, 256]),
        "width": int_param(16, 256, log=True),
        "depth": int_param(1, 3),
        "n_steps": cat([8, 16, 32, 64, 128, 256, 512]),
        "gae_lambda": cat([0.8, 0.9, 0.92, 0.95, 0.98, 0.99, 1.0]),
        "clip_range": cat([0.1, 0.2, 0.3, 0.4]),
        "ent_coef": float_param(1e-8, 0.1, log=True),
        "exploration_fraction": float_param(0.05, 0.5),
        "exploration_final_eps": float_param(0.0, 0.2),
        "target_update_interval": cat([1, 100, 500, 1000, 2000]),
        "train_freq": cat([1, 4, 8, 16]),
        "buffer_size": cat([2000, 10000, 50000]),
    })


class RLDomain(Domain):
    name = "rl"
    suite_features = ("obs_dim", "random_return", "landmark_linear_gain", "reward_sparsity")
    committed = "rl"
    suites = RL_SUITES
    families = ("sb3",)
    supports_population = False
    objective_name = "return"
    normalize_across_tasks = True
    task_group = "env"

    def build_suite(self, name: str, n_tasks: int | None = None, seed: int = 0, root: str | None = None,
                    ways: int | tuple[int, int] | None = None, download: bool = False,
                    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> Suite:
        if ways is not None:
            raise TaskError(f"suite: RL tasks have no classes; ways={ways} applies to classification suites only")
        return self._suite(name, RL_SUITES[name], n_tasks, seed, root, None, split_fractions,
                           lambda n: build_rl_specs(name, n, seed))

    def make_task(self, spec: RLTaskSpec, name: str, root: str | None = None) -> RLTask:
        return make_rl_task(spec, name)

    def spec_from_dict(self, d: Mapping[str, Any]) -> RLTaskSpec:
        return RLTaskSpec.from_dict(dict(d))

    def task_size(self, spec: RLTaskSpec) -> int:
        return spec.total_steps

    def default_space(self, family: str | None = None) -> SearchSpace:
        return rl_space()

    def default_family(self, task: Any) -> str:
        return "sb3"

    def build_model(self, family: str, task: RLTask, config: Mapping[str, Any]) -> Any:
        return build_learner(task, config, seed=0)

    def metafeatures(self, task: RLTask, seed: int = 0) -> dict[str, float]:
        return rl_metafeatures(task, seed=seed)

    def baseline(self, task: RLTask, split: str = "val") -> float:
        """The uniformly random policy's mean return on the split's episodes."""
        return task.random_return(split)

    def examples(self, task: RLTask, per_task: int = 6) -> tuple[Any, list[str], str]:
        """One random-policy episode on the first validation seed: a trace per observation dimension."""
        import numpy as np

        env = task.make_env()
        seed = task.seeds("val")[0]
        env.action_space.seed(seed)
        obs, _ = env.reset(seed=seed)
        trace, done = [obs], False
        while not done:
            obs, _, term, trunc, _ = env.step(env.action_space.sample())
            trace.append(obs)
            done = term or trunc
        env.close()
        X = np.stack(trace).T[:per_task]  # (obs_dim, steps)
        labels = list(ENVIRONMENTS[task.spec.base].obs_labels) or [f"obs {i}" for i in range(len(X))]
        return X, labels[:len(X)], "signal"

    def task_bars(self, task: RLTask) -> Any:
        """The random policy's return on each validation episode."""
        import pandas as pd

        from ..base import TaskBars

        r = task.random_returns("val")
        return TaskBars(pd.Series(r, index=[str(i + 1) for i in range(len(r))], name="return"),
                        "validation episode", "random-policy return", "what a random policy earns")

    def trainer(self, task: RLTask, config: Mapping[str, Any], seed: int, family: str, device: Any = None) -> RLTrainer:
        if family != "sb3":
            raise TaskError(f"model: the rl domain trains family 'sb3' (stable-baselines3 learners), not '{family}'")
        from ...training import resolve_device

        return RLTrainer(task, config, seed, resolve_device(device).type)

    def train(self, task: RLTask, config: Mapping[str, Any], epochs: int, seed: int = 0, family: str | None = None,
              device: Any = None) -> Any:
        return self.trainer(task, config, seed, family or "sb3", device).run(epochs).result()


__all__ = ["RLDomain", "rl_space", "RLTask", "RLTaskSpec", "RL_SUITES", "ENVIRONMENTS", "ALGORITHMS",
           "RL_METAFEATURE_NAMES", "EnvError", "RLConfigError", "RLTrainer", "Variant", "make_env", "make_rl_task",
           "set_physics", "env_key", "episode_seeds", "build_learner", "rl_metafeatures", "DQN_ACTIONS",
           "ON_POLICY_ENVS", "PPO_EPOCHS"]
