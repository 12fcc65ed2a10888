"""Signal measures as the field reports them: IC, Rank IC, ICIR and Rank ICIR, and accuracy against a coin flip.

Per date t, the IC is the Pearson correlation across tickers of the score ``prob_up`` with the next traded return
``ret_next`` (the label's return), the Rank IC the Spearman correlation (Pearson of within-date ranks). Dates with
fewer than 3 tickers or a constant column have none. ICIR = mean / std of the daily IC series (sample std), NOT
annualised, as Qlib reports it; ``icir_annualised`` multiplies it by sqrt(252), as some papers do. CIs are the
circular block bootstrap over dates (``finmlops.stats.bootstrap``); the tests of mean IC = 0 and accuracy = 0.5 are
its null-centred two-sided p-values (``paired_test``), worded with ``describe_comparison``. Accuracy against 0.5 is
meaningful on a balanced label (``cross_sectional``: half the tickers beat the median each day); on ``direction``
the coin flip is not the majority class, which ``vs_baselines`` covers.
"""

from __future__ import annotations

import math

import numpy as np

from finmlops.evaluation.results import Estimate, Metrics, SignalMeasures
from finmlops.stats import Comparison
from finmlops.stats.bootstrap import BootstrapConfig, paired_test

TRADING_DAYS = 252


Interval = Estimate  # the signal's name for a point estimate with its CI


def _mean_test(series: np.ndarray, boot: BootstrapConfig, metric: str, reference: str, margin: float) -> Comparison:
    """Two-sided null-centred block-bootstrap test of mean(series) = ``margin`` over consecutive dates."""
    ok = np.isfinite(series)
    if ok.sum() < 2:
        return Comparison(metric=metric, reference=reference, difference=None, p_value=None)
    test = paired_test(series[ok] - margin, np.arange(int(ok.sum())), boot)
    return test.comparison(metric, reference)


def signal_measures(
    pooled: Metrics,
    ic: np.ndarray,
    rank_ic: np.ndarray,
    correct: np.ndarray,
    date_idx: np.ndarray,
    boot: BootstrapConfig,
) -> SignalMeasures:
    """From a model's pooled metrics with CIs (``metrics_with_ci``), its daily ``ic``/``rank_ic`` ``[n_dates]``,
    and its rows' 0/1 ``correct`` ``[n]`` on dates ``date_idx`` ``[n]``."""

    root = math.sqrt(TRADING_DAYS)
    acc = paired_test(np.asarray(correct, dtype=float) - 0.5, date_idx, boot)
    return SignalMeasures(
        ic=pooled.ic,
        rank_ic=pooled.rank_ic,
        icir=pooled.icir,
        rank_icir=pooled.rank_icir,
        icir_annualised=pooled.icir.scaled(root),
        rank_icir_annualised=pooled.rank_icir.scaled(root),
        n_ic_dates=int(np.isfinite(ic).sum()),
        ic_vs_zero=_mean_test(ic, boot, "IC", "zero IC", 0.0),
        rank_ic_vs_zero=_mean_test(rank_ic, boot, "rank IC", "zero rank IC", 0.0),
        accuracy=float(np.mean(correct)),
        accuracy_vs_half=acc.comparison("accuracy", "a coin flip (0.5)"),
    )
