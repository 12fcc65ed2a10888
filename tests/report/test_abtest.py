"""The A/B section: requests without ``as_of`` are kept off the trading-day axis and listed apart (with a note that
says so), and each challenger's test is worded as a comparison with the control."""

from __future__ import annotations

import re
from html import escape
from typing import Any

from finmlops.report.sections import abtest
from finmlops.report.sections.abtest import AbTest, Clock, Day, split_days
from finmlops.settings import Settings
from finmlops.stats import describe_comparison


def _axis_dates(svg_html: str) -> set[str]:
    return set(re.findall(r'<text class="tick"[^>]*>(\d{4}-\d\d-\d\d)</text>', svg_html))


def test_hand_sent_requests_are_listed_apart_from_the_replayed_days(workspace: Settings) -> None:
    section = abtest.build(workspace)
    charts, apart = section.body.split("wall-clock day", 1)
    dates = _axis_dates(charts)
    assert dates and all(d.startswith("2024-03") for d in dates)  # the replay's days only
    assert "3 served request(s) carried no as_of" in charts  # the note sits just above the table
    rows = re.findall(r"<tr><td>(\d{4}-\d\d-\d\d)</td>", apart)
    assert rows == ["2026-11-30", "2026-12-01"]  # the day they were sent, and the day their outcome came
    assert str(workspace.home / "serving" / "requests.db") in section.sources


def test_without_any_as_of_the_wall_clock_days_are_the_axis_and_the_page_says_so() -> None:
    days = [Day(date=d, traffic_share={}, accuracy={}) for d in ("2024-03-04", "2024-03-05")]
    assert split_days(days, Clock(frozenset(), without_as_of=10)) == (days, [])
    assert split_days(days, None) == (days, [])
    later = [*days, Day(date="2026-11-30", traffic_share={}, accuracy={})]  # a hand-sent request's wall-clock day
    assert split_days(later, Clock(frozenset({"2024-03-04"}), 1)) == (days, later[2:])


def test_each_challenger_is_worded_by_describe_comparison(workspace: Settings, result: Any) -> None:
    ab = AbTest.model_validate(result(workspace, "abtest_ab.json"))
    body = abtest.build(workspace).body
    for c in ab.comparisons:
        sentence = describe_comparison(abtest.as_comparison(c, ab.decision.level))
        assert sentence.startswith(("better than", "worse than", "not different from")) and escape(sentence) in body
        assert f"{c.difference:+.3f}" in sentence


def test_the_decision_names_its_arm_and_leaves_the_numbers_to_the_comparisons(workspace: Settings) -> None:
    body = abtest.build(workspace).body
    # The fixture's replay is shorter than the day-unit mSPRT's 20 days of outcomes, so it continues.
    assert "Decision: <b>CONTINUE</b>" in body
    assert "beats" not in body  # the decision's own wording of the difference is not repeated beside the sentence
    ab = AbTest.model_validate_json((workspace.results_dir / "abtest_ab.json").read_text())
    won = ab.decision.model_copy(update={"action": "promote", "arm": "enhanced-predictor"})
    assert "Decision: <b>PROMOTE</b> enhanced-predictor<br>" in abtest.render(
        ab.model_copy(update={"decision": won}), None
    )
    reason = "no challenger is significantly different from the control yet"
    held = ab.decision.model_copy(update={"action": "continue", "arm": None, "reason": reason})
    assert f"Decision: <b>CONTINUE</b>: {reason}<br>" in abtest.render(ab.model_copy(update={"decision": held}), None)
