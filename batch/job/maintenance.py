"""Keeping an output table healthy: ``compact`` (few large files, optionally clustered and
vacuumed) and ``migrate`` (an output folder of the old chunk-file layout into a table)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from batch.errors import UsageError
from batch.job.options import MAX_VACUUM_HOURS
from batch.output.labels import require_table
from batch.output.locks import commit_lock
from batch.output.schema import OUTPUT_SCHEMA
from batch.output.table import LabelTable

DEFAULT_TARGET_ROWS = 1_000_000
LEGACY_DIR = "_legacy"


def vacuum_retention(hours: float) -> int:
    """delta-rs keeps whole hours: a fraction is rounded up, so time travel the user asked to
    keep (``--vacuum 0.5``: 30 minutes) is never cut short."""
    if not 0 <= hours <= MAX_VACUUM_HOURS:
        raise UsageError(f"--vacuum must be from 0 to {MAX_VACUUM_HOURS} hours, not {hours}")
    return math.ceil(hours)


def compact(
    output: str,
    target_rows: int = DEFAULT_TARGET_ROWS,
    cluster: bool = False,
    vacuum_hours: float | None = None,
) -> dict[str, Any]:
    """Rewrite small files into files of about ``target_rows`` rows (``cluster``: sorted by
    source file and row, so reads of one file's labels touch few files); then, with
    ``vacuum_hours``, delete files no version younger than that still needs."""
    table = require_table(output)
    with commit_lock(output):
        delta = table.open()
        actions = pa.table(delta.get_add_actions(flatten=True)).to_pydict()
        rows, size = sum(actions["num_records"]), sum(actions["size_bytes"])
        target = max(1 << 20, int(size / max(rows, 1) * target_rows))
        before = len(actions["path"])
        if cluster:
            metrics = delta.optimize.z_order(["source_file", "source_row"], target_size=target)
        else:
            metrics = delta.optimize.compact(target_size=target)
        report: dict[str, Any] = {
            "rows": rows,
            "files_before": before,
            "files_after": len(table.open().file_uris()),
            "target_bytes": target,
            "files_added": metrics.get("numFilesAdded"),
            "files_removed": metrics.get("numFilesRemoved"),
        }
        if vacuum_hours is not None:
            kept = vacuum_retention(vacuum_hours)
            removed = table.open().vacuum(
                retention_hours=kept, dry_run=False, enforce_retention_duration=False
            )
            report["vacuumed_files"] = len(removed)
            report["vacuum_kept_hours"] = kept
    report["version"] = table.version()
    return report


def _old_files(folder: Path) -> list[str]:
    """The old layout's chunk files: still in place, or moved aside by an earlier migrate
    that was stopped before it wrote the table."""
    return sorted(
        str(p)
        for where in (folder, folder / LEGACY_DIR)
        for p in where.glob("policy_id=*/part-*.parquet")
    )


def _legacy_rows(folder: Path, source_root: str) -> pl.DataFrame:
    """The old layout's latest row per (source file, row, policy), with relative identities."""
    files = _old_files(folder)
    # one scan a file: a column all null in one file (Null) and text in another (String)
    frame = pl.concat([pl.scan_parquet(f) for f in files], how="diagonal_relaxed")
    root = str(Path(source_root).resolve()).rstrip("/") + "/"
    latest = (
        frame.sort("labelled_at")
        .unique(["source_file", "source_row", "policy_id"], keep="last")
        .with_columns(
            source_path=pl.col("source_file"),
            source_file=pl.col("source_file").str.strip_prefix(root),
            route=pl.lit(None, pl.String),
        )
        .collect()
    )
    outside = latest.filter(~pl.col("source_path").str.starts_with(root))
    if outside.height:
        raise UsageError(
            f"{outside['source_path'][0]} is not under --source-root {source_root}; pass the "
            "folder that holds every input the old output was made from"
        )
    return latest


def migrate(output: str, source_root: str) -> dict[str, Any]:
    """Turn an old chunk-file output into a table in place; the old files go to ``_legacy/``
    first (the table's files would share their folders), then the table is written in one
    commit, so a migrate stopped anywhere is finished by running it again."""
    from batch.output.place import is_remote

    if is_remote(output):
        raise UsageError(f"{output}: migrate converts local outputs only (copy the table after)")
    folder = Path(output)
    if (folder / "_delta_log").is_dir():
        raise UsageError(f"{output}: is a label table already; nothing to migrate")
    if not _old_files(folder):
        raise UsageError(f"{output}: holds no old chunk files (policy_id=*/part-*.parquet)")
    latest = _legacy_rows(folder, source_root)
    legacy = folder / LEGACY_DIR
    legacy.mkdir(exist_ok=True)
    for partition in folder.glob("policy_id=*"):
        target = legacy / partition.name
        target.mkdir(exist_ok=True)
        for part in partition.iterdir():  # a folder moved halfway by a stopped migrate too
            shutil.move(str(part), str(target / part.name))
        partition.rmdir()
    shutil.rmtree(folder / "_tmp", ignore_errors=True)
    rows = latest.select(OUTPUT_SCHEMA.names).to_arrow().cast(OUTPUT_SCHEMA)
    version = LabelTable(output).append(rows, {"purpose": "migrate", "source_root": source_root})
    return {"rows": rows.num_rows, "version": version, "legacy_files": str(legacy)}
