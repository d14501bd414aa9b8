"""Names the command line offers as choices, in a module that imports nothing heavy (so that
``python -m metahpo_utils --help`` stays instant). The modules that implement them import these
tuples from here; ``SUITE_DOMAINS`` lists every domain's suites (a test keeps it in agreement with
:data:`metahpo_utils.data.tasks.SUITES` and the domain registry)."""
from __future__ import annotations

SPLITS = ("meta-train", "meta-val", "meta-test")
#: suite name -> the domain plug-in that builds and trains it (:mod:`metahpo_utils.domains`)
SUITE_DOMAINS = {
    **dict.fromkeys(("digits", "mnist5k", "mnist1d", "mnist", "fashionmnist", "kmnist", "cifar10", "svhn"), "vision"),
    **dict.fromkeys(("text", "sentiment", "postag"), "text"),
    **dict.fromkeys(("rl", "cartpole", "acrobot", "mountaincar", "pendulum"), "rl"),
}
SUITE_NAMES = tuple(SUITE_DOMAINS)
DOMAINS = ("vision", "text", "rl")
VISION_FAMILIES = ("mlp", "cnn2d", "cnn1d")
FAMILIES = (*VISION_FAMILIES, "text", "sb3")
TRAINERS = ("population", "sequential")
GROUP_BY = ("config", "task")
EXPORT_FORMATS = ("csv", "csv.gz", "parquet")
