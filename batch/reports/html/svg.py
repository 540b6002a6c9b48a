"""Small inline SVG charts for the HTML report: no script, no font, no network.

Hand-written SVG weighs a few hundred bytes a chart where a plotting library's SVG embeds
glyph paths (tens of kilobytes), and it needs nothing to display. Every text is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = ("#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b7791f", "#c53030", "#4a5568")
_FONT = 'font-family="sans-serif" font-size="11"'


def _svg(width: int, height: int, body: list[str], label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">'
        + "".join(body)
        + "</svg>"
    )


def stacked_bar(parts: Sequence[tuple[str, int]], label: str, width: int = 560) -> str:
    """One bar split by share, with a legend: e.g. a policy's statuses or label origins."""
    total = sum(value for _, value in parts) or 1
    body, x = [], 0.0
    shown = [(name, value) for name, value in parts if value]
    for i, (name, value) in enumerate(shown):
        w = width * value / total
        colour = PALETTE[i % len(PALETTE)]
        body.append(
            f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="18" fill="{colour}">'
            f"<title>{escape(name)}: {value:,} ({value / total:.1%})</title></rect>"
        )
        x += w
    for i, (name, value) in enumerate(shown):
        colour = PALETTE[i % len(PALETTE)]
        lx, ly = (i % 3) * (width // 3), 34 + (i // 3) * 16
        body.append(
            f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{lx + 14}" y="{ly}" {_FONT}>{escape(name)} {value:,} '
            f"({value / total:.1%})</text>"
        )
    return _svg(width, 40 + ((len(shown) - 1) // 3) * 16 + 4, body, label)


def _nice_top(peak: float) -> float:
    """A round axis maximum at or above ``peak`` (1, 2, 2.5 or 5 times a power of ten)."""
    if peak <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(peak))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= peak)


def short(count: float) -> str:
    """A count in at most about five characters (bar labels): 950, 12k, 3.4M."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= size:
            scaled = count / size
            return f"{scaled:.1f}{suffix}" if scaled < 10 else f"{scaled:.0f}{suffix}"
    return f"{count:.0f}"


def line_chart(
    series: Sequence[tuple[str, Sequence[tuple[str, float | None]]]],
    label: str,
    width: int = 560,
    height: int = 170,
) -> str:
    """Rates (0 to 1) over runs, one line per series, in run order, with a y axis and a
    legend; a run without a rate leaves a gap."""
    left, top, bottom = 44, 8, 34
    plot_w, plot_h = width - left - 8, height - top - bottom
    values = [y for _, points in series for _, y in points if y is not None]
    y_max = min(1.0, _nice_top(max(values or [0.0])))
    count = max((len(points) for _, points in series), default=0)
    step = plot_w / max(1, count - 1)
    body = [
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#999"/>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#999"/>',
    ]
    for tick in (0.0, 0.5, 1.0):
        y = top + plot_h * (1 - tick)
        body.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" {_FONT}>'
            f"{tick * y_max:.1%}</text>"
        )
    for index, (name, points) in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        segments: list[list[str]] = [[]]
        for i, (run, y) in enumerate(points):
            if y is None:
                segments.append([])
                continue
            px, py = left + i * step, top + plot_h * (1 - min(y, y_max) / y_max)
            segments[-1].append(f"{px:.1f},{py:.1f}")
            body.append(
                f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}">'
                f"<title>{escape(name)}, {escape(run)}: {y:.2%}</title></circle>"
            )
        body += [
            f'<polyline points="{" ".join(seg)}" fill="none" stroke="{colour}"/>'
            for seg in segments
            if len(seg) > 1
        ]
        lx = left + index * 160
        body.append(
            f'<rect x="{lx}" y="{height - 11}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{lx + 14}" y="{height - 2}" {_FONT}>{escape(name)}</text>'
        )
    runs = series[0][1] if series else []
    if runs:
        body.append(f'<text x="{left}" y="{top + plot_h + 13}" {_FONT}>{escape(runs[0][0])}</text>')
        body.append(
            f'<text x="{left + plot_w}" y="{top + plot_h + 13}" text-anchor="end" {_FONT}>'
            f"{escape(runs[-1][0])}</text>"
        )
    return _svg(width, height, body, label)


def histogram(
    counts: Sequence[int],
    label: str,
    threshold: float | None = None,
    width: int = 560,
    height: int = 170,
) -> str:
    """Counts in equal bins over [0, 1] (a score's distribution), with both axes, each bar's
    count and a dashed line at ``threshold``."""
    left, top, bottom, right = 44, 14, 30, 8
    plot_w, plot_h = width - left - right, height - top - bottom
    bins = max(1, len(counts))
    bar_w = plot_w / bins
    y_max = _nice_top(max(counts or [0]))
    base = top + plot_h
    body = [
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{base}" stroke="#999"/>',
        f'<line x1="{left}" y1="{base}" x2="{left + plot_w}" y2="{base}" stroke="#999"/>',
        f'<text x="{left + plot_w / 2:.0f}" y="{height - 2}" text-anchor="middle" {_FONT}>'
        "score</text>",
    ]
    for tick in (0.0, 0.5, 1.0):
        y = base - plot_h * tick
        body.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" {_FONT}>'
            f"{short(tick * y_max)}</text>"
        )
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = left + plot_w * tick
        body.append(
            f'<text x="{x:.1f}" y="{base + 12}" text-anchor="middle" {_FONT}>{tick:g}</text>'
        )
    for i, count in enumerate(counts):
        h = plot_h * count / y_max
        low, high = i / bins, (i + 1) / bins
        x = left + i * bar_w
        body.append(
            f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{max(bar_w - 1, 0.5):.1f}" '
            f'height="{h:.1f}" fill="{PALETTE[0]}"><title>{low:.2f}–{high:.2f}: {count:,}'
            "</title></rect>"
        )
        if count:
            body.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{base - h - 2:.1f}" text-anchor="middle" '
                f'font-family="sans-serif" font-size="9">{short(count)}</text>'
            )
    if threshold is not None and 0.0 <= threshold <= 1.0:
        x = left + plot_w * threshold
        body.append(
            f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{base}" stroke="{PALETTE[5]}" '
            'stroke-dasharray="4 3"/>'
            f'<text x="{x + 4:.1f}" y="{top - 4}" fill="{PALETTE[5]}" {_FONT}>'
            f"threshold {threshold:g}</text>"
        )
    return _svg(width, height, body, label)
