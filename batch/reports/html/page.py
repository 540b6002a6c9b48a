"""``safeguard-batch report``: one self-contained HTML page per output, for people.

Policy writers and T&S leads read results, not Parquet. The page holds everything inline
(CSS, SVG charts; no script, no font, no image file) and forbids itself any network access
with a Content-Security-Policy, so it opens on an air-gapped laptop exactly as it was written.
"""

from __future__ import annotations

import datetime as dt
from html import escape
from pathlib import Path
from typing import Any

from batch.reports.html.changes import last_run_changes
from batch.reports.html.data import table_summary
from batch.reports.html.examples import policy_examples
from batch.reports.html.review import changes_section, eval_section, relabel_section
from batch.reports.html.runs import read_diffs, read_runs
from batch.reports.html.sections import overview, policy_section, runs_section

# Nothing may be fetched: styles and images only from the page itself.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#1a202c;padding:0 1em}
h1{font-size:1.5em}h2{border-bottom:1px solid #cbd5e0;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
td,th{border:1px solid #e2e8f0;padding:.2em .5em;text-align:right;vertical-align:top}
th{background:#f7fafc}table.examples td,table.examples th{text-align:left}
table.examples td{max-width:32em;overflow-wrap:anywhere}
.scroll{overflow-x:auto;max-width:100%}table.wide{font-size:.75em}h4{margin:.8em 0 .2em}
.big{font-size:1.1em}.note{color:#4a5568;font-size:.85em}
code{background:#edf2f7;padding:0 .2em}small{color:#4a5568}nav a{margin-right:1em}
"""


def build_report(
    output: str | Path,
    gold: str | Path | None = None,
    gold_columns: dict[str, str] | None = None,
    id_column: str = "id",
    threshold: float = 0.5,
) -> dict[str, Any]:
    """Everything the page shows, as data (also what ``--json`` writes)."""
    runs, bad_runs = read_runs(output)
    diffs, bad_diffs = read_diffs(output)
    evaluation = None
    if gold is not None:
        from batch.reports.evaluation.evaluate import evaluate

        evaluation = evaluate(output, gold, gold_columns, id_column)
    summary = table_summary(output)
    # the text column the newest run read, to show examples' content from their source files
    text_column = next((r["text_column"] for r in reversed(runs) if r["text_column"]), "text")
    policy_ids = [policy["policy_id"] for policy in summary["policies"]]
    examples = policy_examples(output, policy_ids, threshold, text_column) if policy_ids else {}
    for policy in summary["policies"]:
        policy["examples"] = examples.get(policy["policy_id"], [])
    return {
        "output": str(output),
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "threshold": threshold,
        **summary,
        "changes": last_run_changes(output) if summary["policies"] else None,
        "runs": runs,
        "diffs": diffs,
        "eval": evaluation,
        "unreadable": bad_runs + bad_diffs,
    }


def _header(data: dict[str, Any]) -> str:
    nav = " ".join(
        f'<a href="#policy-{escape(p["policy_id"])}">{escape(p["policy_id"])}</a>'
        for p in data["policies"]
    )
    return (
        '<section id="overview">'
        f"<h1>safeguard-batch report: <code>{escape(data['output'])}</code></h1>"
        f"<p>Table version {data['table_version']} · {len(data['runs'])} runs · generated "
        f"{escape(data['generated_at'])}</p><nav>{nav}</nav>"
        + overview(data["policies"])
        + "</section>"
    )


def _unreadable(data: dict[str, Any]) -> str:
    if not data["unreadable"]:
        return ""
    items = "".join(f"<li>{escape(line)}</li>" for line in data["unreadable"])
    head = '<section id="unreadable"><h2>Files that could not be read</h2>'
    return f"{head}<ul>{items}</ul></section>"


def render_html(data: dict[str, Any]) -> str:
    """The page, self-contained."""
    body = [_header(data)]
    if not data["policies"]:
        body.append("<p>The table holds no labels yet.</p>")
    body += [policy_section(policy, data["threshold"]) for policy in data["policies"]]
    body += [
        changes_section(data["changes"]),
        runs_section(data["runs"]),
        relabel_section(data["diffs"]),
        eval_section(data["eval"]),
        _unreadable(data),
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>safeguard-batch report: {escape(data['output'])}</title>"
        f"<style>{STYLE}</style></head><body>" + "".join(body) + "</body></html>"
    )


def write_report(
    output: str | Path, html_path: str | Path, gold: str | Path | None = None, **options: Any
) -> dict[str, Any]:
    """Build the page for ``output`` and write it atomically to ``html_path``."""
    from batch.output.write import write_text_atomic

    data = build_report(output, gold, **options)
    write_text_atomic(html_path, render_html(data))
    return data
