"""How good the score is against gold: ranking (ROC AUC, PR AUC), operating points, calibration.

Scores are read as P(violation); items without a score (status not ok, reused from a run
without scores) are left out and counted. ROC AUC is the Mann-Whitney probability that a
violating item outranks a non-violating one (ties count half); PR AUC is average precision
(precision at each positive's rank, averaged, as scikit-learn computes it); calibration is the
expected calibration error over ten equal-width bins of the score.
"""

from __future__ import annotations

from typing import Any

import numpy as np

CALIBRATION_BINS = 10
CURVE_POINTS = 101  # a curve is kept at most this many points in the JSON


def roc_auc(scores: np.ndarray, truth: np.ndarray) -> float | None:
    positives, negatives = int(truth.sum()), int((truth == 0).sum())
    if not positives or not negatives:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = ((ends - counts + ends + 1) / 2)[inverse]  # average rank over ties
    rank_sum = ranks[truth == 1].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


def precision_recall(scores: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Precision and recall at every distinct threshold (flag when score >= threshold)."""
    order = np.argsort(-scores, kind="mergesort")
    ranked, hits = scores[order], truth[order]
    last = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]  # end of each tie group
    tp = np.cumsum(hits)[last]
    flagged = last + 1
    return {
        "threshold": ranked[last],
        "precision": tp / flagged,
        "recall": tp / max(1, int(truth.sum())),
    }


def pr_auc(curve: dict[str, np.ndarray], positives: int) -> float | None:
    if not positives:
        return None
    recall = np.r_[0.0, curve["recall"]]
    return float(np.sum(np.diff(recall) * curve["precision"]))


def operating_point(
    curve: dict[str, np.ndarray], target_recall: float | None, target_precision: float | None
) -> dict[str, Any] | None:
    """The highest threshold whose recall meets the target, or the lowest whose precision does
    (the most recall at that precision); None if no threshold meets it."""
    if target_recall is not None:
        meets = np.flatnonzero(curve["recall"] >= target_recall)
        index = int(meets[0]) if len(meets) else None
        target = {"target_recall": target_recall}
    elif target_precision is not None:
        meets = np.flatnonzero(curve["precision"] >= target_precision)
        index = int(meets[-1]) if len(meets) else None
        target = {"target_precision": target_precision}
    else:
        return None
    if index is None:
        return {**target, "threshold": None}
    return {
        **target,
        "threshold": float(curve["threshold"][index]),
        "precision": float(curve["precision"][index]),
        "recall": float(curve["recall"][index]),
    }


def calibration(scores: np.ndarray, truth: np.ndarray) -> tuple[float, list[dict[str, Any]]]:
    """Expected calibration error and the reliability diagram's bins."""
    edges = np.linspace(0, 1, CALIBRATION_BINS + 1)
    which = np.clip(np.digitize(scores, edges[1:-1]), 0, CALIBRATION_BINS - 1)
    bins, error = [], 0.0
    for b in range(CALIBRATION_BINS):
        inside = which == b
        count = int(inside.sum())
        if not count:
            continue
        mean, observed = float(scores[inside].mean()), float(truth[inside].mean())
        error += count / len(scores) * abs(mean - observed)
        bins.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": count,
                     "mean_score": mean, "violating": observed})  # fmt: skip
    return error, bins


def _thinned(curve: dict[str, np.ndarray]) -> dict[str, list[float]]:
    keep = np.unique(np.linspace(0, len(curve["threshold"]) - 1, CURVE_POINTS).astype(int))
    return {name: [round(float(v), 5) for v in values[keep]] for name, values in curve.items()}


def score_quality(
    scores: np.ndarray,
    truth: np.ndarray,
    target_recall: float | None = None,
    target_precision: float | None = None,
) -> dict[str, Any]:
    """Everything ``eval`` says about one policy's scores (items with a score and gold)."""
    scores, truth = np.asarray(scores, dtype=float), np.asarray(truth, dtype=int)
    if not len(scores):
        return {"scored": 0, "roc_auc": None, "pr_auc": None, "ece": None}
    curve = precision_recall(scores, truth)
    ece, bins = calibration(scores, truth)
    return {
        "scored": len(scores),
        "roc_auc": roc_auc(scores, truth),
        "pr_auc": pr_auc(curve, int(truth.sum())),
        "ece": ece,
        "operating_point": operating_point(curve, target_recall, target_precision),
        "reliability": bins,
        "pr_curve": _thinned(curve),
    }
