"""Living through time (``finmlops live``): the comparison of setups and, per setup, the timeline.

Reads ``results/live_comparison.json`` (``finmlops.workflow.live_compare``) when it exists, else every
``live/**/results/live_timeline.json`` under the home (one per lived workspace). Per setup the timeline shows the
champion's version by day, the 20-day rolling served accuracy and champion IC, the canary's traffic share, and the
days of drift alarms, retrains, promotions and rollbacks.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import numpy as np

from finmlops.monitoring.live_timeline import LiveComparison, Timeline
from finmlops.report.base import Section, ci, comparison, empty, note, num, read_model, table
from finmlops.report.charts import Series, colors, date_ticks, day, line_chart
from finmlops.settings import Settings

TITLE = "Living through time"
ROLLING = 20


def _rolling(values: list[float | None], weights: list[float] | None = None) -> list[float | None]:
    v = np.array([np.nan if x is None else x for x in values], dtype=float)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=float)
    out: list[float | None] = []
    for i in range(len(v)):
        lo = max(0, i - ROLLING + 1)
        vv, ww = v[lo : i + 1], w[lo : i + 1]
        ok = np.isfinite(vv) & (ww > 0)
        out.append(float((vv[ok] * ww[ok]).sum() / ww[ok].sum()) if ok.sum() and i >= ROLLING - 1 else None)
    return out


def timeline_html(name: str, timeline: Timeline) -> str:
    days = timeline.days
    if not days:
        return note(f"{name}: no lived day yet")
    xs = [day(d.day) for d in days]
    ticks = date_ticks(xs)
    palette = colors(["champion", "accuracy", "ic", "share"])
    champion = line_chart(
        [Series("champion version", xs, [d.champion for d in days], palette["champion"])],
        title=f"{name}: champion version by day", y_label="version", x_ticks=ticks, height=200,
    )  # fmt: skip
    accuracy = [d.served_correct / d.served_n if d.served_n else None for d in days]
    rolling = line_chart(
        [
            Series(f"served accuracy ({ROLLING}-day)", xs, _rolling(accuracy, [d.served_n for d in days]),
                   palette["accuracy"]),
            Series(f"champion IC ({ROLLING}-day mean)", xs, _rolling([d.champion_ic for d in days]), palette["ic"]),
        ],
        title=f"{name}: rolling served accuracy and champion IC", y_label="accuracy / IC", x_ticks=ticks,
        hlines=[(0.5, "0.5"), (0.0, "0")],
    )  # fmt: skip
    share = line_chart(
        [Series("challenger share", xs, [d.share * 100 for d in days], palette["share"])],
        title=f"{name}: canary traffic share", y_label="% of tickers", x_ticks=ticks, height=180,
    )  # fmt: skip
    marks = [
        (d.day.isoformat(), e)
        for d in days
        for e in d.events
        if e.startswith(("retrain", "promote", "rollback", "challenger"))
    ]
    alarms = [d.day for d in days if d.drift_alarm]
    alarm_text = f"drift alarms on {len(alarms)} of {len(days)} days" + (
        f" (first {alarms[0]}, last {alarms[-1]})" if alarms else ""
    )
    events = table(["day", "event"], marks, text=True) if marks else note("no retrain, promotion or rollback")
    return champion + rolling + share + note(alarm_text) + events


def _timelines(settings: Settings) -> list[tuple[str, Path]]:
    root = settings.home / "live"
    if not root.is_dir():
        return []
    return [(str(p.parent.parent.relative_to(root)), p) for p in sorted(root.glob("**/results/live_timeline.json"))]


def build(settings: Settings) -> Section:
    path = settings.results_dir / "live_comparison.json"
    lived = read_model(path, LiveComparison)
    sources: list[str] = []
    parts: list[str] = []
    if lived is not None:
        sources.append(str(path))
        rows = [
            [
                escape(s.name),
                f"{s.first}..{s.last}" if s.first else "–",
                str(s.outcomes),
                ci(s.served_accuracy),
                ci(s.always_up),
                "–" if s.against_always_up is None else comparison(s.against_always_up),
                ci(s.champion_ic),
                ci(s.sharpe, ".2f"),
                num(s.total_return, "+.1%"),
                str(s.retrains),
                str(s.promotions),
                str(s.rollbacks),
                f"{s.wrong_promotions} of {s.promotions}",
                str(s.drift_alarms),
                num(s.fit_cpu_seconds, ".0f"),
            ]
            for s in lived.setups
        ]
        parts.append(
            table(
                [
                    "setup",
                    "days",
                    "outcomes",
                    "served accuracy [95% CI]",
                    "always up [95% CI]",
                    "served vs always up",
                    "champion IC [95% CI]",
                    "Sharpe [95% CI]",
                    "book return",
                    "retrains",
                    "promotions",
                    "rollbacks",
                    "wrong promotions",
                    "drift alarms",
                    "refit CPU s",
                ],
                rows,
                raw=True,
            )
        )
        parts.append(
            note(
                "Intervals: circular block bootstrap over days (blocks of 10). The book is long the tickers whose "
                "served answer says up, equal weight, gross of costs. A promotion is wrong when, on the "
                f"{lived.hindsight_days} trading days after it, the new champion was less accurate than the one "
                "it replaced (hindsight, from the history store). Always up: the accuracy of answering up on the "
                "same outcomes; served vs always up is the paired test of the difference (two-sided, block "
                "bootstrap over days)."
            )
        )
        timelines = [(s.name, Path(s.timeline)) for s in lived.setups]
    else:
        timelines = _timelines(settings)
        if not timelines:
            return empty("live", TITLE, "finmlops live --from 2021-01-04 --to 2023-12-29", "live days")
    for name, file in timelines:
        timeline = read_model(file, Timeline)
        if timeline is None:
            parts.append(note(f"{name}: {file} is missing (rerun finmlops live)"))
            continue
        sources.append(str(file))
        parts.append(f"<h3>{escape(name)}</h3>" + timeline_html(name, timeline))
    return Section("live", TITLE, "".join(parts), tuple(sources))
