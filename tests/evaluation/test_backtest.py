"""Backtest arithmetic against a hand-computed three-day example, the traded return is the label's, the deflated
Sharpe ratio against the paper."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from finmlops.evaluation.backtest import (
    BacktestConfig,
    deflated_sharpe,
    expected_max_sharpe,
    performance,
    priced_rows,
    run_backtest,
    simulate,
    target_weights,
)
from finmlops.evaluation.metrics import validate_predictions
from finmlops.features import LabelSpec, forward_return, make_target

DATES = pd.to_datetime(["2023-01-03", "2023-01-04", "2023-01-05"])


@pytest.fixture
def three_days() -> pd.DataFrame:
    """Two tickers, three decision dates. Hand-computed results below use 5 bps cost + 5 bps slippage."""
    return pd.DataFrame(
        {
            "date": np.repeat(DATES, 2),
            "ticker": ["A", "B"] * 3,
            "fold": 2023,
            "model": "m",
            "prob_up": [0.7, 0.4, 0.6, 0.8, 0.3, 0.9],
            "y_true": [1, 0, 0, 1, 1, 1],
            "ret_next": [0.01, -0.02, -0.03, 0.02, 0.02, 0.01],
        }
    )


def _path(frame: pd.DataFrame, strategy: str, top_k: int = 1) -> pd.DataFrame:
    returns = frame.pivot(index="date", columns="ticker", values="ret_next")
    return simulate(target_weights(frame, strategy, top_k), returns, cost_bps=5, slippage_bps=5)


@pytest.mark.parametrize(
    ("strategy", "turnover", "net"),
    [
        # long_flat: weights A/B = (.5, 0), (.5, .5), (0, .5); gross .005, -.005, .005; cost 10 bps x turnover.
        ("long_flat", [0.5, 0.5, 0.5], [0.0045, -0.0055, 0.0045]),
        # long_short: (+.5, -.5), (+.5, +.5), (-.5, +.5); gross .015, -.005, -.005.
        ("long_short", [1.0, 1.0, 1.0], [0.014, -0.006, -0.006]),
        # top_k, k=1: long A short B, then long B short A twice; gross .015, .025, -.005.
        ("top_k", [1.0, 2.0, 0.0], [0.014, 0.023, -0.005]),
        # buy_hold: (.5, .5) throughout; only the entry costs.
        ("buy_hold", [1.0, 0.0, 0.0], [-0.006, -0.005, 0.015]),
    ],
)
def test_three_day_example_by_hand(
    three_days: pd.DataFrame, strategy: str, turnover: list[float], net: list[float]
) -> None:
    path = _path(three_days, strategy)
    np.testing.assert_allclose(path["turnover"], turnover, atol=1e-12)
    np.testing.assert_allclose(path["cost"], np.array(turnover) * 0.001, atol=1e-12)
    np.testing.assert_allclose(path["net"], net, atol=1e-12)


def test_performance_summary_by_hand(three_days: pd.DataFrame) -> None:
    perf = performance(_path(three_days, "long_flat"))
    net = np.array([0.0045, -0.0055, 0.0045])
    equity = np.cumprod(1 + net)
    assert perf.total_return == pytest.approx(equity[-1] - 1)
    assert perf.annual_return == pytest.approx(equity[-1] ** (252 / 3) - 1)
    assert perf.sharpe == pytest.approx(net.mean() / net.std(ddof=1) * math.sqrt(252))
    assert perf.sortino == pytest.approx(net.mean() / math.sqrt(0.0055**2 / 3) * math.sqrt(252))
    assert perf.max_drawdown == pytest.approx(equity[1] / equity[0] - 1)
    assert perf.hit_rate == pytest.approx(2 / 3)
    assert perf.exposure == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert perf.turnover_daily == pytest.approx(0.5)
    assert perf.costs_paid == pytest.approx(0.0005 * (1 + equity[0] + equity[1]))


def _one_ticker() -> dict[str, pd.DataFrame]:
    dates = pd.bdate_range("2023-01-02", periods=6)
    frame = pd.DataFrame(
        {
            "open": [100.0, 108.0, 100.0, 104.0, 111.0, 112.0],
            "close": [100.0, 110.0, 99.0, 110.0, 110.0, 121.0],  # a 1 % dividend goes ex on day 4
            "adj_close": [99.0, 108.9, 98.01, 110.0, 110.0, 121.0],
        },
        index=pd.Index(dates, name="date"),
    )
    return {"A": frame}


def _labelled_preds(universe: dict[str, pd.DataFrame], label: LabelSpec) -> pd.DataFrame:
    """Always-long predictions of ticker A on every date with a known label, as the walk-forward writes them."""
    y = make_target(universe, label).dropna()
    keys = y.index
    return validate_predictions(
        pd.DataFrame(
            {"date": keys.get_level_values("date"), "ticker": "A", "fold": 2023, "model": "m", "prob_up": 0.9,
             "y_true": y.to_numpy().astype(int), "ret_next": forward_return(universe, label).reindex(keys).to_numpy()}
        )
    )  # fmt: skip


@pytest.mark.parametrize("execution", ["close", "open"])
def test_the_backtest_earns_exactly_the_labelled_return(execution: str) -> None:
    """Decided after the close of t, entered at the execution price of t+1, held to t+2: the label's trade."""
    universe = _one_ticker()
    label = LabelSpec(execution=execution)  # type: ignore[arg-type]
    preds = _labelled_preds(universe, label)
    frame = universe["A"]
    price = frame["adj_close"] if execution == "close" else frame["open"] * frame["adj_close"] / frame["close"]
    traded = price.to_numpy()[2:] / price.to_numpy()[1:-1] - 1  # t+1 -> t+2 for t = day 1 .. day 4
    np.testing.assert_allclose(preds["ret_next"], traded)
    # The label is the direction of that same return, not of close(t) -> close(t+1).
    np.testing.assert_array_equal(preds["y_true"], (traded > 0).astype(int))
    result = run_backtest(preds, BacktestConfig(strategies=("long_flat",), cost_bps=0.0), label=label)
    long_flat = result.results["m"]["long_flat"]
    assert long_flat.days == 4 and result.config.label == label
    assert long_flat.total_return == pytest.approx(np.prod(1 + traded) - 1)
    assert result.business.assumptions.timing == label.timing


def test_a_longer_horizon_rebalances_every_horizon_days() -> None:
    """Horizon 2: positions are held two days, so the book trades every second decision date, on 2-day returns."""
    universe = _one_ticker()
    label = LabelSpec(horizon=2)
    preds = _labelled_preds(universe, label)
    adj = universe["A"]["adj_close"].to_numpy()
    np.testing.assert_allclose(preds["ret_next"], adj[3:] / adj[1:-2] - 1)
    rows, earned = priced_rows(preds, label.horizon)
    assert list(earned.index) == list(rows["date"].unique())
    assert list(rows["date"]) == list(preds["date"].iloc[[0, 2]])
    result = run_backtest(preds, BacktestConfig(strategies=("long_flat",), cost_bps=0.0), label=label)
    long_flat = result.results["m"]["long_flat"]
    assert long_flat.days == 2 and result.config.periods_per_year == 126
    assert long_flat.total_return == pytest.approx((adj[3] / adj[1]) * (adj[5] / adj[3]) - 1)


def test_deflated_sharpe_matches_bailey_lopez_de_prado_example() -> None:
    # Their numerical example: 100 trials, V[SR] = 0.5 (annual), 1250 days, SR 2.5 (annual), skew -3, kurt 10.
    sr0 = expected_max_sharpe(100, 0.5 / 250)
    assert sr0 * math.sqrt(250) == pytest.approx(1.7899, abs=1e-3)  # 0.1132 per day
    dsr = deflated_sharpe(2.5 / math.sqrt(250), n_obs=1250, skew=-3, kurtosis=10, n_trials=100, sharpe_variance=0.002)
    assert dsr == pytest.approx(0.9004, abs=5e-4)


def test_single_trial_is_the_probabilistic_sharpe_ratio() -> None:
    dsr = deflated_sharpe(0.05, n_obs=500, skew=0.0, kurtosis=3.0, n_trials=1, sharpe_variance=0.0)
    assert dsr == pytest.approx(stats.norm.cdf(0.05 * math.sqrt(499) / math.sqrt(1 + 0.5 * 0.05**2)))
    more_trials = deflated_sharpe(0.05, n_obs=500, skew=0.0, kurtosis=3.0, n_trials=50, sharpe_variance=0.001)
    assert more_trials < dsr


def test_run_backtest_counts_trials_and_finds_the_informative_model(preds: pd.DataFrame) -> None:
    # "net" sees ret_next, the traded return, through noise.
    config = BacktestConfig(cost_bps=5, slippage_bps=1, top_k=1)
    label = LabelSpec()
    result = run_backtest(validate_predictions(preds), config, label=label)
    assert result.trials.this_run == 3 * 3  # models x strategies
    net = result.results["net"]
    # "net" sees ret_next through noise: its long/short book must beat the noise model's.
    assert net["long_short"].sharpe > result.results["momentum"]["long_short"].sharpe + 1
    assert 0 <= net["long_short"].deflated_sharpe <= 1
    # Earlier tries with widely spread Sharpe ratios raise the bar a lucky best try must clear.
    prior = run_backtest(
        validate_predictions(preds), config, label=label, prior_trials=list(np.linspace(-0.3, 0.3, 20))
    )
    assert prior.trials.total == 29
    assert prior.trials.expected_max_sharpe_daily > result.trials.expected_max_sharpe_daily
    assert prior.results["net"]["top_k"].deflated_sharpe < net["top_k"].deflated_sharpe
    biz = result.business.by_config["net/long_short"]
    assert biz.end_value == pytest.approx(100_000 * (1 + net["long_short"].total_return))


def test_bad_inputs_are_rejected(three_days: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="unknown strategy"):
        target_weights(three_days, "yolo")
    returns = three_days.pivot(index="date", columns="ticker", values="ret_next")
    returns.iloc[1, 0] = np.nan
    with pytest.raises(ValueError, match="no return for held position A on 2023-01-04"):
        simulate(target_weights(three_days, "long_flat"), returns, cost_bps=5, slippage_bps=0)
    # The label decides what is traded: a backtest at another price than the label's is refused.
    with pytest.raises(ValueError, match=r"labelled for execution at the close .* rerun `finmlops evaluate`"):
        run_backtest(validate_predictions(three_days), BacktestConfig(execution="open"), label=LabelSpec())
