"""Rebuilding an output's index from its table, when the index is new to the table (lost, or
the table was migrated or copied without it): which (file, policy) pairs the table holds, and
its reusable labels. One scan of the table, once; later runs keep the index up to date."""

from __future__ import annotations

import polars as pl

from batch.output.index import Index
from batch.output.schema import OK
from batch.output.store import LABEL_COLUMNS, LabelStore, WorkKey
from batch.output.table import LabelTable

_WORK = ["policy_id", "policy_sha256", "prompt_sha256", "model_fingerprint", "settings_sha256"]


def needs_rebuild(table: LabelTable, index: Index) -> bool:
    """The table holds labels the index has never seen."""
    version = table.version()
    return version is not None and version > 0 and index.table_version_seen() < 0


def rebuild(table: LabelTable, index: Index) -> None:
    labels = table.scan()
    pairs = labels.select("source_file", "policy_id", "source_fingerprint").unique().collect()
    index.record_progress((f, p, "", sha, False) for f, p, sha in pairs.iter_rows())
    reusable = labels.filter(
        (pl.col("status") == OK)
        & pl.col("content_sha256").is_not_null()
        & (pl.col("decided_by").is_null() | (pl.col("decided_by") == "model"))
    ).select([*_WORK, "content_sha256", *LABEL_COLUMNS])
    store = LabelStore(index)
    for batch in reusable.collect().iter_slices(10_000):
        for key, rows in batch.group_by(_WORK):
            store.add(WorkKey(*key), rows.to_dicts())
