"""The meta-dataset, one import away: the store (:mod:`.store`), its collection
(:mod:`.collection`) and the tidy tables (:mod:`.tables`). Each lives in its own module; this one
re-exports their public names so ``from metahpo_utils.metadataset import collect`` keeps working."""
from __future__ import annotations

from .collection import (CollectError, CollectReport, collect, collection_meta, evaluate_job, open_for_collection,
                         recompute_trial)
from .store import FORMAT_VERSION, STATUSES, TABLE_STATUSES, MetaDatasetStore, StoreError, validate_store_file
from .tables import (RESOURCES, MetaTables, TableError, best_config_summary, default_metadataset, export_tables,
                     load_exported, load_table, load_task_table, read_table, write_tables)

__all__ = [
    "CollectError", "CollectReport", "collect", "collection_meta", "evaluate_job", "open_for_collection", "recompute_trial",
    "FORMAT_VERSION", "STATUSES", "TABLE_STATUSES", "MetaDatasetStore", "StoreError", "validate_store_file",
    "RESOURCES", "MetaTables", "TableError", "best_config_summary", "default_metadataset", "export_tables",
    "load_exported", "load_table", "load_task_table", "read_table", "write_tables",
]
