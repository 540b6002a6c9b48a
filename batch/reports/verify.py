"""Is the output complete and current? One current row per (input row, policy), holding a label
for the row's present content under the present policy.

Per policy: ``present`` rows (current and up to date), ``missing`` (input rows without one),
``stale`` (current rows whose content or policy changed since), ``vanished`` (current rows
whose source row no longer exists: the file shrank, and no run has dropped them yet),
``duplicates`` (two current rows for one key: never written by this tool, but checked) and
the status counts of the present rows. The inputs are checked a few files at a time (about
``BATCH_ROWS`` rows), so memory follows that, not the table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
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
BATCH_ROWS = 1_000_000
EXAMPLES = 5
_EXPECTED = {"source_file": pl.String, "source_row": pl.Int64, "present_sha256": pl.String,
             "changed": pl.Boolean}  # fmt: skip


@dataclass
class PolicyReport:
    policy_id: str
    policy_sha256: str
    expected: int = 0
    present: int = 0
    missing: int = 0
    duplicates: int = 0
    stale: int = 0
    vanished: int = 0
    status: dict[str, int] = field(default_factory=dict)
    missing_examples: list[dict[str, Any]] = field(default_factory=list)
    stale_examples: list[dict[str, Any]] = field(default_factory=list)
    vanished_examples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, other: PolicyReport) -> None:
        for name in ("expected", "present", "missing", "duplicates", "stale", "vanished"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.status = dict(Counter(self.status) + Counter(other.status))
        for name in ("missing_examples", "stale_examples", "vanished_examples"):
            mine = getattr(self, name)
            mine += getattr(other, name)[: EXAMPLES - len(mine)]


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
    frames = [pl.DataFrame(schema=_EXPECTED)]
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
                schema=_EXPECTED,
            )
        )
    return pl.concat(frames)


def _examples(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return frame.head(EXAMPLES).select("source_file", "source_row").to_dicts()


def _policy_report(policy: Policy, labels: pl.DataFrame, expected: pl.DataFrame) -> PolicyReport:
    mine = labels.filter(pl.col("policy_id") == policy.id)
    per_key = mine.group_by(KEY).len()
    duplicates = int((per_key["len"] - 1).sum() or 0)
    joined = mine.unique(KEY).join(expected, on=["source_file", "source_row"], how="left")
    up_to_date = (pl.col("policy_sha256") == policy.sha256) & (
        ~pl.col("changed") | (pl.col("content_sha256").eq_missing(pl.col("present_sha256")))
    )
    vanished = joined.filter(pl.col("changed").is_null())
    known = joined.filter(pl.col("changed").is_not_null())
    present = known.filter(up_to_date)
    stale = known.filter(~up_to_date)
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
        vanished.height,
        dict(zip(status["status"].to_list(), status["count"].to_list(), strict=True)),
        _examples(missing),
        _examples(stale),
        _examples(vanished),
    )


def _batches(inputs: list[InputFile], rows: int) -> Iterator[list[InputFile]]:
    """Consecutive input files holding about ``rows`` rows together (a big file alone)."""
    batch: list[InputFile] = []
    total = 0
    for source in inputs:
        if batch and total + source.num_rows > rows:
            yield batch
            batch, total = [], 0
        batch.append(source)
        total += source.num_rows
    if batch:
        yield batch


def verify(
    output: str | Path,
    inputs: list[InputFile],
    policies: list[Policy],
    columns: tuple[str, str] = ("id", "text"),
) -> dict[str, Any]:
    """Compare the output's current rows with what the inputs and policies call for."""
    table = LabelTable(output)
    reports = {p.id: PolicyReport(p.id, p.sha256) for p in policies}
    for batch in _batches(inputs, BATCH_ROWS):
        files = [f.source_file for f in batch]
        labels = pl.from_arrow(table.current(files, [p.id for p in policies], _COLUMNS))
        assert isinstance(labels, pl.DataFrame)
        expected = _expected(batch, labels, columns)
        for policy in policies:
            reports[policy.id].add(_policy_report(policy, labels, expected))
    complete = all(
        r.missing == 0 and r.duplicates == 0 and r.vanished == 0 for r in reports.values()
    )
    return {"complete": complete, "policies": [asdict(r) for r in reports.values()]}


def to_text(report: dict[str, Any]) -> str:
    lines = []
    for r in report["policies"]:
        statuses = ", ".join(f"{k} {v}" for k, v in r["status"].items()) or "none"
        lines.append(
            f"{r['policy_id']} ({r['policy_sha256'][:12]}): {r['present']}/{r['expected']} rows "
            f"labelled and current, {r['missing']} missing, {r['stale']} stale, "
            f"{r['vanished']} of rows that no longer exist, {r['duplicates']} duplicated; "
            f"status: {statuses}"
        )
        for kind in ("missing", "stale", "vanished"):
            for example in r[f"{kind}_examples"]:
                lines.append(f"  {kind}: {example['source_file']} row {example['source_row']}")
    lines.append("complete" if report["complete"] else "INCOMPLETE")
    return "\n".join(lines)
