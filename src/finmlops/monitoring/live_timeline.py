"""The lived days of a ``finmlops live`` workspace as a timeline (``<workspace>/results/live_timeline.json``), and
the comparison of several lived setups (``<home>/results/live_comparison.json``).

One type each for the writer and the readers: ``finmlops.workflow.daily.live_timeline`` and
``finmlops.workflow.live_compare`` write them, the report's live section (``finmlops.report.sections.live``) reads
them; they live here, below both in the layers (pyproject's import-linter contract).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel

from finmlops.evaluation.results import Estimate
from finmlops.stats.bootstrap import PairedTest
from finmlops.stats.comparison import Comparison


class TimelineDay(BaseModel):
    """One lived day: who served, the canary share, the day's hits of the served answers (of the day whose
    outcome became known), the champion's IC, the drift alarm and the day's events."""

    day: date
    champion: int | None
    challenger: int | None
    share: float
    served_n: int
    served_correct: int
    served_up: int | None = None  # outcomes that were up among served_n (None in journals written before it)
    book_return: float | None
    champion_ic: float | None
    drift_alarm: bool
    events: list[str]
    fit_cpu_seconds: float = 0.0


class TimelineTotals(BaseModel):
    """A timeline's totals: lived days, retrains started, promotions, rollbacks, drift alarms, the served accuracy
    over every outcome (a fraction; None before the first) and the refits' CPU seconds."""

    days: int = 0
    retrains: int = 0
    promotions: int = 0
    rollbacks: int = 0
    drift_alarms: int = 0
    served_accuracy: float | None = None
    fit_cpu_seconds: float = 0.0


class Timeline(BaseModel):
    """Every lived day in order, with their :class:`TimelineTotals`."""

    days: list[TimelineDay]
    totals: TimelineTotals


__all__ = ["Timeline", "TimelineDay", "TimelineTotals"]


class Hindsight(BaseModel):
    """One promotion judged on the ``days`` that followed: accuracy of the new champion and of the one replaced."""

    day: date
    new: int
    old: int
    days: int
    new_accuracy: float | None
    old_accuracy: float | None

    @property
    def wrong(self) -> bool:
        return self.new_accuracy is not None and self.old_accuracy is not None and self.new_accuracy < self.old_accuracy


class SetupResult(BaseModel):
    """One setup's figures over the compared days (fractions; ``sharpe`` annualised). ``always_up`` is the
    accuracy of always answering "up" on the same outcomes (the majority class when most days rose), and
    ``vs_always_up`` the paired block-bootstrap test of the served accuracy minus it (None in comparisons of
    timelines written before the up count)."""

    name: str
    workspace: str
    days: int
    first: date | None
    last: date | None
    served_accuracy: Estimate
    always_up: Estimate | None = None
    vs_always_up: PairedTest | None = None
    champion_ic: Estimate
    sharpe: Estimate
    total_return: float | None
    outcomes: int
    retrains: int
    promotions: int
    rollbacks: int
    drift_alarms: int
    wrong_promotions: int
    hindsight: list[Hindsight]
    fit_cpu_seconds: float
    timeline: str

    @property
    def against_always_up(self) -> Comparison | None:
        """The served accuracy against always "up", to word with ``describe_comparison`` (two-sided)."""
        if self.vs_always_up is None:
            return None
        return self.vs_always_up.comparison("accuracy", "always up")


class LiveComparison(BaseModel):
    setups: list[SetupResult]
    hindsight_days: int
    provenance: dict[str, Any]
