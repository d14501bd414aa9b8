"""Datasets, task suites and meta-features."""
from __future__ import annotations

from .datasets import BaseDataset, DatasetError, available_datasets, load_dataset
from .metafeatures import METAFEATURE_NAMES, compute_metafeatures, metafeatures_from_arrays
from ..choices import SPLITS
from .tasks import SUITES, Suite, Task, TaskError, TaskSpec, build_suite, get_tasksets, make_task

__all__ = [
    "BaseDataset", "DatasetError", "available_datasets", "load_dataset",
    "METAFEATURE_NAMES", "compute_metafeatures", "metafeatures_from_arrays",
    "SPLITS", "SUITES", "Suite", "Task", "TaskError", "TaskSpec", "build_suite", "get_tasksets", "make_task",
]
