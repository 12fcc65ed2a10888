"""IC, Rank IC, ICIR and their CIs against scipy and a simulation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from finmlops.evaluation.metrics import evaluate_predictions
from finmlops.stats.bootstrap import BootstrapConfig


def _frame(n_dates: int, n_tickers: int, rho: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=n_dates)
    z = rng.normal(size=(n_dates, n_tickers))
    ret = rho * z + np.sqrt(1 - rho**2) * rng.normal(size=(n_dates, n_tickers))
    prob = 1 / (1 + np.exp(-z))
    return pd.DataFrame({
        "date": np.repeat(dates, n_tickers), "ticker": np.tile([f"T{i}" for i in range(n_tickers)], n_dates),
        "fold": "f", "model": "m", "prob_up": prob.ravel(), "ret_next": ret.ravel() / 100,
        "y_true": (ret.ravel() > 0).astype(int),
    })  # fmt: skip


def test_ic_rank_ic_and_icir_match_scipy_on_hand_data() -> None:
    preds = _frame(12, 7, 0.3, 1)
    sig = evaluate_predictions(preds, baselines=(), boot=BootstrapConfig(n_boot=50)).models["m"].signal
    assert sig is not None
    by_date = list(preds.groupby("date"))
    ic = np.array([stats.pearsonr(g["prob_up"], g["ret_next"])[0] for _, g in by_date])
    ric = np.array([stats.spearmanr(g["prob_up"], g["ret_next"])[0] for _, g in by_date])
    assert sig.ic.value == pytest.approx(ic.mean())
    assert sig.rank_ic.value == pytest.approx(ric.mean())
    assert sig.icir.value == pytest.approx(ic.mean() / ic.std(ddof=1))
    assert sig.rank_icir.value == pytest.approx(ric.mean() / ric.std(ddof=1))
    assert sig.icir_annualised.value == pytest.approx(ic.mean() / ic.std(ddof=1) * np.sqrt(252))
    assert sig.n_ic_dates == 12


def test_bootstrap_ci_of_the_ic_covers_the_truth_in_most_simulations() -> None:
    # The score's true IC: Pearson(sigmoid(z), rho z + noise) = rho * corr(sigmoid(z), z).
    z = np.random.default_rng(99).normal(size=2_000_000)
    truth = 0.1 * np.corrcoef(1 / (1 + np.exp(-z)), z)[0, 1]
    covered = 0
    for seed in range(20):
        sig = evaluate_predictions(_frame(120, 30, 0.1, seed), baselines=(), boot=BootstrapConfig(n_boot=200))
        signal = sig.models["m"].signal
        assert signal is not None
        covered += signal.ic.contains(truth)
    assert covered >= 16  # 95 % CIs: 19 expected; fewer than 16 of 20 has probability < 2 %


def test_accuracy_against_a_coin_flip_is_worded_with_sign_side_and_p() -> None:
    sig = evaluate_predictions(_frame(200, 20, 0.3, 3), baselines=(), boot=BootstrapConfig(n_boot=200))
    signal = sig.models["m"].signal
    assert signal is not None
    acc = signal.accuracy_vs_half
    assert acc.side == "two-sided" and acc.difference is not None and acc.difference > 0
    assert acc.p_value is not None and acc.p_value < 0.05
    null = evaluate_predictions(_frame(200, 20, 0.0, 4), baselines=(), boot=BootstrapConfig(n_boot=200))
    null_signal = null.models["m"].signal
    assert null_signal is not None and null_signal.ic_vs_zero.p_value is not None
    assert null_signal.ic_vs_zero.p_value > 0.01
