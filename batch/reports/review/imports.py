"""Reviewers' decisions back in: validated, then written as a gold file.

The gold file has ``id`` and one 0/1 column per policy id (null where that item was not
reviewed for that policy), the shape ``eval --gold`` and ``prefilter train --gold`` read, plus
``POLICY__reviewer`` and ``POLICY__reviewed_at`` where the review file says who and when.
``policy_tests`` turns decisions into ``[[tests]]`` cases for a policy's front matter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from batch.errors import UsageError
from batch.output.labels import require_table
from batch.output.table import reading
from batch.reports.review.files import DOES_NOT, VIOLATES, read_decisions

YES = {"1", "true", "yes", "y", VIOLATES}
NO = {"0", "false", "no", "n", DOES_NOT}


def decision_value(raw: str | None, where: str) -> int | None:
    """1, 0, or None for a row left blank; anything else is an error naming the row."""
    if raw is None or not raw.strip():
        return None
    value = raw.strip().lower()
    if value in YES:
        return 1
    if value in NO:
        return 0
    raise UsageError(
        f"{where}: decision {raw!r} is not one of 1/0, yes/no, true/false, "
        f"{VIOLATES!r}/{DOES_NOT!r}"
    )


def _known(output: str | Path) -> dict[tuple[str, str], set[str]]:
    """(id, policy id) -> the policy versions of its current labels."""
    with reading(output):
        pairs = (
            require_table(output)
            .scan()
            .select("id", "policy_id", "policy_version")
            .unique()
            .collect()
        )
    known: dict[tuple[str, str], set[str]] = {}
    for item, policy, version in pairs.iter_rows():
        known.setdefault((item, policy), set()).add(version)
    return known


def _check_known(row: dict[str, Any], known: dict, labels: str | Path, where: str) -> None:
    """The decision is about a label the table holds: its (id, policy), its policy version."""
    versions = known.get((row["id"], row["policy_id"]))
    if versions is None:
        if not any(policy == row["policy_id"] for _, policy in known):
            raise UsageError(f"{where}: policy {row['policy_id']!r} has no labels in {labels}")
        raise UsageError(
            f"{where}: id {row['id']!r} has no label under policy {row['policy_id']!r} in {labels}"
        )
    version = row.get("policy_version")
    if version is not None and version not in versions:
        raise UsageError(
            f"{where}: reviewed under policy {row['policy_id']!r} version {version}, but its "
            f"label in {labels} is for version {', '.join(sorted(versions))}; export it again"
        )


def validated_decisions(path: str | Path, labels: str | Path) -> tuple[pl.DataFrame, int]:
    """The decided rows (``value`` 0/1) and how many were left blank; unknown (id, policy)
    pairs, another policy version, bad values and contradicting decisions are errors naming
    the row (1-based, header 0)."""
    decisions = read_decisions(path)
    known = _known(labels)
    values: list[int | None] = []
    seen: dict[tuple[str, str], tuple[int, int]] = {}
    for number, row in enumerate(decisions.iter_rows(named=True), 1):
        where = f"{path}: row {number}"
        _check_known(row, known, labels, where)
        value = decision_value(row["decision"], where)
        key = (row["id"], row["policy_id"])
        if value is not None and key in seen and seen[key][1] != value:
            raise UsageError(
                f"{where}: contradicts row {seen[key][0]} on id {key[0]!r}, policy {key[1]!r}"
            )
        if value is not None:
            seen[key] = (number, value)
        values.append(value)
    frame = decisions.with_columns(pl.Series("value", values, dtype=pl.Int8))
    decided = frame.filter(pl.col("value").is_not_null())
    return decided, len(frame) - len(decided)


def gold_table(decided: pl.DataFrame) -> pl.DataFrame:
    """``id`` and a 0/1 column per policy, with who and when beside each where known."""
    if decided.is_empty():
        raise UsageError("no decisions in the review file: every decision is blank")
    decided = decided.unique(["id", "policy_id"], keep="last", maintain_order=True)
    gold = decided.select("id").unique(maintain_order=True)
    for policy_id in sorted(decided["policy_id"].unique().to_list()):
        mine = decided.filter(pl.col("policy_id") == policy_id)
        columns = [pl.col("value").alias(policy_id)]
        for extra in ("reviewer", "reviewed_at"):
            if mine[extra].is_not_null().any():
                columns.append(pl.col(extra).alias(f"{policy_id}__{extra}"))
        gold = gold.join(mine.select("id", *columns), on="id", how="left", maintain_order="left")
    return gold


_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n",
                 "\f": "\\f", "\r": "\\r"}  # fmt: skip


def toml_string(text: str) -> str:
    """A TOML basic string: control characters (DEL too) escaped, a lone surrogate (which no
    TOML string can hold) replaced by U+FFFD."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[char])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\ufffd")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def policy_tests(decided: pl.DataFrame, policy_id: str) -> str:
    """Decisions for one policy as ``[[tests]]`` cases (TOML), to paste into its front matter."""
    blocks = []
    for row in decided.filter(pl.col("policy_id") == policy_id).iter_rows(named=True):
        text = row["text"]
        if text is None:
            continue
        blocks.append(f"[[tests]]\ntext = {toml_string(text)}\nexpected = {row['value']}\n")
    return "\n".join(blocks)


def import_summary(decided: pl.DataFrame, blank: int) -> dict[str, Any]:
    per_policy = decided.group_by("policy_id").agg(
        pl.len().alias("decided"), (pl.col("value") == 1).sum().alias("violating")
    )
    return {
        "decided": len(decided),
        "blank": blank,
        "per_policy": {r["policy_id"]: {"decided": r["decided"], "violating": r["violating"]}
                       for r in per_policy.sort("policy_id").iter_rows(named=True)},
    }  # fmt: skip
