"""The HTML report: every result file of the workspace in one self-contained page (``finmlops report``).

Inputs, all in the workspace (missing ones leave their section with a note naming the command that fills it):
``results/evaluation.json`` and ``predictions.parquet`` (``finmlops evaluate``), ``results/backtest.json``
(``finmlops backtest``), ``results/audit.json`` (``finmlops audit``), ``results/importance_<variant>.json``
(``finmlops explain --global``), ``results/drift.json`` (``finmlops drift``), ``results/abtest_<experiment>.json``
(``finmlops abtest analyze``) and the serving request log ``serving/requests.db`` (``finmlops serve``).

Every number printed comes from those files. Two figures are recomputed from them rather than copied: the equity
curves (the daily path of ``finmlops.evaluation.backtest.simulate`` on ``predictions.parquet`` with the config
stored in ``backtest.json``, drawn only when its end value reproduces the stored total return) and the confusion
matrices (counts of ``prob_up > 0.5`` against ``y_true`` in ``predictions.parquet``).

Charts are static SVG written here (no JavaScript, no external assets); hovering a point shows its value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from finmlops.provenance import file_sha256, write_text_atomic
from finmlops.settings import Settings

REPORT_FILE = "report.html"


class ReportError(ValueError):
    """A result file exists but cannot be read as its documented schema; the message names the file."""


# --- SVG charts ------------------------------------------------------------------------------------------------------

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


def _fmt_tick(value: float) -> str:
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
            parts.append(
                f'<text class="tick" x="{self.x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt_tick(t)}</text>'
            )
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

    def hline(self, value: float, label: str, color: str = "#555") -> str:
        y = self.y(value)
        return (
            f'<line x1="{self.x0}" x2="{self.x1}" y1="{y:.1f}" y2="{y:.1f}" stroke="{color}" stroke-dasharray="2 3"/>'
            f'<text class="tick" x="{self.x1 - 2}" y="{y - 3:.1f}" text-anchor="end" fill="{color}">'
            f"{escape(label)}</text>"
        )

    def svg(self, parts: Sequence[str], label: str) -> str:
        return (
            f'<svg class="chart" viewBox="0 0 {self.width} {self.height}" role="img" aria-label="{escape(label)}" '
            f'xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>'
        )


def _y_ticks(values: Sequence[float], include: Sequence[float] = ()) -> list[float]:
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
    y_format: Callable[[float], str] = _fmt_tick,
    width: int = 960,
    height: int = 300,
) -> str:
    """Lines (and optional markers) over a shared x axis; ``hlines`` are labelled reference levels."""
    xs = [x for s in series for x in s.x]
    ys = [y for s in series for y in s.y if y is not None]
    frame = _Frame(width, height, (min(xs, default=0.0), max(xs, default=1.0)), _y_ticks(ys, [h for h, _ in hlines]))
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
    frame = _Frame(width, height, (-0.5, len(groups) - 0.5), _y_ticks(flat, [reference[0]] if reference else []))
    parts = frame.axes(title, y_label, [(i, g) for i, g in enumerate(groups)])
    if reference is not None:
        parts.append(frame.hline(*reference))
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
            f'<text class="tick" x="{x(t):.1f}" y="{height - bottom + 15}" text-anchor="middle">{_fmt_tick(t)}</text>'
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


# --- formatting helpers ----------------------------------------------------------------------------------------------


def _num(value: Any, spec: str) -> str:
    """``value`` formatted, or a dash when undefined (None after a JSON round trip, or NaN)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return format(value, spec)


def _ci(entry: dict[str, Any] | None, spec: str = ".3f") -> str:
    if not entry or entry.get("value") is None:
        return "–"
    return f"{_num(entry['value'], spec)} [{_num(entry.get('ci_low'), spec)}, {_num(entry.get('ci_high'), spec)}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], *, raw: bool = False) -> str:
    """An HTML table; cells are escaped unless ``raw`` (cells already HTML). The first column is left-aligned."""
    cell = (lambda c: c) if raw else escape
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _colors(names: Sequence[str]) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def _day(value: Any) -> float:
    """A date (or ISO string) as its proper Gregorian ordinal, the x coordinate of time axes."""
    return float(pd.Timestamp(value).toordinal())


def _date_ticks(days: Sequence[float], n: int = 6) -> list[tuple[float, str]]:
    lo, hi = min(days), max(days)
    if hi == lo:
        return [(lo, date.fromordinal(int(lo)).isoformat())]
    return [(x, date.fromordinal(round(x)).isoformat()) for x in np.linspace(lo, hi, n)]


def _num_ticks(lo: float, hi: float) -> list[tuple[float, str]]:
    return [(t, f"{t:.4g}") for t in nice_ticks(lo, hi) if lo - 1e-12 <= t <= hi + 1e-12]


def _note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def _read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when the file does not exist; a clear error when it is not JSON."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(payload, dict):
        raise ReportError(f"{path}: expected a JSON object, got {type(payload).__name__}")
    return payload


# --- sections --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """One part of the report: its HTML ``body``, the files it read, and ``missing`` (the command that would fill
    it) when its main input is absent."""

    key: str
    title: str
    body: str
    sources: tuple[str, ...] = ()
    missing: str | None = None

    @property
    def filled(self) -> bool:
        return self.missing is None


def _empty(key: str, title: str, command: str, what: str, then: str = "") -> Section:
    body = (
        f'<p class="missing">No {escape(what)} yet: run <code>{escape(command)}</code>{escape(then)} to fill this '
        "section.</p>"
    )
    return Section(key, title, body, missing=command)


def evaluation_section(settings: Settings) -> Section:
    """Pooled metrics with CIs and paired tests per model, and accuracy and AUC per fold with CIs."""
    path = settings.results_dir / "evaluation.json"
    ev = _read_json(path)
    if ev is None:
        return _empty("evaluation", "Walk-forward evaluation", "finmlops evaluate", "walk-forward evaluation")
    models: dict[str, Any] = ev["models"]
    baselines: list[str] = list(ev.get("baselines", []))
    boot = ev["bootstrap"]
    level = f"{boot['level']:.0%}"
    header = ["model", "rows", f"accuracy [{level} CI]", "balanced acc.", f"ROC AUC [{level} CI]", "log loss", "Brier"]
    header += ["MCC", "up share", "IC [CI]", "rank IC", "ICIR", *(f"Δacc vs {b} [CI] (p)" for b in baselines)]
    rows = []
    for name, m in models.items():
        p = m["pooled"]
        tests = []
        for b in baselines:
            t = m.get("vs_baselines", {}).get(b)
            tests.append(
                "–"
                if t is None
                else f"{t['accuracy_diff']:+.3f} [{_num(t['ci_low'], '+.3f')}, {_num(t['ci_high'], '+.3f')}] "
                f"(p={_num(t['p_value_bootstrap'], '.3f')})"
            )
        rows.append(
            [
                name + (" (baseline)" if m["is_baseline"] else ""),
                str(m["n_rows"]),
                _ci(p["accuracy"]),
                _num(p["balanced_accuracy"]["value"], ".3f"),
                _ci(p["roc_auc"]),
                _num(p["log_loss"]["value"], ".4f"),
                _num(p["brier"]["value"], ".4f"),
                _num(p["mcc"]["value"], "+.3f"),
                _num(p["up_share"]["value"], ".2f"),
                _ci(p["ic"]),
                _num(p["rank_ic"]["value"], "+.4f"),
                _num(p["icir"]["value"], "+.3f"),
                *tests,
            ]
        )
    colors = _colors(list(models))
    folds = sorted({str(f) for m in models.values() for f in m["folds"]})
    charts = []
    for metric, label in (("accuracy", "accuracy"), ("roc_auc", "ROC AUC")):
        values: dict[tuple[str, str], Interval] = {}
        for name, m in models.items():
            entries = [(str(f), e[metric]) for f, e in m["folds"].items()] + [("pooled", m["pooled"][metric])]
            for group, e in entries:
                if e.get("value") is not None:
                    values[(group, name)] = Interval(e["value"], e.get("ci_low"), e.get("ci_high"))
        charts.append(
            interval_chart(
                [*folds, "pooled"],
                list(colors.items()),
                values,
                title=f"{label} per test fold, {level} CI",
                y_label=label,
                reference=(0.5, "0.5 (coin flip)"),
            )
        )
    body = _table(header, rows)
    body += _note(
        f"CIs: circular block bootstrap over dates, {boot['n_boot']} resamples of {boot['block_len']}-day blocks, "
        f"seed {boot['seed']}. Δacc: paired block-bootstrap difference on the same rows, with its two-sided p-value."
    )
    body += "".join(charts) + legend([(n, c, False) for n, c in colors.items()])
    return Section("evaluation", "Walk-forward evaluation", body, (str(path),))


def _confusion(preds: pd.DataFrame) -> str:
    """One 2x2 table per model: actual direction (rows) against predicted (``prob_up > 0.5``), counts and row
    shares."""
    cards = []
    for model, rows in preds.groupby("model", sort=True):
        pred_up = rows["prob_up"].to_numpy() > 0.5
        true_up = rows["y_true"].to_numpy() == 1
        cells = [[int(np.sum((true_up == t) & (pred_up == p))) for p in (False, True)] for t in (False, True)]
        body = ""
        for label, (down, up) in zip(("actual down", "actual up"), cells, strict=True):
            total = max(down + up, 1)
            body += (
                f"<tr><th>{label}</th>"
                + "".join(
                    f'<td style="background:rgba(78,121,167,{n / total:.2f})">{n}<br>'
                    f"<small>{n / total:.1%}</small></td>"
                    for n in (down, up)
                )
                + "</tr>"
            )
        cards.append(
            f'<div class="card"><b>{escape(str(model))}</b><table class="confusion"><thead><tr><th></th>'
            f"<th>pred. down</th><th>pred. up</th></tr></thead><tbody>{body}</tbody></table></div>"
        )
    return f'<div class="cards">{"".join(cards)}</div>'


def calibration_section(settings: Settings) -> Section:
    """Reliability diagram per model (evaluation.json) and confusion matrices (predictions.parquet)."""
    title = "Calibration and confusion"
    ev_path, pred_path = settings.results_dir / "evaluation.json", settings.results_dir / "predictions.parquet"
    ev = _read_json(ev_path)
    if ev is None:
        return _empty("calibration", title, "finmlops evaluate", "evaluation")
    colors = _colors(list(ev["models"]))
    series, xs = [], []
    for name, m in ev["models"].items():
        cal = m.get("calibration")
        if not cal or not cal["mean_predicted"]:
            continue
        xs += cal["mean_predicted"]
        series.append(
            Series(
                f"{name} (ECE {_num(cal.get('ece'), '.3f')})",
                cal["mean_predicted"],
                cal["observed_up"],
                colors[name],
                markers=True,
            )
        )
    body = ""
    if series:
        lo, hi = min(xs), max(xs)
        diagonal = Series("perfect calibration", [lo, hi], [lo, hi], "#888", dash=True)
        body += line_chart(
            [diagonal, *series],
            title="reliability: observed share of up days per predicted-probability bin",
            y_label="observed up share",
            x_ticks=_num_ticks(lo, hi),
        )
        body += legend([(s.label, s.color, s.dash) for s in (diagonal, *series)])
        body += _note("Bins of width 0.1 in P(up); only bins with predictions are drawn. x: mean predicted P(up).")
    sources = [str(ev_path)]
    if pred_path.exists():
        sources.append(str(pred_path))
        if file_sha256(pred_path) != ev.get("predictions", {}).get("sha256"):
            body += _note(f"{pred_path} changed after evaluation.json was written: confusion matrices not drawn.")
        else:
            preds = pd.read_parquet(pred_path, columns=["model", "prob_up", "y_true"])
            body += "<h3>Confusion at P(up) &gt; 0.5</h3>" + _confusion(preds)
    else:
        body += _note(f"{pred_path} is missing: run `finmlops evaluate` for the confusion matrices.")
    return Section("calibration", title, body, tuple(sources))


def equity_paths(preds: pd.DataFrame, config: dict[str, Any]) -> dict[str, dict[str, pd.Series]]:
    """Equity (value of 1 invested, net of costs) per ``{model: {strategy or "buy_hold": Series}}``.

    Recomputes ``finmlops.evaluation.backtest.run_backtest``'s paths from the predictions (their traded returns
    ``ret_next``) with the stored config (``strategies``, ``cost_bps``, ``slippage_bps``, ``top_k`` and the
    ``label``, whose horizon sets the rebalancing dates); indexed by decision date.
    """
    from finmlops.evaluation.backtest import BENCHMARK, priced_rows, simulate, target_weights

    costs = {"cost_bps": config["cost_bps"], "slippage_bps": config["slippage_bps"]}
    out: dict[str, dict[str, pd.Series]] = {}
    for model, rows in preds.groupby("model", sort=True):
        rows, returns = priced_rows(rows, int((config.get("label") or {}).get("horizon", 1)))
        paths = {}
        for strategy in (BENCHMARK, *config["strategies"]):
            daily = simulate(target_weights(rows, strategy, config["top_k"]), returns, **costs)
            paths[strategy] = (1.0 + daily["net"]).cumprod()
        out[str(model)] = paths
    return out


def _equity_charts(settings: Settings, bt: dict[str, Any]) -> tuple[str, list[str]]:
    """Equity curves per strategy against buy-and-hold, drawn only if they reproduce backtest.json."""
    pred_path = settings.results_dir / "predictions.parquet"
    if not pred_path.exists():
        return _note(f"{pred_path} is missing: equity curves need `finmlops evaluate`."), []
    expected = bt["provenance"]["config"].get("predictions_sha256")
    if file_sha256(pred_path) != expected:
        return _note(f"{pred_path} changed after backtest.json: rerun `finmlops backtest` for the equity curves."), []
    from finmlops.evaluation.metrics import validate_predictions

    preds = validate_predictions(pd.read_parquet(pred_path), source=str(pred_path))
    config = bt["config"]
    paths = equity_paths(preds, config)
    for model, by_s in bt["results"].items():
        for strategy, perf in by_s.items():
            got = float(paths[model][strategy].iloc[-1] - 1.0)
            if not math.isclose(got, perf["total_return"], rel_tol=1e-9, abs_tol=1e-12):
                return _note(
                    f"recomputed {model}/{strategy} total return {got:.6f} differs from backtest.json's "
                    f"{perf['total_return']:.6f}: equity curves not drawn (rerun `finmlops backtest`)."
                ), [str(pred_path)]
    colors = _colors(list(paths))
    bench = next(iter(paths.values()))["buy_hold"]
    charts = []
    for strategy in config["strategies"]:
        # Buy-and-hold last, dashed on top: a model that always says "up" holds exactly the same book.
        lines = [
            Series(model, [_day(d) for d in by_s[strategy].index], list(by_s[strategy]), colors[model])
            for model, by_s in paths.items()
        ]
        lines.append(Series("buy and hold (equal weight)", [_day(d) for d in bench.index], list(bench), "#222", True))
        charts.append(
            line_chart(
                lines,
                title=f"{strategy}: value of 1 invested, net of costs",
                y_label="equity",
                x_ticks=_date_ticks(lines[0].x),
                hlines=[(1.0, "start")],
            )
        )
    keys = [("buy and hold (equal weight)", "#222", True), *((m, c, False) for m, c in colors.items())]
    note = _note(
        "Curves recomputed from predictions.parquet with backtest.json's config; each ends exactly at the total "
        "return in the table (checked)."
    )
    return "".join(charts) + legend(keys) + note, [str(pred_path)]


def backtest_section(settings: Settings) -> Section:
    """The backtest table (with the deflated Sharpe ratio and business figures) and equity curves."""
    title = "Backtest, net of costs"
    path = settings.results_dir / "backtest.json"
    bt = _read_json(path)
    if bt is None:
        return _empty("backtest", title, "finmlops backtest", "backtest")
    config, business = bt["config"], bt["business"]
    header = ["model", "strategy", "ann. return", "vol", "Sharpe", "Sortino", "max DD", "turnover/yr", "hit rate"]
    header += ["exposure", "DSR", f"end value of {business['capital']:,.0f}"]

    def row(model: str, strategy: str, p: dict[str, Any], end: float | None) -> list[str]:
        return [
            model,
            strategy,
            _num(p["annual_return"], "+.1%"),
            _num(p["annual_volatility"], ".1%"),
            _num(p["sharpe"], ".2f"),
            _num(p["sortino"], ".2f"),
            _num(p["max_drawdown"], ".1%"),
            _num(p["turnover_annual"], ".0f") + "x",
            _num(p["hit_rate"], ".3f"),
            _num(p["exposure"], ".2f"),
            _num(p.get("deflated_sharpe"), ".3f"),
            _num(end, ",.0f"),
        ]

    rows = [row("buy_hold", "benchmark", bt["benchmark"], business["buy_hold_end_value"])]
    for model, by_s in bt["results"].items():
        for strategy, p in by_s.items():
            rows.append(row(model, strategy, p, business["by_config"].get(f"{model}/{strategy}", {}).get("end_value")))
    trials = bt["trials"]
    body = _table(header, rows)
    body += _note(
        f"Costs {config['cost_bps']:g} + {config['slippage_bps']:g} bps per unit of turnover; top_k = "
        f"{config['top_k']}. Timing: {bt['timing']}. DSR: deflated Sharpe ratio over {trials['total']} "
        f"configurations tried on these predictions ({trials['this_run']} in this run); expected best daily Sharpe "
        f"by luck {_num(trials['expected_max_sharpe_daily'], '.4f')}."
    )
    charts, extra = _equity_charts(settings, bt)
    return Section("backtest", title, body + charts, (str(path), *extra))


def audit_section(settings: Settings) -> Section:
    """Every check of the leakage audit, passed or failed."""
    title = "Leakage audit"
    path = settings.results_dir / "audit.json"
    audit = _read_json(path)
    if audit is None:
        return _empty("audit", title, "finmlops audit --quick", "leakage audit")
    badge = lambda ok: '<span class="pass">PASS</span>' if ok else '<span class="fail">FAIL</span>'  # noqa: E731
    rows = [
        [escape(c["scenario"]), escape(c["model"]), escape(c["check"]), badge(c["passed"]), escape(c["detail"])]
        for c in audit["checks"]
    ]
    failed = sum(not c["passed"] for c in audit["checks"])
    summary = (
        f"<p>{badge(audit['passed'])} {len(audit['checks']) - failed} of {len(audit['checks'])} checks passed; "
        f"Bayes accuracy of the planted market {_num(audit.get('bayes_accuracy'), '.3f')}.</p>"
    )
    return Section(
        "audit",
        title,
        summary + _table(["scenario", "model", "check", "result", "detail"], rows, raw=True),
        (str(path),),
    )


def importance_section(settings: Settings) -> Section:
    """Permutation importance (accuracy drop when a feature is shuffled) per explained variant."""
    title = "Feature importance"
    paths = sorted(settings.results_dir.glob("importance_*.json"))
    if not paths:
        return _empty("importance", title, "finmlops explain --variant NAME --global", "feature importance")
    body = ""
    for path in paths:
        imp = _read_json(path)
        assert imp is not None
        top = imp["features"][:20]
        rows = [
            (
                f["feature"],
                f["accuracy_drop"],
                f.get("accuracy_drop_se"),
                PALETTE[0] if f["accuracy_drop"] > 0 else "#aaa",
            )
            for f in top
        ]
        pooled = imp["pooled"]
        body += hbar_chart(
            rows,
            title=f"{imp['variant']} ({imp['feature_set']} features): accuracy drop when shuffled, top {len(top)}",
            x_label="accuracy drop (± standard error across folds)",
        )
        body += _note(
            f"{imp['variant']}: walk-forward test years {', '.join(map(str, imp['test_years']))}, accuracy "
            f"{pooled['accuracy']:.4f} ± {pooled['accuracy_se']:.4f} on {pooled['n']} windows, {imp['n_repeats']} "
            f"shuffles per feature and fold. A drop inside its error bar is noise."
        )
    return Section("importance", title, body, tuple(map(str, paths)))


def drift_section(settings: Settings) -> Section:
    """PSI per feature (and of the prediction) with the alert thresholds, and the per-feature tests."""
    title = "Drift"
    path = settings.results_dir / "drift.json"
    drift = _read_json(path)
    if drift is None:
        return _empty("drift", title, "finmlops drift --model NAME@champion", "drift report")
    columns = sorted(drift["features"], key=lambda c: -(c["psi"] or 0.0))
    if drift.get("prediction"):
        columns = [{**drift["prediction"], "column": "prob_up (prediction)"}, *columns]
    limit = drift["thresholds"]["psi"]
    bars = [(c["column"], c["psi"], None, "#e15759" if c["drifted"] else PALETTE[0]) for c in columns]
    chart = hbar_chart(
        bars,
        title="population stability index per column (red: drifted by PSI or its test)",
        x_label="PSI",
        thresholds=[(0.1, "0.1 moderate"), (limit, f"{limit:g} alert")],
    )
    rows = [
        [
            c["column"],
            _num(c["psi"], ".3f"),
            _num(c["ks_p_value"], ".3g"),
            _num(c["wasserstein_norm"], ".3f"),
            c["test"],
            "yes" if c["drifted"] else "no",
        ]
        for c in columns
    ]
    body = (
        f"<p>{drift['n_drifted']} of {len(drift['features'])} features drifted. Reference: "
        f"{escape(str(drift['reference']))} ({drift['n_reference']} rows); current: {escape(str(drift['current']))} "
        f"({drift['n_current']} rows).</p>"
    )
    body += "".join(_note(n) for n in drift.get("notes", []))
    body += chart + _table(["column", "PSI", "KS p", "Wasserstein (norm.)", "test", "drifted"], rows)
    return Section("drift", title, body, (str(path),))


def abtest_section(settings: Settings) -> Section:
    """Per experiment: arms, the sequential test, the decision, and the daily timeline."""
    title = "A/B experiments"
    paths = sorted(settings.results_dir.glob("abtest_*.json"))
    if not paths:
        return _empty("abtest", title, "finmlops abtest analyze --experiment NAME", "A/B analysis")
    body = ""
    for path in paths:
        ab = _read_json(path)
        assert ab is not None
        arms = ab["arms"]
        rows = [
            [
                arm,
                ", ".join(s["models"]),
                str(s["requests"]),
                str(s["errors"]),
                str(s["outcomes"]),
                f"{_num(s['accuracy'], '.4f')} [{_num(s['accuracy_ci95'][0], '.4f')}, "
                f"{_num(s['accuracy_ci95'][1], '.4f')}]",
                "/".join(_num(s["latency_ms"][q], ".1f") for q in ("p50", "p95", "p99")),
            ]
            for arm, s in arms.items()
        ]
        body += f"<h3>{escape(ab['experiment'])} (control {escape(ab['control'])})</h3>"
        body += _table(
            ["arm", "models", "requests", "errors", "outcomes", "accuracy [Wilson 95% CI]", "latency p50/p95/p99 ms"],
            rows,
        )
        for c in ab["comparisons"]:
            body += _note(
                f"{c['arm']} − {c['control']}: {_num(c['difference'], '+.4f')} (always-valid CS "
                f"[{_num(c['ci'][0], '+.4f')}, {_num(c['ci'][1], '+.4f')}]), log Λ {_num(c['log_lambda'], '.2f')} "
                f"vs boundary {_num(c['boundary'], '.2f')}, p = {_num(c['p_value'], '.4g')}"
            )
        decision = ab["decision"]
        body += (
            f'<p class="decision">Decision: <b>{escape(decision["action"].upper())}</b>, {escape(decision["reason"])}'
            f"<br><small>Rule: {escape(decision['rule'])}</small></p>"
        )
        body += _timeline_charts(ab)
    return Section("abtest", title, body, tuple(map(str, paths)))


def _timeline_charts(ab: dict[str, Any]) -> str:
    days = ab["timeline"]
    if not days:
        return _note("empty timeline")
    x = [_day(d["date"]) for d in days]
    arms = list(ab["arms"])
    colors = _colors(arms)
    markers = len(days) <= 40
    ticks = _date_ticks(x, min(6, len(x)))
    share = [Series(a, x, [d["traffic_share"].get(a) for d in days], colors[a], markers=markers) for a in arms]
    accuracy = [Series(a, x, [d["accuracy"].get(a) for d in days], colors[a], markers=markers) for a in arms]
    out = line_chart(share, title="traffic share per day", y_label="share", x_ticks=ticks)
    out += line_chart(accuracy, title="cumulative accuracy (by feedback time)", y_label="accuracy", x_ticks=ticks)
    tests: list[Series] = []
    for arm in arms[1:]:
        stat = [d["tests"].get(arm, {}).get("log_lambda") for d in days]
        bound = [d["tests"].get(arm, {}).get("boundary") for d in days]
        tests += [
            Series(f"{arm}: log Λ", x, stat, colors[arm], markers=markers),
            Series(f"{arm}: boundary ln(1/level)", x, bound, colors[arm], dash=True),
        ]
    if tests:
        out += line_chart(
            tests,
            title=f"mSPRT statistic against its boundary (tau {ab['tau']:g}, alpha {ab['alpha']:g})",
            y_label="log Λ",
            x_ticks=ticks,
        )
    out += legend([(s.label, s.color, s.dash) for s in tests] or [(a, colors[a], False) for a in arms])
    if tests:
        out += legend([(a, colors[a], False) for a in arms])
    return out


def latency_section(settings: Settings) -> Section:
    """Served-request latency per model from the request log: percentiles, errors and the distribution."""
    title = "Serving latency"
    path = settings.home / "serving" / "requests.db"
    if not path.exists():
        return _empty(
            "latency", title, "finmlops serve", "serving request log", " and send it requests (e.g. finmlops traffic)"
        )
    from finmlops.serving.requestlog import read_requests

    log = read_requests(path)
    served = log[log["shadow"] == 0]
    if served.empty:
        return Section("latency", title, _note(f"{path} holds no served requests yet."), (str(path),))
    ok = served[(served["status"] == 200) & served["latency_ms"].gt(0)]
    models = sorted(served["model"].unique())
    colors = _colors(models)
    rows = []
    for model in models:
        all_rows, lat = served[served["model"] == model], ok.loc[ok["model"] == model, "latency_ms"].to_numpy()
        q = np.percentile(lat, [50, 95, 99]) if lat.size else [float("nan")] * 3
        errors = int((all_rows["status"] != 200).sum())
        rows.append(
            [
                model,
                str(len(all_rows)),
                f"{errors} ({errors / len(all_rows):.1%})",
                *(_num(float(v), ".2f") for v in q),
                _num(float(lat.max()) if lat.size else None, ".2f"),
            ]
        )
    body = _table(["model", "requests", "errors", "p50 ms", "p95 ms", "p99 ms", "max ms"], rows)
    if not ok.empty:
        lo, hi = np.log10(ok["latency_ms"].min()), np.log10(ok["latency_ms"].max())
        edges = np.linspace(lo, hi + 1e-9, 31) if hi > lo else np.array([lo - 0.05, lo + 0.05])
        centers = (edges[:-1] + edges[1:]) / 2
        series = []
        for model in models:
            lat = np.log10(ok.loc[ok["model"] == model, "latency_ms"].to_numpy())
            if lat.size:
                share = np.histogram(lat, bins=edges)[0] / lat.size
                series.append(Series(model, list(centers), [float(s) for s in share], colors[model], markers=True))
        decades = [
            (float(e), f"{10**e:.3g} ms")
            for e in np.arange(math.floor(lo), math.ceil(hi) + 1)
            for e in (e, e + math.log10(2), e + math.log10(5))
            if lo <= e <= hi
        ]
        body += line_chart(
            series,
            title="latency distribution of successful served requests (log-spaced bins)",
            y_label="share of requests",
            x_ticks=decades or [(float(lo), f"{10**lo:.3g} ms")],
        )
        body += legend([(m, colors[m], False) for m in models])
    first, last = (
        datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds") for t in (log["ts"].min(), log["ts"].max())
    )
    body += _note(
        f"Server-side latency (request start to response) of {len(served)} served requests, {first} to {last}."
    )
    return Section("latency", title, body, (str(path),))


def _details(label: str, value: Any) -> str:
    return f"<details><summary>{label}</summary><pre>{escape(json.dumps(value, indent=1))}</pre></details>"


def provenance_section(settings: Settings, sources: Sequence[str]) -> Section:
    """The provenance stamp of every JSON result the report read: data hash, code version, seed and config."""
    title = "Provenance"
    stamps = []
    for source in dict.fromkeys(sources):
        path = Path(source)
        if path.suffix == ".json":
            payload = _read_json(path)
            if payload is not None and isinstance(payload.get("provenance"), dict):
                stamps.append((path.name, payload["provenance"]))
    if not stamps:
        return _empty("provenance", title, "finmlops evaluate", "stamped results")
    rows = [
        [
            name,
            escape(str(p.get("created_at"))),
            f'<code title="{escape(str(p.get("data_hash")))}">{escape(str(p.get("data_hash"))[:16])}</code>',
            f"<code>{escape(str(p.get('git_commit')))}</code>",
            escape(str(p.get("seed"))),
            _details("config", p.get("config")) + _details("versions", p.get("versions")),
        ]
        for name, p in stamps
    ]
    hashes = sorted({str(p["data_hash"]) for _, p in stamps if p.get("data_hash")})
    commits = sorted({str(p["git_commit"]) for _, p in stamps if p.get("git_commit")})
    body = ""
    if len(hashes) > 1:
        body += _note(f"Warning: these results come from {len(hashes)} different datasets: {', '.join(hashes)}.")
    if len(commits) > 1:
        body += _note(f"These results were computed by {len(commits)} code versions: {', '.join(commits)}.")
    body += _table(["file", "created", "data hash", "git commit", "seed", "config"], rows, raw=True)
    return Section("provenance", title, body, tuple(sources))


SECTIONS: tuple[Callable[[Settings], Section], ...] = (
    evaluation_section,
    calibration_section,
    backtest_section,
    audit_section,
    importance_section,
    drift_section,
    abtest_section,
    latency_section,
)


def collect_sections(settings: Settings) -> list[Section]:
    """Every section in report order, the provenance of all files read last.

    A result file that exists but does not follow its documented schema raises ``ReportError`` naming it.
    """
    sections = []
    for build in SECTIONS:
        try:
            sections.append(build(settings))
        except ReportError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise ReportError(
                f"{build.__name__.removesuffix('_section')} section: a result file in {settings.results_dir} does not "
                f"follow its schema ({type(exc).__name__}: {exc}); rerun the command that writes it"
            ) from exc
    sections.append(provenance_section(settings, [s for section in sections for s in section.sources]))
    return sections


# --- page ------------------------------------------------------------------------------------------------------------

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;margin:0;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{margin:0 0 4px}h2{margin:32px 0 8px;border-bottom:2px solid #4e79a7;padding-bottom:4px}h3{margin:18px 0 6px}
section{background:#fff;border-radius:8px;padding:4px 18px 14px;margin:18px 0;box-shadow:0 1px 3px rgba(0,0,0,.08)}
table{border-collapse:collapse;font-size:12.5px;margin:8px 0}th,td{padding:3px 8px;border-bottom:1px solid #e4e6ea;
text-align:right;vertical-align:top}th:first-child,td:first-child{text-align:left}thead th{background:#eef1f5}
.scroll{overflow-x:auto}.chart{width:100%;height:auto;display:block;margin:10px 0 2px}
.chart .title{font-size:13px;font-weight:600}.chart .tick{font-size:11px;fill:#555}.chart .label{font-size:12px}
.chart .grid{stroke:#e6e6e6}.chart .axis{stroke:#888}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;font-size:12px;margin:2px 0 8px}.key svg{vertical-align:middle;
margin-right:4px}.note{color:#555;font-size:12.5px}.missing{color:#8a5a00;background:#fff6e0;padding:8px 10px;
border-radius:6px}.pass{color:#fff;background:#59a14f;padding:0 6px;border-radius:4px}.fail{color:#fff;
background:#e15759;padding:0 6px;border-radius:4px}.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px
solid #e4e6ea;border-radius:6px;padding:6px 10px}table.confusion td{text-align:center;min-width:70px}
nav ul{columns:2;padding-left:18px}pre{white-space:pre-wrap;font-size:11px;text-align:left}code{font-size:12px}
.decision{background:#eef1f5;padding:8px 10px;border-radius:6px}
"""


def render_html(sections: Sequence[Section], settings: Settings) -> str:
    """The whole page: a header with the table of contents, then every section."""
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    toc = "".join(
        f'<li><a href="#{s.key}">{escape(s.title)}</a>{"" if s.filled else " <small>(no input yet)</small>"}</li>'
        for s in sections
    )
    body = "".join(f'<section id="{s.key}"><h2>{escape(s.title)}</h2>{s.body}</section>' for s in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>finmlops report</title><style>{CSS}</style></head><body><main>"
        f'<h1>finmlops report</h1><p class="note">Workspace {escape(str(settings.home.resolve()))}, generated '
        f"{generated}. Every number below is read from the result files listed under Provenance; realistic "
        "next-day direction accuracy for large caps is 50-55%, so read each figure with its interval.</p>"
        f"<nav><ul>{toc}</ul></nav>{body}</main></body></html>\n"
    )


def write_report(settings: Settings, out: Path | None = None) -> tuple[Path, list[Section]]:
    """Collect the sections, render them and write the page atomically to ``out`` (default
    ``<home>/report.html``). Returns the path and the sections."""
    sections = collect_sections(settings)
    path = write_text_atomic(out or settings.home / REPORT_FILE, render_html(sections, settings))
    return path, sections


def build_report(settings: Settings) -> Path:
    """``<home>/report.html`` from the workspace's results; the path. Used by ``finmlops report`` and ``run``."""
    return write_report(settings)[0]


def iter_sources(sections: Sequence[Section]) -> Iterator[str]:
    """Every input file the sections read, once, in report order."""
    yield from dict.fromkeys(s for section in sections for s in section.sources)
