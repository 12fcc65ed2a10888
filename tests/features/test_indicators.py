"""Every registered feature against an independent reference: TA-Lib called directly, or pandas by hand."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import talib

from finmlops.features import compute_features, feature_names
from finmlops.features.registry import all_features


def _adjusted(frame: pd.DataFrame) -> dict[str, pd.Series]:
    factor = frame["adj_close"] / frame["close"]
    return {
        "o": frame["open"] * factor,
        "h": frame["high"] * factor,
        "l": frame["low"] * factor,
        "c": frame["adj_close"],
        "v": frame["volume"].astype(float),
        "C": frame["close"],
    }


def _references(frame: pd.DataFrame, market: pd.Series) -> dict[str, Callable[[], pd.Series | np.ndarray]]:
    """Reference value of each feature for one ticker, written independently of finmlops.features."""
    p = _adjusted(frame)
    o, h, l, c, v, C = p["o"], p["h"], p["l"], p["c"], p["v"], p["C"]  # noqa: E741
    r = c.pct_change()
    m = market.reindex(frame.index)
    vol = {n: r.rolling(n).std(ddof=0) for n in (5, 10, 20)}
    upper, middle, lower = talib.BBANDS(c.to_numpy(), 20, 2.0, 2.0, 0)
    macd = talib.MACD(c.to_numpy(), 12, 26, 9)
    tp = (h + l + c) / 3
    vwap = (tp * v).rolling(20).sum() / v.rolling(20).sum()
    signed = np.sign(c.diff()) * v
    refs: dict[str, Callable[[], pd.Series | np.ndarray]] = {
        "return_1d": lambda: r,
        "volume_change": lambda: v.pct_change(),
        "rsi_9": lambda: talib.RSI(c.to_numpy(), 9),
        "rsi_14": lambda: talib.RSI(c.to_numpy(), 14),
        "rsi_21": lambda: talib.RSI(c.to_numpy(), 21),
        "macd": lambda: macd[0] / c,
        "macd_signal": lambda: macd[1] / c,
        "macd_hist": lambda: macd[2] / c,
        "bb_upper": lambda: upper / c - 1,
        "bb_lower": lambda: lower / c - 1,
        "bb_pct_b": lambda: (c - lower) / (upper - lower),
        "bb_width": lambda: (upper - lower) / middle,
        "atr_14": lambda: talib.ATR(h.to_numpy(), l.to_numpy(), c.to_numpy(), 14) / c,
        "obv": lambda: signed.rolling(20).sum() / v.rolling(20).sum(),
        "stoch_k": lambda: talib.STOCH(h.to_numpy(), l.to_numpy(), c.to_numpy(), 14, 3, 0, 3, 0)[0],
        "stoch_d": lambda: talib.STOCH(h.to_numpy(), l.to_numpy(), c.to_numpy(), 14, 3, 0, 3, 0)[1],
        "volume_ratio": lambda: v / v.rolling(20).mean(),
        "gap": lambda: o / c.shift(1) - 1,
        "intraday_return": lambda: c / o - 1,
        "hl_range": lambda: (h - l) / c,
        "volume_sma_20": lambda: v.rolling(20).mean() / v.rolling(50).mean() - 1,
        "price_volume": lambda: np.log1p(C * v),
        "high_low_ratio": lambda: h / l - 1,
        "close_to_high": lambda: c / h - 1,
        "close_to_low": lambda: c / l - 1,
        "vwap_20": lambda: vwap / tp.rolling(20).mean() - 1,
        "price_to_vwap_20": lambda: c / vwap - 1,
        "market_return": lambda: m,
        "market_corr_20": lambda: r.rolling(20).corr(m),
        "market_beta_20": lambda: r.rolling(20).cov(m) / m.rolling(20).var(),
    }
    for k in range(1, 6):
        refs[f"return_lag_{k}"] = lambda k=k: r.shift(k)
    for n in (5, 10, 20, 50):
        refs[f"sma_{n}"] = lambda n=n: c.rolling(n).mean().pct_change()
        refs[f"price_to_sma_{n}"] = lambda n=n: c / c.rolling(n).mean() - 1
    for n in (3, 5, 10, 20):
        refs[f"momentum_{n}"] = lambda n=n: c.pct_change(n)
    for n in (5, 10, 20):
        refs[f"volatility_{n}"] = lambda n=n: vol[n]
        refs[f"volatility_ratio_{n}"] = lambda n=n: vol[n] / vol[n].rolling(50).mean()
    return refs


def _hand_market(universe: dict[str, pd.DataFrame]) -> pd.Series:
    returns = pd.DataFrame({t: f["adj_close"].pct_change() for t, f in universe.items()})
    return returns.mean(axis=1)


def test_every_feature_has_a_reference(small_universe: dict[str, pd.DataFrame]) -> None:
    """Every feature of the project's own sets; the standard sets (Alpha158, kdh) are checked on a sample of
    factors in test_alpha158.py."""
    refs = _references(small_universe["JNJ"], _hand_market(small_universe))
    own = {name for s in ("basic", "enhanced", "advanced") for name in feature_names(s)}
    assert sorted(refs) == sorted(f.name for f in all_features() if f.name in own)


@pytest.mark.parametrize("feature_set", ["enhanced", "advanced"])
def test_features_match_references(small_universe: dict[str, pd.DataFrame], feature_set: str) -> None:
    frame = compute_features(small_universe, feature_set)
    market = _hand_market(small_universe)
    for ticker, ohlcv in small_universe.items():
        got = frame.xs(ticker, level="ticker")
        refs = _references(ohlcv, market)
        for name in feature_names(feature_set):
            expected = np.asarray(refs[name](), dtype=float)
            expected[~np.isfinite(expected)] = np.nan
            assert np.isfinite(got[name]).sum() > 300, f"{ticker} {name}: too few values to compare"
            np.testing.assert_allclose(
                got[name].to_numpy(), expected, rtol=1e-7, atol=1e-10, equal_nan=True, err_msg=f"{ticker} {name}"
            )


def test_returns_use_dividend_adjusted_prices(small_universe: dict[str, pd.DataFrame]) -> None:
    """On an ex-dividend day the raw close drops by the dividend; return_1d must not show that drop."""
    xom = small_universe["XOM"]
    factor = xom["adj_close"] / xom["close"]
    ex_day = factor.index[np.flatnonzero(np.abs(np.diff(factor.to_numpy())) > 1e-6)[0] + 1]
    got = compute_features({"XOM": xom}, "basic").xs("XOM", level="ticker").loc[ex_day, "return_1d"]
    raw = xom["close"].pct_change().loc[ex_day]
    adjusted = xom["adj_close"].pct_change().loc[ex_day]
    assert got == pytest.approx(adjusted, rel=1e-12)
    assert abs(got - raw) > 1e-4


def test_bad_input_names_ticker_row_and_field(small_universe: dict[str, pd.DataFrame]) -> None:
    broken = small_universe["JNJ"].copy()
    broken.iloc[10, broken.columns.get_loc("close")] = np.nan
    with pytest.raises(ValueError, match=rf"JNJ: row {broken.index[10].date()}: field 'close'"):
        compute_features({"JNJ": broken}, "basic")
    with pytest.raises(ValueError, match="missing column"):
        compute_features({"JNJ": small_universe["JNJ"].drop(columns="volume")}, "basic")
    with pytest.raises(ValueError, match="unknown feature set 'fancy'"):
        compute_features(small_universe, "fancy")


def test_frame_layout(small_universe: dict[str, pd.DataFrame]) -> None:
    frame = compute_features(small_universe, "basic")
    assert list(frame.index.names) == ["date", "ticker"]
    assert frame.index.is_monotonic_increasing and frame.index.is_unique
    assert list(frame.columns) == feature_names("basic")
    assert (frame.dtypes == np.float64).all()
    assert len(frame) == sum(len(f) for f in small_universe.values())
