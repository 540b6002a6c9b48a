"""Labels against gold: per-policy precision, recall, F1, and the rows that never got a verdict.

Rows whose status is not ``ok`` are never dropped: they count as predicted non-violating (the
job flagged nothing) and are reported separately as ``not_ok``. Gold labels that are missing
(null) exclude that row for that policy only. Precision (no predicted positives), recall (no
gold positives) and F1 (neither) are ``None`` where undefined, never a silent 0; F1 is
2TP / (2TP + FP + FN), as scikit-learn computes it.

95% intervals come from a seeded bootstrap over items: each resample draws items with
replacement and scores every policy on the same draw, so the interval of multi-policy
accuracy is consistent with the per-policy ones. Resamples where a metric is undefined are
left out of that metric's interval.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

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


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def score(predicted: list[int], gold: list[int], not_ok: int, policy_id: str) -> PolicyScores:
    """Binary metrics; precision/recall/F1 are None when undefined (no predicted/gold positives)."""
    tp = sum(1 for p, g in zip(predicted, gold, strict=True) if p == 1 and g == 1)
    fp = sum(1 for p, g in zip(predicted, gold, strict=True) if p == 1 and g == 0)
    fn = sum(1 for p, g in zip(predicted, gold, strict=True) if p == 0 and g == 1)
    tn = len(gold) - tp - fp - fn
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    # 2TP / (2TP + FP + FN), as scikit-learn computes it: 0 when there are errors but no
    # true positive, undefined only when there is no positive at all, predicted or gold.
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
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
    draws: dict[str, dict[str, list[np.ndarray]]] = {
        pid: {m: [] for m in METRICS} for pid in [*policies, "micro"]
    }
    macro: list[np.ndarray] = []
    multi: list[np.ndarray] = []
    if n == 0 or resamples <= 0:
        return {"resamples": 0, "seed": seed, "per_policy": {}}
    rng = np.random.default_rng(seed)
    masks = {pid: gold[pid] >= 0 for pid in policies}
    cells = {
        pid: {
            "tp": (predicted[pid] == 1) & (gold[pid] == 1),
            "fp": (predicted[pid] == 1) & (gold[pid] == 0),
            "fn": (predicted[pid] == 0) & (gold[pid] == 1),
            "tn": (predicted[pid] == 0) & (gold[pid] == 0),
        }
        for pid in policies
    }
    complete = np.all([masks[p] for p in policies], axis=0)
    all_right = complete & np.all([predicted[p] == gold[p] for p in policies], axis=0)
    done = 0
    while done < resamples:
        block = min(_RESAMPLES_PER_BLOCK, resamples - done)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=block).astype(np.float64)
        micro = {k: 0.0 for k in ("tp", "fp", "fn", "tn")}
        f1s = []
        for pid in policies:
            c = {k: counts @ v.astype(np.float64) for k, v in cells[pid].items()}
            for k in micro:
                micro[k] = micro[k] + c[k]
            values = _metrics_from_counts(c["tp"], c["fp"], c["fn"], c["tn"])
            for m in METRICS:
                draws[pid][m].append(values[m])
            f1s.append(values["f1"])
        values = _metrics_from_counts(micro["tp"], micro["fp"], micro["fn"], micro["tn"])
        for m in METRICS:
            draws["micro"][m].append(values[m])
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


def _gold_column(gold: pl.DataFrame, policy_id: str) -> str | None:
    """The gold column named like the policy, or else the one that differs only in case."""
    if policy_id in gold.columns:
        return policy_id
    matches = [c for c in gold.columns if c.lower() == policy_id.lower()]
    return matches[0] if len(matches) == 1 else None


def evaluate(
    labels_dir: str | Path,
    gold_path: str | Path,
    gold_columns: dict[str, str] | None = None,
    id_column: str = "id",
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """Score every policy found in the labels that has a gold column."""
    labels = latest_labels(labels_dir)
    source = Path(gold_path)
    pattern = str(source / "**" / "*.parquet") if source.is_dir() else str(source)
    gold = pl.read_parquet(pattern).with_columns(pl.col(id_column).cast(pl.String))
    policy_ids = sorted(labels["policy_id"].unique().to_list())
    mapping = dict(gold_columns or {})
    for pid in policy_ids:
        if pid not in mapping and (column := _gold_column(gold, pid)) is not None:
            mapping[pid] = column
    if not mapping:
        raise ValueError(
            f"no gold column for any of the policies {policy_ids}; pass --gold-column POLICY=COL"
        )
    unknown = sorted(set(mapping) - set(policy_ids))
    if unknown:
        raise ValueError(f"no labels for policy {', '.join(unknown)} in {labels_dir}")
    per_policy: dict[str, PolicyScores] = {}
    items = (
        labels.filter(pl.col("policy_id").is_in(list(mapping)))
        .select("id")
        .unique()
        .join(gold.select(pl.col(id_column).alias("id")).unique(), on="id", how="inner")
        .sort("id")
    )
    aligned_pred: dict[str, np.ndarray] = {}
    aligned_gold: dict[str, np.ndarray] = {}
    for pid, column in sorted(mapping.items()):
        if column not in gold.columns:
            raise ValueError(f"gold file {gold_path} has no column {column!r}")
        mine = labels.filter(pl.col("policy_id") == pid)
        joined = items.join(
            gold.select(pl.col(id_column).alias("id"), pl.col(column).alias("gold")).unique(
                "id", keep="first"
            ),
            on="id",
            how="left",
        ).join(mine.select("id", "status", "violation"), on="id", how="left")
        labelled = joined["status"].is_not_null()
        ok = (joined["status"] == "ok").fill_null(False)
        pred = (ok & joined["violation"].fill_null(False)).cast(pl.Int8).to_numpy()
        truth = joined["gold"].cast(pl.Int8, strict=False).fill_null(-1).to_numpy()
        truth = np.where(labelled.to_numpy(), truth, -1)  # not labelled: not scored
        aligned_pred[pid], aligned_gold[pid] = pred, truth
        keep = truth >= 0
        per_policy[pid] = score(
            pred[keep].tolist(), truth[keep].tolist(), int((~ok.to_numpy() & keep).sum()), pid
        )
    has_all = np.all([aligned_gold[p] >= 0 for p in aligned_gold], axis=0)
    right = np.all([aligned_pred[p] == aligned_gold[p] for p in aligned_gold], axis=0)
    tp = sum(s.tp for s in per_policy.values())
    fp = sum(s.fp for s in per_policy.values())
    fn = sum(s.fn for s in per_policy.values())
    micro = score([1] * tp + [1] * fp + [0] * fn, [1] * tp + [0] * fp + [1] * fn, 0, "micro")
    f1s = [s.f1 for s in per_policy.values() if s.f1 is not None]
    intervals = bootstrap(aligned_pred, aligned_gold, resamples, seed)
    for pid, scores in per_policy.items():
        scores.ci95 = intervals["per_policy"].get(pid, {})
    return {
        "labels": str(labels_dir),
        "gold": str(gold_path),
        "gold_columns": mapping,
        "not_ok_counted_as": "predicted 0 (no violation flagged)",
        "per_policy": {pid: asdict(s) for pid, s in per_policy.items()},
        "multi_policy_accuracy": _ratio(int((has_all & right).sum()), int(has_all.sum())),
        "multi_policy_items": int(has_all.sum()),
        "micro_f1": micro.f1,
        "macro_f1": sum(f1s) / len(f1s) if f1s else None,
        "ci95": {
            "method": "percentile bootstrap over items",
            "resamples": intervals["resamples"],
            "seed": seed,
            "multi_policy_accuracy": intervals.get("multi_policy_accuracy"),
            "micro_f1": intervals.get("micro_f1"),
            "macro_f1": intervals.get("macro_f1"),
        },
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _with_ci(value: float | None, interval: list[float] | None) -> str:
    if value is None:
        return "n/a"
    if not interval:
        return f"{value:.3f}"
    return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def to_markdown(report: dict[str, Any]) -> str:
    lines = [
        "| policy | support | positives | precision | recall | F1 | accuracy | not ok | "
        "tp | fp | fn | tn |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for pid, s in report["per_policy"].items():
        ci = s.get("ci95") or {}
        lines.append(
            f"| {pid} | {s['support']} | {s['positives']} | "
            f"{_with_ci(s['precision'], ci.get('precision'))} | "
            f"{_with_ci(s['recall'], ci.get('recall'))} | {_with_ci(s['f1'], ci.get('f1'))} | "
            f"{_with_ci(s['accuracy'], ci.get('accuracy'))} | {s['not_ok']} | "
            f"{s['tp']} | {s['fp']} | {s['fn']} | {s['tn']} |"
        )
    ci = report.get("ci95") or {}
    lines += [
        "",
        f"multi-policy accuracy: "
        f"{_with_ci(report['multi_policy_accuracy'], ci.get('multi_policy_accuracy'))} "
        f"over {report['multi_policy_items']} items with gold for every policy",
        f"micro F1: {_with_ci(report['micro_f1'], ci.get('micro_f1'))}, "
        f"macro F1: {_with_ci(report['macro_f1'], ci.get('macro_f1'))}",
        f"[brackets]: 95% {ci.get('method', 'bootstrap')} intervals, "
        f"{ci.get('resamples', 0)} resamples, seed {ci.get('seed', 0)}",
        f"rows not ok are counted as {report['not_ok_counted_as']}",
    ]
    return "\n".join(lines)


def to_png(report: dict[str, Any], path: str | Path) -> None:
    """Confusion matrices and a precision/recall/F1 chart with intervals, as one PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ValueError("the PNG needs matplotlib: pip install 'safeguard-batch[plot]'") from exc
    policies = list(report["per_policy"].items())
    columns = max(1, len(policies))
    fig, axes = plt.subplots(2, columns, figsize=(3.2 * columns + 1, 6.4), squeeze=False)
    for index, (pid, s) in enumerate(policies):
        ax = axes[0][index]
        matrix = np.array([[s["tn"], s["fp"]], [s["fn"], s["tp"]]])
        ax.imshow(matrix, cmap="Blues")
        for (r, c), v in np.ndenumerate(matrix):
            ax.text(c, r, str(v), ha="center", va="center",
                    color="white" if v > matrix.max() / 2 else "black")  # fmt: skip
        ax.set_xticks([0, 1], ["pred 0", "pred 1"])
        ax.set_yticks([0, 1], ["gold 0", "gold 1"])
        ax.set_title(f"{pid} (n={s['support']}, not ok {s['not_ok']})", fontsize=9)
    bars = fig.add_subplot(2, 1, 2)
    for ax in axes[1]:
        ax.remove()
    width = 0.27
    for offset, metric in enumerate(("precision", "recall", "f1")):
        xs, heights, errors = [], [], [[], []]
        for index, (_, s) in enumerate(policies):
            value = s[metric]
            interval = (s.get("ci95") or {}).get(metric)
            xs.append(index + (offset - 1) * width)
            heights.append(value or 0.0)
            low, high = interval if (interval and value is not None) else (value or 0, value or 0)
            errors[0].append(max(0.0, (value or 0) - low))
            errors[1].append(max(0.0, high - (value or 0)))
        bars.bar(xs, heights, width, yerr=errors, capsize=3, label=metric)
    bars.set_xticks(range(len(policies)), [pid for pid, _ in policies])
    bars.set_ylim(0, 1.05)
    bars.set_ylabel("score (95% bootstrap interval)")
    bars.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
