"""The output table: a Delta Lake table at ``OUT`` holding one current label per
(source row, policy).

Every write is an upsert (MERGE) keyed on ``(policy_id, source_file, source_row)``, pruned to the
policies and source files it touches and made under the output's commit lock, so concurrent
runs never leave two current rows for one key. What an upsert replaces stays readable by
version (time travel) until ``vacuum``. Everything else the tool keeps lives beside the table
under names starting with ``_``, which Delta readers and ``vacuum`` leave alone.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa

from batch.output import place
from batch.output.failures import writing
from batch.output.history import TOOL, Seen, identity
from batch.output.locks import commit_lock
from batch.output.predicates import (
    RowRanges,
    ranges_filter,
    ranges_predicate,
    row_ranges,
    sql_list,
)
from batch.output.readable import TableError, reading, rewriting
from batch.output.schema import OUTPUT_SCHEMA

T = TypeVar("T")
KEY = ("policy_id", "source_file", "source_row")
LOG_DIR = "_delta_log"
COMMIT_RETRIES = 30  # a busy table on a store, several machines committing
# Checkpoint the log every 50 commits, and keep 30 days of log (time travel) by default.
TABLE_CONFIGURATION = {
    "delta.checkpointInterval": "50",
    "delta.logRetentionDuration": "interval 30 days",
}


def _properties(output: str, metadata: dict[str, Any]):
    """A commit's metadata: this tool, what the commit is, and (for a table on a store) the
    local cache that records it (``place.cache_id``)."""
    from deltalake import CommitProperties

    cache = place.cache_id(output)
    mine = {"tool": TOOL, **({"cache": cache} if cache else {})}
    return CommitProperties(custom_metadata={**mine, **metadata})


def _retried(commit: Callable[[], T]) -> T:
    """Make a commit again while another writer (a compaction; on a store, another machine)
    wins the race for the next version, waiting longer each time, jittered so that writers on
    several machines do not keep colliding."""
    from deltalake.exceptions import CommitFailedError

    for attempt in range(COMMIT_RETRIES):
        try:
            return commit()
        except CommitFailedError:
            if attempt == COMMIT_RETRIES - 1:
                raise
            time.sleep(min(5.0, 0.2 * (attempt + 1)) * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")


def check_output(output: str | Path) -> None:
    """Refuse an output the tool cannot own: a file, the old layout, foreign files, a store
    it cannot commit to safely."""
    if place.is_remote(output):
        uri = place.check_remote(str(output))
        if place.has_log(uri):
            return
        foreign = place.holds_anything(uri)
        if foreign:
            raise TableError(
                f"{output}: is not a label table (no {LOG_DIR}) and holds other objects "
                f"({', '.join(foreign[:3])}); choose an empty or new prefix for --output"
            )
        return
    root = Path(output)
    if not root.exists() or (root / LOG_DIR).is_dir():
        return
    if not root.is_dir():
        raise TableError(f"{output}: exists and is not a folder")
    if any(root.glob("policy_id=*/part-*.parquet")):
        raise TableError(
            f"{output}: holds labels in the old chunk-file layout (safeguard-batch 0.1); "
            f"convert it once with: safeguard-batch migrate {output} --source-root DIR"
        )
    foreign = sorted(p.name for p in root.iterdir() if not p.name.startswith(("_", ".")))
    if foreign:
        raise TableError(
            f"{output}: is not a label table (no {LOG_DIR}) and holds other files "
            f"({', '.join(foreign[:3])}); choose an empty or new folder for --output"
        )


class LabelTable:
    """One output's Delta table: create, read the current rows of some files, upsert."""

    def __init__(self, output: str | Path) -> None:
        self.output = str(output).rstrip("/") if place.is_remote(output) else str(output)
        self.path = Path(output)  # a local table's folder (for a URI: not used)
        self._exists = False
        # (version read, the commit made) of this object's last upsert: lets the index move
        # its checked version along this run's own commits
        self.last_commit: tuple[int, Seen] | None = None

    def exists(self) -> bool:
        # A table on a store is asked once (a LIST request); a table does not go away.
        if not (self._exists and place.is_remote(self.output)):
            self._exists = place.has_log(self.output)
        return self._exists

    def open(self, version: int | None = None):
        """The table (at ``version``, or its latest); a broken log is a :class:`TableError`."""
        from deltalake import DeltaTable
        from deltalake.exceptions import DeltaError, TableNotFoundError

        check_output(self.output)
        try:
            return DeltaTable(self.output, version=version)
        except TableNotFoundError as exc:
            raise TableError(f"{self.output}: no label table here ({exc})") from exc
        except (DeltaError, OSError, ValueError) as exc:
            raise TableError(
                f"{self.output}: the table's log ({LOG_DIR}) cannot be read: {exc}"
            ) from exc

    def ensure(self) -> None:
        """Create the (empty) table if the folder holds none yet; give an older table the
        columns added since it was made (nullable, so its rows read them as null)."""
        check_output(self.output)
        if self.exists():
            self._add_new_columns()
            return
        from deltalake import DeltaTable

        with writing(self.output, "the label table"), commit_lock(self.output):

            def create() -> None:
                DeltaTable.create(
                    self.output,
                    schema=OUTPUT_SCHEMA,
                    partition_by=["policy_id"],
                    configuration=TABLE_CONFIGURATION,
                    commit_properties=_properties(self.output, {"purpose": "create"}),
                )

            if place.is_remote(self.output):  # one creator among machines
                from batch.output.object_claims import create_once

                create_once(self.output, create, lambda: place.has_log(self.output))
            elif not self.exists():
                create()

    def _add_new_columns(self) -> None:
        if getattr(self, "_columns_checked", False):
            return
        from deltalake import Field

        table = self.open()
        have = {field.name for field in table.schema().fields}
        missing = [f for f in OUTPUT_SCHEMA if f.name not in have]
        if missing:
            with writing(self.output, "the label table"), commit_lock(self.output):
                fields = [Field.from_arrow(f) for f in missing]
                self.open().alter.add_columns(
                    fields, commit_properties=_properties(self.output, {"purpose": "add columns"})
                )
        self._columns_checked = True

    def version(self) -> int | None:
        return self.open().version() if self.exists() else None

    def current(
        self,
        source_files: Sequence[str],
        policy_ids: Sequence[str],
        columns: Sequence[str],
        rows: RowRanges | None = None,
        version: int | None = None,
    ) -> pa.Table:
        """The current rows of some source files under some policies, or only of some ``rows``
        of them (files pruned by the log's statistics, so the cost follows what is asked,
        not the table, nor everything written for those files); at ``version``: the rows
        that were current then (time travel)."""
        import polars as pl

        if rows is not None:
            rows = {f: spans for f, spans in rows.items() if spans}
            source_files = sorted(rows)
        if not self.exists() or not source_files or not policy_ids:
            return OUTPUT_SCHEMA.empty_table().select(list(columns))
        wanted = pl.col("policy_id").is_in(list(policy_ids))
        if rows is not None:
            wanted = wanted & ranges_filter(rows)
        else:
            wanted = wanted & pl.col("source_file").is_in(list(source_files))
        for attempt in range(2):
            try:
                with reading(self.output, version):
                    table = self.open(version)
                    frame = pl.scan_delta(table).filter(wanted).select(list(columns)).collect()
                return frame.to_arrow()
            except TableError:
                # A compaction with ``vacuum 0`` may have removed the files of the version just
                # opened: the next version holds the same rows in new files. Once.
                if attempt or version is not None:
                    raise
        raise AssertionError("unreachable")

    def upsert(self, rows: pa.Table, metadata: dict[str, Any]) -> int:
        """Insert ``rows``, replacing the current row of every key they hold; one commit.

        Returns the new table version. ``metadata`` (run id, chunks...) goes in the commit.
        """
        self.ensure()
        policies = sorted(set(rows.column("policy_id").to_pylist()))
        # Pruned to the rows it writes, not only to their files: the log's statistics then
        # skip every data file of other rows, so a commit's cost does not grow with what is
        # already written for its files (a MERGE pruned by file alone reads all of that).
        ranges = row_ranges(
            rows.column("source_file").to_pylist(), rows.column("source_row").to_pylist()
        )
        predicate = " AND ".join(
            [*(f"t.{k} = s.{k}" for k in KEY)]
            + [f"t.policy_id IN ({sql_list(policies)})", ranges_predicate(ranges, "t")]
        )
        with (
            writing(self.output, "the label table"),
            rewriting(self.output),
            commit_lock(self.output),
        ):

            def merge() -> int:
                table = self.open()
                read = table.version()
                table.merge(
                    rows.cast(OUTPUT_SCHEMA),
                    predicate,
                    source_alias="s",
                    target_alias="t",
                    commit_properties=_properties(self.output, metadata),
                ).when_matched_update_all().when_not_matched_insert_all().execute()
                (entry,) = table.history(limit=1)
                self.last_commit = (read, Seen(table.version(), identity(entry)))
                return table.version()

            return _retried(merge)

    def append(self, rows: pa.Table, metadata: dict[str, Any]) -> int:
        """Bulk-load rows whose keys the table does not hold yet (a migration, a benchmark's
        history): a plain append, without the upsert's key matching."""
        from deltalake import write_deltalake

        self.ensure()
        with writing(self.output, "the label table"), commit_lock(self.output):
            write_deltalake(
                self.output,
                rows.cast(OUTPUT_SCHEMA),
                mode="append",
                commit_properties=_properties(self.output, metadata),
            )
        return self.open().version()

    def delete_rows(self, source_file: str, policy_id: str, from_row: int) -> int:
        """Remove the current rows ``from_row`` onwards of a source file that has shrunk."""
        if not self.exists():
            return 0
        predicate = (
            f"policy_id = {sql_list([policy_id])} AND source_file = {sql_list([source_file])} "
            f"AND source_row >= {int(from_row)}"
        )
        with (
            writing(self.output, "the label table"),
            rewriting(self.output),
            commit_lock(self.output),
        ):
            purpose = _properties(self.output, {"purpose": "a file shrank"})
            metrics = _retried(lambda: self.open().delete(predicate, commit_properties=purpose))
        return int(metrics.get("num_deleted_rows", 0))

    def scan(self, version: int | None = None):
        """The table (at ``version``, or its current version) as a polars LazyFrame."""
        import polars as pl

        if not self.exists():
            return pl.from_arrow(OUTPUT_SCHEMA.empty_table()).lazy()
        return pl.scan_delta(self.open(version))
