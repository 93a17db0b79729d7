"""Small self-contained SVG charts for the report (no plotting library is installed): line charts of series over
x, and grouped bar charts with error bars. Text is escaped; sizes are fixed so the page can lay them out."""

from __future__ import annotations

import math
from collections.abc import Sequence
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 520, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 120, 30, 40
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2")

Series = tuple[str, Sequence[float], Sequence[float | None]]


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for factor in (1, 2, 5, 10):
        if (hi - lo) / (step * factor) <= n:
            step *= factor
            break
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def _frame(title: str, xlabel: str, ylabel: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
        f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 6}" text-anchor="middle">{escape(xlabel)}</text>',
        f'<text transform="translate(12,{(TOP + HEIGHT - BOTTOM) / 2}) rotate(-90)" '
        f'text-anchor="middle">{escape(ylabel)}</text>',
    ]


def _axes(xs: tuple[float, float], ys: tuple[float, float], parts: list[str], xticks=None):
    x0, x1 = xs
    y0, y1 = ys
    if x1 <= x0:
        x1 = x0 + 1
    if y1 <= y0:
        y0, y1 = y0 - 0.5, y1 + 0.5

    def sx(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * (WIDTH - LEFT - RIGHT)

    def sy(y: float) -> float:
        return HEIGHT - BOTTOM - (y - y0) / (y1 - y0) * (HEIGHT - TOP - BOTTOM)

    parts.append(f'<path d="M{LEFT},{TOP} V{HEIGHT - BOTTOM} H{WIDTH - RIGHT}" fill="none" stroke="#333"/>')
    for t in _ticks(y0, y1):
        parts.append(f'<text x="{LEFT - 4}" y="{sy(t) + 4:.1f}" text-anchor="end">{t:.3g}</text>')
        parts.append(f'<path d="M{LEFT},{sy(t):.1f} H{WIDTH - RIGHT}" stroke="#eee"/>')
    for t in xticks if xticks is not None else _ticks(x0, x1):
        parts.append(f'<text x="{sx(t):.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle">{t:g}</text>')
    return sx, sy


def line_chart(title: str, xlabel: str, ylabel: str, series: Sequence[Series]) -> str:
    """One polyline per ``(name, xs, ys)`` (None/non-finite ys are gaps); legend on the right."""
    points = [(x, y) for _n, xs, ys in series for x, y in zip(xs, ys, strict=True) if _ok(y)]
    parts = _frame(title, xlabel, ylabel)
    if not points:
        parts.append(f'<text x="{LEFT + 10}" y="{TOP + 20}">no data</text></svg>')
        return "\n".join(parts)
    xv, yv = [p[0] for p in points], [p[1] for p in points]
    pad = 0.05 * (max(yv) - min(yv) or 1.0)
    sx, sy = _axes((min(xv), max(xv)), (min(yv) - pad, max(yv) + pad), parts)
    for i, (name, xs, ys) in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        segment: list[str] = []
        for x, y in zip(xs, ys, strict=True):
            if _ok(y):
                segment.append(f"{sx(x):.1f},{sy(y):.1f}")
                parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}"/>')
            elif segment:
                parts.append(_polyline(segment, colour))
                segment = []
        if segment:
            parts.append(_polyline(segment, colour))
        ly = TOP + 14 * i + 6
        parts.append(f'<rect x="{WIDTH - RIGHT + 8}" y="{ly - 8}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{WIDTH - RIGHT + 22}" y="{ly + 1}">{escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def bar_chart(
    title: str,
    ylabel: str,
    groups: Sequence[str],
    series: Sequence[tuple[str, Sequence[float], Sequence[float]]],
) -> str:
    """Grouped bars: per group, one bar per ``(name, means, stds)`` series, with ±std error bars."""
    values = [m + s for _n, ms, ss in series for m, s in zip(ms, ss, strict=True)] + [
        m - s for _n, ms, ss in series for m, s in zip(ms, ss, strict=True)
    ]
    parts = _frame(title, "", ylabel)
    lo, hi = min([0.0, *values]), max([0.0, *values])
    pad = 0.05 * (hi - lo or 1.0)
    sx, sy = _axes((0, len(groups)), (lo - pad, hi + pad), parts, xticks=[])
    width = 0.8 / max(len(series), 1)
    for g, label in enumerate(groups):
        parts.append(
            f'<text x="{sx(g + 0.5):.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle">{escape(label)}</text>'
        )
    for i, (name, means, stds) in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        for g, (m, s) in enumerate(zip(means, stds, strict=True)):
            x = sx(g + 0.1 + i * width)
            w = sx(g + 0.1 + (i + 1) * width) - x
            top, bottom = sy(max(m, 0.0)), sy(min(m, 0.0))
            parts.append(
                f'<rect x="{x:.1f}" y="{top:.1f}" width="{w:.1f}" height="{bottom - top:.1f}" fill="{colour}"/>'
            )
            cx = x + w / 2
            parts.append(f'<path d="M{cx:.1f},{sy(m - s):.1f} V{sy(m + s):.1f}" stroke="#000"/>')
        ly = TOP + 14 * i + 6
        parts.append(f'<rect x="{WIDTH - RIGHT + 8}" y="{ly - 8}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{WIDTH - RIGHT + 22}" y="{ly + 1}">{escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _ok(y: float | None) -> bool:
    return y is not None and math.isfinite(y)


def _polyline(points: list[str], colour: str) -> str:
    return f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}" stroke-width="1.5"/>'
