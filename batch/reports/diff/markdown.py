"""A diff report as Markdown, for a policy writer deciding whether to promote an edit."""

from __future__ import annotations

from typing import Any


def _cell(text: Any) -> str:
    return "" if text is None else str(text).replace("|", "\\|").replace("\n", " ")


def _order(outcome: str) -> tuple[int, str]:
    return (0 if outcome in ("0", "1") else 1, outcome)


def _flip_matrix(p: dict[str, Any]) -> list[str]:
    outcomes = sorted(
        set(p["matrix"]) | {b for row in p["matrix"].values() for b in row}, key=_order
    )
    lines = [
        "",
        "| old \\ new | " + " | ".join(outcomes) + " |",
        "|---" * (len(outcomes) + 1) + "|",
    ]
    for a in outcomes:
        cells = [str(p["matrix"].get(a, {}).get(b, 0)) for b in outcomes]
        lines.append(f"| **{a}** | " + " | ".join(cells) + " |")
    return lines


def _examples(p: dict[str, Any]) -> list[str]:
    if not p["examples"]:
        return []
    lines = [
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
    return lines


def _policy_section(p: dict[str, Any]) -> list[str]:
    lines = ["", f"## {p['policy_id']}", ""]
    for side in ("old", "new"):
        versions = "; ".join(
            f"version {v['policy_version']} ({v['policy_sha256'][:12]}), {v['model']}"
            for v in p[f"{side}_versions"]
        )
        lines.append(f"- {side}: {versions or 'no labels'}")
    if not p["shared"]:
        return [*lines, "- no rows in common"]
    lo, hi = p["flip_rate_ci95"]
    lines.append(
        f"- {p['shared']} rows in both ({p['only_old']} only in old, {p['only_new']} only "
        f"in new); **{p['flips']} flipped = {p['flip_rate']:.2%}** (95% CI {lo:.2%} to "
        f"{hi:.2%}); label flips where both are ok: {p['label_flips']} of {p['both_ok']}"
    )
    return lines + _flip_matrix(p) + _examples(p)


def to_markdown(report: dict[str, Any]) -> str:
    """The whole diff: what was compared, then a section per policy."""
    lines = ["# Label diff", ""]
    for side in ("old", "new"):
        if side in report:
            where = report[side].get("where") or {}
            narrowed = ", ".join(f"{k}={v}" for k, v in where.items()) or "all labels"
            version = report[side].get("version")
            at = "current version" if version is None else f"version {version}"
            lines.append(f"- **{side}**: `{report[side]['output']}` at {at} ({narrowed})")
    lines.append(f"- rows matched on: {', '.join(report['on'])}")
    for p in report["policies"]:
        lines += _policy_section(p)
    return "\n".join(lines) + "\n"
