"""What the last run changed: its rows compared with the table as the run before it left it.

Every label commit of this tool names its run, so the table's history says where the last
run began; the previous run's last version is what a reader saw before it. Per policy: the
rows the run wrote, how many were new keys and how many replaced a label (relabelled), how
many of those changed outcome (flips, with the matrix), and how many rows went away (a
shrunk file). Only the key and outcome columns are read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from batch.output.labels import require_table
from batch.output.table import reading

_KEYS = ["policy_id", "source_file", "source_row"]


def _outcome() -> pl.Expr:
    return pl.when(pl.col("status") == "ok").then(pl.col("label")).otherwise(pl.col("status"))


def last_run_versions(history: list[dict[str, Any]]) -> tuple[str, int, int] | None:
    """The last run, the version the run before it ended on and the newest version; None when
    no commit names a run or no other run came before the last one."""
    runs = [(int(e["version"]), str(e["run_id"])) for e in history if e.get("run_id")]
    if not runs:
        return None
    newest = max(int(e["version"]) for e in history)
    last_run = max(runs)[1]
    first = min(version for version, run_id in runs if run_id == last_run)
    before = [version for version, run_id in runs if run_id != last_run and version < first]
    if not before:
        return None
    # the previous run's last commit: what came after it (a shrunk file's delete, which
    # names no run) belongs to the last run's changes
    return last_run, max(before), newest


def _counts(scan: pl.LazyFrame) -> dict[str, int]:
    grouped = scan.group_by("policy_id").len().collect(engine="streaming")
    return dict(grouped.iter_rows())


def last_run_changes(output: str | Path) -> dict[str, Any] | None:
    """Per policy, what the last run changed; None for a table of one run."""
    table = require_table(output)
    with reading(output):
        found = last_run_versions(table.open().history())
        if found is None:
            return None
        run_id, old_version, new_version = found
        try:
            old = table.scan(old_version).select(*_KEYS, "status", "label", "run_id")
            old_counts = _counts(old)
        except Exception as exc:  # noqa: BLE001 - vacuumed away: say so, show the rest
            return {"run_id": run_id, "old_version": old_version, "unavailable": str(exc)}
        new = table.scan(new_version).select(*_KEYS, "status", "label", "run_id")
        new_counts = _counts(new)
        mine = new.filter(pl.col("run_id") == run_id).with_columns(outcome=_outcome())
        before = old.select(*_KEYS, outcome_old=_outcome(), replaced=pl.lit(True))
        joined = mine.join(before, on=_KEYS, how="left").with_columns(
            replaced=pl.col("replaced").fill_null(False)
        )
        totals = (
            joined.group_by("policy_id")
            .agg(
                written=pl.len(),
                relabelled=pl.col("replaced").sum(),
                flips=(
                    pl.col("replaced") & pl.col("outcome").ne_missing(pl.col("outcome_old"))
                ).sum(),
            )
            .collect(engine="streaming")
        )
        cells = (
            joined.filter("replaced")
            .group_by("policy_id", "outcome_old", "outcome")
            .len()
            .collect(engine="streaming")
        )
    matrices: dict[str, dict[str, dict[str, int]]] = {}
    for pid, was, now, n in cells.iter_rows():
        matrices.setdefault(pid, {}).setdefault(str(was), {})[str(now)] = n
    policies = []
    for row in totals.sort("policy_id").iter_rows(named=True):
        pid, relabelled = row["policy_id"], row["relabelled"]
        added = row["written"] - relabelled
        policies.append(
            {
                **row,
                "new": added,
                "removed": max(0, old_counts.get(pid, 0) - (new_counts.get(pid, 0) - added)),
                "flip_rate": row["flips"] / relabelled if relabelled else None,
                "matrix": matrices.get(pid, {}),
            }
        )
    return {
        "run_id": run_id,
        "old_version": old_version,
        "new_version": new_version,
        "policies": policies,
    }
