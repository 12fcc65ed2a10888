"""Daily OHLCV from Yahoo Finance through yfinance, with retries and exponential backoff.

yfinance does not raise when it cannot reach Yahoo: it logs the reason and returns an empty frame. An empty
frame therefore counts as a failed try, and after the last try the ticker is reported with yfinance's reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta

import pandas as pd

from finmlops.data.errors import DataSourceError
from finmlops.data.frames import RawFrame, build_ohlcv, canonical_field, is_ignored_field
from finmlops.data.validation import OHLCV_COLUMNS

YAHOO_SOURCE = "yahoo"


def _ticker_level(columns: pd.MultiIndex, ticker: str) -> int | None:
    """The level of yfinance's (Price, Ticker) or (Ticker, Price) columns that holds tickers."""
    if "Ticker" in columns.names:
        return columns.names.index("Ticker")
    return next((lvl for lvl in range(columns.nlevels) if ticker in columns.get_level_values(lvl)), None)


def normalise_yahoo(raw: pd.DataFrame, ticker: str) -> RawFrame:
    """Turn a yfinance download (``auto_adjust=False``) of one ticker into a ``RawFrame`` (not yet validated).

    Accepts single-level columns and yfinance's MultiIndex columns in either level order; drops Dividends and
    Stock Splits; makes a tz-aware index naive on its exchange-local calendar day.
    """
    source = f"{YAHOO_SOURCE}:{ticker}"
    frame = raw
    if isinstance(frame.columns, pd.MultiIndex):
        level = _ticker_level(frame.columns, ticker)
        if level is None or ticker not in frame.columns.get_level_values(level):
            raise DataSourceError(f"{source}: {ticker} is not among the downloaded columns {list(frame.columns)}")
        frame = frame.xs(ticker, axis=1, level=level)
    fields = {field: c for c in frame.columns if (field := canonical_field(c)) is not None}
    extra = [str(c) for c in frame.columns if canonical_field(c) is None and not is_ignored_field(c)]
    missing = [f for f in OHLCV_COLUMNS if f not in fields]
    if missing or extra:
        raise DataSourceError(
            f"{source}: unexpected yfinance columns {list(frame.columns)} (missing {missing}, unknown {extra}); "
            "was auto_adjust=False?"
        )
    columns = {field: frame[name] for field, name in fields.items()}
    return RawFrame(ticker=ticker, frame=build_ohlcv(frame.index, columns, source), source=source)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage().strip())


@contextmanager
def _yfinance_messages() -> Iterator[list[str]]:
    """Collect what yfinance logs (its only report of why a download came back empty)."""
    handler = _Collect()
    logger = logging.getLogger("yfinance")
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def _download(ticker: str, start: date, end: date) -> pd.DataFrame:
    import yfinance as yf  # deferred: yfinance; optional dependency (extra "yahoo"), imported only when used

    # yfinance's end is exclusive; ours is inclusive.
    return yf.download(
        ticker,
        start=start.isoformat(),
        end=(end + timedelta(days=1)).isoformat(),
        auto_adjust=False,
        actions=False,
        progress=False,
        threads=False,
        multi_level_index=True,
    )


def fetch_one(
    ticker: str,
    start: date,
    end: date,
    retries: int = 3,
    backoff_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    download: Callable[[str, date, date], pd.DataFrame | None] = _download,
) -> RawFrame:
    """Download one ticker, trying ``retries`` times and waiting ``backoff_s * 2**k`` seconds after try k.

    Raises ``DataSourceError`` with yfinance's reason when every try failed or came back empty.
    """
    if retries < 1:
        raise ValueError(f"retries must be >= 1, got {retries}")
    reason = "no rows"
    for attempt in range(retries):
        with _yfinance_messages() as messages:
            try:
                raw = download(ticker, start, end)
            except Exception as exc:  # yfinance raises many types (network, JSON, rate limit); all are retryable
                raw, reason = None, f"{type(exc).__name__}: {exc}"
        if raw is not None and not raw.empty:
            return normalise_yahoo(raw, ticker)
        if raw is not None:
            related = [m for m in messages if ticker in m] or messages
            reason = "yfinance returned an empty frame" + (f" ({related[-1]})" if related else "")
        if attempt + 1 < retries:
            sleep(backoff_s * 2**attempt)
    raise DataSourceError(f"{ticker}: {reason} after {retries} tries")


def fetch_yahoo(
    tickers: Iterable[str],
    start: date,
    end: date,
    retries: int = 3,
    backoff_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    download: Callable[[str, date, date], pd.DataFrame | None] = _download,
) -> list[RawFrame]:
    """Download every ticker; if any fails, raise one error naming the failed and the fetched tickers."""
    wanted = [t.upper() for t in tickers]
    fetched: list[RawFrame] = []
    failures: list[str] = []
    for ticker in wanted:
        try:
            fetched.append(fetch_one(ticker, start, end, retries, backoff_s, sleep, download))
        except DataSourceError as exc:
            failures.append(str(exc))
    if failures:
        ok = [raw.ticker for raw in fetched]
        raise DataSourceError(
            f"yahoo: {len(failures)} of {len(wanted)} tickers failed, nothing was written "
            f"(offline or rate-limited? fetched fine: {ok or 'none'}): " + "; ".join(failures)
        )
    return fetched
