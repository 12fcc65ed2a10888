"""The day-unit mSPRT: calibrated with correlated same-day outcomes (where the per-outcome test is not), powered,
and equal to its closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from finmlops.stats.sequential import (
    daily_msprt,
    per_outcome_msprt,
    rejection_rate,
    simulate_days,
    wilson_interval,
)

EXPERIMENTS = 2000
# Two standard errors of a 5% rejection rate estimated from EXPERIMENTS simulated A/A tests.
SIMULATION_ERROR = 2 * math.sqrt(0.05 * 0.95 / EXPERIMENTS)


@pytest.mark.parametrize("per_day", [10, 100])
def test_false_positive_rate_with_correlated_same_day_outcomes(per_day: int) -> None:
    """A/A: 52% accuracy in both arms, 70/30 traffic, a day-level accuracy spread of 0.10 per arm, 250 daily looks
    (a trading year), 2000 experiments. The day-unit test stays at alpha; the per-outcome test does not at 100 a
    day (its variance ignores that a day's outcomes move together)."""
    days = simulate_days(0.52, 0.52, outcomes_per_day=per_day, share_b=0.3, day_sd=0.10, experiments=EXPERIMENTS)
    assert rejection_rate(daily_msprt(*days)) <= 0.05 + SIMULATION_ERROR
    if per_day == 100:
        assert rejection_rate(per_outcome_msprt(*days)) > 0.2


def test_false_positive_rate_when_the_arms_share_the_day() -> None:
    """Day effects correlated between the arms (both models right on the same days) and none at all."""
    for correlation, day_sd in ((0.8, 0.10), (0.0, 0.0)):
        days = simulate_days(0.55, 0.55, outcomes_per_day=100, day_sd=day_sd, correlation=correlation, seed=3)
        assert rejection_rate(daily_msprt(*days)) <= 0.05 + SIMULATION_ERROR


def test_a_real_difference_is_detected() -> None:
    """52% vs 57% with the same day-level spread, 100 outcomes a day: power over a year of daily looks; with
    independent outcomes the day-unit test is as powerful as the per-outcome one."""
    days = simulate_days(0.52, 0.57, outcomes_per_day=100, day_sd=0.10, seed=4)
    assert rejection_rate(daily_msprt(*days)) >= 0.85
    iid = simulate_days(0.52, 0.56, outcomes_per_day=100, day_sd=0.0, seed=5)
    assert rejection_rate(daily_msprt(*iid)) == pytest.approx(rejection_rate(per_outcome_msprt(*iid)), abs=0.03)
    small = simulate_days(0.52, 0.53, outcomes_per_day=100, day_sd=0.10, days=60, seed=6)
    assert rejection_rate(daily_msprt(*small)) < 0.3  # a 1-point gain needs far more data: "continue"


def test_daily_msprt_matches_its_closed_form() -> None:
    """Three days; theta_hat is the pooled difference, V the cluster-robust variance by day with D/(D-1)."""
    n_a, s_a = np.array([150, 120, 130]), np.array([80, 55, 73])
    n_b, s_b = np.array([60, 50, 70]), np.array([40, 25, 41])
    out = daily_msprt(n_a, s_a, n_b, s_b, min_outcomes=100, min_days=3)
    p_a, p_b = s_a.sum() / n_a.sum(), s_b.sum() / n_b.sum()
    u = (s_b - p_b * n_b) / n_b.sum() - (s_a - p_a * n_a) / n_a.sum()
    v = (u**2).sum() * 3 / 2
    lam = math.sqrt(v / (v + 0.0025)) * math.exp(0.0025 * (p_b - p_a) ** 2 / (2 * v * (v + 0.0025)))
    assert float(out["difference"][-1]) == pytest.approx(p_b - p_a)
    assert float(out["variance"][-1]) == pytest.approx(v)
    assert float(out["log_lambda"][-1]) == pytest.approx(math.log(lam))
    assert float(out["p_value"][-1]) == pytest.approx(min(1, 1 / lam))
    # Not yet tested: too few outcomes in b on day 1, too few days on day 2.
    assert out["log_lambda"][:2].tolist() == [0.0, 0.0] and np.isinf(out["half_width"][:2]).all()
    # The confidence sequence excludes 0 exactly when Lambda crosses 1/alpha.
    assert (float(out["difference"][-1] - out["half_width"][-1]) > 0) == (lam >= 20)


def test_wilson_interval() -> None:
    assert wilson_interval(50, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and high == pytest.approx(0.1611, abs=1e-4)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
