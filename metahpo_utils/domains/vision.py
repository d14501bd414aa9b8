"""The image / vector domain: the built-in suites of :mod:`metahpo_utils.data.tasks`, the MLP and
ConvNets of :mod:`metahpo_utils.models`, auto-sklearn-style meta-features and the batched population
trainer. Through this plug-in the image suites give exactly the results they gave before domains
existed (the committed digits meta-dataset regenerates bit for bit)."""
from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from ..data.tasks import SUITES, Suite, Task, TaskSpec, _build_image_suite, make_task
from ..models import build_model
from ..space import SearchSpace, default_space
from ..choices import VISION_FAMILIES
from .base import Domain


class VisionDomain(Domain):
    name = "vision"
    suite_features = ("n_classes", "log_n_examples", "class_imbalance", "landmark_1nn")
    suites = SUITES
    families = VISION_FAMILIES
    supports_population = True

    def build_suite(self, name: str, n_tasks: int | None = None, seed: int = 0, root: str | None = None,
                    ways: int | tuple[int, int] | None = None, download: bool = False,
                    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> Suite:
        return _build_image_suite(name, n_tasks, seed, root, ways, download, split_fractions)

    def make_task(self, spec: TaskSpec, name: str, root: str | None = None) -> Task:
        return make_task(spec, name=name, root=root)

    def spec_from_dict(self, d: Mapping[str, Any]) -> TaskSpec:
        return TaskSpec.from_dict(dict(d))

    def default_space(self, family: str | None = None) -> SearchSpace:
        return default_space()

    def default_family(self, task: Task) -> str:
        return "cnn2d" if task.kind == "image" else "mlp"

    def build_model(self, family: str, task: Task, config: Mapping[str, Any]) -> nn.Module:
        return build_model(family, task.input_shape, task.n_classes, config)

    def metafeatures(self, task: Task, seed: int = 0) -> dict[str, float]:
        from ..data.metafeatures import compute_metafeatures

        return compute_metafeatures(task, seed=seed)

    def train_group(self, members: list[tuple[Task, Mapping[str, Any]]], epochs: int, seed: int, family: str,
                    device: Any = None) -> list[Any]:
        from ..population import train_members

        return train_members(members, epochs=epochs, seed=seed, family=family, device=device).results
