"""Every feature's definition, declared once in the registry.

Notation in formula texts: ``c, o, h, l`` are the dividend-adjusted close, open, high and low; ``C`` is the
split-adjusted (not dividend-adjusted) close; ``v`` is volume in split-adjusted shares; ``r`` is the daily return
``c_t / c_{t-1} - 1``; ``m`` is the universe's equal-weight daily return; ``x[-k]`` is ``x`` k rows earlier.

Every feature is scale-free: multiplying all prices by k and volume by 1/k (a split) or the adjusted prices by k
(a new dividend re-basing the history) leaves it unchanged. Raw levels (an SMA in dollars, OBV in shares) are not
used, because Yahoo's history is re-adjusted for *later* splits and dividends: a level at date t would carry
information about corporate actions after t, and levels differ by orders of magnitude across tickers.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from finmlops.features.panel import ta
from finmlops.features.registry import Feature, TickerInputs, declare, include, smoothing_memory

BASIC_AND_UP = ("basic", "enhanced")
ENHANCED = ("enhanced",)


def lag(x: np.ndarray, k: int) -> np.ndarray:
    """``x`` shifted ``k >= 1`` rows later (row t holds ``x[t-k]``), NaN-padded; shape kept."""
    out = np.full_like(x, np.nan)
    out[..., k:] = x[..., :-k]
    return out


def rel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a / b - 1`` elementwise; division by zero gives inf, which compute_features turns into NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return a / b - 1.0


def ret1(p: TickerInputs) -> np.ndarray:
    """Daily simple return of the adjusted close, ``[n]``, first row NaN."""
    return p.memo("ret1", lambda: rel(p.close, lag(p.close, 1)))


def sma(p: TickerInputs, n: int) -> np.ndarray:
    """TA-Lib SMA of the adjusted close over ``n`` rows."""
    return p.memo(f"sma{n}", lambda: ta.SMA(p.close, n))


def macd(p: TickerInputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TA-Lib MACD(12, 26, 9) of the adjusted close: (macd, signal, histogram), in price units."""
    return p.memo("macd", lambda: ta.MACD(p.close, 12, 26, 9))


def bbands(p: TickerInputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TA-Lib BBANDS(20, 2, 2, SMA) of the adjusted close: (upper, middle, lower) in price units."""
    return p.memo("bbands", lambda: ta.BBANDS(p.close, 20, 2.0, 2.0, 0))


def volatility(p: TickerInputs, n: int) -> np.ndarray:
    """Population std (TA-Lib STDDEV, ddof 0) of daily returns over ``n`` rows; not annualised."""
    return p.memo(f"vol{n}", lambda: ta.STDDEV(ret1(p), n, 1.0))


def volume_sma(p: TickerInputs, n: int) -> np.ndarray:
    """TA-Lib SMA of volume over ``n`` rows, in shares."""
    return p.memo(f"vsma{n}", lambda: ta.SMA(p.volume, n))


def stoch(p: TickerInputs) -> tuple[np.ndarray, np.ndarray]:
    """TA-Lib slow stochastic (14, 3, 3, SMA) on adjusted prices: (%K, %D) in [0, 100]."""
    return p.memo("stoch", lambda: ta.STOCH(p.high, p.low, p.close, 14, 3, 0, 3, 0))


def vwap(p: TickerInputs, n: int) -> np.ndarray:
    """Rolling VWAP over ``n`` rows of the adjusted typical price ``(h + l + c) / 3``; TA-Lib has no VWAP."""

    def compute() -> np.ndarray:
        typical = (p.high + p.low + p.close) / 3.0
        with np.errstate(divide="ignore", invalid="ignore"):
            return ta.SUM(typical * p.volume, n) / ta.SUM(p.volume, n)

    return p.memo(f"vwap{n}", compute)


def _f(
    name: str,
    formula: str,
    window: int,
    fn: Callable[[TickerInputs], np.ndarray],
    sets: tuple[str, ...],
    memory: int = 0,
) -> None:
    declare(Feature(name=name, formula=formula, window=window, compute=fn, memory=memory), sets)


def wilder(n: int) -> int:
    """``Feature.memory`` of a Wilder smoothing over ``n`` rows (RSI, ATR): weight ``1 / n``."""
    return smoothing_memory(1.0 / n)


# MACD's signal is an EMA9 of the EMA12 - EMA26 line: the line forgets its start, then the signal forgets the line's.
MACD_MEMORY = smoothing_memory(2.0 / 27) + smoothing_memory(2.0 / 10)


# --- basic: the original first pipeline ---------------------------------------------------------------------------
_f("return_1d", "r = c / c[-1] - 1", 2, ret1, BASIC_AND_UP)
for _k in range(1, 6):
    _f(
        f"return_lag_{_k}",
        f"r[-{_k}]: the daily return {_k} trading day(s) earlier",
        2 + _k,
        lambda p, k=_k: lag(ret1(p), k),
        BASIC_AND_UP,
    )
for _n in (5, 10, 20, 50):
    _f(
        f"sma_{_n}",
        f"SMA{_n}(c) / SMA{_n}(c)[-1] - 1: one-day slope of the TA-Lib SMA (its dollar level is not scale-free)",
        _n + 1,
        lambda p, n=_n: rel(sma(p, n), lag(sma(p, n), 1)),
        BASIC_AND_UP,
    )
for _n in (5, 10, 20, 50):
    _f(
        f"price_to_sma_{_n}",
        f"c / SMA{_n}(c) - 1",
        _n,
        lambda p, n=_n: rel(p.close, sma(p, n)),
        BASIC_AND_UP,
    )
_f(
    "rsi_14",
    "TA-Lib RSI(c, 14), Wilder smoothing, in [0, 100]",
    15,
    lambda p: ta.RSI(p.close, 14),
    BASIC_AND_UP,
    memory=wilder(14),
)
_f(
    "volume_change",
    "v / v[-1] - 1 (NaN after a zero-volume day)",
    2,
    lambda p: rel(p.volume, lag(p.volume, 1)),
    BASIC_AND_UP,
)

# --- enhanced: basic plus these ---------------------------------------------------------------------------------------
_f("macd", "TA-Lib MACD(c, 12, 26, 9) line / c", 34, lambda p: macd(p)[0] / p.close, ENHANCED, MACD_MEMORY)
_f(
    "macd_signal",
    "TA-Lib MACD signal (EMA9 of the line) / c",
    34,
    lambda p: macd(p)[1] / p.close,
    ENHANCED,
    MACD_MEMORY,
)
_f("macd_hist", "TA-Lib MACD histogram (line - signal) / c", 34, lambda p: macd(p)[2] / p.close, ENHANCED, MACD_MEMORY)
_f(
    "bb_upper",
    "TA-Lib BBANDS(c, 20, 2 population std) upper band / c - 1",
    20,
    lambda p: rel(bbands(p)[0], p.close),
    ENHANCED,
)
_f("bb_lower", "BBANDS(c, 20, 2) lower band / c - 1", 20, lambda p: rel(bbands(p)[2], p.close), ENHANCED)
_f(
    "bb_pct_b",
    "Bollinger %B, the position in the band: (c - lower) / (upper - lower); 0.5 on the SMA20",
    20,
    lambda p: (p.close - bbands(p)[2]) / (bbands(p)[0] - bbands(p)[2]),
    ENHANCED,
)
_f(
    "bb_width",
    "(upper - lower) / SMA20(c), i.e. 4 x rolling std / SMA20",
    20,
    lambda p: (bbands(p)[0] - bbands(p)[2]) / bbands(p)[1],
    ENHANCED,
)
_f(
    "atr_14",
    "TA-Lib ATR(h, l, c, 14) (Wilder) / c",
    15,
    lambda p: ta.ATR(p.high, p.low, p.close, 14) / p.close,
    ENHANCED,
    memory=wilder(14),
)
_f(
    "obv",
    "(OBV - OBV[-20]) / sum of v over 20 rows, OBV = TA-Lib OBV(c, v); in [-1, 1] (raw OBV is a share count "
    "that depends on where the series starts)",
    21,
    lambda p: (lambda o: (o - lag(o, 20)) / ta.SUM(p.volume, 20))(ta.OBV(p.close, p.volume)),
    ENHANCED,
)
_f("stoch_k", "TA-Lib slow stochastic %K(h, l, c; 14, 3 SMA), in [0, 100]", 18, lambda p: stoch(p)[0], ENHANCED)
_f("stoch_d", "TA-Lib slow stochastic %D: SMA3 of %K, in [0, 100]", 18, lambda p: stoch(p)[1], ENHANCED)
for _n in (5, 10, 20):
    _f(
        f"volatility_{_n}",
        f"TA-Lib STDDEV(r, {_n}): population std (ddof 0) of daily returns, not annualised",
        _n + 1,
        partial(volatility, n=_n),
        ENHANCED,
    )
_f("volume_ratio", "v / SMA20(v)", 20, lambda p: p.volume / volume_sma(p, 20), ENHANCED)
_f("gap", "o / c[-1] - 1: overnight gap on adjusted prices", 2, lambda p: rel(p.open, lag(p.close, 1)), ENHANCED)
_f("intraday_return", "c / o - 1", 1, lambda p: rel(p.close, p.open), ENHANCED)
_f("hl_range", "(h - l) / c", 1, lambda p: (p.high - p.low) / p.close, ENHANCED)

# --- advanced only (the original 33-feature set, plus cross-asset) ---------------------------------------------------
for _n in (3, 5, 10, 20):
    _f(
        f"momentum_{_n}",
        f"c / c[-{_n}] - 1 (TA-Lib ROC({_n}) / 100)",
        _n + 1,
        lambda p, n=_n: ta.ROC(p.close, n) / 100.0,
        (),
    )
for _n in (5, 10, 20):
    _f(
        f"volatility_ratio_{_n}",
        f"volatility_{_n} / SMA50(volatility_{_n})",
        _n + 50,
        lambda p, n=_n: volatility(p, n) / ta.SMA(volatility(p, n), 50),
        (),
    )
_f(
    "volume_sma_20",
    "SMA20(v) / SMA50(v) - 1 (the 20-day mean volume relative to the 50-day mean; a share count is not scale-free)",
    50,
    lambda p: rel(volume_sma(p, 20), volume_sma(p, 50)),
    (),
)
_f(
    "price_volume",
    "log(1 + C x v): log dollar volume (C x v is unchanged by splits and dividends)",
    1,
    lambda p: np.log1p(p.raw_close * p.volume),
    (),
)
_f("high_low_ratio", "h / l - 1", 1, lambda p: rel(p.high, p.low), ())
_f("close_to_high", "c / h - 1 (<= 0)", 1, lambda p: rel(p.close, p.high), ())
_f("close_to_low", "c / l - 1 (>= 0)", 1, lambda p: rel(p.close, p.low), ())
_f("rsi_9", "TA-Lib RSI(c, 9), in [0, 100]", 10, lambda p: ta.RSI(p.close, 9), (), memory=wilder(9))
_f("rsi_21", "TA-Lib RSI(c, 21), in [0, 100]", 22, lambda p: ta.RSI(p.close, 21), (), memory=wilder(21))
_f(
    "vwap_20",
    "VWAP20 / SMA20(tp) - 1, VWAP20 = sum(tp x v) / sum(v) over 20 rows, tp = (h + l + c) / 3: the volume-weighting "
    "premium (VWAP's dollar level is not scale-free; TA-Lib has no VWAP)",
    20,
    lambda p: rel(vwap(p, 20), ta.SMA((p.high + p.low + p.close) / 3.0, 20)),
    (),
)
_f("price_to_vwap_20", "c / VWAP20 - 1", 20, lambda p: rel(p.close, vwap(p, 20)), ())
declare(
    Feature(
        "market_return",
        "m: mean of r over the universe's tickers trading that day (same day, equal weight)",
        2,
        lambda p: p.market_return,
        cross_asset=True,
    ),
    (),
)
declare(
    Feature(
        "market_corr_20",
        "TA-Lib CORREL(r, m, 20): Pearson correlation over 20 rows",
        21,
        lambda p: ta.CORREL(ret1(p), p.market_return, 20),
        cross_asset=True,
    ),
    (),
)
declare(
    Feature(
        "market_beta_20",
        "cov(r, m) / var(m) over 20 rows = CORREL x STDDEV(r) / STDDEV(m) (TA-Lib BETA differs: it takes prices)",
        21,
        lambda p: ta.CORREL(ret1(p), p.market_return, 20) * volatility(p, 20) / ta.STDDEV(p.market_return, 20, 1.0),
        cross_asset=True,
    ),
    (),
)

ADVANCED_ORDER: tuple[str, ...] = (
    "return_1d",
    *(f"momentum_{n}" for n in (3, 5, 10, 20)),
    *(f"volatility_{n}" for n in (5, 10, 20)),
    *(f"volatility_ratio_{n}" for n in (5, 10, 20)),
    "volume_sma_20",
    "volume_ratio",
    "price_volume",
    *(f"price_to_sma_{n}" for n in (10, 20, 50)),
    "high_low_ratio",
    "close_to_high",
    "close_to_low",
    "gap",
    "intraday_return",
    *(f"rsi_{n}" for n in (9, 14, 21)),
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_lower",
    "bb_pct_b",
    "vwap_20",
    "price_to_vwap_20",
    "market_return",
    "market_corr_20",
    "market_beta_20",
)
for _name in ADVANCED_ORDER:
    include(_name, ("advanced",))
