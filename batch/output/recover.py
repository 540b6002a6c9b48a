"""Rebuilding an output's index from its table, when the index is new to the table (lost, or
the table was migrated or copied without it), or its label store is of an older version:
which (file, policy) pairs the table holds, and where its reusable labels lie. One pass over
the table's data files, one file at a time, so memory follows the largest file, not the table.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl

from batch.output.index import Index
from batch.output.schema import OK
from batch.output.store import WORK_COLUMNS, LabelStore, WorkKey
from batch.output.table import LabelTable, reading

_COLUMNS = ["source_file", "source_row", "source_fingerprint", "content_sha256", "status",
            "decided_by", *WORK_COLUMNS]  # fmt: skip


def needs_rebuild(table: LabelTable, index: Index) -> bool:
    """The table holds labels the index has never seen."""
    version = table.version()
    return version is not None and version > 0 and index.checked() is None


def _data_files(table: LabelTable) -> Iterator[tuple[str, str, int]]:
    """(policy id, path, rows) of every data file of the table's current version."""
    import pyarrow as pa

    actions = pa.table(table.open().get_add_actions(flatten=True)).to_pydict()
    root = table.output.rstrip("/")
    for path, policy_id, rows in zip(
        actions["path"], actions["partition.policy_id"], actions["num_records"], strict=True
    ):
        yield policy_id, path if "://" in path else str(Path(root) / path), rows


def rebuild(table: LabelTable, index: Index, progress: bool = True) -> None:
    """Refill the index from the table: the (file, policy) pairs it holds, not complete, and
    pointers to its reusable labels. A row a later commit replaced is pointed at for nothing:
    a lookup checks the row in the table and finds another label there (a miss)."""
    store = LabelStore(index, table)
    version = table.version()
    files = list(_data_files(table))
    store.reserve(sum(rows for _, _, rows in files))
    pairs: set[tuple[str, str, str]] = set()
    for policy_id, path, _ in files:
        with reading(table.output):
            frame = pl.read_parquet(path, columns=_COLUMNS)
        seen = frame.select("source_file", "source_fingerprint").unique()
        pairs.update((f, policy_id, sha) for f, sha in seen.iter_rows())
        usable = frame.filter(
            (pl.col("status") == OK)
            & pl.col("content_sha256").is_not_null()
            & (pl.col("decided_by").is_null() | (pl.col("decided_by") == "model"))
        )
        for key, rows in usable.group_by(list(WORK_COLUMNS)):
            entries = rows.select("content_sha256", "source_file", "source_row").iter_rows()
            store.add(WorkKey(policy_id, *key), entries, version)
    if progress:
        index.record_progress((f, p, "", sha, False) for f, p, sha in sorted(pairs))
    store.filled()
