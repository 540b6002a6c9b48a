"""The HTML report's sections, each a function from report data to an HTML fragment.

Every value that came from the data (policy ids, rationales, content, paths) is escaped; key
figures carry a ``data-figure`` attribute so tests (and scrapers) can read them back.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from batch.reports.html import svg


def _fmt(value: Any, spec: str = ",") -> str:
    """A number as ``spec`` says; anything else (a damaged manifest) as escaped text."""
    if value is None:
        return "–"
    if isinstance(value, float) and spec == ",":
        spec = ",.2f"
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return escape(str(value))


def pct(rate: float | None, interval: Sequence[float] | None = None) -> str:
    """A rate as a percentage (with its interval); anything else as escaped text."""
    if rate is None:
        return "–"
    text = _fmt(rate, ".2%")
    if interval:
        try:
            text += f" <small>[{interval[0]:.2%}, {interval[1]:.2%}]</small>"
        except (TypeError, ValueError, IndexError, KeyError):
            text += f" <small>{escape(str(interval))}</small>"
    return text


def figure(key: str, value: Any, shown: str | None = None) -> str:
    """A figure as shown, tagged with its key and raw value for tests and scrapers."""
    raw = escape("" if value is None else str(value))
    return f'<span data-figure="{escape(key)}" data-value="{raw}">{shown or _fmt(value)}</span>'


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    """Cells are HTML already (escaped by the caller)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    # the box scrolls sideways, never the page: a wide table stays inside a 1,280-px page
    return (
        f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _policy_head(policy: dict[str, Any]) -> str:
    pid = policy["policy_id"]
    versions = ", ".join(
        f"v{escape(str(v['version']))} <code>{escape(str(v['sha256'])[:12])}</code> "
        f"({v['rows']:,} rows)"
        for v in policy["versions"]
    )
    violation = policy["violation"]
    rate = pct(violation["rate"], violation["ci95"])
    return (
        f"<h2>Policy <code>{escape(pid)}</code></h2>"
        f'<p>Versions: {versions}</p><p class="big">'
        f"Rows {figure(f'{pid}.rows', policy['rows'])} · ok {figure(f'{pid}.ok', policy['ok'])}"
        f" · violations {figure(f'{pid}.violations', policy['violations'])} · violation rate "
        f"{figure(f'{pid}.violation_rate', violation['rate'], rate)}"
        "</p>"
    )


def _prefilter(policy: dict[str, Any]) -> str:
    pid, miss = policy["policy_id"], policy["audit_miss"]
    if not policy["prefiltered"] and not policy["audited"]:
        return "<p>No prefilter routed this policy's rows.</p>"
    return (
        f"<p>Prefilter: {figure(f'{pid}.prefiltered', policy['prefiltered'])} rows labelled 0 "
        f"without the model; {figure(f'{pid}.audited', policy['audited'])} audited by the model,"
        f" which found violations in {figure(f'{pid}.audit_misses', miss['count'])} of them: "
        f"audited miss rate {pct(miss['rate'], miss['ci95'])} (95% Wilson interval).</p>"
    )


EXAMPLE_KINDS = {
    "violation": "Highest-scored violations",
    "uncertain": "Most uncertain (score nearest the threshold)",
    "failure": "A sample of failures (no verdict; a rerun retries them)",
}


def _text(value: Any) -> str:
    return "–" if value is None else escape(str(value))


def _examples(pid: str, examples: list[dict[str, Any]], threshold: float) -> str:
    """The rows a reviewer reads first, by kind, every value escaped."""
    parts = ["<h3>Examples</h3>"]
    for kind, title in EXAMPLE_KINDS.items():
        rows = [e for e in examples if e.get("kind") == kind]
        parts.append(f"<h4>{escape(title)}: {figure(f'{pid}.examples.{kind}', len(rows))}</h4>")
        if not rows:
            parts.append("<p class=note>None.</p>")
            continue
        cells = [
            [
                _text(e.get("id")),
                _text(e.get("text")),
                _text(e.get("label") if e.get("status") == "ok" else e.get("status")),
                _fmt(e.get("score"), ".3f"),
                _text(e.get("note")),
            ]
            for e in rows
        ]
        parts.append(
            table(
                ["id", "content", "verdict", "score", "rationale or reasoning"], cells, "examples"
            )  # fmt: skip
        )
    parts.append(
        f"<p class=note>Content read back from the source file (truncated); a row whose text "
        f"changed since it was labelled is not shown. Threshold {threshold:g}.</p>"
    )
    return "".join(parts)


def _trend(pid: str, runs: list[dict[str, Any]]) -> str:
    """Violation and failure rates of the labels each run wrote, over runs."""
    if len(runs) < 2:
        return ""
    series = [
        ("violation rate", [(r["run_id"], r["violation_rate"]) for r in runs]),
        ("failure rate", [(r["run_id"], r["failure_rate"]) for r in runs]),
    ]
    rows = [
        [
            escape(str(r["run_id"])),
            figure(f"{pid}.run.{r['run_id']}.rows", r["rows"]),
            figure(
                f"{pid}.run.{r['run_id']}.violation_rate",
                r["violation_rate"],
                pct(r["violation_rate"]),
            ),
            figure(f"{pid}.run.{r['run_id']}.failures", r["failures"]),
        ]  # fmt: skip
        for r in runs
    ]
    return (
        "<h3>Trend across runs</h3>"
        + svg.line_chart(series, f"{pid} trend")
        + table(["run", "current rows it wrote", "violation rate", "failures"], rows)
        + "<p class=note>Among the current labels each run wrote (labels later replaced "
        "count for the run that replaced them).</p>"
    )


def policy_section(policy: dict[str, Any], threshold: float = 0.5) -> str:
    """A policy's figures: rows, rate, statuses, origins, prefilter, scores, examples, trend."""
    pid = policy["policy_id"]
    statuses = list(policy["statuses"].items())
    origins = list(policy["origins"].items())
    parts = [
        _policy_head(policy),
        "<h3>Status</h3>",
        svg.stacked_bar(statuses, f"{pid} statuses"),
        table(
            [name for name, _ in statuses],
            [[figure(f"{pid}.status.{name}", n) for name, n in statuses]],
        ),
        "<h3>Where labels came from</h3>",
        svg.stacked_bar(origins, f"{pid} origins"),
        table(
            [name for name, _ in origins],
            [[figure(f"{pid}.origin.{name}", n) for name, n in origins]],
        ),
        _prefilter(policy),
    ]
    if policy.get("score_histogram"):
        parts += [
            "<h3>Score</h3>",
            svg.histogram(policy["score_histogram"], f"{pid} scores", threshold),
            f"<p class=note>Rows per score bin of width {1 / len(policy['score_histogram']):g} "
            "(score: the model's probability of 1 at its verdict token); the dashed line is "
            "the threshold the most uncertain examples are measured from.</p>",
        ]
    parts.append(_examples(pid, policy.get("examples") or [], threshold))
    parts.append(_trend(pid, policy["runs"]))
    return f'<section class="policy" id="policy-{escape(pid)}">' + "".join(parts) + "</section>"


def overview(policies: list[dict[str, Any]]) -> str:
    """One line per policy: the figures a reader looks for first."""
    rows = []
    for p in policies:
        statuses = p["statuses"]
        failed = sum(statuses.get(s, 0) for s in ("parse_error", "truncated", "engine_error"))
        rows.append(
            [
                f'<a href="#policy-{escape(p["policy_id"])}">{escape(p["policy_id"])}</a>',
                f"{p['rows']:,}",
                pct(p["violation"]["rate"], p["violation"]["ci95"]),
                pct(p["ok"] / p["rows"] if p["rows"] else None),
                f"{failed:,}",
                f"{p['origins'].get('model', 0):,}",
                f"{p['prefiltered']:,}",
            ]  # fmt: skip
        )
    headers = ["policy", "rows", "violation rate [95%]", "ok", "failed (retryable)",
               "sent to the model", "prefiltered"]  # fmt: skip
    return table(headers, rows)


RUN_COLUMNS = [
    ("run", "run_id", "s"), ("command", "command", "s"), ("started", "started_at", "s"),
    ("state", "state", "s"), ("rows", "rows", ","), ("labelled", "labelled", ","),
    ("requests", "requests_sent", ","), ("reused", "reused", ","),
    ("prompt tokens", "prompt_tokens", ","), ("completion tokens", "completion_tokens", ","),
    ("tokens/s", "tokens_per_second", ",.0f"), ("items/s", "items_per_second", ",.2f"),
    ("prefix-cache hit", "prefix_cache_hit_rate", ".1%"), ("engine", "engine", "s"),
    ("engine s", "engine_seconds", ",.0f"), ("GPU s", "gpu_seconds", ",.0f"),
]  # fmt: skip


def runs_section(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return '<section id="runs"><h2>Runs</h2><p>No run manifests.</p></section>'
    rows = []
    for run in runs:
        cells = []
        for _, key, spec in RUN_COLUMNS:
            value = run.get(key)
            shown = escape(str(value)) if spec == "s" and value is not None else None
            cells.append(figure(f"run.{run['run_id']}.{key}", value, shown or _fmt(value, spec)))
        rows.append(cells)
    note = (
        "<p class=note>GPU s: engine seconds × GPUs held (none on the CPU build). Throughput is "
        "labelled rows and prompt + completion tokens per second of the run's wall time.</p>"
    )
    table_html = table([name for name, _, _ in RUN_COLUMNS], rows, "wide")
    return f'<section id="runs"><h2>Runs</h2>{table_html}{note}</section>'
