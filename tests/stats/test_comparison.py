"""The comparison wording: a significant negative difference reads 'worse', never as a win."""

from __future__ import annotations

import pytest

from finmlops.stats import Comparison, describe_comparison


@pytest.mark.parametrize(
    ("difference", "p", "side", "verdict"),
    [
        (-0.006, 0.025, "two-sided", "worse"),
        (0.012, 0.01, "two-sided", "better"),
        (0.012, 0.30, "two-sided", "not different"),
        (-0.02, 0.001, "greater", "not different"),
        (0.02, 0.001, "greater", "better"),
        (float("nan"), 0.5, "two-sided", "undefined"),
        (0.01, None, "two-sided", "undefined"),
    ],
)
def test_verdict_follows_sign_side_and_alpha(difference: float, p: float | None, side: str, verdict: str) -> None:
    c = Comparison(metric="accuracy", reference="majority", difference=difference, p_value=p, side=side)
    assert c.verdict == verdict


def test_the_replaced_systems_summary_reads_as_what_it_was() -> None:
    c = Comparison(metric="accuracy", reference="majority", difference=0.520 - 0.526, p_value=0.025)
    assert describe_comparison(c) == "worse than majority (accuracy -0.006, two-sided p = 0.025)"
    tiny = Comparison(metric="accuracy", reference="momentum", difference=0.03, p_value=1e-6)
    assert tiny.sentence == "better than momentum (accuracy +0.030, two-sided p < 0.001)"
