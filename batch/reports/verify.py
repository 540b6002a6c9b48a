"""Is the output complete? Exactly one row per (input row, policy) under the current policies.

Counts, for the current policy hashes: missing (input rows with no label), duplicates (the same
(source file, source row, policy) labelled more than once with the same policy, prompt, model
and settings), stale rows (labels under an older version of a policy, or of an input file whose
content has since changed: kept on purpose, reported for information) and status counts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from batch.flow.read import InputFile
from batch.output.labels import scan_labels
from batch.policy.files import Policy

WORK_KEY = ["source_file", "source_row", "policy_id"]
SAME_WORK = [*WORK_KEY, "policy_sha256", "prompt_sha256", "model_fingerprint", "settings_sha256"]


@dataclass
class PolicyReport:
    policy_id: str
    policy_sha256: str
    expected: int
    present: int
    missing: int
    duplicates: int
    variants: int  # (row, policy) labelled under more than one model or setting
    stale: int
    status: dict[str, int] = field(default_factory=dict)
    missing_examples: list[dict[str, Any]] = field(default_factory=list)


def verify(output: str | Path, inputs: list[InputFile], policies: list[Policy]) -> dict[str, Any]:
    """Compare the output with what the inputs and policies call for."""
    labels = scan_labels(output).select(*SAME_WORK, "status", "source_fingerprint").collect()
    expected = pl.DataFrame(
        {
            "source_file": [f.path for f in inputs for _ in range(f.num_rows)],
            "source_row": [r for f in inputs for r in range(f.num_rows)],
            "source_fingerprint": [f.fingerprint for f in inputs for _ in range(f.num_rows)],
        },
        schema={"source_file": pl.String, "source_row": pl.Int64, "source_fingerprint": pl.String},
    )
    reports = []
    for policy in policies:
        mine = labels.filter(pl.col("policy_id") == policy.id)
        current = mine.join(
            expected, on=["source_file", "source_row", "source_fingerprint"], how="semi"
        ).filter(pl.col("policy_sha256") == policy.sha256)
        stale = mine.height - current.height
        per_work = current.group_by(SAME_WORK).len()
        duplicates = int((per_work["len"] - 1).sum() or 0)
        per_row = current.unique(SAME_WORK).group_by(WORK_KEY).len()
        variants = int((per_row["len"] > 1).sum() or 0)
        missing = expected.join(
            current.select("source_file", "source_row").unique(),
            on=["source_file", "source_row"],
            how="anti",
        )
        status = current.unique(SAME_WORK)["status"].value_counts(sort=True)
        reports.append(
            PolicyReport(
                policy.id,
                policy.sha256,
                expected.height,
                per_row.height,
                missing.height,
                duplicates,
                variants,
                stale,
                dict(zip(status["status"].to_list(), status["count"].to_list(), strict=True)),
                missing.head(5).select("source_file", "source_row").to_dicts(),
            )
        )
    complete = all(r.missing == 0 and r.duplicates == 0 for r in reports)
    return {"complete": complete, "policies": [asdict(r) for r in reports]}


def to_text(report: dict[str, Any]) -> str:
    lines = []
    for r in report["policies"]:
        statuses = ", ".join(f"{k} {v}" for k, v in r["status"].items()) or "none"
        lines.append(
            f"{r['policy_id']} ({r['policy_sha256'][:12]}): {r['present']}/{r['expected']} rows "
            f"labelled, {r['missing']} missing, {r['duplicates']} duplicated, "
            f"{r['variants']} with several model/settings variants, {r['stale']} stale; "
            f"status: {statuses}"
        )
        for example in r["missing_examples"]:
            lines.append(f"  missing: {example['source_file']} row {example['source_row']}")
    lines.append("complete" if report["complete"] else "INCOMPLETE")
    return "\n".join(lines)
