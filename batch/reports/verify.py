"""Is the output complete and current? One current row per (input row, policy), holding a label
for the row's present content under the present policy.

Per policy: ``present`` rows (current and up to date), ``missing`` (input rows without one),
``stale`` (current rows whose content changed since, whose policy changed, or whose source
row no longer exists), ``duplicates`` (two current rows for one key: never written by this
tool, but checked) and the status counts of the present rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from batch.flow.plan import content_sha256
from batch.flow.read import iter_batches
from batch.flow.sources import InputFile
from batch.output.table import LabelTable
from batch.policy.files import Policy

KEY = ["source_file", "source_row", "policy_id"]
_COLUMNS = [*KEY, "content_sha256", "policy_sha256", "status", "source_fingerprint"]


@dataclass
class PolicyReport:
    policy_id: str
    policy_sha256: str
    expected: int
    present: int
    missing: int
    duplicates: int
    stale: int
    status: dict[str, int] = field(default_factory=dict)
    missing_examples: list[dict[str, Any]] = field(default_factory=list)
    stale_examples: list[dict[str, Any]] = field(default_factory=list)


def _current_hashes(source: InputFile, id_column: str, text_column: str) -> list[str | None]:
    hashes: list[str | None] = []
    for _, batch in iter_batches(source, id_column, text_column, 10_000):
        hashes += [content_sha256(t) for t in batch.column(1).to_pylist()]
    return hashes


def _expected(
    inputs: list[InputFile], labels: pl.DataFrame, columns: tuple[str, str]
) -> pl.DataFrame:
    """Every input row with its present content hash: read only for files whose bytes differ
    from those some current label was made from."""
    labelled_from = labels.group_by("source_file").agg(pl.col("source_fingerprint").unique())
    fingerprints = dict(labelled_from.iter_rows())
    frames = []
    for source in inputs:
        seen = fingerprints.get(source.source_file) or []
        changed = any(f != source.fingerprint for f in seen)
        hashes = _current_hashes(source, *columns) if changed else [None] * source.num_rows
        frames.append(
            pl.DataFrame(
                {
                    "source_file": [source.source_file] * source.num_rows,
                    "source_row": list(range(source.num_rows)),
                    "present_sha256": hashes,
                    "changed": [changed] * source.num_rows,
                },
                schema={
                    "source_file": pl.String,
                    "source_row": pl.Int64,
                    "present_sha256": pl.String,
                    "changed": pl.Boolean,
                },
            )  # fmt: skip
        )
    return pl.concat(frames) if frames else pl.DataFrame(schema={
        "source_file": pl.String, "source_row": pl.Int64, "present_sha256": pl.String,
        "changed": pl.Boolean})  # fmt: skip


def _policy_report(policy: Policy, labels: pl.DataFrame, expected: pl.DataFrame) -> PolicyReport:
    mine = labels.filter(pl.col("policy_id") == policy.id)
    per_key = mine.group_by(KEY).len()
    duplicates = int((per_key["len"] - 1).sum() or 0)
    joined = mine.unique(KEY).join(expected, on=["source_file", "source_row"], how="left")
    up_to_date = (pl.col("policy_sha256") == policy.sha256) & (
        ~pl.col("changed") | (pl.col("content_sha256").eq_missing(pl.col("present_sha256")))
    )
    present = joined.filter(pl.col("changed").is_not_null() & up_to_date)
    stale = joined.filter(pl.col("changed").is_null() | ~up_to_date)
    missing = expected.join(present, on=["source_file", "source_row"], how="anti")
    status = present["status"].value_counts(sort=True)
    return PolicyReport(
        policy.id,
        policy.sha256,
        expected.height,
        present.height,
        missing.height,
        duplicates,
        stale.height,
        dict(zip(status["status"].to_list(), status["count"].to_list(), strict=True)),
        missing.head(5).select("source_file", "source_row").to_dicts(),
        stale.head(5).select("source_file", "source_row").to_dicts(),
    )


def verify(
    output: str | Path,
    inputs: list[InputFile],
    policies: list[Policy],
    columns: tuple[str, str] = ("id", "text"),
) -> dict[str, Any]:
    """Compare the output's current rows with what the inputs and policies call for."""
    files = [f.source_file for f in inputs]
    labels = pl.from_arrow(LabelTable(output).current(files, [p.id for p in policies], _COLUMNS))
    assert isinstance(labels, pl.DataFrame)
    expected = _expected(inputs, labels, columns)
    reports = [_policy_report(policy, labels, expected) for policy in policies]
    complete = all(r.missing == 0 and r.duplicates == 0 for r in reports)
    return {"complete": complete, "policies": [asdict(r) for r in reports]}


def to_text(report: dict[str, Any]) -> str:
    lines = []
    for r in report["policies"]:
        statuses = ", ".join(f"{k} {v}" for k, v in r["status"].items()) or "none"
        lines.append(
            f"{r['policy_id']} ({r['policy_sha256'][:12]}): {r['present']}/{r['expected']} rows "
            f"labelled and current, {r['missing']} missing, {r['stale']} stale, "
            f"{r['duplicates']} duplicated; status: {statuses}"
        )
        for example in r["missing_examples"]:
            lines.append(f"  missing: {example['source_file']} row {example['source_row']}")
        for example in r["stale_examples"]:
            lines.append(f"  stale: {example['source_file']} row {example['source_row']}")
    lines.append("complete" if report["complete"] else "INCOMPLETE")
    return "\n".join(lines)
