"""The audit table prints the interval that decided each check, so "not above Bayes 0.600: PASS" beside an accuracy
of 0.615 is read with the CI whose lower bound is at or below 0.600."""

from __future__ import annotations

from finmlops.evaluation.audit import Check, load_audit
from finmlops.report.sections import audit
from finmlops.report.sections.audit import evidence, percent
from finmlops.settings import Settings


def _check(name: str, value: float, low: float, high: float) -> Check:
    return Check.model_validate({
        "scenario": "planted", "model": "m", "check": name, "passed": True, "detail": f"acc {value:.4f}",
        "metrics": {"accuracy": {"value": value, "ci_low": low, "ci_high": high}},
    })  # fmt: skip


def test_a_bayes_check_prints_its_ci_and_where_the_bayes_rate_falls() -> None:
    inside = evidence(_check("accuracy not above Bayes 0.600", 0.615, 0.589, 0.641), 0.99833, 0.6)
    assert inside == "accuracy 0.6150, 99.833% CI [0.5890, 0.6410]; Bayes 0.600 inside: not above it"
    above = evidence(_check("accuracy above Bayes flagged", 0.70, 0.66, 0.74), 0.95, 0.6)
    assert above.endswith("lower bound 0.6600 > Bayes 0.600: above it")
    below = evidence(_check("recovers Bayes 0.600", 0.52, 0.50, 0.54), 0.95, 0.6)
    assert below.endswith("upper bound 0.5400 < Bayes 0.600: below it")
    # A check against 0.5 gets its interval, with no word about the Bayes rate.
    assert evidence(_check("accuracy CI contains 0.5", 0.501, 0.48, 0.52), 0.95, 0.6) == (
        "accuracy 0.5010, 95% CI [0.4800, 0.5200]"
    )
    assert percent(0.95) == "95%" and percent(0.99833) == "99.833%"


def test_the_section_shows_each_checks_evidence_and_the_level(workspace: Settings) -> None:
    body = audit.build(workspace).body
    assert '<td>accuracy not above Bayes 0.600</td><td><span class="pass">PASS</span></td>' in body
    assert "accuracy 0.6150, 99.833% CI [0.5890, 0.6410]; Bayes 0.600 inside: not above it" in body
    assert "Every interval is at level 99.833%" in body
    # A check without metrics (the leak probe's flag) has no interval to print.
    flagged = load_audit(workspace.results_dir).checks[-1]
    assert evidence(flagged, 0.99833, 0.6) == "–"
