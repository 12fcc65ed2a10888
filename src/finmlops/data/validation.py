"""Validation of one ticker's OHLCV frame before anything is written.

Rules, checked in this order (the first failure raises one ``DataValidationError``):
``schema`` (DatetimeIndex named ``date``, tz-naive, the six columns in order), ``empty``, ``nan`` (no NaN, NaT or
infinity), ``dtype`` (prices float64, volume int64), ``duplicate_date``, ``date_order`` (ascending),
``positive_price``, ``high_bound`` (high >= max(open, close)), ``low_bound`` (low <= min(open, close)),
``volume_negative``. A gap of more than ``MAX_GAP_BUSINESS_DAYS`` business days (Mon-Fri; an exchange holiday in
the gap counts as one) between consecutive rows is a warning, not an error (exchanges close for storms and national
mourning); the features treat such a gap as a break that no window or label spans (``calendar_breaks``). So is a day
with zero volume (a halted or stale quote): it is a valid bar, but a feature that divides by the volume or takes its
log is undefined on it or the next day, so a window that holds it is left out of training (``make_windows``) and
refused by the server (``finmlops.serving.raw``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from finmlops.data.errors import DataValidationError

OHLCV_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "adj_close", "volume")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "adj_close")
# Relative slack for the high/low bounds: Yahoo stores float32 and rounds, so a bound can miss by a few ulps.
BOUND_REL_TOL = 1e-9
MAX_GAP_BUSINESS_DAYS = 5

RowLabel = Callable[[int], int | str]


def validate_ohlcv(frame: pd.DataFrame, source: str, rows: Sequence[int] | None = None) -> list[str]:
    """Check ``frame`` against the OHLCV convention; return warnings, raise ``DataValidationError`` on a rule.

    ``source`` names the file or feed in messages. ``rows`` optionally gives, per frame row, the 1-based CSV line
    it came from; without it, rows are named by their ISO date.
    """
    _check_schema(frame, source)
    label = _row_labeler(frame.index, rows)
    _check_values(frame, source, label)
    _check_dates(frame.index, source, label)
    _check_bounds(frame, source, label)
    return gap_warnings(frame.index, source) + zero_volume_warnings(frame, source)


def _row_labeler(index: pd.Index, rows: Sequence[int] | None) -> RowLabel:
    if rows is not None:
        if len(rows) != len(index):
            raise ValueError(f"rows has {len(rows)} labels for {len(index)} frame rows")
        return lambda i: int(rows[i])
    return lambda i: "NaT" if pd.isna(index[i]) else index[i].date().isoformat()


def _check_schema(frame: pd.DataFrame, source: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise DataValidationError(source, None, "schema", f"expected a pandas DataFrame, got {type(frame).__name__}")
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise DataValidationError(
            source, None, "schema", f"index must be a DatetimeIndex, got {type(frame.index).__name__}"
        )
    if frame.index.tz is not None:
        raise DataValidationError(source, None, "schema", f"index must be tz-naive, got tz={frame.index.tz}")
    if frame.index.name != "date":
        raise DataValidationError(source, None, "schema", f"index must be named 'date', got {frame.index.name!r}")
    if list(frame.columns) != list(OHLCV_COLUMNS):
        missing = [c for c in OHLCV_COLUMNS if c not in frame.columns]
        extra = [str(c) for c in frame.columns if c not in OHLCV_COLUMNS]
        raise DataValidationError(
            source,
            None,
            "schema",
            f"columns must be {list(OHLCV_COLUMNS)}; missing {missing}, unexpected {extra}, got {list(frame.columns)}",
        )
    if frame.empty:
        raise DataValidationError(source, None, "empty", "no rows")


def _first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def _check_values(frame: pd.DataFrame, source: str, label: RowLabel) -> None:
    if (i := _first(np.asarray(frame.index.isna()))) is not None:
        raise DataValidationError(source, label(i), "nan", "missing or unparseable date")
    bad: list[tuple[int, str]] = []
    for col in OHLCV_COLUMNS:
        values = frame[col].to_numpy()
        missing = pd.isna(values) if values.dtype.kind not in "fiu" else ~np.isfinite(values.astype(float))
        if (i := _first(np.asarray(missing))) is not None:
            bad.append((i, col))
    if bad:
        i, col = min(bad)
        value = frame[col].iloc[i]
        shown = repr(float(value)) if isinstance(value, int | float | np.number) else repr(value)
        raise DataValidationError(source, label(i), "nan", f"{col} is missing or not finite ({shown})")
    for col in PRICE_COLUMNS:
        if frame[col].dtype != np.float64:
            raise DataValidationError(source, None, "dtype", f"{col} must be float64, got {frame[col].dtype}")
    if frame["volume"].dtype != np.int64:
        raise DataValidationError(source, None, "dtype", f"volume must be int64, got {frame['volume'].dtype}")


def _check_dates(index: pd.DatetimeIndex, source: str, label: RowLabel) -> None:
    step = np.diff(index.asi8)
    if (i := _first(step == 0)) is not None:
        raise DataValidationError(source, label(i + 1), "duplicate_date", f"{index[i + 1].date()} appears twice")
    if (i := _first(step < 0)) is not None:
        raise DataValidationError(
            source,
            label(i + 1),
            "date_order",
            f"{index[i + 1].date()} comes after {index[i].date()}; dates must ascend",
        )


def _check_bounds(frame: pd.DataFrame, source: str, label: RowLabel) -> None:
    columns = {k: frame[k].to_numpy() for k in PRICE_COLUMNS}
    nonpositive = np.zeros(len(frame), dtype=bool)
    for values in columns.values():
        nonpositive |= values <= 0
    if (i := _first(nonpositive)) is not None:
        col = next(k for k in PRICE_COLUMNS if columns[k][i] <= 0)
        raise DataValidationError(source, label(i), "positive_price", f"{col} = {columns[col][i]} <= 0")
    o, h, lo, c = (columns[k] for k in ("open", "high", "low", "close"))
    if (i := _first(_high_broken(o, h, c))) is not None:
        raise DataValidationError(
            source, label(i), "high_bound", f"high {h[i]} < max(open {o[i]}, close {c[i]}) on {frame.index[i].date()}"
        )
    if (i := _first(_low_broken(o, lo, c))) is not None:
        raise DataValidationError(
            source, label(i), "low_bound", f"low {lo[i]} > min(open {o[i]}, close {c[i]}) on {frame.index[i].date()}"
        )
    volume = frame["volume"].to_numpy()
    if (i := _first(volume < 0)) is not None:
        raise DataValidationError(source, label(i), "volume_negative", f"volume {volume[i]} < 0")


def _high_broken(o: np.ndarray, h: np.ndarray, c: np.ndarray) -> np.ndarray:
    return h < np.maximum(o, c) * (1 - BOUND_REL_TOL)


def _low_broken(o: np.ndarray, lo: np.ndarray, c: np.ndarray) -> np.ndarray:
    return lo > np.minimum(o, c) * (1 + BOUND_REL_TOL)


def broken_rows(columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """Boolean ``[batch]``: True for each series that breaks a value rule of ``validate_ohlcv``, all at once.

    ``columns`` holds the six ``OHLCV_COLUMNS``, each ``[batch, T]`` float (oldest day first). The rules are those
    of ``validate_ohlcv`` on the values (``nan``, ``positive_price``, ``high_bound``, ``low_bound``,
    ``volume_negative``, and a whole-number volume for its int64 ``dtype``), with the same bound formulas; there
    are no dates to check. For callers that hold many short series (the server's raw inputs): a series found
    broken is passed to ``validate_ohlcv`` as a frame, for its one message.
    """
    o, h, lo, c, adj, v = (np.asarray(columns[k], dtype=np.float64) for k in OHLCV_COLUMNS)
    prices = np.stack([o, h, lo, c, adj])
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(prices).all(axis=0) | ~np.isfinite(v) | (prices <= 0).any(axis=0)
        bad |= _high_broken(o, h, c) | _low_broken(o, lo, c) | (v < 0) | (v != np.round(v)) | (np.abs(v) >= 2.0**62)
    return bad.any(axis=-1)


def missing_business_days(dates: np.ndarray | pd.DatetimeIndex) -> np.ndarray:
    """Mon-Fri business days strictly between consecutive ``dates`` ``[n]`` (ascending): int ``[n - 1]``.

    Exchange holidays are not subtracted (NYSE holidays are not pandas' US federal calendar), so each one inside
    a stretch counts as a missing business day.
    """
    days = pd.DatetimeIndex(dates).to_numpy().astype("datetime64[D]")
    if days.size < 2:
        return np.zeros(0, dtype=np.int64)
    return np.busday_count(days[:-1] + 1, days[1:])


def calendar_breaks(dates: np.ndarray | pd.DatetimeIndex) -> np.ndarray:
    """Boolean ``[n - 1]``: True where more than ``MAX_GAP_BUSINESS_DAYS`` business days are missing between
    ``dates[i]`` and ``dates[i + 1]``, the gap rule below. Sequence windows and next-day labels never span one."""
    return missing_business_days(dates) > MAX_GAP_BUSINESS_DAYS


def zero_volume_warnings(frame: pd.DataFrame, source: str, shown: int = 5) -> list[str]:
    """One warning naming the days with zero volume (the first ``shown`` of them), or none."""
    days = frame.index[frame["volume"].to_numpy() == 0]
    if not len(days):
        return []
    listed = ", ".join(d.date().isoformat() for d in days[:shown]) + (
        f" and {len(days) - shown} more" if len(days) > shown else ""
    )
    return [
        f"{source}: {len(days)} day(s) with zero volume ({listed}); a feature that divides by the volume or takes "
        "its log is undefined on such a day or the next, and a window that holds an undefined value is left out "
        "of training and refused by the server"
    ]


def gap_warnings(index: pd.DatetimeIndex, source: str) -> list[str]:
    """One warning per gap of more than ``MAX_GAP_BUSINESS_DAYS`` business days (Mon-Fri) between rows."""
    missing = missing_business_days(index)
    days = index.to_numpy().astype("datetime64[D]")
    return [
        f"{source}: {int(missing[i])} business days (Mon-Fri, exchange holidays included) missing between "
        f"{days[i]} and {days[i + 1]}"
        for i in np.flatnonzero(missing > MAX_GAP_BUSINESS_DAYS)
    ]
