"""Benchmark: the advanced feature set over the whole bundled snapshot, finmlops (TA-Lib) vs plain pandas.

Run: ``.venv/bin/python bench/features.py [--repeat 5]``. Prints rows/second for both implementations, their ratio,
and the largest disagreement per feature (EMA-seeded indicators are compared after a burn-in, because TA-Lib seeds
its EMAs with an SMA and pandas ``ewm(adjust=False)`` with the first value; the difference decays geometrically).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from finmlops.data import load_snapshot
from finmlops.features import compute_features, feature_names

# Indicators whose seeding differs between TA-Lib and pandas ewm; compared after BURN_IN rows of each ticker.
EMA_SEEDED = {"rsi_9", "rsi_14", "rsi_21", "macd", "macd_signal", "macd_hist"}
BURN_IN = 500


def _rsi(c: pd.Series, n: int) -> pd.Series:
    """Wilder RSI with pandas ewm (alpha = 1/n)."""
    delta = c.diff()
    gain = delta.clip(lower=0).ewm(alpha=1 / n, adjust=False).mean()
    loss = (-delta.clip(upper=0)).ewm(alpha=1 / n, adjust=False).mean()
    return 100 - 100 / (1 + gain / loss)


def pandas_advanced(frame: pd.DataFrame, market: pd.Series) -> pd.DataFrame:
    """The advanced set for one ticker with pandas rolling/ewm only, same definitions as the registry."""
    factor = frame["adj_close"] / frame["close"]
    o, h, l = (frame[k] * factor for k in ("open", "high", "low"))  # noqa: E741
    c = frame["adj_close"]
    v = frame["volume"].astype(float)
    r = c.pct_change()
    m = market.reindex(frame.index)
    out: dict[str, pd.Series] = {"return_1d": r}
    for n in (3, 5, 10, 20):
        out[f"momentum_{n}"] = c / c.shift(n) - 1
    vol = {n: r.rolling(n).std(ddof=0) for n in (5, 10, 20)}
    for n in (5, 10, 20):
        out[f"volatility_{n}"] = vol[n]
    for n in (5, 10, 20):
        out[f"volatility_ratio_{n}"] = vol[n] / vol[n].rolling(50).mean()
    vsma20 = v.rolling(20).mean()
    out["volume_sma_20"] = vsma20 / v.rolling(50).mean() - 1
    out["volume_ratio"] = v / vsma20
    out["price_volume"] = np.log1p(frame["close"] * v)
    for n in (10, 20, 50):
        out[f"price_to_sma_{n}"] = c / c.rolling(n).mean() - 1
    out["high_low_ratio"] = h / l - 1
    out["close_to_high"] = c / h - 1
    out["close_to_low"] = c / l - 1
    out["gap"] = o / c.shift(1) - 1
    out["intraday_return"] = c / o - 1
    for n in (9, 14, 21):
        out[f"rsi_{n}"] = _rsi(c, n)
    line = c.ewm(span=12, adjust=False).mean() - c.ewm(span=26, adjust=False).mean()
    signal = line.ewm(span=9, adjust=False).mean()
    out["macd"], out["macd_signal"], out["macd_hist"] = line / c, signal / c, (line - signal) / c
    mid, sd = c.rolling(20).mean(), c.rolling(20).std(ddof=0)
    upper, lower = mid + 2 * sd, mid - 2 * sd
    out["bb_upper"], out["bb_lower"], out["bb_pct_b"] = upper / c - 1, lower / c - 1, (c - lower) / (upper - lower)
    tp = (h + l + c) / 3
    vwap = (tp * v).rolling(20).sum() / v.rolling(20).sum()
    out["vwap_20"] = vwap / tp.rolling(20).mean() - 1
    out["price_to_vwap_20"] = c / vwap - 1
    out["market_return"] = m
    out["market_corr_20"] = r.rolling(20).corr(m)
    out["market_beta_20"] = r.rolling(20).cov(m) / m.rolling(20).var()
    return pd.DataFrame(out)


def pandas_universe(universe: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The pandas implementation over a universe, laid out like ``compute_features``."""
    market = pd.DataFrame({t: f["adj_close"].pct_change() for t, f in universe.items()}).mean(axis=1)
    frames = {t: pandas_advanced(f, market) for t, f in universe.items()}
    long = pd.concat(frames, names=["ticker", "date"]).swaplevel().sort_index()
    return long[feature_names("advanced")]


def best_time(fn: Callable[[], object], repeat: int) -> float:
    """Fastest wall time of ``repeat`` runs, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per implementation; the fastest counts")
    args = parser.parse_args()
    universe = load_snapshot()
    rows = sum(len(f) for f in universe.values())
    ours = compute_features(universe, "advanced")
    theirs = pandas_universe(universe)
    burned = ours.groupby(level="ticker").cumcount().to_numpy() >= BURN_IN
    worst = {}
    for name in ours.columns:
        keep = burned if name in EMA_SEEDED else np.ones(len(ours), bool)
        a, b = ours[name].to_numpy()[keep], theirs[name].to_numpy()[keep]
        if not np.array_equal(np.isnan(a), np.isnan(b)):
            raise SystemExit(f"{name}: NaN pattern differs between implementations")
        both = ~np.isnan(a)
        worst[name] = float(np.max(np.abs(a[both] - b[both]) / np.maximum(np.abs(b[both]), 1e-3)))
    t_ours = best_time(lambda: compute_features(universe, "advanced"), args.repeat)
    t_pandas = best_time(lambda: pandas_universe(universe), args.repeat)
    print(f"snapshot: {len(universe)} tickers, {rows} rows, {ours.shape[1]} advanced features")
    print(f"finmlops (TA-Lib): {t_ours * 1e3:8.1f} ms  {rows / t_ours:12,.0f} rows/s")
    print(f"pandas rolling   : {t_pandas * 1e3:8.1f} ms  {rows / t_pandas:12,.0f} rows/s")
    print(f"speed-up         : {t_pandas / t_ours:8.1f} x (best of {args.repeat})")
    name, err = max(worst.items(), key=lambda kv: kv[1])
    print(f"agreement        : max relative difference {err:.1e} ({name}); EMA-seeded ones after {BURN_IN} rows")
    if err > 1e-6:
        raise SystemExit(f"implementations disagree on {name}: {err:.2e}")


if __name__ == "__main__":
    main()
