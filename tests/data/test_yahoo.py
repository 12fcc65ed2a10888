"""yfinance: its real empty-frame failure (no network here; an unknown symbol is empty online too), retries with
backoff, partial failures, and normalisation of frames shaped like yfinance's."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from finmlops.data import DataSourceError, fetch_yahoo, normalise_yahoo
from finmlops.data.yahoo import fetch_one

YF_ORDER = ["Adj Close", "Close", "High", "Low", "Open", "Volume"]
NAMES = {"Adj Close": "adj_close", "Close": "close", "High": "high", "Low": "low", "Open": "open", "Volume": "volume"}
NO_SUCH = "FINMLOPS-NO-SUCH-TICKER"


def yf_download_frame(universe: dict[str, pd.DataFrame], group_by: str = "column") -> pd.DataFrame:
    """What ``yf.download(tickers, auto_adjust=False)`` returns: (Price, Ticker) columns, float volume, 'Date'."""
    parts = {(field, t): frame[NAMES[field]].astype(float) for t, frame in universe.items() for field in YF_ORDER}
    out = pd.DataFrame(parts)
    out.columns = pd.MultiIndex.from_tuples(out.columns, names=["Price", "Ticker"])
    if group_by == "ticker":
        out = out.swaplevel(axis=1).sort_index(axis=1)
    return out.rename_axis("Date")


def test_real_empty_frame_is_reported_after_retries() -> None:
    sleeps: list[float] = []
    with pytest.raises(DataSourceError) as info:
        fetch_one(NO_SUCH, date(2023, 1, 1), date(2023, 1, 31), retries=2, backoff_s=0.01, sleep=sleeps.append)
    assert f"{NO_SUCH}: yfinance returned an empty frame" in str(info.value)
    assert "after 2 tries" in str(info.value)
    assert sleeps == [0.01]


@pytest.mark.parametrize("group_by", ["column", "ticker"])
def test_normalise_multiindex_download(q1_2023: dict[str, pd.DataFrame], group_by: str) -> None:
    raw = yf_download_frame(q1_2023, group_by)
    for ticker, expected in q1_2023.items():
        got = normalise_yahoo(raw, ticker)
        assert (got.ticker, got.source, got.rows) == (ticker, f"yahoo:{ticker}", None)
        pd.testing.assert_frame_equal(got.frame, expected)


def test_normalise_ticker_history_shape(aapl: pd.DataFrame) -> None:
    """``Ticker.history``: single-level columns, Dividends/Stock Splits, tz-aware exchange-local midnight."""
    raw = aapl.rename(columns={v: k for k, v in NAMES.items()}).assign(Dividends=0.0, **{"Stock Splits": 0.0})
    raw.index = pd.DatetimeIndex(aapl.index, name="Date").tz_localize("America/New_York")
    pd.testing.assert_frame_equal(normalise_yahoo(raw, "AAPL").frame, aapl)


def test_normalise_rejects_auto_adjusted_and_foreign_frames(q1_2023: dict[str, pd.DataFrame]) -> None:
    raw = yf_download_frame(q1_2023)
    with pytest.raises(DataSourceError, match="JPM is not among the downloaded columns"):
        normalise_yahoo(raw, "JPM")
    auto_adjusted = raw.drop(columns="Adj Close", level="Price")
    with pytest.raises(DataSourceError, match=r"missing \['adj_close'\].*auto_adjust=False"):
        normalise_yahoo(auto_adjusted, "AAPL")


def test_retries_back_off_exponentially_then_succeed(q1_2023: dict[str, pd.DataFrame]) -> None:
    answers: list[pd.DataFrame | Exception] = [
        pd.DataFrame(),
        ConnectionError("reset"),
        yf_download_frame({"AAPL": q1_2023["AAPL"]}),
    ]
    calls: list[tuple[str, date, date]] = []

    def download(ticker: str, start: date, end: date) -> pd.DataFrame:
        calls.append((ticker, start, end))
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    sleeps: list[float] = []
    got = fetch_one("AAPL", date(2023, 1, 1), date(2023, 3, 31), 3, 0.5, sleeps.append, download)
    pd.testing.assert_frame_equal(got.frame, q1_2023["AAPL"])
    assert sleeps == [0.5, 1.0]
    assert calls == [("AAPL", date(2023, 1, 1), date(2023, 3, 31))] * 3


def test_partial_failure_names_failed_and_fetched(q1_2023: dict[str, pd.DataFrame]) -> None:
    def download(ticker: str, start: date, end: date) -> pd.DataFrame:
        if ticker == "MSFT":
            raise TimeoutError("read timed out")
        return yf_download_frame({ticker: q1_2023[ticker]})

    with pytest.raises(DataSourceError) as info:
        fetch_yahoo(["aapl", "msft"], date(2023, 1, 1), date(2023, 3, 31), 2, 0.0, lambda s: None, download)
    message = str(info.value)
    assert "1 of 2 tickers failed, nothing was written" in message
    assert "fetched fine: ['AAPL']" in message
    assert "MSFT: TimeoutError: read timed out after 2 tries" in message
