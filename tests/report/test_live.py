"""The report's live section: the comparison's figures as written, each setup's timeline, and no section at all for
a workspace that never lived."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from finmlops.provenance import write_json_atomic
from finmlops.report.page import collect_sections
from finmlops.report.sections import live
from finmlops.settings import Settings


def _timeline(path: Path) -> None:
    days = []
    for i in range(30):
        events = ["retrain started (schedule)"] if i == 5 else ["promote v2 (replaces v1)"] if i == 20 else []
        days.append(
            {
                "day": str(date(2022, 1, 3) + timedelta(days=i)),
                "champion": 1 if i <= 20 else 2,
                "challenger": 2 if 6 <= i <= 20 else None,
                "share": 0.5 if 10 <= i <= 20 else 0.0,
                "served_n": 3,
                "served_correct": i % 3,
                "book_return": 0.001,
                "champion_ic": 0.1,
                "drift_alarm": i == 7,
                "events": events,
                "fit_cpu_seconds": 0.0,
            }
        )
    write_json_atomic(path, {"days": days, "totals": {"days": 30}})


def test_live_section_shows_the_comparison_and_the_timeline(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    timeline = tmp_path / "live" / "monthly" / "results" / "live_timeline.json"
    _timeline(timeline)
    estimate = {"value": 0.5123, "ci_low": 0.4811, "ci_high": 0.5432}
    setup = {
        "name": "monthly", "days": 30, "first": "2022-01-03", "last": "2022-02-01", "served_accuracy": estimate,
        "champion_ic": {"value": 0.0312, "ci_low": -0.01, "ci_high": 0.07}, "sharpe": {"value": 0.8, "ci_low": -1.0,
        "ci_high": 2.5}, "total_return": 0.03, "outcomes": 90, "retrains": 1, "promotions": 1, "rollbacks": 0,
        "drift_alarms": 1, "wrong_promotions": 1, "hindsight": [], "fit_cpu_seconds": 12.0, "timeline": str(timeline),
        "workspace": "live/monthly", "always_up": {"value": 0.5412, "ci_low": 0.501, "ci_high": 0.58},
        "vs_always_up": {"difference": -0.0289, "ci_low": -0.05, "ci_high": -0.007, "margin": 0.0, "p_value": 0.012,
                         "p_value_greater": 0.99, "n_rows": 90, "n_dates": 30, "n_boot": 1000, "block_len": 10},
    }  # fmt: skip
    # An older file (no always-up comparison) renders too, with a dash.
    older = {k: v for k, v in setup.items() if k not in ("always_up", "vs_always_up")} | {"name": "older"}
    comparison = {"setups": [setup, older], "hindsight_days": 63, "provenance": {}}
    write_json_atomic(settings.results_dir / "live_comparison.json", comparison)
    section = live.build(settings)
    assert section.filled and str(timeline) in section.sources
    assert "0.512 [0.481, 0.543]" in section.body and "1 of 1" in section.body
    # The served accuracy against always up: signed, sided, and worded as worse, not as a figure to admire.
    assert "0.541 [0.501, 0.580]" in section.body
    assert "worse than always up (accuracy -0.029, two-sided p = 0.012)" in section.body
    assert "champion version by day" in section.body and "promote v2 (replaces v1)" in section.body
    assert "drift alarms on 1 of 30 days" in section.body


def test_a_workspace_that_never_lived_has_no_live_section(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert not live.build(settings).filled
    assert "live" not in [s.key for s in collect_sections(settings)]
    _timeline(tmp_path / "live" / "x" / "results" / "live_timeline.json")  # lived, not compared: the timeline alone
    assert "live" in [s.key for s in collect_sections(settings)]
