"""Names the command line offers as choices, in a module that imports nothing heavy (so that
``python -m metahpo_utils --help`` stays instant). The modules that implement them import these
tuples from here; ``SUITE_NAMES`` lists the keys of :data:`metahpo_utils.data.tasks.SUITES` (a test
keeps the two in agreement)."""
from __future__ import annotations

SPLITS = ("meta-train", "meta-val", "meta-test")
SUITE_NAMES = ("digits", "mnist5k", "mnist1d", "mnist", "fashionmnist", "kmnist", "cifar10", "svhn")
FAMILIES = ("mlp", "cnn2d", "cnn1d")
TRAINERS = ("population", "sequential")
GROUP_BY = ("config", "task")
EXPORT_FORMATS = ("csv", "csv.gz", "parquet")
