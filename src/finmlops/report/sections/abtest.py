"""A/B experiments (``results/abtest_<experiment>.json``): arms, the sequential test worded as a comparison with
the control, the decision, and the daily timeline.

The timeline's days are trading days when requests carry ``as_of`` (a replay's simulated day). Requests without it
count on the wall-clock day they were sent, which can be years after the replayed ones: a few curl calls would
stretch the axis and turn most of each chart into one interpolated line. So when the experiment has ``as_of``
requests, the charts show only their days, and the wall-clock days are a table below them (the request log tells
which is which); the table, the test and the decision still count every request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from html import escape
from pathlib import Path

from finmlops.monitoring.abtest import AbTest, ArmComparison, Day
from finmlops.report.base import Section, comparison, empty, note, num, read_model, table
from finmlops.report.charts import Series, colors, date_ticks, day, legend, line_chart
from finmlops.serving.requestlog import read_requests
from finmlops.settings import Settings
from finmlops.stats import Comparison

TITLE = "A/B experiments"


@dataclass(frozen=True)
class Clock:
    """Which of an experiment's served requests said their trading day: the ``as_of`` days, and how many did not."""

    as_of_days: frozenset[str]
    without_as_of: int


def read_clock(log: Path, experiment: str) -> Clock | None:
    """The experiment's ``as_of`` days and its count of served requests without one, from the request log; None
    when the log is not there."""
    if not log.exists():
        return None
    requests = read_requests(log)
    rows = requests[(requests["experiment"] == experiment) & (requests["shadow"] == 0)]
    as_of = rows["as_of"].dropna()
    return Clock(frozenset(str(d) for d in as_of), int(len(rows) - len(as_of)))


def split_days(days: list[Day], clock: Clock | None) -> tuple[list[Day], list[Day]]:
    """The timeline's days on the trading-day axis and those shown apart (wall-clock days of requests without
    ``as_of``). Everything stays on the axis when no request said its day, or when the log is unknown."""
    if clock is None or not clock.as_of_days:
        return days, []
    # An outcome counts on the day it became known (horizon trading days after its as_of day), so the replay's
    # timeline runs a little past its last as_of day; two weeks covers any horizon the A/B replay uses.
    first, last = min(clock.as_of_days), max(clock.as_of_days)
    until = (date.fromisoformat(last) + timedelta(days=14)).isoformat()

    def replayed(day: Day) -> bool:
        return day.date in clock.as_of_days or first <= day.date <= until

    return [d for d in days if replayed(d)], [d for d in days if not replayed(d)]


def as_comparison(c: ArmComparison, level: float) -> Comparison:
    """The mSPRT result as a comparison: challenger minus control accuracy, the always-valid two-sided p, judged
    at the decision's (Bonferroni) level."""
    return Comparison(metric="accuracy", reference=c.control, difference=c.difference, p_value=c.p_value, alpha=level)


def render_arms(ab: AbTest) -> str:
    rows = [
        [
            arm,
            ", ".join(s.models),
            str(s.requests),
            str(s.errors),
            str(s.outcomes),
            f"{num(s.accuracy, '.4f')} [{num(s.accuracy_ci95[0], '.4f')}, {num(s.accuracy_ci95[1], '.4f')}]",
            "/".join(num(q, ".1f") for q in (s.latency_ms.p50, s.latency_ms.p95, s.latency_ms.p99)),
        ]
        for arm, s in ab.arms.items()
    ]
    header = ["arm", "models", "requests", "errors", "outcomes", "accuracy [Wilson 95% CI]", "latency p50/p95/p99 ms"]
    return table(header, rows)


def render_tests(ab: AbTest) -> str:
    out = ""
    for c in ab.comparisons:
        sentence = comparison(as_comparison(c, ab.decision.level))
        detail = (
            f"always-valid CS [{num(c.ci[0], '+.4f')}, {num(c.ci[1], '+.4f')}], log Λ {num(c.log_lambda, '.2f')} vs "
            f"boundary {num(c.boundary, '.2f')}, level {ab.decision.level:.4g}"
        )
        if c.crossed is not None:
            detail += f"; boundary first crossed on {c.crossed.date} at {c.crossed.difference:+.4f}"
        out += f'<p class="note">{escape(c.arm)}: {sentence}<br><small>{escape(detail)}</small></p>'
    d = ab.decision
    # A promotion or rollback rests on the comparisons printed above (each in describe_comparison's words), so
    # the decision names its arm rather than repeating the numbers in other words; "continue" says why.
    what = f"{d.action} to {d.arm}" if d.action == "rollback" and d.arm else f"{d.action} {d.arm or ''}".strip()
    why = "" if d.arm else f": {d.reason}"
    head, _, rest = what.partition(" ")
    return out + (
        f'<p class="decision">Decision: <b>{escape(head.upper())}</b>{escape(" " + rest if rest else "")}{escape(why)}'
        f"<br><small>Rule: {escape(d.rule)}</small></p>"
    )


def render_timeline(ab: AbTest, days: list[Day]) -> str:
    """Traffic share, cumulative accuracy and the mSPRT statistic against its boundary, per day of ``days``."""
    if not days:
        return note("no day of the timeline is a trading day")
    x = [day(d.date) for d in days]
    arms = list(ab.arms)
    palette = colors(arms)
    markers = len(days) <= 40
    ticks = date_ticks(x, min(6, len(x)))
    share = [Series(a, x, [d.traffic_share.get(a) for d in days], palette[a], markers=markers) for a in arms]
    accuracy = [Series(a, x, [d.accuracy.get(a) for d in days], palette[a], markers=markers) for a in arms]
    out = line_chart(share, title="traffic share per day", y_label="share", x_ticks=ticks)
    out += line_chart(accuracy, title="cumulative accuracy (by feedback time)", y_label="accuracy", x_ticks=ticks)
    tests: list[Series] = []
    for arm in arms[1:]:
        stat = [d.tests[arm].log_lambda if arm in d.tests else None for d in days]
        bound = [d.tests[arm].boundary if arm in d.tests else None for d in days]
        tests += [
            Series(f"{arm}: log Λ", x, stat, palette[arm], markers=markers),
            Series(f"{arm}: boundary ln(1/level)", x, bound, palette[arm], dash=True),
        ]
    if tests:
        out += line_chart(
            tests,
            title=f"mSPRT statistic against its boundary (tau {ab.tau:g}, alpha {ab.alpha:g})",
            y_label="log Λ",
            x_ticks=ticks,
        )
        out += legend([(s.label, s.color, s.dash) for s in tests])
    return out + legend([(a, palette[a], False) for a in arms])


def render_apart(ab: AbTest, apart: list[Day], clock: Clock) -> str:
    """The wall-clock days as a table, with a note saying why they are off the charts."""
    arms = list(ab.arms)
    header = ["wall-clock day", *(f"share {a}" for a in arms), *(f"cum. accuracy {a}" for a in arms)]
    header += [f"log Λ {a}" for a in arms[1:]]
    rows = [
        [
            d.date,
            *(num(d.traffic_share.get(a), ".2f") for a in arms),
            *(num(d.accuracy.get(a), ".4f") for a in arms),
            *(num(d.tests[a].log_lambda if a in d.tests else None, ".2f") for a in arms[1:]),
        ]
        for d in apart
    ]
    return note(
        f"{clock.without_as_of} served request(s) carried no as_of (e.g. sent by hand): they count on the "
        f"wall-clock day they were sent or labelled, so their {len(apart)} day(s) are kept off the trading-day axis "
        "above and listed here. They are included in the arm table, the test and the decision; cumulative figures "
        "run in date order."
    ) + table(header, rows)


def render(ab: AbTest, clock: Clock | None) -> str:
    body = f"<h3>{escape(ab.experiment)} (control {escape(ab.control)})</h3>" + render_arms(ab) + render_tests(ab)
    if not ab.timeline:
        return body + note("empty timeline")
    on_axis, apart = split_days(ab.timeline, clock)
    if clock is None:
        body += note("The request log is not there: days of requests without as_of cannot be told apart.")
    elif not clock.as_of_days:
        body += note("No request said its trading day (as_of): the timeline's days are the UTC days they were sent.")
    body += render_timeline(ab, on_axis)
    if apart and clock is not None:
        body += render_apart(ab, apart, clock)
    return body


def build(settings: Settings) -> Section:
    paths = sorted(settings.results_dir.glob("abtest_*.json"))
    if not paths:
        return empty("abtest", TITLE, "finmlops abtest analyze --experiment NAME", "A/B analysis")
    body, sources = "", [str(p) for p in paths]
    for path in paths:
        ab = read_model(path, AbTest)
        if ab is None:  # removed since the glob
            continue
        log = Path(ab.provenance.config.log) if ab.provenance.config.log else settings.home / "serving" / "requests.db"
        clock = read_clock(log, ab.experiment)
        if clock is not None:
            sources.append(str(log))
        body += render(ab, clock)
    return Section("abtest", TITLE, body, tuple(sources))
