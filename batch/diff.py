"""Compare two label sets: what flips between two policy versions, two models or two runs.

A label set is an output folder narrowed by ``where`` conditions on its audit columns (a
policy hash, a model, a run id...). Where a row was labelled several times within a set, its
latest label counts. Rows are matched on their source position by default (``--on id`` or
``--on content`` match on the id column or on the content hash instead). A row's *outcome* is
its label when the status is ``ok`` and its status otherwise, so ``0 -> 1``, ``1 -> 0`` and
``ok -> parse_error`` all show in one matrix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from batch.intervals import wilson_interval
from batch.store import label_files

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
    "id",
    "source_file",
    "source_row",
    "content_sha256",
    "policy_id",
    "policy_version",
    "policy_sha256",
    "model",
    "run_id",
    "status",
    "label",
    "rationale",
    "reasoning",
    "error",
    "labelled_at",
]
_NOTE_CHARS = 300


class DiffError(ValueError):
    """Label sets that cannot be compared; the message says why."""


def parse_where(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    where: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in SELECTABLE:
            raise DiffError(
                f"{pair!r}: expected COLUMN=VALUE with COLUMN one of {', '.join(SELECTABLE)}"
            )
        where[key] = value
    return where


def load_label_set(output: str | Path, where: dict[str, str], on: str = "source") -> pl.DataFrame:
    """The latest label per (row, policy) among the rows of ``output`` matching ``where``."""
    files = label_files(output)
    if not files:
        raise DiffError(f"{output}: holds no label files (policy_id=*/*.parquet)")
    frame = pl.scan_parquet(files, missing_columns="insert", extra_columns="ignore").select(
        _COLUMNS
    )
    for key, value in where.items():
        if key in HASH_COLUMNS:
            frame = frame.filter(pl.col(key).str.starts_with(value))
        else:
            frame = frame.filter(pl.col(key) == value)
    keys = [*MATCH_KEYS[on], "policy_id"]
    return (
        frame.sort("labelled_at")
        .unique(subset=keys, keep="last", maintain_order=True)
        .with_columns(
            outcome=pl.when(pl.col("status") == "ok")
            .then(pl.col("label"))
            .otherwise(pl.col("status"))
        )
        .collect()
    )


def previous_policy_version(output: str | Path, policy_id: str, current_sha: str) -> str | None:
    """The policy hash most recently labelled in ``output`` before ``current_sha``, if any."""
    files = label_files(output, policy_id)
    if not files:
        return None
    versions = (
        pl.scan_parquet(files, missing_columns="insert", extra_columns="ignore")
        .filter(pl.col("policy_sha256") != current_sha)
        .group_by("policy_sha256")
        .agg(pl.col("labelled_at").max())
        .sort("labelled_at")
        .collect()
    )
    return versions["policy_sha256"][-1] if versions.height else None


def _note(row: dict[str, Any], side: str) -> str | None:
    text = row.get(f"rationale_{side}") or row.get(f"reasoning_{side}") or row.get(f"error_{side}")
    if text is None:
        return None
    text = " ".join(str(text).split())
    return text if len(text) <= _NOTE_CHARS else text[: _NOTE_CHARS - 1] + "…"


def _texts(examples: list[dict[str, Any]], text_column: str) -> None:
    """Add each example's content from its source file, where that file is still readable."""
    by_file: dict[str, list[dict[str, Any]]] = {}
    for example in examples:
        if example.get("source_file"):
            by_file.setdefault(example["source_file"], []).append(example)
    for path, rows in by_file.items():
        try:
            column = pq.read_table(path, columns=[text_column]).column(0)
        except (OSError, KeyError, ValueError):
            continue
        for row in rows:
            if row["source_row"] is not None and row["source_row"] < len(column):
                value = column[row["source_row"]].as_py()
                if isinstance(value, str):
                    value = " ".join(value.split())
                    row["text"] = value[:_NOTE_CHARS]


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
    policies = []
    for policy_id in sorted(set(old["policy_id"].to_list()) | set(new["policy_id"].to_list())):
        mine = joined.filter(pl.col("policy_id") == policy_id)
        shared = mine.height
        flipped = mine.filter(pl.col("outcome_old").ne_missing(pl.col("outcome_new")))
        both_ok = mine.filter((pl.col("status_old") == "ok") & (pl.col("status_new") == "ok"))
        label_flips = both_ok.filter(pl.col("label_old") != pl.col("label_new")).height
        matrix: dict[str, dict[str, int]] = {}
        transitions: dict[str, int] = {}
        for row in mine.group_by("outcome_old", "outcome_new").len().iter_rows(named=True):
            a, b = str(row["outcome_old"]), str(row["outcome_new"])
            matrix.setdefault(a, {})[b] = row["len"]
            if a != b:
                transitions[f"{a}->{b}"] = row["len"]
        interval = wilson_interval(flipped.height, shared)
        sample = flipped.sample(n=min(examples, flipped.height), seed=seed) if examples else None
        shown = []
        if sample is not None:
            for row in sample.sort(MATCH_KEYS[on]).iter_rows(named=True):
                shown.append(
                    {
                        "id": row.get("id_old", row.get("id")),
                        "source_file": row.get("source_file", row.get("source_file_old")),
                        "source_row": row.get("source_row", row.get("source_row_old")),
                        "old": row["outcome_old"],
                        "new": row["outcome_new"],
                        "old_rationale": _note(row, "old"),
                        "new_rationale": _note(row, "new"),
                    }
                )
            if text_column:
                _texts(shown, text_column)
        policies.append(
            {
                "policy_id": policy_id,
                "old_versions": _versions(old, policy_id),
                "new_versions": _versions(new, policy_id),
                "shared": shared,
                "only_old": old.filter(pl.col("policy_id") == policy_id).height - shared,
                "only_new": new.filter(pl.col("policy_id") == policy_id).height - shared,
                "flips": flipped.height,
                "flip_rate": flipped.height / shared if shared else None,
                "flip_rate_ci95": list(interval) if interval else None,
                "label_flips": label_flips,
                "both_ok": both_ok.height,
                "transitions": transitions,
                "matrix": matrix,
                "examples": shown,
            }
        )
    return {"on": keys, "policies": policies}


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


def _cell(text: Any) -> str:
    return "" if text is None else str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(report: dict[str, Any]) -> str:
    """The diff as Markdown, for a policy writer deciding whether to promote an edit."""
    lines = ["# Label diff", ""]
    for side in ("old", "new"):
        if side in report:
            where = report[side].get("where") or {}
            narrowed = ", ".join(f"{k}={v}" for k, v in where.items()) or "all labels"
            lines.append(f"- **{side}**: `{report[side]['output']}` ({narrowed})")
    lines.append(f"- rows matched on: {', '.join(report['on'])}")
    for p in report["policies"]:
        lines += ["", f"## {p['policy_id']}", ""]
        for side in ("old", "new"):
            versions = "; ".join(
                f"version {v['policy_version']} ({v['policy_sha256'][:12]}), {v['model']}"
                for v in p[f"{side}_versions"]
            )
            lines.append(f"- {side}: {versions or 'no labels'}")
        if not p["shared"]:
            lines.append("- no rows in common")
            continue
        lo, hi = p["flip_rate_ci95"]
        lines.append(
            f"- {p['shared']} rows in both ({p['only_old']} only in old, {p['only_new']} only "
            f"in new); **{p['flips']} flipped = {p['flip_rate']:.2%}** (95% CI {lo:.2%} to "
            f"{hi:.2%}); label flips where both are ok: {p['label_flips']} of {p['both_ok']}"
        )
        outcomes = sorted(
            set(p["matrix"]) | {b for row in p["matrix"].values() for b in row}, key=_order
        )
        lines += [
            "",
            "| old \\ new | " + " | ".join(outcomes) + " |",
            "|---" * (len(outcomes) + 1) + "|",
        ]
        for a in outcomes:
            cells = [str(p["matrix"].get(a, {}).get(b, 0)) for b in outcomes]
            lines.append(f"| **{a}** | " + " | ".join(cells) + " |")
        if p["examples"]:
            lines += [
                "",
                f"Sample of flipped items ({len(p['examples'])} of {p['flips']}):",
                "",
                "| item | text | old | new | old rationale | new rationale |",
                "|---|---|---|---|---|---|",
            ]
            for e in p["examples"]:
                item = e["id"] if e["id"] is not None else f"row {e['source_row']}"
                lines.append(
                    f"| {_cell(item)} | {_cell(e.get('text'))} | {_cell(e['old'])} | "
                    f"{_cell(e['new'])} | {_cell(e['old_rationale'])} | "
                    f"{_cell(e['new_rationale'])} |"
                )
    return "\n".join(lines) + "\n"


def _order(outcome: str) -> tuple[int, str]:
    return (0 if outcome in ("0", "1") else 1, outcome)


def diff_outputs(
    old_output: str | Path,
    new_output: str | Path,
    old_where: dict[str, str],
    new_where: dict[str, str],
    on: str = "source",
    examples: int = 10,
    seed: int = 0,
    text_column: str | None = "text",
) -> dict[str, Any]:
    """Load both label sets and compare them; refuses to compare a set with itself."""
    if Path(old_output).resolve() == Path(new_output).resolve() and old_where == new_where:
        raise DiffError(
            "OLD and NEW select the same labels: narrow one with --old-where/--new-where "
            "(for example policy_sha256=<prefix>, model=..., run_id=...)"
        )
    old = load_label_set(old_output, old_where, on)
    new = load_label_set(new_output, new_where, on)
    report = diff_label_sets(old, new, on, examples, seed, text_column)
    report["old"] = {"output": str(old_output), "where": old_where, "rows": old.height}
    report["new"] = {"output": str(new_output), "where": new_where, "rows": new.height}
    return report
