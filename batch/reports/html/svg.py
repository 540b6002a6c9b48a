"""Small inline SVG charts for the HTML report: no script, no font, no network.

Hand-written SVG weighs a few hundred bytes a chart where a plotting library's SVG embeds
glyph paths (tens of kilobytes), and it needs nothing to display. Every text is escaped.
"""

from __future__ import annotations

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


def line_chart(
    points: Sequence[tuple[str, float | None]], label: str, width: int = 560, height: int = 160
) -> str:
    """Rates (0 to 1) over runs, in run order; a run without a rate leaves a gap."""
    left, top, bottom = 36, 8, 20
    plot_w, plot_h = width - left - 8, height - top - bottom
    peak = max([y for _, y in points if y is not None] or [0.0]) or 1.0
    y_max = min(1.0, peak * 1.2)
    step = plot_w / max(1, len(points) - 1)
    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#999"/>',
        f'<text x="2" y="{top + 8}" {_FONT}>{y_max:.0%}</text>',
        f'<text x="2" y="{top + plot_h}" {_FONT}>0%</text>',
    ]
    segments: list[list[str]] = [[]]
    for i, (name, y) in enumerate(points):
        if y is None:
            segments.append([])
            continue
        px, py = left + i * step, top + plot_h * (1 - y / y_max)
        segments[-1].append(f"{px:.1f},{py:.1f}")
        body.append(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{PALETTE[0]}">'
            f"<title>{escape(name)}: {y:.2%}</title></circle>"
        )
    for segment in segments:
        if len(segment) > 1:
            body.append(
                f'<polyline points="{" ".join(segment)}" fill="none" stroke="{PALETTE[0]}"/>'
            )
    if points:
        body.append(f'<text x="{left}" y="{height - 4}" {_FONT}>{escape(points[0][0])}</text>')
        body.append(
            f'<text x="{left + plot_w}" y="{height - 4}" text-anchor="end" {_FONT}>'
            f"{escape(points[-1][0])}</text>"
        )
    return _svg(width, height, body, label)


def histogram(counts: Sequence[int], label: str, width: int = 560, height: int = 140) -> str:
    """Counts in equal bins over [0, 1] (a score's distribution)."""
    left, bottom = 8, 18
    plot_h = height - bottom - 4
    bar_w = (width - 2 * left) / max(1, len(counts))
    peak = max(counts or [0]) or 1
    body = []
    for i, count in enumerate(counts):
        h = plot_h * count / peak
        low, high = i / len(counts), (i + 1) / len(counts)
        body.append(
            f'<rect x="{left + i * bar_w:.1f}" y="{4 + plot_h - h:.1f}" width="{bar_w - 1:.1f}" '
            f'height="{h:.1f}" fill="{PALETTE[0]}"><title>{low:.2f}–{high:.2f}: {count:,}'
            "</title></rect>"
        )
    body.append(f'<text x="{left}" y="{height - 4}" {_FONT}>0</text>')
    body.append(f'<text x="{width - left}" y="{height - 4}" text-anchor="end" {_FONT}>1</text>')
    return _svg(width, height, body, label)
