"""Labels against gold: per-policy precision, recall, F1, and the rows that never got a verdict.

Rows whose status is not ``ok`` are never dropped: they count as predicted non-violating (the
job flagged nothing) and are reported separately as ``not_ok``. Gold labels that are missing
(null) exclude that row for that policy only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl


@dataclass
class PolicyScores:
    policy_id: str
    support: int
    positives: int
    tp: int
    fp: int
    fn: int
    tn: int
    not_ok: int
    precision: float | None
    recall: float | None
    f1: float | None
    accuracy: float | None


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def score(predicted: list[int], gold: list[int], not_ok: int, policy_id: str) -> PolicyScores:
    """Binary metrics; precision/recall/F1 are None when undefined (no predicted/gold positives)."""
    tp = sum(1 for p, g in zip(predicted, gold, strict=True) if p == 1 and g == 1)
    fp = sum(1 for p, g in zip(predicted, gold, strict=True) if p == 1 and g == 0)
    fn = sum(1 for p, g in zip(predicted, gold, strict=True) if p == 0 and g == 1)
    tn = len(gold) - tp - fp - fn
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    if precision is None or recall is None:
        f1 = None
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return PolicyScores(
        policy_id, len(gold), tp + fn, tp, fp, fn, tn, not_ok,
        precision, recall, f1, _ratio(tp + tn, len(gold)),
    )  # fmt: skip


def latest_labels(labels_dir: str | Path) -> pl.DataFrame:
    """One row per (id, policy_id): the most recently labelled one."""
    frame = pl.scan_parquet(str(Path(labels_dir) / "**" / "*.parquet")).select(
        "id", "policy_id", "status", "violation", "labelled_at"
    )
    return frame.sort("labelled_at").group_by("id", "policy_id").agg(pl.all().last()).collect()


def evaluate(
    labels_dir: str | Path,
    gold_path: str | Path,
    gold_columns: dict[str, str] | None = None,
    id_column: str = "id",
) -> dict[str, Any]:
    """Score every policy found in the labels that has a gold column."""
    labels = latest_labels(labels_dir)
    source = Path(gold_path)
    pattern = str(source / "**" / "*.parquet") if source.is_dir() else str(source)
    gold = pl.read_parquet(pattern).with_columns(pl.col(id_column).cast(pl.String))
    policy_ids = sorted(labels["policy_id"].unique().to_list())
    mapping = dict(gold_columns or {})
    for pid in policy_ids:
        if pid not in mapping and pid in gold.columns:
            mapping[pid] = pid
    if not mapping:
        raise ValueError(
            f"no gold column for any of the policies {policy_ids}; pass --gold-column POLICY=COL"
        )
    per_policy: dict[str, PolicyScores] = {}
    correct_by_id: dict[str, list[bool]] = {}
    for pid, column in sorted(mapping.items()):
        if column not in gold.columns:
            raise ValueError(f"gold file {gold_path} has no column {column!r}")
        joined = (
            gold.select(pl.col(id_column).alias("id"), pl.col(column).alias("gold"))
            .join(labels.filter(pl.col("policy_id") == pid), on="id", how="inner")
            .filter(pl.col("gold").is_not_null())
        )
        ok = joined["status"] == "ok"
        predicted = [int(bool(v)) if k else 0 for v, k in zip(joined["violation"], ok, strict=True)]
        truth = [int(g) for g in joined["gold"]]
        per_policy[pid] = score(predicted, truth, int((~ok).sum()), pid)
        for item_id, p, g in zip(joined["id"], predicted, truth, strict=True):
            correct_by_id.setdefault(item_id, []).append(p == g)
    complete = [v for v in correct_by_id.values() if len(v) == len(mapping)]
    tp = sum(s.tp for s in per_policy.values())
    fp = sum(s.fp for s in per_policy.values())
    fn = sum(s.fn for s in per_policy.values())
    micro = score([1] * tp + [1] * fp + [0] * fn, [1] * tp + [0] * fp + [1] * fn, 0, "micro")
    f1s = [s.f1 for s in per_policy.values() if s.f1 is not None]
    return {
        "labels": str(labels_dir),
        "gold": str(gold_path),
        "gold_columns": mapping,
        "not_ok_counted_as": "predicted 0 (no violation flagged)",
        "per_policy": {pid: asdict(s) for pid, s in per_policy.items()},
        "multi_policy_accuracy": _ratio(sum(all(v) for v in complete), len(complete)),
        "multi_policy_items": len(complete),
        "micro_f1": micro.f1,
        "macro_f1": sum(f1s) / len(f1s) if f1s else None,
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def to_markdown(report: dict[str, Any]) -> str:
    lines = [
        "| policy | support | positives | precision | recall | F1 | accuracy | not ok | "
        "tp | fp | fn | tn |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for pid, s in report["per_policy"].items():
        lines.append(
            f"| {pid} | {s['support']} | {s['positives']} | {_fmt(s['precision'])} | "
            f"{_fmt(s['recall'])} | {_fmt(s['f1'])} | {_fmt(s['accuracy'])} | {s['not_ok']} | "
            f"{s['tp']} | {s['fp']} | {s['fn']} | {s['tn']} |"
        )
    lines += [
        "",
        f"multi-policy accuracy: {_fmt(report['multi_policy_accuracy'])} "
        f"over {report['multi_policy_items']} items with gold for every policy",
        f"micro F1: {_fmt(report['micro_f1'])}, macro F1: {_fmt(report['macro_f1'])}",
        f"rows not ok are counted as {report['not_ok_counted_as']}",
    ]
    return "\n".join(lines)
