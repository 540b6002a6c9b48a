"""The HTML report's review sections: what the last run changed, relabel flips with examples,
and eval against gold."""

from __future__ import annotations

from html import escape
from typing import Any

from batch.reports.html.sections import figure, pct, table


def _matrix(matrix: dict[str, dict[str, int]]) -> str:
    old = sorted(matrix)
    new = sorted({b for row in matrix.values() for b in row})
    rows = [[f"<b>{escape(a)}</b>", *[f"{matrix[a].get(b, 0):,}" for b in new]] for a in old]
    return table(["old ↓ / new →", *new], rows, "matrix")


def _example(example: dict[str, Any]) -> list[str]:
    def text(key: str) -> str:
        value = example.get(key)
        return "–" if value is None else escape(str(value))

    return [
        text("id"),
        f"{text('old')} → {text('new')}",
        text("text"),
        text("old_rationale"),
        text("new_rationale"),
    ]


def _diff_policy(run_id: str, policy: dict[str, Any]) -> str:
    pid = str(policy.get("policy_id"))
    key = f"diff.{run_id}.{pid}"
    head = (
        f"<h3>{escape(pid)}</h3><p>{figure(key + '.flips', policy.get('flips'))} flips of "
        f"{figure(key + '.shared', policy.get('shared'))} rows compared: "
        f"{pct(policy.get('flip_rate'), policy.get('flip_rate_ci95'))}</p>"
    )
    examples = policy.get("examples") or []
    shown = (
        table(
            ["id", "outcome", "content", "old rationale", "new rationale"],
            [_example(e) for e in examples],
            "examples",
        )  # fmt: skip
        if examples
        else "<p>No flipped examples.</p>"
    )
    return head + _matrix(policy.get("matrix") or {}) + shown


def changes_section(changes: dict[str, Any] | None) -> str:
    """Per policy, what the last run changed against the version before it began."""
    if not changes:
        return ""
    run_id = escape(str(changes.get("run_id")))
    head = '<section id="changes"><h2>What the last run changed</h2>'
    if changes.get("unavailable"):
        return (
            f"{head}<p>Version {changes['old_version']}, before run <code>{run_id}</code>, "
            f"cannot be read any more (vacuumed?): {escape(changes['unavailable'])}</p></section>"
        )
    rows, matrices = [], []
    for p in changes["policies"]:
        key = f"changes.{p['policy_id']}"
        rows.append(
            [
                escape(p["policy_id"]),
                figure(key + ".written", p["written"]),
                figure(key + ".new", p["new"]),
                figure(key + ".relabelled", p["relabelled"]),
                figure(key + ".flips", p["flips"]),
                pct(p["flip_rate"]),
                figure(key + ".removed", p["removed"]),
            ]  # fmt: skip
        )
        if p["matrix"]:
            matrices.append(f"<h3>{escape(p['policy_id'])}</h3>" + _matrix(p["matrix"]))
    headers = ["policy", "rows it wrote", "new rows", "relabelled", "flips",
               "flip rate (of relabelled)", "rows removed"]  # fmt: skip
    return (
        f"{head}<p>Run <code>{run_id}</code>: table version {changes['new_version']} against "
        f"version {changes['old_version']}, the previous run's last. Relabelled: rows "
        "it wrote that replaced a label; flips: those whose outcome (label, or status when not "
        "ok) changed.</p>" + table(headers, rows) + "".join(matrices) + "</section>"
    )


def relabel_section(diffs: list[dict[str, Any]]) -> str:
    """Each recent relabel's flip matrix and a sample of flips with both rationales."""
    if not diffs:
        return ""
    parts = ['<section id="relabels"><h2>Relabels</h2>']
    for diff in diffs:
        run_id = str(diff.get("run_id"))
        parts.append(f"<h3>Relabel run <code>{escape(run_id)}</code></h3>")
        for policy in diff.get("policies") or []:
            if isinstance(policy, dict):
                parts.append(_diff_policy(run_id, policy))
    return "".join(parts) + "</section>"


def _interval(scores: dict[str, Any], name: str) -> str:
    return pct(scores.get(name), (scores.get("ci95") or {}).get(name))


def eval_section(report: dict[str, Any] | None) -> str:
    """Precision, recall, F1 with bootstrap intervals and the confusion matrix, per policy."""
    if not report:
        return ""
    rows, matrices = [], []
    for pid, s in sorted(report.get("per_policy", {}).items()):
        key = f"eval.{pid}"
        rows.append(
            [
                escape(pid),
                figure(key + ".support", s["support"]),
                figure(key + ".precision", s["precision"], _interval(s, "precision")),
                figure(key + ".recall", s["recall"], _interval(s, "recall")),
                figure(key + ".f1", s["f1"], _interval(s, "f1")),
                f"{s['not_ok']:,}",
            ]  # fmt: skip
        )
        matrices.append(
            f"<h3>{escape(pid)}</h3>"
            + table(
                ["", "predicted 1", "predicted 0"],
                [
                    ["<b>gold 1</b>", f"{s['tp']:,}", f"{s['fn']:,}"],
                    ["<b>gold 0</b>", f"{s['fp']:,}", f"{s['tn']:,}"],
                ],
                "matrix",
            )  # fmt: skip
        )
    summary = table(["policy", "items", "precision", "recall", "F1", "not ok"], rows)
    gold = escape(str(report.get("gold")))
    return (
        '<section id="eval"><h2>Against gold</h2>'
        f"<p>Gold: <code>{gold}</code>; rows that are not ok "
        "count as predicted 0; 95% intervals by bootstrap over items.</p>"
        + summary
        + "".join(matrices)
        + "</section>"
    )
