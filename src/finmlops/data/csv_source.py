"""Yahoo-format CSV files: one ticker per file, as Yahoo exports them or as the original system flattened them.

Accepted headers (case-insensitive, any column order):

* Yahoo: ``Date,Open,High,Low,Close,Adj Close,Volume`` (``Dividends``/``Stock Splits`` are ignored);
* flattened yfinance columns: ``Date,Adj Close_AAPL,Close_AAPL,...`` where the first column may also be called
  ``Price``, and yfinance's extra header rows ``Ticker,AAPL,...`` / ``Date,,,...`` may follow the header.

Accepted file names: ``AAPL.csv`` and ``AAPL_raw_2018-01-01_2023-12-31.csv`` (the ticker is the prefix).
Parsing raises ``DataValidationError`` naming the file and line for ``schema`` (header), ``date_format`` (not
YYYY-MM-DD, optionally with a time of day; trailing text is an error), ``dtype`` (text in a number cell,
fractional volume) and ``volume_range`` (a volume beyond int64); the rest is ``validate_ohlcv``'s job.

Speed: a file with a one-line header and plain ``YYYY-MM-DD`` dates is read by pyarrow's typed CSV reader (dates
as date32, prices float64, volume int64, no empty cell, blank line or non-finite number allowed). Anything that
reader refuses, and every file with yfinance's extra header rows, goes through the general text path above, which
also writes every error message; both paths give bitwise the same frames (tests/data/test_csv_fast.py checks the
whole S&P 500 folder). ``read_csv_folder`` parses files on ``PARSE_THREADS`` threads (pyarrow releases the GIL).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from finmlops.data.errors import DataSourceError, DataValidationError
from finmlops.data.frames import RawFrame, build_ohlcv, canonical_field, is_ignored_field, validate_batch
from finmlops.data.validation import OHLCV_COLUMNS

_FILE_NAME = re.compile(r"^(?P<ticker>[A-Za-z0-9.\-^=]+?)(?:_raw_.*)?\.csv$", re.IGNORECASE)
_DATE_HEADERS = frozenset({"date", "datetime", "date_"})
# yfinance's own CSV header names the index column "Price" (or nothing) and puts the dates in column one.
_FIRST_COLUMN_HEADERS = frozenset({"price", ""})
_LABEL_ROWS = frozenset({"ticker", "date"})
# Threads that parse a folder's files at once (pyarrow parses without the GIL; 2 cores gain ~1.8x).
PARSE_THREADS = max(1, min(4, os.cpu_count() or 1))
# Volumes above 2**53 are not exact in the text path's float64 step; the fast path leaves them to it.
_EXACT_FLOAT_INT = 2**53
_ISO_DATE_TIME = r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"


def ticker_from_filename(path: Path) -> str | None:
    """``AAPL.csv`` or ``AAPL_raw_2018-01-01_2023-12-31.csv`` -> ``'AAPL'``; None for other names."""
    match = _FILE_NAME.match(path.name)
    return match["ticker"].upper() if match else None


def find_csv_files(folder: Path) -> dict[str, list[Path]]:
    """Map each ticker to the CSV files in ``folder`` that hold it (sorted), by file name."""
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.glob("*.csv")):
        if (ticker := ticker_from_filename(path)) is not None:
            found.setdefault(ticker, []).append(path)
    return found


def _split_header_cell(cell: str) -> tuple[str | None, str | None]:
    """``'Adj Close_AAPL'`` -> (``'adj_close'``, ``'AAPL'``); ``'Close'`` -> (``'close'``, None)."""
    if (field := canonical_field(cell)) is not None:
        return field, None
    base, sep, suffix = cell.rpartition("_")
    if sep and suffix and (field := canonical_field(base)) is not None:
        return field, suffix.strip().upper()
    return None, None


def _parse_header(cells: list[str], source: str) -> tuple[int, dict[str, int], set[str]]:
    """Find the date column, the column of each OHLCV field and the tickers named in column suffixes."""
    names = [c.strip() for c in cells]
    date_col = next((i for i, c in enumerate(names) if c.lower() in _DATE_HEADERS), None)
    if date_col is None and names[0].lower() in _FIRST_COLUMN_HEADERS:
        date_col = 0
    if date_col is None:
        raise DataValidationError(source, 1, "schema", f"no Date column in header {names}")
    fields: dict[str, int] = {}
    tickers: set[str] = set()
    unknown: list[str] = []
    for i, name in enumerate(names):
        if i == date_col:
            continue
        field, ticker = _split_header_cell(name)
        if field is None:
            if not is_ignored_field(name):
                unknown.append(name)
            continue
        if field in fields:
            raise DataValidationError(source, 1, "schema", f"column {field!r} appears twice in header {names}")
        fields[field] = i
        if ticker:
            tickers.add(ticker)
    missing = [f for f in OHLCV_COLUMNS if f not in fields]
    if missing or unknown:
        raise DataValidationError(
            source, 1, "schema", f"header {names}: missing columns {missing}, unknown columns {unknown}"
        )
    return date_col, fields, tickers


def _read_cells(path: Path, source: str) -> pd.DataFrame:
    """Every cell as text, one frame row per file line (blank lines included, so positions map to lines)."""
    try:
        return pd.read_csv(path, header=None, dtype=str, keep_default_na=False, na_filter=False, skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise DataValidationError(source, None, "empty", "the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataValidationError(source, None, "schema", f"not a readable CSV: {exc}") from None


def _first_lines(path: Path, n: int = 2) -> list[str] | None:
    """The first ``n`` lines of ``path`` (without line ends), or None when it cannot be read as UTF-8 text."""
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            return [fh.readline().rstrip("\r\n") for _ in range(n)]
    except (OSError, UnicodeDecodeError):
        return None


def _parse_fast(path: Path, ticker: str | None, source: str) -> RawFrame | None:
    """The typed pyarrow read of a plain Yahoo-format file; None when the file needs the general text path
    (extra header rows, quoted header, an odd cell, a blank line, a non-finite or huge number, any error)."""
    lines = _first_lines(path)
    if lines is None or not lines[0] or '"' in lines[0] or not lines[1]:
        return None
    cells = lines[0].split(",")
    if len(set(cells)) != len(cells) or lines[1].split(",")[0].strip().lower() in _LABEL_ROWS:
        return None
    try:
        date_col, fields, header_tickers = _parse_header(cells, source)
    except DataValidationError:
        return None
    named = {t for t in (ticker and ticker.upper(), ticker_from_filename(path)) if t} | header_tickers
    if len(named) != 1:
        return None
    types = {cells[date_col]: pa.date32()} | {
        cells[col]: (pa.int64() if field == "volume" else pa.float64()) for field, col in fields.items()
    }
    try:
        table = pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(use_threads=False),
            parse_options=pa_csv.ParseOptions(ignore_empty_lines=False),
            convert_options=pa_csv.ConvertOptions(
                column_types=types,
                include_columns=list(types),
                null_values=[],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowException, OSError, ValueError):
        return None
    if table.num_rows == 0 or any(table.column(name).null_count for name in types):
        return None
    columns = {field: table.column(cells[col]).to_numpy() for field, col in fields.items()}
    prices = [columns[f] for f in OHLCV_COLUMNS if f != "volume"]
    if not all(np.isfinite(p).all() for p in prices) or (np.abs(columns["volume"]) > _EXACT_FLOAT_INT).any():
        return None
    days = table.column(cells[date_col]).to_numpy().astype("datetime64[ns]")
    frame = pd.DataFrame({f: columns[f] for f in OHLCV_COLUMNS}, index=pd.DatetimeIndex(days, name="date"), copy=False)
    return RawFrame(ticker=named.pop(), frame=frame, source=source, rows=list(range(2, table.num_rows + 2)))


def parse_ohlcv_csv(path: Path, ticker: str | None = None, source: str | None = None) -> RawFrame:
    """Parse one CSV into a ``RawFrame`` (not yet validated) that remembers each row's CSV line.

    ``ticker`` defaults to the one in the file name or column suffixes; when several are given they must agree.
    """
    source = source or str(path)
    fast = _parse_fast(path, ticker, source)
    return fast if fast is not None else parse_ohlcv_text(path, ticker, source)


def parse_ohlcv_text(path: Path, ticker: str | None = None, source: str | None = None) -> RawFrame:
    """:func:`parse_ohlcv_csv`'s general path: every cell read as text, then checked and converted."""
    source = source or str(path)
    cells = _read_cells(path, source)
    date_col, fields, header_tickers = _parse_header(list(cells.iloc[0]), source)
    first = 1
    while first < len(cells) and str(cells.iat[first, date_col]).strip().lower() in _LABEL_ROWS:
        if str(cells.iat[first, date_col]).strip().lower() == "ticker":
            header_tickers |= {str(cells.iat[first, i]).strip().upper() for i in fields.values()} - {""}
        first += 1
    named = {t for t in (ticker and ticker.upper(), ticker_from_filename(path)) if t} | header_tickers
    if len(named) != 1:
        what = f"names several tickers {sorted(named)}" if named else "names no ticker"
        raise DataValidationError(source, 1, "schema", f"file name and header {what}; expected exactly one")
    body = cells.iloc[first:]
    rows = list(range(first + 1, len(cells) + 1))
    text_dates = body.iloc[:, date_col].astype(str).str.strip()
    # The calendar day is the first 10 characters; a time of day (yfinance writes "2023-01-03 00:00:00-05:00") may
    # follow, anything else (2010-01-11xyz) is an error rather than silently dropped.
    dates = pd.to_datetime(text_dates.str.slice(0, 10), format="%Y-%m-%d", errors="coerce")
    bad = dates.isna().to_numpy() | ~text_dates.str.fullmatch(_ISO_DATE_TIME).to_numpy(dtype=bool)
    if bad.any():
        i = int(bad.argmax())
        header = str(cells.iat[0, date_col]).strip() or "date"
        raise DataValidationError(
            source,
            rows[i],
            "date_format",
            f"field {header!r}: {text_dates.iloc[i]!r} is not an ISO date (YYYY-MM-DD, optionally followed by a time)",
        )
    columns = {field: body.iloc[:, col] for field, col in fields.items()}
    frame = build_ohlcv(pd.DatetimeIndex(dates), columns, source, rows)
    return RawFrame(ticker=named.pop(), frame=frame, source=source, rows=rows)


def read_csv_folder(folder: Path, tickers: Iterable[str]) -> list[RawFrame]:
    """Parse the file of each ticker in ``folder``; missing or ambiguous files are one clear error."""
    if not folder.is_dir():
        raise DataSourceError(f"CSV folder {folder} does not exist or is not a directory")
    found = find_csv_files(folder)
    wanted = [t.upper() for t in tickers]
    missing = [t for t in wanted if t not in found]
    if missing:
        raise DataSourceError(
            f"{folder}: no CSV for {missing} (expected <TICKER>.csv or <TICKER>_raw_<start>_<end>.csv); "
            f"found files for {sorted(found) or 'no ticker'}"
        )
    ambiguous = {t: [p.name for p in found[t]] for t in wanted if len(found[t]) > 1}
    if ambiguous:
        raise DataSourceError(f"{folder}: several files for one ticker, keep one each: {ambiguous}")
    with ThreadPoolExecutor(max_workers=PARSE_THREADS) as pool:
        return list(pool.map(lambda t: parse_ohlcv_csv(found[t][0], t), wanted))


def load_csv_folder(
    folder: Path, tickers: Iterable[str], start: date | None = None, end: date | None = None
) -> dict[str, pd.DataFrame]:
    """The validated universe from a folder of Yahoo-format CSVs, restricted to ``start <= date <= end``."""
    universe, _, _ = validate_batch(read_csv_folder(folder, tickers), start, end)
    return universe
