"""The bundled snapshot: real data in the OHLCV convention, matching what PROVENANCE.md states."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest

from finmlops.data import DataSourceError, DataStore, ingest, load_snapshot, snapshot_tickers
from finmlops.settings import DEFAULT_TICKERS


def test_all_tickers_follow_the_convention() -> None:
    universe = load_snapshot()
    assert set(universe) == set(DEFAULT_TICKERS) == set(snapshot_tickers())
    for ticker, frame in universe.items():
        assert frame.index.name == "date" and frame.index.tz is None, ticker
        assert frame.index.is_monotonic_increasing and frame.index.is_unique, ticker
        assert list(frame.dtypes.astype(str)) == ["float64"] * 5 + ["int64"], ticker
        assert frame.index[-1] == np.datetime64("2023-12-29"), ticker
        assert len(frame) == (3400 if ticker == "TSLA" else 3522), ticker
    assert universe["TSLA"].index[0] == np.datetime64("2010-06-29")
    # Close is split-adjusted only, Adj Close also dividend-adjusted: for a dividend payer adj_close < close early on.
    jnj = universe["JNJ"]
    assert jnj["adj_close"].iloc[0] < 0.7 * jnj["close"].iloc[0]
    assert np.isclose(jnj["adj_close"].iloc[-1], jnj["close"].iloc[-1], rtol=0.05)


def test_range_and_case_insensitive_tickers() -> None:
    universe = load_snapshot(["nvda"], start=date(2020, 3, 1), end=date(2020, 3, 31))
    frame = universe["NVDA"]
    assert (frame.index[0], frame.index[-1], len(frame)) == (
        np.datetime64("2020-03-02"),
        np.datetime64("2020-03-31"),
        22,
    )


def test_unknown_ticker_lists_the_available_ones() -> None:
    with pytest.raises(DataSourceError, match=r"no \['IBM'\]; available tickers: AAPL, AMZN, GOOG, .*XOM"):
        load_snapshot(["AAPL", "IBM"])


def test_full_snapshot_ingest(tmp_path: Path) -> None:
    # No timing assert here (it failed at 2.0 s on a loaded 2-core box); performance belongs in bench/.
    report = ingest(DataStore(tmp_path), "snapshot", list(DEFAULT_TICKERS))
    assert report.changed and sum(t.added_rows for t in report.tickers) == 9 * 3522 + 3400
