"""Turning a source's columns into the OHLCV frame convention, and validating a batch of them together."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from finmlops.data.errors import DataSourceError, DataValidationError
from finmlops.data.validation import OHLCV_COLUMNS, PRICE_COLUMNS, validate_ohlcv

# Columns that Yahoo exports next to OHLCV and that the store does not keep.
IGNORED_FIELDS = frozenset({"dividends", "stock_splits", "capital_gains", "repaired?"})
# 2**63 as a float: volumes at or above it do not fit the store's int64 (a cast would wrap around, with a warning).
_INT64_LIMIT = float(2**63)


def canonical_field(name: object) -> str | None:
    """``'Adj Close'``, ``'adj_close'``, ``'AdjClose'`` -> ``'adj_close'``; None when ``name`` is not an OHLCV field."""
    key = str(name).strip().lower().replace(" ", "_")
    if key == "adjclose":
        key = "adj_close"
    return key if key in OHLCV_COLUMNS else None


def is_ignored_field(name: object) -> bool:
    """Yahoo's non-OHLCV columns (``Dividends``, ``Stock Splits_AAPL``, ...), which the store does not keep."""
    key = str(name).strip().lower().replace(" ", "_")
    return key in IGNORED_FIELDS or key.rpartition("_")[0] in IGNORED_FIELDS


@dataclass(frozen=True)
class RawFrame:
    """One ticker's data as parsed from a source, normalised to the OHLCV layout but not yet validated.

    ``source`` names the file or feed in messages and in the manifest; ``rows`` holds the 1-based CSV line of each
    frame row (None for feeds, whose rows are then named by date).
    """

    ticker: str
    frame: pd.DataFrame
    source: str
    rows: Sequence[int] | None = None

    def validated(self, start: date | None, end: date | None) -> tuple[pd.DataFrame, list[str]]:
        """Validate the whole frame, then keep ``start <= date <= end``; returns (frame, warnings)."""
        warnings = validate_ohlcv(self.frame, self.source, self.rows)
        frame = select_dates(self.frame, start, end)
        if frame.empty:
            first, last = self.frame.index[0].date(), self.frame.index[-1].date()
            raise DataSourceError(
                f"{self.source}: no {self.ticker} rows between {start or 'the start'} and {end or 'the end'} "
                f"(the data cover {first} to {last})"
            )
        return frame, warnings


def select_dates(frame: pd.DataFrame, start: date | None, end: date | None) -> pd.DataFrame:
    """Rows with ``start <= date <= end`` (both inclusive, either may be None)."""
    mask = np.ones(len(frame), dtype=bool)
    if start is not None:
        mask &= frame.index >= pd.Timestamp(start)
    if end is not None:
        mask &= frame.index <= pd.Timestamp(end)
    return frame.loc[mask]


def _row_name(i: int, rows: Sequence[int] | None, dates: pd.Index) -> int | str:
    """The CSV line of row ``i`` when known, else its ISO date."""
    if rows is not None:
        return int(rows[i])
    return "NaT" if pd.isna(dates[i]) else pd.Timestamp(dates[i]).date().isoformat()


def _numeric(values: pd.Series, field: str, source: str, rows: Sequence[int] | None, dates: pd.Index) -> pd.Series:
    """Parse ``values`` as numbers; empty cells become NaN (the validator reports them), text is an error."""
    if values.dtype.kind in "fiub":
        return values.astype(np.float64)
    text = values.astype(str).str.strip()
    parsed = pd.to_numeric(text.where(text != ""), errors="coerce")
    bad = np.flatnonzero(parsed.isna().to_numpy() & (text != "").to_numpy())
    if bad.size:
        i = int(bad[0])
        raise DataValidationError(
            source, _row_name(i, rows, dates), "dtype", f"{field} value {values.iloc[i]!r} is not a number"
        )
    return parsed.astype(np.float64)


def build_ohlcv(
    dates: pd.Index | pd.Series,
    columns: Mapping[str, pd.Series],
    source: str,
    rows: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Assemble an OHLCV frame from parsed dates and per-field values (any order, same length).

    Dates keep their local calendar day (a tz-aware index is made naive, times dropped). Prices become float64;
    volume becomes int64 when every value is a whole number, and stays float when some are missing so that the
    validator can name the row.
    """
    index = pd.DatetimeIndex(dates)
    if index.tz is not None:
        index = index.tz_localize(None)
    index = index.normalize().rename("date")
    data = {
        field: _numeric(pd.Series(columns[field]).reset_index(drop=True), field, source, rows, index)
        for field in OHLCV_COLUMNS
    }
    frame = pd.DataFrame({k: v.to_numpy() for k, v in data.items()}, index=index)
    volume = frame["volume"].to_numpy()
    if np.isfinite(volume).all():
        if (huge := np.flatnonzero(np.abs(volume) >= _INT64_LIMIT)).size:
            i = int(huge[0])
            raise DataValidationError(
                source,
                _row_name(i, rows, index),
                "volume_range",
                f"volume {volume[i]:g} is beyond the int64 range of share counts (|volume| < 9.2e18)",
            )
        fractional = np.flatnonzero(volume != np.round(volume))
        if fractional.size:
            i = int(fractional[0])
            raise DataValidationError(
                source, _row_name(i, rows, index), "dtype", f"volume {volume[i]} is not a whole number of shares"
            )
        frame["volume"] = volume.astype(np.int64)
    for field in PRICE_COLUMNS:
        frame[field] = frame[field].astype(np.float64)
    return frame


def validate_batch(
    raws: Sequence[RawFrame], start: date | None = None, end: date | None = None
) -> tuple[dict[str, pd.DataFrame], dict[str, str], list[str]]:
    """Validate every frame before anything is written; returns (universe, source per ticker, warnings).

    The first broken rule raises; a ticker that appears twice is an error naming both sources.
    """
    universe: dict[str, pd.DataFrame] = {}
    sources: dict[str, str] = {}
    warnings: list[str] = []
    for raw in raws:
        if raw.ticker in universe:
            raise DataSourceError(f"{raw.ticker} comes from two sources: {sources[raw.ticker]} and {raw.source}")
        universe[raw.ticker], ticker_warnings = raw.validated(start, end)
        sources[raw.ticker] = raw.source
        warnings.extend(ticker_warnings)
    return universe, sources, warnings
