"""Shared fixtures: small real universes from the bundled snapshot, and a synthetic OHLCV builder."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from finmlops.data import load_snapshot


@pytest.fixture(scope="session")
def snapshot() -> dict[str, pd.DataFrame]:
    """The whole bundled snapshot (10 tickers, 2010-2023)."""
    return load_snapshot()


@pytest.fixture(scope="session")
def small_universe() -> dict[str, pd.DataFrame]:
    """Three real tickers over two years; TSLA starts later in the snapshot, JNJ and XOM pay dividends."""
    from datetime import date

    return load_snapshot(["JNJ", "TSLA", "XOM"], start=date(2010, 3, 1), end=date(2011, 12, 31))


def synthetic_ohlcv(rng: np.random.Generator, n: int, start: str = "2020-01-01") -> pd.DataFrame:
    """A random but valid OHLCV frame ``[n, 6]`` on business days: log-normal walk, consistent high/low."""
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, n)))
    open_ = close * np.exp(rng.normal(0.0, 0.01, n))
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 0.02, n))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 0.02, n))
    dividend_factor = np.where(np.arange(n) < n // 2, 0.98, 1.0)  # one ex-dividend day mid-series
    return pd.DataFrame(
        {
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "adj_close": close * dividend_factor,
            "volume": rng.integers(1_000, 1_000_000, n).astype(np.int64),
        },
        index=pd.bdate_range(start, periods=n, name="date"),
    )


@pytest.fixture(scope="session")
def make_ohlcv() -> Callable[..., pd.DataFrame]:
    return synthetic_ohlcv
