"""Train a prefilter and choose its threshold so that recall of violations meets a target.

Recall is what the prefilter can lose (a violation it scores low never reaches the model),
so the threshold is chosen on out-of-fold scores: each item is scored by a model that did
not see it (stratified k-fold, seeded). The *held-out* figures in the card go one step
further: for each fold, the threshold is picked from the other folds' scores only and then
applied to that fold, so the reported recall and escalation rate are what the procedure
achieves on data it did not tune on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from batch.policy.files import Policy
from batch.prefilter.features import (
    FeatureSpec,
    PrefilterError,
    document_frequencies,
    features,
    idf_from,
    term_counts,
)
from batch.prefilter.model import Prefilter

DEFAULT_C_GRID = (4.0, 16.0, 64.0)


def threshold_for_recall(positive_scores: np.ndarray, recall: float) -> float:
    """The highest threshold that keeps at least ``recall`` of these positives at or above it."""
    if positive_scores.size == 0:
        return 0.0
    ordered = np.sort(positive_scores)
    allowed_below = math.floor((1.0 - recall) * ordered.size + 1e-9)
    return float(ordered[min(allowed_below, ordered.size - 1)])


def _fit(counts: list, rows: np.ndarray, y: np.ndarray, c: float):
    from sklearn.linear_model import LogisticRegression

    part = [m[rows] for m in counts]
    idf = idf_from(document_frequencies(part), len(rows))
    model = LogisticRegression(C=c, class_weight="balanced", solver="liblinear", max_iter=1000)
    model.fit(features(part, idf), y[rows])
    return model.coef_.ravel().astype(np.float64), float(model.intercept_[0]), idf


def _score(counts: list, rows: np.ndarray, coef, intercept, idf) -> np.ndarray:
    logits = features([m[rows] for m in counts], idf) @ coef + intercept
    return 1.0 / (1.0 + np.exp(-np.asarray(logits).ravel()))


def _folds(y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedKFold

    assignment = np.zeros(len(y), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for index, (_, test) in enumerate(splitter.split(np.zeros(len(y)), y)):
        assignment[test] = index
    return assignment


def out_of_fold_scores(counts: list, y: np.ndarray, fold_of: np.ndarray, c: float) -> np.ndarray:
    scores = np.zeros(len(y))
    for fold in np.unique(fold_of):
        train, test = np.where(fold_of != fold)[0], np.where(fold_of == fold)[0]
        coef, intercept, idf = _fit(counts, train, y, c)
        scores[test] = _score(counts, test, coef, intercept, idf)
    return scores


@dataclass
class HeldOut:
    recall: float
    escalation: float
    fold_recalls: list[float]


def held_out(scores: np.ndarray, y: np.ndarray, fold_of: np.ndarray, recall: float) -> HeldOut:
    """Recall and escalation when each fold's threshold comes only from the other folds."""
    tp = fn = escalated = 0
    per_fold = []
    for fold in np.unique(fold_of):
        inside = fold_of == fold
        threshold = threshold_for_recall(scores[~inside & (y == 1)], recall)
        sent = scores[inside] >= threshold
        positives = y[inside] == 1
        fold_tp, fold_fn = int((sent & positives).sum()), int((~sent & positives).sum())
        tp, fn, escalated = tp + fold_tp, fn + fold_fn, escalated + int(sent.sum())
        per_fold.append(fold_tp / (fold_tp + fold_fn) if fold_tp + fold_fn else 1.0)
    return HeldOut(tp / (tp + fn) if tp + fn else 1.0, escalated / len(y), per_fold)


def train_prefilter(
    texts: list[str],
    labels: list[int],
    policy: Policy,
    recall: float = 0.99,
    folds: int = 5,
    seed: int = 0,
    c_grid: tuple[float, ...] = DEFAULT_C_GRID,
    source: dict[str, Any] | None = None,
    spec: FeatureSpec | None = None,
) -> Prefilter:
    """Fit on every row; pick C and the threshold by cross-validation; describe it in a card."""
    y = np.asarray(labels, dtype=np.int64)
    positives = int(y.sum())
    if positives < folds or len(y) - positives < folds:
        raise PrefilterError(
            f"need at least {folds} violating and {folds} non-violating rows to train and "
            f"cross-validate; got {positives} and {len(y) - positives}"
        )
    spec = spec or FeatureSpec()
    counts = [m.tocsr() for m in term_counts(texts, spec)]
    fold_of = _folds(y, folds, seed)
    grid = []
    for c in c_grid:
        scores = out_of_fold_scores(counts, y, fold_of, c)
        estimate = held_out(scores, y, fold_of, recall)
        grid.append((estimate.escalation, -estimate.recall, c, scores, estimate))
    escalation, _, best_c, scores, estimate = min(grid, key=lambda g: (g[0], g[1]))
    coef, intercept, idf = _fit(counts, np.arange(len(y)), y, best_c)
    threshold = threshold_for_recall(scores[y == 1], recall)
    card = {
        "policy_id": policy.id,
        "policy_version": policy.version,
        "policy_sha256": policy.sha256,
        "trained_at": datetime.now(timezone.utc).isoformat(),
        "source": source or {},
        "training_rows": len(y),
        "training_positives": positives,
        "features": spec.as_dict(),
        "model": {"kind": "logistic_regression", "C": best_c, "class_weight": "balanced"},
        "recall_target": recall,
        "threshold": threshold,
        "cross_validation": {"folds": folds, "seed": seed},
        "heldout_recall": estimate.recall,
        "heldout_recall_by_fold": estimate.fold_recalls,
        "escalation_fraction": estimate.escalation,
        # The same threshold on the out-of-fold scores it was chosen from (optimistic; what a
        # single cross-validated threshold is usually reported with).
        "oof_escalation_fraction": float((scores >= threshold).mean()),
        "c_grid": [
            {"C": c, "escalation_fraction": e.escalation, "heldout_recall": e.recall}
            for _, _, c, _, e in grid
        ],
    }
    return Prefilter(card, coef, intercept, idf)
