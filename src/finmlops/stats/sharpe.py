"""The deflated Sharpe ratio (Bailey and Lopez de Prado 2014): is the best Sharpe of several tries more than luck?"""

from __future__ import annotations

import math

from scipy import stats

EULER_GAMMA = 0.5772156649015329


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """Expected maximum of ``n_trials`` per-period Sharpe estimates under the null of no skill.

    Bailey & Lopez de Prado (2014), eq. for SR_0: sqrt(V[SR]) * ((1 - g) Z(1 - 1/N) + g Z(1 - 1/(N e))), with g
    the Euler-Mascheroni constant and Z the standard normal quantile. 0 for a single trial.
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if n_trials == 1 or sharpe_variance <= 0:
        return 0.0
    z = stats.norm.ppf
    return math.sqrt(sharpe_variance) * (
        (1 - EULER_GAMMA) * z(1 - 1 / n_trials) + EULER_GAMMA * z(1 - 1 / (n_trials * math.e))
    )


def deflated_sharpe(
    sharpe: float, *, n_obs: int, skew: float, kurtosis: float, n_trials: int, sharpe_variance: float
) -> float:
    """Deflated Sharpe ratio: the probability that the true per-period Sharpe exceeds the best of ``n_trials``
    unskilled tries, correcting for non-normal returns (``kurtosis`` is the raw, non-excess kurtosis).

    DSR = Phi((SR - SR_0) sqrt(T - 1) / sqrt(1 - skew SR + (kurtosis - 1) / 4 SR^2)), SR per period.
    """
    sr0 = expected_max_sharpe(n_trials, sharpe_variance)
    denom = 1 - skew * sharpe + (kurtosis - 1) / 4 * sharpe**2
    if not (math.isfinite(sharpe) and n_obs > 1 and denom > 0):
        return float("nan")
    return float(stats.norm.cdf((sharpe - sr0) * math.sqrt(n_obs - 1) / math.sqrt(denom)))
