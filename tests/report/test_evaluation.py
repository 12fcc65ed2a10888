"""The evaluation table words every model-vs-baseline test with ``describe_comparison``: the signed difference,
the side and a verdict, so a significantly worse model never reads as a win."""

from __future__ import annotations

from html import escape
from typing import Any

from finmlops.evaluation.results import BaselineTest, EvaluationResult
from finmlops.report.sections import evaluation
from finmlops.settings import Settings
from finmlops.stats import describe_comparison


def test_a_significantly_worse_model_reads_worse_than_the_baseline() -> None:
    test = BaselineTest(difference=-0.006, ci_low=-0.011, ci_high=-0.001, p_value=0.025)
    c = test.comparison("accuracy", "majority")
    assert describe_comparison(c) == "worse than majority (accuracy -0.006, two-sided p = 0.025)"
    assert c.verdict == "worse"


def test_every_paired_test_of_the_workspace_is_printed_with_its_verdict(workspace: Settings, result: Any) -> None:
    ev = EvaluationResult.model_validate(result(workspace, "evaluation.json"))
    body = evaluation.build(workspace).body
    tested = 0
    for model in ev.models.values():
        for baseline, test in model.vs_baselines.items():
            assert escape(describe_comparison(test.comparison("accuracy", baseline))) in body
            assert f"CI of the difference [{test.ci_low:+.3f}, {test.ci_high:+.3f}]" in body
            tested += 1
    assert tested >= 2
    assert "p=" not in body  # the old unsigned "(p=0.025)" wording is gone
