"""The lived days of a ``finmlops live`` workspace as a timeline (``<workspace>/results/live_timeline.json``).

One type for the writer and the readers: ``finmlops.workflow.daily.live_timeline`` builds it from the journal,
``finmlops.workflow.live_compare`` and the report's live section (``finmlops.report.sections.live``) read it; it
lives here, below both in the layers (pyproject's import-linter contract).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel


class TimelineDay(BaseModel):
    """One lived day: who served, the canary share, the day's hits of the served answers (of the day whose
    outcome became known), the champion's IC, the drift alarm and the day's events."""

    day: date
    champion: int | None
    challenger: int | None
    share: float
    served_n: int
    served_correct: int
    book_return: float | None
    champion_ic: float | None
    drift_alarm: bool
    events: list[str]
    fit_cpu_seconds: float = 0.0


class Timeline(BaseModel):
    """Every lived day in order, with ``totals``: days, retrains, promotions, rollbacks, drift alarms, the served
    accuracy over every outcome (None before the first) and the refits' CPU seconds."""

    days: list[TimelineDay]
    totals: dict[str, Any]


__all__ = ["Timeline", "TimelineDay"]
