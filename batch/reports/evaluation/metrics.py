"""Binary classification metrics with undefined values kept undefined, and a seeded bootstrap.

Precision (no predicted positives), recall (no gold positives) and F1 (neither) are ``None``
where undefined, never a silent 0; F1 is 2TP / (2TP + FP + FN), as scikit-learn computes it.
95% intervals come from a seeded bootstrap over items: each resample draws items with
replacement and scores every policy on the same draw, so the interval of multi-policy
accuracy is consistent with the per-policy ones. Resamples where a metric is undefined are
left out of that metric's interval.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

METRICS = ("precision", "recall", "f1", "accuracy")
DEFAULT_RESAMPLES = 1000
_RESAMPLES_PER_BLOCK = 50  # bounds memory: a block is 50 x items counts


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
    ci95: dict[str, list[float] | None] = field(default_factory=dict)


def ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def score(predicted: list[int], gold: list[int], not_ok: int, policy_id: str) -> PolicyScores:
    """Binary metrics; precision/recall/F1 are None when undefined (no predicted/gold positives)."""
    tp = sum(1 for p, g in zip(predicted, gold, strict=True) if p == 1 and g == 1)
    fp = sum(1 for p, g in zip(predicted, gold, strict=True) if p == 1 and g == 0)
    fn = sum(1 for p, g in zip(predicted, gold, strict=True) if p == 0 and g == 1)
    tn = len(gold) - tp - fp - fn
    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    # 2TP / (2TP + FP + FN), as scikit-learn computes it: 0 when there are errors but no
    # true positive, undefined only when there is no positive at all, predicted or gold.
    f1 = ratio(2 * tp, 2 * tp + fp + fn)
    return PolicyScores(
        policy_id, len(gold), tp + fn, tp, fp, fn, tn, not_ok,
        precision, recall, f1, ratio(tp + tn, len(gold)),
    )  # fmt: skip


def _metrics_from_counts(tp, fp, fn, tn) -> dict[str, np.ndarray]:
    """Vectorised metrics over resamples; NaN where a metric is undefined."""
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        recall = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
        total = tp + fp + fn + tn
        accuracy = np.where(total > 0, (tp + tn) / total, np.nan)
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": accuracy}


def _interval(values: list[np.ndarray]) -> list[float] | None:
    joined = np.concatenate(values) if values else np.array([])
    joined = joined[~np.isnan(joined)]
    if joined.size == 0:
        return None
    low, high = np.percentile(joined, [2.5, 97.5])
    return [float(low), float(high)]


def _score_block(
    counts: np.ndarray,
    cells: dict[str, dict[str, np.ndarray]],
    draws: dict[str, dict[str, list[np.ndarray]]],
) -> list[np.ndarray]:
    """Every policy's (and the micro) metrics on one block of resamples; the F1s per policy."""
    micro = {k: 0.0 for k in ("tp", "fp", "fn", "tn")}
    f1s = []
    for pid, policy_cells in cells.items():
        c = {k: counts @ v.astype(np.float64) for k, v in policy_cells.items()}
        for k in micro:
            micro[k] = micro[k] + c[k]
        values = _metrics_from_counts(c["tp"], c["fp"], c["fn"], c["tn"])
        for m in METRICS:
            draws[pid][m].append(values[m])
        f1s.append(values["f1"])
    values = _metrics_from_counts(micro["tp"], micro["fp"], micro["fn"], micro["tn"])
    for m in METRICS:
        draws["micro"][m].append(values[m])
    return f1s


def bootstrap(
    predicted: dict[str, np.ndarray],
    gold: dict[str, np.ndarray],
    resamples: int,
    seed: int,
) -> dict[str, Any]:
    """Percentile intervals for every metric, resampling items (rows of the aligned arrays).

    ``predicted[pid]`` and ``gold[pid]`` are aligned over the same items; gold is -1 where an
    item has no gold label for that policy (left out for that policy only).
    """
    policies = sorted(predicted)
    n = len(next(iter(predicted.values()))) if predicted else 0
    if n == 0 or resamples <= 0:
        return {"resamples": 0, "seed": seed, "per_policy": {}}
    draws: dict[str, dict[str, list[np.ndarray]]] = {
        pid: {m: [] for m in METRICS} for pid in [*policies, "micro"]
    }
    macro: list[np.ndarray] = []
    multi: list[np.ndarray] = []
    rng = np.random.default_rng(seed)
    cells = {
        pid: {
            "tp": (predicted[pid] == 1) & (gold[pid] == 1),
            "fp": (predicted[pid] == 1) & (gold[pid] == 0),
            "fn": (predicted[pid] == 0) & (gold[pid] == 1),
            "tn": (predicted[pid] == 0) & (gold[pid] == 0),
        }
        for pid in policies
    }
    complete = np.all([gold[p] >= 0 for p in policies], axis=0)
    all_right = complete & np.all([predicted[p] == gold[p] for p in policies], axis=0)
    done = 0
    while done < resamples:
        block = min(_RESAMPLES_PER_BLOCK, resamples - done)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=block).astype(np.float64)
        f1s = _score_block(counts, cells, draws)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: no macro F1
            macro.append(np.nanmean(np.vstack(f1s), axis=0) if f1s else np.array([]))
            total = counts @ complete.astype(np.float64)
            multi.append(
                np.where(total > 0, (counts @ all_right.astype(np.float64)) / total, np.nan)
            )
        done += block
    return {
        "resamples": resamples,
        "seed": seed,
        "per_policy": {pid: {m: _interval(draws[pid][m]) for m in METRICS} for pid in policies},
        "micro_f1": _interval(draws["micro"]["f1"]),
        "macro_f1": _interval(macro),
        "multi_policy_accuracy": _interval(multi),
    }
