"""Static SVG charts for the report: no JavaScript, no external assets; hovering a point shows its value.

Every chart returns one ``<svg class="chart">`` string; ``legend`` is the HTML key that goes under it. Axes map data
coordinates linearly into the box; time axes use proper Gregorian ordinals (:func:`day`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from html import escape
from typing import Any

import numpy as np
import pandas as pd

PALETTE: tuple[str, ...] = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
MARGIN = {"left": 64, "right": 16, "top": 28, "bottom": 40}


@dataclass(frozen=True)
class Series:
    """One line: ``x`` and ``y`` of equal length; ``None`` in ``y`` breaks the line."""

    label: str
    x: Sequence[float]
    y: Sequence[float | None]
    color: str
    dash: bool = False
    markers: bool = False


@dataclass(frozen=True)
class Interval:
    """A point estimate with its interval; ``low``/``high`` ``None`` when there is no interval."""

    value: float
    low: float | None
    high: float | None


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) covering ``[lo, hi]``."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"axis limits must be finite, got {lo}, {hi}")
    if hi <= lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / n
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    first = math.floor(lo / step + 1e-9) * step
    count = math.ceil((hi - first) / step - 1e-9)
    return [round(first + i * step, 12) for i in range(count + 1)]


def fmt_tick(value: float) -> str:
    return f"{value:.4g}"


def legend(items: Sequence[tuple[str, str, bool]]) -> str:
    """An HTML legend: ``(label, color, dashed)`` swatches that wrap with the page."""
    dash = ' stroke-dasharray="5 3"'
    spans = [
        f'<span class="key"><svg width="22" height="10" aria-hidden="true"><line x1="1" y1="5" x2="21" y2="5" '
        f'stroke="{color}" stroke-width="3"{dash if dashed else ""}/></svg>{escape(label)}</span>'
        for label, color, dashed in items
    ]
    return f'<div class="legend">{"".join(spans)}</div>'


class _Frame:
    """Axes of a chart: maps data coordinates to the SVG box and draws grid, ticks and titles."""

    def __init__(self, width: int, height: int, x_range: tuple[float, float], y_ticks: Sequence[float]) -> None:
        self.width, self.height = width, height
        self.x0, self.x1 = MARGIN["left"], width - MARGIN["right"]
        self.y0, self.y1 = height - MARGIN["bottom"], MARGIN["top"]
        lo, hi = x_range
        self.x_lo, self.x_hi = (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)
        self.y_ticks = list(y_ticks)
        self.y_lo, self.y_hi = self.y_ticks[0], self.y_ticks[-1]

    def x(self, value: float) -> float:
        return self.x0 + (value - self.x_lo) / (self.x_hi - self.x_lo) * (self.x1 - self.x0)

    def y(self, value: float) -> float:
        return self.y0 - (value - self.y_lo) / (self.y_hi - self.y_lo) * (self.y0 - self.y1)

    def axes(self, title: str, y_label: str, x_ticks: Sequence[tuple[float, str]]) -> list[str]:
        parts = [f'<text class="title" x="{self.x0}" y="16">{escape(title)}</text>']
        for t in self.y_ticks:
            y = self.y(t)
            parts.append(f'<line class="grid" x1="{self.x0}" x2="{self.x1}" y1="{y:.1f}" y2="{y:.1f}"/>')
            parts.append(f'<text class="tick" x="{self.x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{fmt_tick(t)}</text>')
        for value, label in x_ticks:
            x = self.x(value)
            # Labels at the ends of the axis grow inwards, so they are not cut off by the box.
            anchor = "start" if x - self.x0 < 30 else "end" if self.x1 - x < 30 else "middle"
            parts.append(f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" y1="{self.y0}" y2="{self.y0 + 4}"/>')
            parts.append(
                f'<text class="tick" x="{x:.1f}" y="{self.y0 + 17}" text-anchor="{anchor}">{escape(label)}</text>'
            )
        parts.append(f'<line class="axis" x1="{self.x0}" x2="{self.x1}" y1="{self.y0}" y2="{self.y0}"/>')
        parts.append(f'<line class="axis" x1="{self.x0}" x2="{self.x0}" y1="{self.y1}" y2="{self.y0}"/>')
        parts.append(
            f'<text class="label" transform="translate(14 {(self.y0 + self.y1) / 2:.0f}) rotate(-90)" '
            f'text-anchor="middle">{escape(y_label)}</text>'
        )
        return parts

    def hline(self, value: float, label: str, color: str = "#555", *, label_on_top: bool = False) -> str:
        """A dashed reference level. Its label sits above the line at the right end, or with ``label_on_top`` in
        the top margin beside a dashed swatch, where no data point can be under it."""
        y = self.y(value)
        dash = f'stroke="{color}" stroke-dasharray="2 3"'
        line = f'<line x1="{self.x0}" x2="{self.x1}" y1="{y:.1f}" y2="{y:.1f}" {dash}/>'
        if label_on_top:
            return line + (
                f'<line x1="{self.x1 - 24}" x2="{self.x1 - 4}" y1="12" y2="12" {dash}/>'
                f'<text class="tick reference" x="{self.x1 - 28}" y="16" text-anchor="end" fill="{color}">'
                f"{escape(label)}</text>"
            )
        return line + (
            f'<text class="tick" x="{self.x1 - 2}" y="{y - 3:.1f}" text-anchor="end" fill="{color}">'
            f"{escape(label)}</text>"
        )

    def svg(self, parts: Sequence[str], label: str) -> str:
        return (
            f'<svg class="chart" viewBox="0 0 {self.width} {self.height}" role="img" aria-label="{escape(label)}" '
            f'xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>'
        )


def y_ticks(values: Sequence[float], include: Sequence[float] = ()) -> list[float]:
    finite = [v for v in (*values, *include) if v is not None and math.isfinite(v)]
    if not finite:
        return [0.0, 1.0]
    return nice_ticks(min(finite), max(finite))


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    y_label: str,
    x_ticks: Sequence[tuple[float, str]],
    hlines: Sequence[tuple[float, str]] = (),
    y_format: Callable[[float], str] = fmt_tick,
    width: int = 960,
    height: int = 300,
) -> str:
    """Lines (and optional markers) over a shared x axis; ``hlines`` are labelled reference levels."""
    xs = [x for s in series for x in s.x]
    ys = [y for s in series for y in s.y if y is not None]
    frame = _Frame(width, height, (min(xs, default=0.0), max(xs, default=1.0)), y_ticks(ys, [h for h, _ in hlines]))
    parts = frame.axes(title, y_label, x_ticks)
    parts += [frame.hline(value, label) for value, label in hlines]
    for s in series:
        segments: list[list[str]] = [[]]
        for x, y in zip(s.x, s.y, strict=True):
            if y is None or not math.isfinite(y):
                segments.append([])
                continue
            segments[-1].append(f"{frame.x(x):.1f},{frame.y(y):.1f}")
        dash = ' stroke-dasharray="6 4"' if s.dash else ""
        for points in segments:
            if len(points) > 1:
                parts.append(
                    f'<polyline fill="none" stroke="{s.color}" stroke-width="1.8"{dash} points="{" ".join(points)}">'
                    f"<title>{escape(s.label)}</title></polyline>"
                )
        if s.markers:
            for x, y in zip(s.x, s.y, strict=True):
                if y is not None and math.isfinite(y):
                    parts.append(
                        f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="3.5" fill="{s.color}">'
                        f"<title>{escape(s.label)}: {escape(y_format(y))}</title></circle>"
                    )
    return frame.svg(parts, title)


def interval_chart(
    groups: Sequence[str],
    items: Sequence[tuple[str, str]],
    values: dict[tuple[str, str], Interval],
    *,
    title: str,
    y_label: str,
    reference: tuple[float, str] | None = None,
    width: int = 960,
    height: int = 300,
) -> str:
    """Point estimates with interval bars: one cluster per group (e.g. a fold), one colored item per model."""
    flat = [v for iv in values.values() for v in (iv.value, iv.low, iv.high) if v is not None]
    frame = _Frame(width, height, (-0.5, len(groups) - 0.5), y_ticks(flat, [reference[0]] if reference else []))
    parts = frame.axes(title, y_label, [(i, g) for i, g in enumerate(groups)])
    if reference is not None:
        # The last group (e.g. "pooled") sits at the right end, where a label on the line would cover its points.
        parts.append(frame.hline(*reference, label_on_top=True))
    slot = 0.8 / max(len(items), 1)
    for gi, group in enumerate(groups):
        for ii, (item, color) in enumerate(items):
            iv = values.get((group, item))
            if iv is None or not math.isfinite(iv.value):
                continue
            x = frame.x(gi - 0.4 + slot * (ii + 0.5))
            tip = f"{item}, {group}: {iv.value:.4f}"
            if iv.low is not None and iv.high is not None:
                tip += f" [{iv.low:.4f}, {iv.high:.4f}]"
                parts.append(
                    f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{frame.y(iv.low):.1f}" y2="{frame.y(iv.high):.1f}" '
                    f'stroke="{color}" stroke-width="2"/>'
                )
            parts.append(
                f'<circle cx="{x:.1f}" cy="{frame.y(iv.value):.1f}" r="4" fill="{color}"><title>{escape(tip)}</title>'
                "</circle>"
            )
    return frame.svg(parts, title)


def hbar_chart(
    rows: Sequence[tuple[str, float, float | None, str]],
    *,
    title: str,
    x_label: str,
    thresholds: Sequence[tuple[float, str]] = (),
    width: int = 960,
) -> str:
    """Horizontal bars ``(label, value, error or None, color)`` from zero, top to bottom, with error whiskers and
    vertical threshold lines."""
    label_w, row_h, top, bottom = 190, 18, 48, 36
    height = top + bottom + row_h * len(rows)
    extent = [v + s * (e or 0.0) for _, v, e, _ in rows for s in (-1, 1)] + [0.0] + [t for t, _ in thresholds]
    ticks = nice_ticks(min(extent), max(extent))
    x0, x1 = label_w, width - MARGIN["right"]

    def x(value: float) -> float:
        return x0 + (value - ticks[0]) / (ticks[-1] - ticks[0]) * (x1 - x0)

    parts = [f'<text class="title" x="{x0}" y="16">{escape(title)}</text>']
    for t in ticks:
        parts.append(f'<line class="grid" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" y2="{height - bottom}"/>')
        parts.append(
            f'<text class="tick" x="{x(t):.1f}" y="{height - bottom + 15}" text-anchor="middle">{fmt_tick(t)}</text>'
        )
    parts.append(
        f'<text class="label" x="{(x0 + x1) / 2:.0f}" y="{height - 6}" text-anchor="middle">{escape(x_label)}</text>'
    )
    for i, (label, value, err, color) in enumerate(rows):
        y = top + i * row_h
        left, right = sorted((x(0.0), x(value)))
        tip = f"{label}: {value:.4g}" + (f" ± {err:.2g}" if err is not None else "")
        parts.append(
            f'<text class="tick" x="{x0 - 6}" y="{y + row_h * 0.7:.1f}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{left:.1f}" y="{y + 3}" width="{max(right - left, 0.5):.1f}" height="{row_h - 6}" '
            f'fill="{color}"><title>{escape(tip)}</title></rect>'
        )
        if err is not None:
            cy = y + row_h / 2
            parts.append(
                f'<line x1="{x(value - err):.1f}" x2="{x(value + err):.1f}" y1="{cy}" y2="{cy}" stroke="#222"/>'
            )
    for i, (value, label) in enumerate(thresholds):
        # Labels of neighbouring lines are staggered vertically so they do not overlap.
        parts.append(
            f'<line x1="{x(value):.1f}" x2="{x(value):.1f}" y1="{top - 4}" y2="{height - bottom}" stroke="#c00" '
            f'stroke-dasharray="3 3"/><text class="tick" x="{x(value) + 3:.1f}" y="{top - 6 - 11 * (i % 2)}" '
            'fill="#c00">'
            f"{escape(label)}</text>"
        )
    parts.append(f'<line class="axis" x1="{x(0.0):.1f}" x2="{x(0.0):.1f}" y1="{top}" y2="{height - bottom}"/>')
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>'
    )


def colors(names: Sequence[str]) -> dict[str, str]:
    """A palette color per name, in order (cycling after ten)."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def day(value: Any) -> float:
    """A date (or ISO string) as its proper Gregorian ordinal, the x coordinate of time axes."""
    return float(pd.Timestamp(value).toordinal())


def date_ticks(days: Sequence[float], n: int = 6) -> list[tuple[float, str]]:
    """About ``n`` evenly spaced ISO date labels over ordinal ``days``."""
    lo, hi = min(days), max(days)
    if hi == lo:
        return [(lo, date.fromordinal(int(lo)).isoformat())]
    return [(x, date.fromordinal(round(x)).isoformat()) for x in np.linspace(lo, hi, n)]


def num_ticks(lo: float, hi: float) -> list[tuple[float, str]]:
    """Round tick labels inside ``[lo, hi]``."""
    return [(t, f"{t:.4g}") for t in nice_ticks(lo, hi) if lo - 1e-12 <= t <= hi + 1e-12]
