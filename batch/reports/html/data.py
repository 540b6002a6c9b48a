"""What the HTML report shows about the table, aggregated without loading the table.

Only the few columns each figure needs are scanned, and polars aggregates them in its
streaming engine, so the report's cost follows the number of rows, not the size of the
rationales and reasoning it never reads. Per policy: rows, violation rate, statuses, where
labels came from, the prefilter's routing and audited miss rate, a score histogram (once the
table has a ``score`` column) and the label rate per run (the nightly trend).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from batch.output.labels import require_table
from batch.output.schema import RETRYABLE, STATUSES
from batch.output.table import reading
from batch.reports.intervals import wilson_interval

ORIGINS = ("model", "reused", "duplicate", "prefilter", "planner")
SCORE_BINS = 20
_COLUMNS = ["policy_id", "status", "origin", "violation", "prefilter_audit", "run_id"]


def _collect(frame: pl.LazyFrame) -> pl.DataFrame:
    return frame.collect(engine="streaming")


def _rows_where(condition: pl.Expr | None = None) -> pl.Expr:
    """Rows behind the cells (``n`` each) that meet ``condition``."""
    rows = pl.col("n")
    return (rows if condition is None else rows.filter(condition)).sum()


def _counts(frame: pl.LazyFrame, column: str, values: tuple[str, ...]) -> dict[str, dict]:
    """Per policy, the number of rows of each value of ``column`` (zeros included)."""
    found: dict[str, dict[str, int]] = {}
    grouped = _collect(frame.group_by("policy_id", column).agg(rows=_rows_where()))
    for row in grouped.iter_rows(named=True):
        found.setdefault(row["policy_id"], {})[str(row[column])] = row["rows"]
    return {
        pid: {**{value: counts.get(value, 0) for value in values}, **counts}
        for pid, counts in found.items()
    }


def _totals(frame: pl.LazyFrame) -> pl.DataFrame:
    ok = pl.col("status") == "ok"
    audited = pl.col("prefilter_audit").fill_null(False)
    return _collect(
        frame.group_by("policy_id")
        .agg(
            rows=_rows_where(),
            ok=_rows_where(ok),
            violations=_rows_where(ok & pl.col("violation").fill_null(False)),
            prefiltered=_rows_where(pl.col("origin") == "prefilter"),
            audited=_rows_where(audited & ok),
            audited_violations=_rows_where(audited & ok & pl.col("violation").fill_null(False)),
        )
        .sort("policy_id")
    )


def _versions(frame: pl.LazyFrame) -> dict[str, list[dict[str, Any]]]:
    grouped = frame.group_by("policy_id", "policy_version", "policy_sha256").agg(rows=_rows_where())
    found: dict[str, list[dict[str, Any]]] = {}
    for row in _collect(grouped.sort("rows", descending=True)).iter_rows(named=True):
        found.setdefault(row["policy_id"], []).append(
            {"version": row["policy_version"], "sha256": row["policy_sha256"], "rows": row["rows"]}
        )
    return found


def _rate(part: int, whole: int) -> dict[str, Any]:
    interval = wilson_interval(part, whole)
    return {
        "count": part,
        "of": whole,
        "rate": part / whole if whole else None,
        "ci95": list(interval) if interval else None,
    }


def _per_run(frame: pl.LazyFrame, order: pl.LazyFrame) -> dict[str, list[dict[str, Any]]]:
    """Per policy and run: the current labels the run wrote, their violation rate (of ok
    rows) and failure rate (rows without a verdict, which a rerun retries)."""
    ok = pl.col("status") == "ok"
    grouped = frame.group_by("policy_id", "run_id").agg(
        rows=_rows_where(),
        ok=_rows_where(ok),
        violations=_rows_where(ok & pl.col("violation").fill_null(False)),
        failures=_rows_where(pl.col("status").is_in(list(RETRYABLE))),
    )
    found: dict[str, list[dict[str, Any]]] = {}
    # in the order the runs labelled (a run id's time has whole seconds: two runs in one
    # second would sort by their random suffix)
    ordered = grouped.join(order, on="run_id", how="left").sort("first_labelled", "run_id")
    for row in _collect(ordered.drop("first_labelled")).iter_rows(named=True):
        rate = row["violations"] / row["ok"] if row["ok"] else None
        failure_rate = row["failures"] / row["rows"] if row["rows"] else None
        found.setdefault(row["policy_id"], []).append(
            {**row, "violation_rate": rate, "failure_rate": failure_rate}
        )
    return found


def _score_histograms(frame: pl.LazyFrame) -> dict[str, list[int]]:
    """Per policy, counts of ``score`` in SCORE_BINS equal bins over [0, 1]."""
    scored = frame.filter(pl.col("score").is_not_null() & pl.col("score").is_finite())
    binned = scored.select(
        "policy_id",
        b=(pl.col("score").clip(0.0, 1.0) * SCORE_BINS).floor().clip(0, SCORE_BINS - 1),
    )
    found: dict[str, list[int]] = {}
    for row in _collect(binned.group_by("policy_id", "b").len()).iter_rows(named=True):
        found.setdefault(row["policy_id"], [0] * SCORE_BINS)[int(row["b"])] = row["len"]
    return found


def table_summary(output: str | Path) -> dict[str, Any]:
    """Per-policy figures of the table's current version."""
    with reading(output):
        return _summary(output)


def _summary(output: str | Path) -> dict[str, Any]:
    table = require_table(output)
    scan = table.scan()
    names = scan.collect_schema().names()
    # One pass over the table: row counts per combination of what any figure groups by (a
    # few thousand cells at most); every figure below is aggregated from these cells.
    grain = _COLUMNS + ["policy_version", "policy_sha256"]
    frame = _collect(scan.select(grain).group_by(grain).agg(n=pl.len())).lazy()
    statuses = _counts(frame, "status", STATUSES)
    origins = _counts(frame, "origin", ORIGINS)
    order = _collect(
        scan.select("run_id", "labelled_at")
        .group_by("run_id")
        .agg(first_labelled=pl.min("labelled_at"))
    ).lazy()
    versions, runs = _versions(frame), _per_run(frame, order)
    histograms = _score_histograms(scan.select("policy_id", "score")) if "score" in names else {}
    policies = []
    for row in _totals(frame).iter_rows(named=True):
        pid = row["policy_id"]
        policies.append(
            {
                **row,
                "violation": _rate(row["violations"], row["ok"]),
                "audit_miss": _rate(row["audited_violations"], row["audited"]),
                "statuses": statuses.get(pid, {}),
                "origins": origins.get(pid, {}),
                "versions": versions.get(pid, []),
                "runs": runs.get(pid, []),
                "score_histogram": histograms.get(pid),
            }
        )
    return {"table_version": table.version(), "policies": policies}
