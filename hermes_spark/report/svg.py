"""Hand-written inline SVG charts (no JavaScript, no plotting dependency).

Each function returns one ``<svg>`` element as a string: a few hundred nodes at most,
whatever the number of buckets (callers aggregate before plotting).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

W, H = 560, 300
LEFT, RIGHT, TOP, BOTTOM = 60, 16, 16, 44
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def _fmt(x: float) -> str:
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 1e4 or a < 1e-2:
        return f"{x:.1e}"
    return f"{x:.3g}"


class Axis:
    """A linear or log10 mapping from data to pixels."""

    def __init__(self, lo: float, hi: float, a: float, b: float, log: bool = False) -> None:
        if log:
            lo, hi = math.log10(max(lo, 1e-300)), math.log10(max(hi, 1e-300))
        if hi <= lo:
            hi = lo + 1.0
        self.lo, self.hi, self.a, self.b, self.log = lo, hi, a, b, log

    def __call__(self, v: float) -> float:
        if self.log:
            v = math.log10(max(v, 1e-300))
        return self.a + (v - self.lo) / (self.hi - self.lo) * (self.b - self.a)

    def ticks(self, n: int = 5) -> list[float]:
        """Tick values in data units."""
        if self.log:
            first, last = math.floor(self.lo), math.ceil(self.hi)
            step = max(1, (last - first) // n)
            return [10.0**e for e in range(first, last + 1, step) if self.lo <= e <= self.hi]
        return [self.lo + i * (self.hi - self.lo) / n for i in range(n + 1)]


def _frame(
    x: Axis, y: Axis, xlabel: str, ylabel: str, title: str, xticks: bool = True
) -> list[str]:
    out = [
        f'<svg class="fig" role="img" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}" stroke="#333"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{H - BOTTOM}" stroke="#333"/>',
    ]
    for t in x.ticks() if xticks else []:
        px = x(t)
        out.append(
            f'<text x="{px:.1f}" y="{H - BOTTOM + 14}" text-anchor="middle">{_fmt(t)}</text>'
        )
    for t in y.ticks():
        py = y(t)
        out.append(f'<text x="{LEFT - 4}" y="{py + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    out.append(
        f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 8}" text-anchor="middle">'
        f"{escape(xlabel)}</text>"
    )
    out.append(
        f'<text transform="translate(12,{(TOP + H - BOTTOM) / 2}) rotate(-90)" '
        f'text-anchor="middle">{escape(ylabel)}</text>'
    )
    return out


def _legend(names: Sequence[str]) -> list[str]:
    return [
        f'<text x="{W - RIGHT - 4}" y="{TOP + 12 + 13 * i}" text-anchor="end" '
        f'fill="{PALETTE[i % len(PALETTE)]}">{escape(n)}</text>'
        for i, n in enumerate(names)
    ]


def lines(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    logx: bool = False,
    logy: bool = False,
    points: bool = False,
) -> str:
    """Polylines (or dots with ``points``) of ``{name: (xs, ys)}`` on shared axes."""
    xs = [v for s in series.values() for v in s[0]]
    ys = [v for s in series.values() for v in s[1]]
    pos = (lambda v: v > 0) if logx else (lambda v: True)
    x = Axis(min(filter(pos, xs), default=1), max(xs, default=1), LEFT, W - RIGHT, logx)
    posy = (lambda v: v > 0) if logy else (lambda v: True)
    ylo = min(filter(posy, ys), default=0) if logy else min(0.0, min(ys, default=0))
    y = Axis(ylo, max(ys, default=1), H - BOTTOM, TOP, logy)
    out = _frame(x, y, xlabel, ylabel, title)
    for i, (_name, (sx, sy)) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        pts = [(x(a), y(b)) for a, b in zip(sx, sy, strict=True) if pos(a) and posy(b)]
        if points:
            out += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.5" fill="{color}"/>' for a, b in pts]
        else:
            d = " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)
            out.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="1.5"/>')
    out += _legend(list(series))
    out.append("</svg>")
    return "\n".join(out)


def bars(
    labels: Sequence[str],
    groups: dict[str, Sequence[float]],
    *,
    title: str,
    ylabel: str,
    xlabel: str = "",
    hline: float | None = None,
) -> str:
    """Grouped vertical bars: one group per label, one bar per series of ``groups``."""
    n, m = len(labels), max(len(groups), 1)
    top = max([v for g in groups.values() for v in g] + [hline or 0.0, 1e-12])
    x = Axis(0, max(n, 1), LEFT, W - RIGHT)
    y = Axis(0, top * 1.05, H - BOTTOM, TOP)
    out = _frame(x, y, xlabel, ylabel, title, xticks=False)
    slot = (W - RIGHT - LEFT) / max(n, 1)
    bw = max(slot * 0.8 / m, 0.5)
    for j, (_name, vals) in enumerate(groups.items()):
        color = PALETTE[j % len(PALETTE)]
        for i, v in enumerate(vals):
            px = LEFT + i * slot + slot * 0.1 + j * bw
            out.append(
                f'<rect x="{px:.1f}" y="{y(v):.1f}" width="{bw:.1f}" '
                f'height="{max(y(0) - y(v), 0):.1f}" fill="{color}"/>'
            )
    if n <= 24:
        for i, lab in enumerate(labels):
            out.append(
                f'<text x="{LEFT + (i + 0.5) * slot:.1f}" y="{H - BOTTOM + 14}" '
                f'text-anchor="middle">{escape(str(lab))}</text>'
            )
    if hline is not None:
        out.append(
            f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y(hline):.1f}" y2="{y(hline):.1f}" '
            f'stroke="#d62728" stroke-dasharray="4 3"/>'
        )
    out += _legend(list(groups))
    out.append("</svg>")
    return "\n".join(out)


def scatter(
    points: Sequence[tuple[float, float, float, int, str, str]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    series: Sequence[str] = (),
) -> str:
    """Dots ``(x, y, radius_px, series_index, label, tooltip)``: a text label where
    ``label`` is not empty, the tooltip on hover (``<title>``)."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    pad_x = (max(xs, default=1) - min(xs, default=0)) * 0.05 or 1.0
    pad_y = (max(ys, default=1) - min(ys, default=0)) * 0.05 or 1.0
    x = Axis(min(xs, default=0) - pad_x, max(xs, default=1) + pad_x, LEFT, W - RIGHT)
    y = Axis(min(ys, default=0) - pad_y, max(ys, default=1) + pad_y, H - BOTTOM, TOP)
    out = _frame(x, y, xlabel, ylabel, title)
    for px, py, r, s, label, tip in sorted(points, key=lambda p: -p[2]):  # big ones below
        color = PALETTE[s % len(PALETTE)]
        out.append(
            f'<circle cx="{x(px):.1f}" cy="{y(py):.1f}" r="{max(r, 1.0):.1f}" fill="{color}" '
            f'fill-opacity="0.45" stroke="{color}"><title>{escape(tip)}</title></circle>'
        )
        if label:
            out.append(
                f'<text x="{x(px):.1f}" y="{y(py) - max(r, 1.0) - 2:.1f}" '
                f'text-anchor="middle" font-size="10">{escape(label)}</text>'
            )
    out += _legend(list(series))
    out.append("</svg>")
    return "\n".join(out)
