"""Compare two label sets: what flips between two policy versions, two models or two runs.

A label set is an output table (at its current version, or at an earlier one: time travel),
or a candidate table, narrowed by ``where`` conditions on its audit columns (a policy hash, a
model, a run id...). Where several rows share a match key (``--on id`` or ``content``), the
latest label counts. Rows are matched on their source position by default (``--on id`` or
``--on content`` match on the id column or on the content hash instead). A row's *outcome* is
its label when the status is ``ok`` and its status otherwise, so ``0 -> 1``, ``1 -> 0`` and
``ok -> parse_error`` all show in one matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from batch.errors import UsageError
from batch.flow.read import read_texts
from batch.output import place
from batch.output.labels import latest_per, require_table
from batch.output.table import reading
from batch.reports.intervals import wilson_interval

# Columns a label set can be narrowed by; hashes match by prefix, the rest exactly.
HASH_COLUMNS = ("policy_sha256", "prompt_sha256", "model_fingerprint", "settings_sha256")
EXACT_COLUMNS = ("policy_version", "model", "run_id", "reasoning_effort", "policy_id")
SELECTABLE = HASH_COLUMNS + EXACT_COLUMNS
MATCH_KEYS = {
    "source": ["source_file", "source_row"],
    "id": ["id"],
    "content": ["content_sha256"],
}
_COLUMNS = [
    "id", "source_file", "source_row", "source_path", "content_sha256", "policy_id",
    "policy_version",
    "policy_sha256", "model", "run_id", "status", "label", "rationale", "reasoning", "error",
    "labelled_at",
]  # fmt: skip
_NOTE_CHARS = 300


class DiffError(UsageError):
    """Label sets that cannot be compared; the message says why."""


def check_where(where: dict[str, str]) -> dict[str, str]:
    """``where`` conditions, refused unless every column is one a set can be narrowed by."""
    for key in where:
        if key not in SELECTABLE:
            raise DiffError(
                f"{key!r}: expected COLUMN=VALUE with COLUMN one of {', '.join(SELECTABLE)}"
            )
    return where


def load_label_set(
    output: str | Path, where: dict[str, str], on: str = "source", version: int | None = None
) -> pl.DataFrame:
    """The latest label per (row, policy) among the rows of ``output`` (at ``version``)
    matching ``where``."""
    frame = require_table(output).scan(version).select(_COLUMNS)
    for key, value in where.items():
        if key in HASH_COLUMNS:
            frame = frame.filter(pl.col(key).str.starts_with(value))
        else:
            frame = frame.filter(pl.col(key) == value)
    outcome = pl.when(pl.col("status") == "ok").then(pl.col("label")).otherwise(pl.col("status"))
    with reading(output, version):
        return (
            latest_per(frame, [*MATCH_KEYS[on], "policy_id"])
            .with_columns(outcome=outcome)
            .collect()
        )


def _note(row: dict[str, Any], side: str) -> str | None:
    text = row.get(f"rationale_{side}") or row.get(f"reasoning_{side}") or row.get(f"error_{side}")
    if text is None:
        return None
    text = " ".join(str(text).split())
    return text if len(text) <= _NOTE_CHARS else text[: _NOTE_CHARS - 1] + "…"


def _add_texts(examples: list[dict[str, Any]], text_column: str) -> None:
    """Add each example's content from its source file, where that file is still readable."""
    by_file: dict[str, list[dict[str, Any]]] = {}
    for example in examples:
        if example.get("source_path"):
            by_file.setdefault(example["source_path"], []).append(example)
    for path, rows in by_file.items():
        texts = read_texts(path, [row["source_row"] for row in rows], text_column) or {}
        for row in rows:
            if row["source_row"] in texts:
                row["text"] = " ".join(texts[row["source_row"]].split())[:_NOTE_CHARS]


def _examples(
    flipped: pl.DataFrame, on: str, examples: int, seed: int, text_column: str | None
) -> list[dict[str, Any]]:
    """A seeded sample of flipped items with both outcomes and rationales."""
    if not examples:
        return []
    sample = flipped.sample(n=min(examples, flipped.height), seed=seed)
    shown = [
        {
            "id": row.get("id_old", row.get("id")),
            "source_file": row.get("source_file", row.get("source_file_old")),
            "source_row": row.get("source_row", row.get("source_row_old")),
            "source_path": row.get("source_path_old"),
            "old": row["outcome_old"],
            "new": row["outcome_new"],
            "old_rationale": _note(row, "old"),
            "new_rationale": _note(row, "new"),
        }
        for row in sample.sort(MATCH_KEYS[on]).iter_rows(named=True)
    ]
    if text_column:
        _add_texts(shown, text_column)
    for example in shown:
        example.pop("source_path")
    return shown


def _matrix(mine: pl.DataFrame) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Outcome counts old → new, and the off-diagonal cells as ``a->b`` transitions."""
    matrix: dict[str, dict[str, int]] = {}
    transitions: dict[str, int] = {}
    for row in mine.group_by("outcome_old", "outcome_new").len().iter_rows(named=True):
        a, b = str(row["outcome_old"]), str(row["outcome_new"])
        matrix.setdefault(a, {})[b] = row["len"]
        if a != b:
            transitions[f"{a}->{b}"] = row["len"]
    return matrix, transitions


def _versions(frame: pl.DataFrame, policy_id: str) -> list[dict[str, Any]]:
    mine = frame.filter(pl.col("policy_id") == policy_id)
    grouped = mine.group_by("policy_version", "policy_sha256", "model").len().sort("len")
    return [
        {
            "policy_version": r["policy_version"],
            "policy_sha256": r["policy_sha256"],
            "model": r["model"],
            "rows": r["len"],
        }
        for r in grouped.iter_rows(named=True)
    ]


def _policy_diff(
    policy_id: str, old: pl.DataFrame, new: pl.DataFrame, joined: pl.DataFrame, **show: Any
) -> dict[str, Any]:
    mine = joined.filter(pl.col("policy_id") == policy_id)
    shared = mine.height
    flipped = mine.filter(pl.col("outcome_old").ne_missing(pl.col("outcome_new")))
    both_ok = mine.filter((pl.col("status_old") == "ok") & (pl.col("status_new") == "ok"))
    matrix, transitions = _matrix(mine)
    interval = wilson_interval(flipped.height, shared)
    return {
        "policy_id": policy_id,
        "old_versions": _versions(old, policy_id),
        "new_versions": _versions(new, policy_id),
        "shared": shared,
        "only_old": old.filter(pl.col("policy_id") == policy_id).height - shared,
        "only_new": new.filter(pl.col("policy_id") == policy_id).height - shared,
        "flips": flipped.height,
        "flip_rate": flipped.height / shared if shared else None,
        "flip_rate_ci95": list(interval) if interval else None,
        "label_flips": both_ok.filter(pl.col("label_old") != pl.col("label_new")).height,
        "both_ok": both_ok.height,
        "transitions": transitions,
        "matrix": matrix,
        "examples": _examples(flipped, **show),
    }


def diff_label_sets(
    old: pl.DataFrame,
    new: pl.DataFrame,
    on: str = "source",
    examples: int = 10,
    seed: int = 0,
    text_column: str | None = "text",
) -> dict[str, Any]:
    """Flip matrix, flip rate with a 95% interval and a sample of flips, per policy."""
    keys = [*MATCH_KEYS[on], "policy_id"]
    joined = old.join(new, on=keys, how="inner", suffix="_new").rename(
        {c: f"{c}_old" for c in _COLUMNS + ["outcome"] if c not in keys}
    )
    show = {"on": on, "examples": examples, "seed": seed, "text_column": text_column}
    policy_ids = sorted(set(old["policy_id"].to_list()) | set(new["policy_id"].to_list()))
    return {
        "on": keys,
        "policies": [_policy_diff(pid, old, new, joined, **show) for pid in policy_ids],
    }


@dataclass(frozen=True)
class LabelSet:
    """An output (or candidate) table, at a version (None: its current one), narrowed."""

    output: str
    where: dict[str, str] = field(default_factory=dict)
    version: int | None = None

    def describe(self, rows: int) -> dict[str, Any]:
        return {"output": self.output, "where": self.where, "version": self.version, "rows": rows}


def diff_outputs(
    old: LabelSet,
    new: LabelSet,
    on: str = "source",
    examples: int = 10,
    seed: int = 0,
    text_column: str | None = "text",
) -> dict[str, Any]:
    """Load both label sets and compare them; refuses to compare a set with itself."""
    check_where(old.where), check_where(new.where)
    same_table = place.canonical(old.output) == place.canonical(new.output)
    if same_table and old.where == new.where and old.version == new.version:
        raise DiffError(
            "OLD and NEW select the same labels: pick another version (--old-version) or "
            "narrow one with --old-where/--new-where (policy_sha256=<prefix>, model=..., ...)"
        )
    old_rows = load_label_set(old.output, old.where, on, old.version)
    new_rows = load_label_set(new.output, new.where, on, new.version)
    report = diff_label_sets(old_rows, new_rows, on, examples, seed, text_column)
    report["old"] = old.describe(old_rows.height)
    report["new"] = new.describe(new_rows.height)
    return report
