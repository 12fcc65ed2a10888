"""The typed journal of ``finmlops live``: a day journalled in the dict format of before the phases were typed
validates into the phase models, is written back with the same keys, and the timeline reads it."""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path
from typing import Any

from finmlops.settings import Settings
from finmlops.workflow.daily import (
    DayRecord,
    DriftPhase,
    FeedbackPhase,
    LivePaths,
    Timeline,
    _write_day,
    live_timeline,
    read_day,
)


def _old_day(day: str, decided: str | None) -> dict[str, Any]:
    """A finished day as the loop journalled it with dict phases (empty ``{}`` when a phase did nothing)."""
    feedback: dict[str, Any] = {}
    if decided is not None:
        feedback = {
            "decided": decided, "posted": 2,
            "models": {"1": {"n": 2, "correct": 1, "ic": None}, "2": {"n": 2, "correct": 2, "ic": 0.5}},
            "served": {"n": 2, "correct": 1, "book_return": 0.01},
            "outcomes": {"AAPL": {"outcome": 1, "return": 0.01}, "MSFT": {"outcome": None, "return": float("nan")}},
        }  # fmt: skip
    return {
        "day": day, "index": 0, "done": True,
        "state": {"day_index": 1, "champion": 1, "challenger": 2, "scored": [day]},
        "phases": {
            "ingest": {"added_rows": 2, "store_version": 3, "changed": True, "warnings": []},
            "collect": {"version": 2, "refit": "refit-20220103", "reason": "schedule", "fit_seconds": 4.0,
                        "fit_cpu_seconds": 7.5, "events": ["challenger v2 (schedule)"]},
            "score": {"champion": 1, "challenger": 2, "share": 0.25, "tickers": ["AAPL", "MSFT"],
                      "probs": {"1": [0.6, 0.4], "2": [0.7, 0.3]}, "served": {"AAPL": 2, "MSFT": 1}},
            "feedback": feedback,
            "rollout": {"decision": "hold", "step": 25, "evidence": {"difference": 0.0, "tested": False}},
            "drift": {"psi": {"ret": 0.1}, "scaled": {"ret": 1.2}, "statistic": 1.2, "threshold": 3.0,
                      "drifted": [], "alarm": False, "events": []},
            "retrain": {},
        },
    }  # fmt: skip


def test_an_old_journal_validates_into_the_phase_models(tmp_path: Path) -> None:
    old = _old_day("2022-01-04", "2022-01-03")
    record = DayRecord.model_validate_json(json.dumps(old))  # NaN as the old journals wrote it
    phases = record.phases
    assert phases.score is not None and phases.score.probs["2"] == [0.7, 0.3] and phases.score.served["AAPL"] == 2
    assert isinstance(phases.feedback, FeedbackPhase) and phases.feedback.decided == date(2022, 1, 3)
    assert phases.feedback.models["2"].ic == 0.5 and phases.feedback.served is not None
    assert phases.feedback.outcomes is not None and math.isnan(phases.feedback.outcomes["MSFT"].return_)
    assert isinstance(phases.drift, DriftPhase) and not phases.drift.alarm
    assert phases.rollout is not None and phases.rollout.decision == "hold" and phases.rollout.step == 25
    assert phases.retrain is not None and phases.retrain.refit is None  # an empty phase: it ran, did nothing
    assert phases.events() == ["challenger v2 (schedule)"]

    paths = LivePaths(Settings(home=tmp_path))
    _write_day(paths, record)
    written = json.loads(paths.day_file(record.day).read_text())
    for name, phase in old["phases"].items():  # every key of before is written back (typed defaults added)
        assert set(phase) <= set(written["phases"][name]), name
    assert written["phases"]["feedback"]["outcomes"]["AAPL"] == {"outcome": 1, "return": 0.01}
    again = read_day(paths, record.day)
    assert again is not None and again.model_dump_json() == record.model_dump_json()  # NaN != NaN: compare JSON


def test_an_unfinished_day_journals_only_the_phases_that_ran(tmp_path: Path) -> None:
    old = _old_day("2022-01-03", None)
    old["phases"] = {"ingest": old["phases"]["ingest"]}
    old["done"] = False
    paths = LivePaths(Settings(home=tmp_path))
    _write_day(paths, DayRecord.model_validate(old))
    assert list(json.loads(paths.day_file(date(2022, 1, 3)).read_text())["phases"]) == ["ingest"]


def test_the_timeline_reads_old_journals(tmp_path: Path) -> None:
    paths = LivePaths(Settings(home=tmp_path))
    paths.journal.mkdir(parents=True)
    for day, decided in (("2022-01-03", None), ("2022-01-04", "2022-01-03")):
        (paths.journal / f"{day}.json").write_text(json.dumps(_old_day(day, decided)))
    timeline = live_timeline(paths)
    first, second = timeline.days
    assert first.served_n == 0 and first.served_up == 0 and first.book_return is None and first.champion_ic is None
    assert second.served_n == 2 and second.served_correct == 1 and second.served_up == 1
    assert second.book_return == 0.01 and second.champion_ic is None  # v1 (the champion) had no defined IC
    assert second.share == 0.25 and second.fit_cpu_seconds == 7.5 and not second.drift_alarm
    totals = timeline.totals
    assert totals.days == 2 and totals.served_accuracy == 0.5 and totals.fit_cpu_seconds == 15.0
    assert totals.retrains == totals.promotions == totals.rollbacks == totals.drift_alarms == 0
    assert Timeline.model_validate_json(timeline.model_dump_json()) == timeline
