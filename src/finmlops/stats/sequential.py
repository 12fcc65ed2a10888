"""Always-valid sequential testing of an accuracy difference between two arms, with the trading day as the unit.

The test is the mixture sequential probability ratio test (mSPRT) with a normal mixture N(0, tau^2) over the
difference theta = acc(b) - acc(a), in the normal approximation of Johari, Koomen, Pekelis and Walsh ("Peeking at
A/B tests", KDD 2017; "Always valid inference", Operations Research 2022). With the estimate theta_hat and its
variance V:

    Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 * theta_hat^2 / (2 V (V + tau^2)))

Lambda is (asymptotically) a nonnegative martingale under H0: theta = 0, so by Ville's inequality
P(Lambda ever >= 1/alpha) <= alpha at any number of looks. The always-valid p-value is the running minimum of
1/Lambda.

The outcomes of one trading day are not independent: the tickers of a day move together, so a model is right or
wrong on many of them at once. A variance that counts every outcome as independent (p(1-p)/n) is then too small,
and the test rejects far more often than alpha. :func:`daily_msprt` therefore treats each day as one cluster:
theta_hat is the pooled accuracy difference and V its cluster-robust (by day) variance, which includes the
covariance of the two arms within a day.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

ALPHA = 0.05
# Prior scale of the accuracy difference: differences between direction models are a few points at most.
TAU = 0.05
# Below this many labelled outcomes per arm the normal approximation is not trusted.
MIN_OUTCOMES = 100
# Below this many days with outcomes the cluster-robust variance is too noisy to test on.
MIN_DAYS = 20


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (Wilson 1927); (nan, nan) when n = 0."""
    if n == 0:
        return float("nan"), float("nan")
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def msprt(
    difference: np.ndarray, variance: np.ndarray, tested: np.ndarray, *, tau: float = TAU, alpha: float = ALPHA
) -> dict[str, np.ndarray]:
    """The mSPRT of estimates ``difference`` with ``variance`` at each look (any array shape, e.g. ``[experiments,
    looks]``), where ``tested`` (bool, same shape) says the look may be tested.

    Returns arrays of that shape: ``difference``, ``variance``, ``log_lambda`` (0 where not tested), ``boundary``
    (log(1/alpha)), ``half_width`` of the always-valid confidence sequence theta_hat +- half_width (inf where not
    tested) and ``p_value`` (1/Lambda, capped at 1; take the running minimum over looks for the always-valid one).
    """
    diff = np.asarray(difference, dtype=np.float64)
    tested = np.asarray(tested, dtype=bool) & (np.asarray(variance) > 0) & np.isfinite(diff)
    v = np.where(tested, variance, 1.0)
    t2 = tau * tau
    log_lambda = np.where(
        tested, 0.5 * np.log(v / (v + t2)) + t2 * np.where(tested, diff, 0) ** 2 / (2 * v * (v + t2)), 0.0
    )
    log_boundary = math.log(1 / alpha)
    half = np.sqrt(2 * v * (v + t2) / t2 * (log_boundary + 0.5 * np.log((v + t2) / v)))
    return {
        "difference": diff,
        "variance": np.where(tested, v, np.nan),
        "log_lambda": log_lambda,
        "boundary": np.full_like(log_lambda, log_boundary),
        "half_width": np.where(tested, half, np.inf),
        "p_value": np.minimum(1.0, np.exp(-log_lambda)),
    }


def daily_msprt(
    n_a: np.ndarray,
    s_a: np.ndarray,
    n_b: np.ndarray,
    s_b: np.ndarray,
    *,
    tau: float = TAU,
    alpha: float = ALPHA,
    min_outcomes: int = MIN_OUTCOMES,
    min_days: int = MIN_DAYS,
) -> dict[str, np.ndarray]:
    """The mSPRT of acc(b) - acc(a) after each day, the day as the unit; one look per day.

    ``n_*``: labelled outcomes, ``s_*``: correct ones, of control (a) and challenger (b) that became known on each
    day, shape ``[..., days]`` (the last axis is the day). theta_hat is the pooled difference S_b/N_b - S_a/N_a of
    the days so far; V its cluster-robust variance by day, D/(D-1) sum_d (e_bd/N_b - e_ad/N_a)^2, with the day's
    residuals e_d = s_d - p n_d and D the days with outcomes. A look is tested from ``min_outcomes`` outcomes per
    arm and ``min_days`` days on. Returns :func:`msprt`'s arrays ``[..., days]`` plus ``days`` (D).
    """
    n_a, s_a, n_b, s_b = (np.asarray(v, dtype=np.float64) for v in (n_a, s_a, n_b, s_b))
    total_a, total_b = np.cumsum(n_a, axis=-1), np.cumsum(n_b, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_a, p_b = np.cumsum(s_a, axis=-1) / total_a, np.cumsum(s_b, axis=-1) / total_b

        def cum(x: np.ndarray) -> np.ndarray:
            return np.cumsum(x, axis=-1)

        # sum_d (e_bd / N_b - e_ad / N_a)^2 expanded into cumulative sums, so every look costs O(1).
        ee_a = cum(s_a**2) - 2 * p_a * cum(s_a * n_a) + p_a**2 * cum(n_a**2)
        ee_b = cum(s_b**2) - 2 * p_b * cum(s_b * n_b) + p_b**2 * cum(n_b**2)
        ee_ab = cum(s_a * s_b) - p_b * cum(s_a * n_b) - p_a * cum(n_a * s_b) + p_a * p_b * cum(n_a * n_b)
        days = cum(((n_a + n_b) > 0).astype(np.float64))
        robust = ee_b / total_b**2 + ee_a / total_a**2 - 2 * ee_ab / (total_a * total_b)
        variance = np.maximum(robust, 0.0) * days / (days - 1)
        tested = (total_a >= min_outcomes) & (total_b >= min_outcomes) & (days >= max(min_days, 2))
        out = msprt(p_b - p_a, variance, tested, tau=tau, alpha=alpha)
    return out | {"days": days}


def per_outcome_msprt(
    n_a: np.ndarray, s_a: np.ndarray, n_b: np.ndarray, s_b: np.ndarray, *, min_outcomes: int = MIN_OUTCOMES
) -> dict[str, np.ndarray]:
    """The mSPRT that counts every outcome as independent (V = p_a(1-p_a)/N_a + p_b(1-p_b)/N_b), on the same per-day
    inputs as :func:`daily_msprt`: finmlops' test before the day became its unit, kept as the reference that the
    calibration (docs/monitoring.md, tests/stats/test_sequential.py) is measured against. Not for decisions."""
    totals = [np.cumsum(np.asarray(x, dtype=np.float64), axis=-1) for x in (n_a, s_a, n_b, s_b)]
    total_a, correct_a, total_b, correct_b = totals
    with np.errstate(divide="ignore", invalid="ignore"):
        p_a, p_b = correct_a / total_a, correct_b / total_b
        variance = p_a * (1 - p_a) / total_a + p_b * (1 - p_b) / total_b
        return msprt(p_b - p_a, variance, (total_a >= min_outcomes) & (total_b >= min_outcomes))


def simulate_days(
    p_a: float,
    p_b: float,
    *,
    outcomes_per_day: int,
    share_b: float = 0.3,
    day_sd: float = 0.10,
    correlation: float = 0.0,
    days: int = 250,
    experiments: int = 2000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Simulated A/B tests with correlated same-day outcomes: ``(n_a, s_a, n_b, s_b)``, each ``[experiments, days]``.

    Each day ``outcomes_per_day`` outcomes are routed to b with probability ``share_b``. On day d arm x is right
    with probability p_x + u_xd, the day effects u_xd ~ N(0, ``day_sd``^2) (correlation ``correlation`` between the
    arms; clipped to [0, 1]) shared by all of that arm's outcomes of the day, as when a model calls most tickers
    of a day the same way and the tickers move together.
    """
    rng = np.random.default_rng(seed)
    shape = (experiments, days)
    n_b = rng.binomial(outcomes_per_day, share_b, size=shape)
    n_a = outcomes_per_day - n_b
    z_a = rng.standard_normal(shape)
    z_b = correlation * z_a + math.sqrt(1 - correlation**2) * rng.standard_normal(shape)
    s_a = rng.binomial(n_a, np.clip(p_a + day_sd * z_a, 0, 1))
    s_b = rng.binomial(n_b, np.clip(p_b + day_sd * z_b, 0, 1))
    return n_a, s_a, n_b, s_b


def rejection_rate(test: dict[str, np.ndarray]) -> float:
    """Share of experiments (rows of ``test``'s ``[experiments, looks]`` arrays) whose boundary is crossed at any
    look: the false-positive rate under H0, the power otherwise."""
    return float((test["log_lambda"] >= test["boundary"]).any(axis=-1).mean())
