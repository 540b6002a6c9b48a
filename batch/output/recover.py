"""Rebuilding an output's index from its table, when the index is new to the table (lost, or
the table was migrated or copied without it), or its label store is of an older version:
which (file, policy) pairs the table holds, and where its reusable labels lie. One pass over
the table's data files, one file at a time, so memory follows the largest file, not the table.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from urllib.parse import unquote

import polars as pl

from batch.output import place
from batch.output.index import Index
from batch.output.schema import OK
from batch.output.store import WORK_COLUMNS, LabelStore, WorkKey
from batch.output.table import LOG_DIR, LabelTable, TableError, reading

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
        yield policy_id, path if "://" in path else place.join(root, unquote(path)), rows


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
        pairs.update(_learn_file(table, store, policy_id, path, version))
    if progress:
        index.record_progress((f, p, "", sha, False) for f, p, sha in sorted(pairs))
    store.filled()


def _learn_file(
    table: LabelTable, store: LabelStore, policy_id: str, path: str, version: int | None
) -> set[tuple[str, str, str]]:
    """Point the store at one data file's reusable labels; its (file, policy, sha256) pairs."""
    with reading(table.output):
        frame = pl.read_parquet(path, columns=_COLUMNS)
    seen = frame.select("source_file", "source_fingerprint").unique()
    usable = frame.filter(
        (pl.col("status") == OK)
        & pl.col("content_sha256").is_not_null()
        & (pl.col("decided_by").is_null() | (pl.col("decided_by") == "model"))
    )
    for key, rows in usable.group_by(list(WORK_COLUMNS)):
        entries = rows.select("content_sha256", "source_file", "source_row").iter_rows()
        store.add(WorkKey(policy_id, *key), entries, version)
    return {(f, policy_id, sha) for f, sha in seen.iter_rows()}


def _added_files(table: LabelTable, version: int) -> list[tuple[str, str]] | None:
    """(policy id, path) of the data files one commit added, from its log entry; None when
    the entry is gone (the log's retention cleaned it up)."""
    entry = place.join(table.output, LOG_DIR, f"{version:020d}.json")
    try:
        text = place.read_bytes(entry).decode()
    except FileNotFoundError:
        return None
    added = []
    for line in text.splitlines():
        action = json.loads(line) if line.strip() else {}
        if "add" in action:
            add = action["add"]
            path = unquote(add["path"])
            full = path if "://" in path else place.join(table.output, path)
            added.append((add.get("partitionValues", {}).get("policy_id", ""), full))
    return added


def learn(table: LabelTable, index: Index, versions: Sequence[int]) -> None:
    """Learn what commits this index did not record wrote (another writer's; for a table on
    a store, this tool's on another machine): the (file, policy) pairs the table now holds
    rows of, so a file that shrinks later loses its vanished rows here too, and pointers to
    their reusable labels. Read from the files those commits added, so the cost follows what
    they wrote; a commit whose log entry is gone means reading the whole table once."""
    store = LabelStore(index, table)
    files: dict[str, str] = {}
    for version in versions:
        added = _added_files(table, version)
        if added is None:
            rebuild(table, index)
            return
        files.update((path, policy_id) for policy_id, path in added)
    pairs: set[tuple[str, str, str]] = set()
    for path, policy_id in files.items():
        try:
            pairs.update(_learn_file(table, store, policy_id, path, None))
        except TableError:  # removed since by a later commit: what replaced it is current
            continue
    unknown = [(f, p, sha) for f, p, sha in sorted(pairs) if index.progress(f, p) is None]
    index.record_progress((f, p, "", sha, False) for f, p, sha in unknown)
