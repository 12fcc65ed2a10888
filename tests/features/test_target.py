"""The label: the traded return (entry at t+1), horizon, execution, dead band, unknown future and gaps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from finmlops.features import LabelSpec, forward_return, make_target


def L(horizon: int = 1, threshold: float = 0.0, execution: str = "close") -> LabelSpec:
    return LabelSpec(horizon=horizon, threshold=threshold, execution=execution)  # type: ignore[arg-type]


def _universe(closes: dict[str, list[float]], drop: dict[str, list[int]] | None = None) -> dict[str, pd.DataFrame]:
    """Tiny universe on consecutive business days with ``adj_close`` = ``closes``; ``drop`` removes rows."""
    out = {}
    for ticker, values in closes.items():
        n = len(values)
        frame = pd.DataFrame(
            {"open": values, "high": values, "low": values, "close": values, "adj_close": values, "volume": [1] * n},
            index=pd.bdate_range("2024-01-01", periods=n, name="date"),
            dtype=float,
        )
        out[ticker] = frame.drop(frame.index[(drop or {}).get(ticker, [])])
    return out


def test_horizon_one_and_three() -> None:
    """Decided at the close of t, entered at the close of t+1: the label of t is the move t+1 -> t+1+h."""
    u = _universe({"A": [100, 101, 100, 100.5, 102, 90]})
    np.testing.assert_allclose(
        forward_return(u, L(1)).to_numpy(), [100 / 101 - 1, 0.005, 102 / 100.5 - 1, 90 / 102 - 1, np.nan, np.nan]
    )
    np.testing.assert_array_equal(make_target(u, L(1)).to_numpy(), [0, 1, 1, 0, np.nan, np.nan])
    np.testing.assert_allclose(forward_return(u, L(3)).to_numpy()[:2], [102 / 101 - 1, 90 / 100 - 1])
    np.testing.assert_array_equal(make_target(u, L(3)).to_numpy(), [1, 0, np.nan, np.nan, np.nan, np.nan])
    assert L(3).reach == 4 and "close of t+4" in L(3).timing


def test_open_execution_trades_adjusted_opens() -> None:
    """Open execution: from the open of t+1 to the open of t+1+h, opens adjusted by adj_close / close."""
    u = _universe({"A": [100, 101, 100, 100.5]})
    u["A"]["open"] = [99.0, 100.0, 102.0, 98.0]
    u["A"]["adj_close"] = u["A"]["close"] / 2  # a constant adjustment factor: the open's return is unchanged
    ret = forward_return(u, L(1, execution="open")).to_numpy()
    np.testing.assert_allclose(ret, [0.02, 98 / 102 - 1, np.nan, np.nan])
    assert not np.allclose(ret[:2], forward_return(u, L(1)).to_numpy()[:2])


def test_dead_band_is_nan_and_zero_move_is_down() -> None:
    u = _universe({"A": [100, 100.1, 100.4, 100.0, 100, 99.0]})
    # traded moves (t+1 -> t+2): +0.2996 %, -0.398 %, 0, -1 %
    np.testing.assert_array_equal(make_target(u, L(1, 0.002)).to_numpy(), [1, 0, np.nan, 0, np.nan, np.nan])
    # Without a band, "up" means adj_close[t+2] > adj_close[t+1]: a move of exactly zero is 0, not NaN; only the
    # last two dates (no exit price) are NaN.
    np.testing.assert_array_equal(make_target(u, L(1)).to_numpy(), [1, 0, 0, 0, np.nan, np.nan])
    with pytest.raises(ValueError, match="threshold"):
        L(1, -0.01)
    with pytest.raises(ValueError, match="horizon"):
        L(0)


def test_gap_in_one_ticker_gives_nan_not_a_two_day_return() -> None:
    """B misses the universe's third day: every trade that enters or exits on it is unknown, not a 2-day move."""
    u = _universe({"A": [10, 11, 12, 13], "B": [20, 21, 22, 23]}, drop={"B": [2]})
    ret = forward_return(u, L(1))
    assert list(ret.index.names) == ["date", "ticker"] and ret.index.is_monotonic_increasing
    b = ret.xs("B", level="ticker")
    np.testing.assert_allclose(b.to_numpy(), [np.nan, np.nan, np.nan])
    np.testing.assert_allclose(ret.xs("A", level="ticker").to_numpy(), [1 / 11, 1 / 12, np.nan, np.nan])


def test_target_on_real_data_is_balanced(snapshot: dict[str, pd.DataFrame]) -> None:
    y = make_target(snapshot, L(1)).dropna()
    assert 0.5 < y.mean() < 0.56  # large caps rose on slightly more days than they fell in 2010-2023
    assert y.isin([0.0, 1.0]).all()


def test_gap_every_ticker_shares_is_a_break() -> None:
    """One ticker, 30 trading days removed: the calendar cannot see the gap, the 5-business-day rule can."""
    closes = list(np.linspace(100.0, 160.0, 80))
    u = _universe({"A": closes}, drop={"A": list(range(40, 70))})
    ret = forward_return(u, L(1)).xs("A", level="ticker")
    before, after = ret.index[39], ret.index[40]
    assert (after - before).days > 30
    # Decisions on the last two dates before the gap would enter or exit after it.
    assert np.isnan(ret.iloc[38:40]).all() and np.isnan(make_target(u, L(1)).xs("A", level="ticker")[before])
    assert np.isfinite(ret.iloc[37]) and np.isfinite(ret[after])
    # With horizon 3 (reach 4) every return from the last four dates before the gap would reach across it.
    ret3 = forward_return(u, L(3)).xs("A", level="ticker").to_numpy()
    assert np.isnan(ret3[36:40]).all() and np.isfinite(ret3[:36]).all() and np.isfinite(ret3[40:46]).all()
    # Five missing business days is still one calendar: a long weekend plus a closure is not a break.
    short = _universe({"A": closes}, drop={"A": list(range(40, 45))})
    assert np.isfinite(forward_return(short, L(1)).xs("A", level="ticker").iloc[39])
