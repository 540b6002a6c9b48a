"""Choosing labels for human review, and writing them as a review file.

Each mode picks rows of the table's current version (one label per source row and policy):

- ``uncertain``: ok rows whose score is nearest the threshold (the model's least sure calls);
- ``disputed``: ok rows whose label differs from the same row's in another labelling (an
  earlier table version, or a candidate table from ``relabel --sample``);
- ``failed``: rows without a verdict (parse_error, truncated, engine_error);
- ``prefilter-audit``: audited rows the prefilter passed and the model flagged (its misses);
- ``sample``: a seeded random sample, for quality control.

A row picked by several modes is written once, with every reason. The text is read back from
the source file, and a row whose source text changed since it was labelled is left out (the
reviewer would judge other text than the model did); the decision columns are left blank for
the reviewer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from batch.errors import UsageError
from batch.flow.plan import content_sha256
from batch.flow.read import read_texts
from batch.output.labels import require_table, scan_labels
from batch.output.schema import RETRYABLE
from batch.output.table import reading

MODES = ("uncertain", "disputed", "failed", "prefilter-audit", "sample")
COLUMNS = [
    "id", "policy_id", "policy_version", "policy_sha256", "label", "score", "status",
    "rationale", "source_file", "source_row", "source_path", "run_id", "content_sha256",
    "reason",
]  # fmt: skip
DECISION_COLUMNS = ["decision", "reviewer", "reviewed_at", "notes"]


@dataclass(frozen=True)
class Selection:
    """One ``--select``: a mode and how many rows it may pick per policy."""

    mode: str
    limit: int

    @classmethod
    def parse(cls, text: str, default_limit: int) -> Selection:
        mode, _, count = text.partition(":")
        if mode not in MODES:
            raise UsageError(f"--select {text!r}: the mode must be one of {', '.join(MODES)}")
        if count and not (count.isdigit() and int(count) > 0):
            raise UsageError(f"--select {text!r}: after ':' comes a count of rows, e.g. {mode}:200")
        return cls(mode, int(count) if count else default_limit)


def _current(output: str | Path, policies: Sequence[str]) -> pl.DataFrame:
    table = require_table(output)
    with reading(output):
        frame = table.scan()
        if "score" not in frame.collect_schema().names():
            frame = frame.with_columns(pl.lit(None, pl.Float64).alias("score"))
        if policies:
            frame = frame.filter(pl.col("policy_id").is_in(list(policies)))
        # only what selecting and writing need: never the reasoning, the table's bulk
        wanted = [c for c in COLUMNS if c != "reason"] + ["prefilter_audit"]
        return frame.select(wanted).collect()


def _disputed(current: pl.DataFrame, against: pl.DataFrame) -> pl.DataFrame:
    keys = ["policy_id", "source_file", "source_row"]
    other = against.filter(pl.col("status") == "ok").select(
        *keys, pl.col("label").alias("other_label")
    )
    return (
        current.filter(pl.col("status") == "ok")
        .join(other, on=keys)
        .filter(pl.col("label") != pl.col("other_label"))
    )


def _pick(
    current: pl.DataFrame, selection: Selection, threshold: float, against, seed: int
) -> pl.DataFrame:
    """One mode's rows, at most ``limit`` per policy."""
    mode = selection.mode
    if mode == "uncertain":
        rows = current.filter((pl.col("status") == "ok") & pl.col("score").is_not_null())
        rows = rows.sort((pl.col("score") - threshold).abs(), "source_file", "source_row")
    elif mode == "disputed":
        rows = _disputed(current, against).sort("source_file", "source_row")
    elif mode == "failed":
        rows = current.filter(pl.col("status").is_in(list(RETRYABLE)))
        rows = rows.sort("source_file", "source_row")
    elif mode == "prefilter-audit":
        audited = pl.col("prefilter_audit").fill_null(False)
        rows = current.filter(audited & (pl.col("label") == "1")).sort("source_file", "source_row")
    else:
        rows = current.sample(fraction=1.0, shuffle=True, seed=seed)
    return (
        rows.group_by("policy_id", maintain_order=True)
        .head(selection.limit)
        .with_columns(pl.lit(mode).alias("reason"))
    )


def select_for_review(
    output: str | Path,
    selections: Sequence[Selection],
    policies: Sequence[str] = (),
    threshold: float = 0.5,
    against: str | Path | None = None,
    against_version: int | None = None,
    seed: int = 0,
) -> pl.DataFrame:
    """The rows to review, each once with the reasons it was picked for."""
    current = _current(output, policies)
    other = None
    if any(s.mode == "disputed" for s in selections):
        if against is None and against_version is None:
            raise UsageError("--select disputed needs --against TABLE or --against-version N")
        with reading(against or output):
            other = (
                scan_labels(against or output, against_version)
                .select("policy_id", "source_file", "source_row", "status", "label")
                .collect()
            )
    picked = pl.concat(
        [_pick(current, s, threshold, other, seed).select(COLUMNS) for s in selections]
    )
    keys = ["policy_id", "source_file", "source_row"]
    reasons = picked.group_by(keys, maintain_order=True).agg(
        pl.col("reason").unique(maintain_order=True).str.join(",")
    )
    return (
        picked.unique(keys, keep="first", maintain_order=True)
        .drop("reason")
        .join(reasons, on=keys, maintain_order="left")
    )


def with_texts(rows: pl.DataFrame, text_column: str) -> tuple[pl.DataFrame, int]:
    """The rows with their text read back from the source, and how many were left out
    because that text is not the one labelled any more (its hash differs from the label's
    ``content_sha256``): a reviewer must judge the text the model judged. A row whose source
    is gone keeps a null text."""
    texts: dict[tuple[str, int], str] = {}
    for (path,), group in rows.group_by(["source_path"], maintain_order=True):
        found = read_texts(path, group["source_row"].to_list(), text_column) or {}
        texts.update({(path, row): text for row, text in found.items()})
    column, changed = [], []
    for path, row, digest in zip(
        rows["source_path"], rows["source_row"], rows["content_sha256"], strict=True
    ):
        text = texts.get((path, row))
        column.append(text)
        changed.append(text is not None and content_sha256(text) != digest)
    with_text = rows.with_columns(pl.Series("text", column, dtype=pl.String))
    kept = with_text.filter(~pl.Series(changed, dtype=pl.Boolean))
    return kept.drop("content_sha256"), len(rows) - len(kept)
