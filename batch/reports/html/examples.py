"""The rows a reviewer wants to see first, per policy, with the text the model judged.

Three kinds, a few rows each: the highest-scored violations (what the model is surest is
bad), the most uncertain calls (score nearest the threshold) and a sample of failures (rows
without a verdict). Each kind is a ``top_k`` over a scan of one policy's partition of the
current version, so the cost is a few passes and a few rows of memory at any size; only the
picked rows' texts are read back from their source files, and a text that changed since it
was labelled is not shown (it is not what the model judged).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from batch.output.labels import require_table
from batch.output.schema import RETRYABLE
from batch.output.table import reading
from batch.reports.review.export import with_texts

EXAMPLES_PER_KIND = 5
TEXT_CHARS = 400  # of the content shown per row
NOTE_CHARS = 600  # of the rationale or reasoning
KINDS = ("violation", "uncertain", "failure")
_COLUMNS = [
    "id", "policy_id", "source_file", "source_row", "source_path", "content_sha256", "label",
    "score", "status", "error", "rationale", "reasoning",
]  # fmt: skip


def _truncate(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _kind(scan: pl.LazyFrame, kind: str, threshold: float, limit: int) -> pl.LazyFrame:
    """One kind's rows of one policy's scan; ties broken by source position, so the pick is
    stable. ``top_k``/``bottom_k`` keep only ``limit`` rows in memory while scanning."""
    ok = pl.col("status") == "ok"
    where = ["source_file", "source_row"]
    if kind == "violation":
        rows = scan.filter(ok & pl.col("violation").fill_null(False))
        rows = rows.top_k(
            limit, by=[pl.col("score").fill_null(0.0), *where], reverse=[False, True, True]
        )
    elif kind == "uncertain":
        rows = scan.filter(ok & pl.col("score").is_not_null())
        rows = rows.bottom_k(limit, by=[(pl.col("score") - threshold).abs(), *where])
    else:  # a sample of failures: a fixed hash of the row's position orders them
        rows = scan.filter(pl.col("status").is_in(list(RETRYABLE)))
        rows = rows.bottom_k(limit, by=[pl.struct(where).hash(seed=0), *where])
    return rows.select(_COLUMNS).with_columns(kind=pl.lit(kind))


def policy_examples(
    output: str | Path,
    policy_ids: list[str],
    threshold: float = 0.5,
    text_column: str = "text",
    limit: int = EXAMPLES_PER_KIND,
) -> dict[str, list[dict[str, Any]]]:
    """Per policy of ``policy_ids`` (the summary's: no pass to find them), up to ``limit``
    rows of each kind, with their text (truncated)."""
    table = require_table(output)
    with reading(output):
        scan = table.scan()
        names = scan.collect_schema().names()
        if "score" not in names:  # tables from before scores
            scan = scan.with_columns(score=pl.lit(None, pl.Float64))
        scan = scan.select([*_COLUMNS, "violation"])
        frames = [
            _kind(scan.filter(pl.col("policy_id") == pid), kind, threshold, limit)
            for pid in sorted(policy_ids)
            for kind in KINDS
        ]
        picked = pl.concat(pl.collect_all(frames)) if frames else pl.DataFrame()
    if picked.is_empty():
        return {}
    shown, _ = with_texts(picked, text_column)
    found: dict[str, list[dict[str, Any]]] = {}
    for row in shown.iter_rows(named=True):
        note = row["rationale"] or row["reasoning"] or row["error"]
        found.setdefault(row["policy_id"], []).append(
            {
                "kind": row["kind"],
                "id": row["id"],
                "source": f"{row['source_file']}:{row['source_row']}",
                "status": row["status"],
                "label": row["label"],
                "score": row["score"],
                "text": _truncate(row["text"], TEXT_CHARS),
                "note": _truncate(note, NOTE_CHARS),
            }
        )
    return found
