"""Labels against gold: per-policy precision, recall, F1, and the rows that never got a verdict.

Rows whose status is not ``ok`` are never dropped: they count as predicted non-violating (the
job flagged nothing) and are reported separately as ``not_ok``. Gold labels that are missing
(null) exclude that row for that policy only. Metrics and intervals: ``reports.metrics``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from batch.errors import UsageError
from batch.flow.read import parquet_pattern
from batch.output.labels import latest_per, require_table
from batch.output.table import reading
from batch.reports.evaluation.metrics import (
    DEFAULT_RESAMPLES,
    PolicyScores,
    bootstrap,
    ratio,
    score,
)
from batch.reports.evaluation.score_metrics import score_quality


def latest_labels_by_id(labels_dir: str | Path) -> pl.DataFrame:
    """One row per (id, policy_id) of the table's current version: the most recent one
    (``score`` null where the table predates scores)."""
    with reading(labels_dir):
        labels = require_table(labels_dir).scan()
        if "score" not in labels.collect_schema().names():
            labels = labels.with_columns(pl.lit(None, pl.Float64).alias("score"))
        labels = labels.select("id", "policy_id", "status", "violation", "score", "labelled_at")
        return latest_per(labels, ["id", "policy_id"]).collect()


def _gold_column(gold: pl.DataFrame, policy_id: str) -> str | None:
    """The gold column named like the policy, or else the one that differs only in case."""
    if policy_id in gold.columns:
        return policy_id
    matches = [c for c in gold.columns if c.lower() == policy_id.lower()]
    return matches[0] if len(matches) == 1 else None


def _mapping(
    policy_ids: list[str], gold: pl.DataFrame, given: dict[str, str] | None, where: str
) -> dict[str, str]:
    """The gold column of each policy: as given, else found by name."""
    mapping = dict(given or {})
    for pid in policy_ids:
        if pid not in mapping and (column := _gold_column(gold, pid)) is not None:
            mapping[pid] = column
    if not mapping:
        raise UsageError(
            f"no gold column for any of the policies {policy_ids}; pass --gold-column POLICY=COL"
        )
    unknown = sorted(set(mapping) - set(policy_ids))
    if unknown:
        raise UsageError(f"no labels for policy {', '.join(unknown)} in {where}")
    return mapping


def _aligned(
    items: pl.DataFrame, gold: pl.DataFrame, mine: pl.DataFrame, column: str, id_column: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predictions, gold (-1: unknown or not labelled) and ok flags of one policy, per item."""
    joined = items.join(
        gold.select(pl.col(id_column).alias("id"), pl.col(column).alias("gold")).unique(
            "id", keep="first"
        ),
        on="id",
        how="left",
    ).join(mine.select("id", "status", "violation", "score"), on="id", how="left")
    labelled = joined["status"].is_not_null()
    ok = (joined["status"] == "ok").fill_null(False)
    pred = (ok & joined["violation"].fill_null(False)).cast(pl.Int8).to_numpy()
    truth = joined["gold"].cast(pl.Int8, strict=False).fill_null(-1).to_numpy()
    truth = np.where(labelled.to_numpy(), truth, -1)  # not labelled: not scored
    scores = joined["score"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    return pred, truth, ok.to_numpy(), scores


def _summary(
    per_policy: dict[str, PolicyScores], pred: dict[str, np.ndarray], gold: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Across policies: multi-policy accuracy (every policy right), micro and macro F1."""
    has_all = np.all([gold[p] >= 0 for p in gold], axis=0)
    right = np.all([pred[p] == gold[p] for p in gold], axis=0)
    tp = sum(s.tp for s in per_policy.values())
    fp = sum(s.fp for s in per_policy.values())
    fn = sum(s.fn for s in per_policy.values())
    micro = score([1] * tp + [1] * fp + [0] * fn, [1] * tp + [0] * fp + [1] * fn, 0, "micro")
    f1s = [s.f1 for s in per_policy.values() if s.f1 is not None]
    return {
        "multi_policy_accuracy": ratio(int((has_all & right).sum()), int(has_all.sum())),
        "multi_policy_items": int(has_all.sum()),
        "micro_f1": micro.f1,
        "macro_f1": sum(f1s) / len(f1s) if f1s else None,
    }


def evaluate(
    labels_dir: str | Path,
    gold_path: str | Path,
    gold_columns: dict[str, str] | None = None,
    id_column: str = "id",
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    targets: tuple[float | None, float | None] = (None, None),
) -> dict[str, Any]:
    """Score every policy found in the labels that has a gold column; where labels have a
    score, also its ranking, calibration and the threshold meeting ``targets`` (recall,
    precision)."""
    labels = latest_labels_by_id(labels_dir)
    gold = pl.read_parquet(parquet_pattern(gold_path)).with_columns(
        pl.col(id_column).cast(pl.String)
    )
    mapping = _mapping(
        sorted(labels["policy_id"].unique().to_list()), gold, gold_columns, str(labels_dir)
    )
    items = (
        labels.filter(pl.col("policy_id").is_in(list(mapping)))
        .select("id")
        .unique()
        .join(gold.select(pl.col(id_column).alias("id")).unique(), on="id", how="inner")
        .sort("id")
    )
    per_policy: dict[str, PolicyScores] = {}
    quality: dict[str, dict[str, Any]] = {}
    aligned_pred: dict[str, np.ndarray] = {}
    aligned_gold: dict[str, np.ndarray] = {}
    for pid, column in sorted(mapping.items()):
        if column not in gold.columns:
            raise UsageError(f"gold file {gold_path} has no column {column!r}")
        mine = labels.filter(pl.col("policy_id") == pid)
        pred, truth, ok, scores = _aligned(items, gold, mine, column, id_column)
        aligned_pred[pid], aligned_gold[pid] = pred, truth
        keep = truth >= 0
        per_policy[pid] = score(
            pred[keep].tolist(), truth[keep].tolist(), int((~ok & keep).sum()), pid
        )
        scored = keep & ok & ~np.isnan(scores)
        quality[pid] = score_quality(scores[scored], truth[scored], *targets)
    intervals = bootstrap(aligned_pred, aligned_gold, resamples, seed)
    for pid, scores in per_policy.items():
        scores.ci95 = intervals["per_policy"].get(pid, {})
    return {
        "labels": str(labels_dir),
        "gold": str(gold_path),
        "gold_columns": mapping,
        "not_ok_counted_as": "predicted 0 (no violation flagged)",
        "per_policy": {pid: {**asdict(s), **quality[pid]} for pid, s in per_policy.items()},
        **_summary(per_policy, aligned_pred, aligned_gold),
        "ci95": _ci95(intervals, seed),
    }


def _ci95(intervals: dict[str, Any], seed: int) -> dict[str, Any]:
    """The across-policy intervals, and how they were drawn."""
    return {
        "method": "percentile bootstrap over items",
        "resamples": intervals["resamples"],
        "seed": seed,
        **{k: intervals.get(k) for k in ("multi_policy_accuracy", "micro_f1", "macro_f1")},
    }
