"""An evaluation report as a Markdown table, and as a PNG of confusion matrices and metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from batch.errors import UsageError


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
    lines += _score_lines(report)
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


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _score_lines(report: dict[str, Any]) -> list[str]:
    """The scores' table: ranking, calibration, and the operating point asked for."""
    scored = {pid: s for pid, s in report["per_policy"].items() if s.get("scored")}
    if not scored:
        return ["", "no scores in these labels (a run with --no-scores, or made before them)"]
    lines = [
        "",
        "| policy | scored | ROC AUC | PR AUC | ECE | operating point |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for pid, s in scored.items():
        point, where = s.get("operating_point"), ""
        if point:
            target = ", ".join(
                f"{k.split('_')[1]} >= {v}" for k, v in point.items() if "target" in k
            )
            where = (
                f"{target}: no threshold reaches it"
                if point["threshold"] is None
                else f"{target}: score >= {point['threshold']:.4f} (precision "
                f"{point['precision']:.3f}, recall {point['recall']:.3f})"
            )
        lines.append(
            f"| {pid} | {s['scored']} | {_number(s['roc_auc'])} | {_number(s['pr_auc'])} | "
            f"{_number(s['ece'])} | {where} |"
        )
    return lines


def to_png(report: dict[str, Any], path: str | Path) -> None:
    """Confusion matrices and a precision/recall/F1 chart with intervals, as one PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise UsageError("the PNG needs matplotlib: pip install 'safeguard-batch[plot]'") from exc
    policies = list(report["per_policy"].items())
    columns = max(1, len(policies))
    scored = [(pid, s) for pid, s in policies if s.get("scored")]
    rows = 3 if scored else 2
    fig, axes = plt.subplots(
        rows, columns, figsize=(max(3.2 * columns + 1, 8), 3.2 * rows), squeeze=False
    )
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
    for row in axes[1:]:
        for ax in row:
            ax.remove()
    bars = fig.add_subplot(rows, 1, 2)
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
    if scored:
        _score_curves(fig, rows, scored)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _score_curves(fig: Any, rows: int, scored: list[tuple[str, dict[str, Any]]]) -> None:
    """Precision/recall curves and the reliability diagram, every policy on each."""
    curves, reliability = fig.add_subplot(rows, 2, 5), fig.add_subplot(rows, 2, 6)
    for pid, s in scored:
        curve = s["pr_curve"]
        curves.plot(curve["recall"], curve["precision"], label=f"{pid} (AP {s['pr_auc'] or 0:.2f})")
        bins = s["reliability"]
        reliability.plot([b["mean_score"] for b in bins], [b["violating"] for b in bins],
                         marker="o", label=f"{pid} (ECE {s['ece']:.3f})")  # fmt: skip
    curves.set_xlabel("recall")
    curves.set_ylabel("precision")
    curves.set_xlim(0, 1.02)
    curves.set_ylim(0, 1.05)
    curves.legend(loc="lower left", fontsize=8)
    reliability.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    reliability.set_xlabel("mean score in bin")
    reliability.set_ylabel("share violating (gold)")
    reliability.legend(loc="upper left", fontsize=8)
