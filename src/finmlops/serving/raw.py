"""Raw OHLCV inputs: a model's features by ``finmlops.features.feature_matrix``, the core of ``compute_features``.

Tensors ``open``, ``high``, ``low``, ``close``, ``volume`` (and optionally ``adj_close``, default ``close``), each
``[batch, T]``, oldest day first. Each batch row is one ticker's last T trading days. Models whose features read the
market (``market_*`` in the advanced set) also need ``market_return`` ``[batch, T]``: the training universe's
equal-weight daily return on the same days (``finmlops.features.market_returns``). The server cannot rebuild it from
one ticker's history, and a stand-in would be training/serving skew, so without it the request is a 400. The model's
window is the last ``seq_len`` rows of the features, in the card's feature order.

The whole batch is checked at once by the store's value rules (``finmlops.data.validation.broken_rows``: positive
prices, ``high >= max(open, close)``, ``low <= min(open, close)``, whole non-negative volumes, ...); a broken row is
passed to the store's ``validate_ohlcv`` for its message, so a row the store would refuse is never scored. Features
are computed on the arrays (no frame) and on the last ``settled_history`` rows only: a longer history gives the same
windows, up to the rounding of running sums and the 1e-12 that an exponential smoothing (RSI, ATR, MACD) keeps of
older rows (docs/serving.md, "Raw inputs at tensor speed"). T is at most ``MAX_HISTORY_DAYS`` (a 413 beyond).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from finmlops.data.errors import DataValidationError
from finmlops.data.validation import OHLCV_COLUMNS, broken_rows, validate_ohlcv
from finmlops.features import feature_matrix, settled_history
from finmlops.features.registry import Feature, TickerInputs, features_of
from finmlops.serving.errors import BadRequest, InternalError, TooLarge

REQUIRED = ("open", "high", "low", "close", "volume")
MARKET = "market_return"
# Longest raw history a request may send: 40 years of trading days, far beyond any feature's window.
MAX_HISTORY_DAYS = 10_000
# Batch rows whose features the server computes on its event loop rather than in a worker thread: one row costs
# 0.2-0.6 ms (the settled tail bounds it, whatever T), and the thread's GIL hand-offs cost ~0.3 ms of CPU per request
# (bench/raw_path.py: 1.0 -> 0.73 ms of server CPU per raw request, 0.30 -> 0.43 of the tensor path's throughput).
INLINE_ROWS = 2
# Synthetic trading days: no feature reads the calendar, only the order of rows.
_END = pd.Timestamp("2000-01-03")


def runs_inline(inputs: dict[str, np.ndarray]) -> bool:
    """Whether a raw request is small enough (at most ``INLINE_ROWS`` batch rows) to compute on the event loop."""
    close = inputs.get("close")
    return close is not None and close.ndim == 2 and close.shape[0] <= INLINE_ROWS


def min_history(feature_set: str, seq_len: int) -> int:
    """Fewest days T that give ``seq_len`` warm rows: the longest feature window plus ``seq_len - 1``."""
    return max(f.window for f in features_of(feature_set)) + seq_len - 1


def raw_windows(inputs: dict[str, np.ndarray], feature_set: str, feature_names: list[str], seq_len: int) -> np.ndarray:
    """``[batch, seq_len, n_features]`` float32 windows from ``[batch, T]`` OHLCV tensors.

    Raises ``BadRequest`` naming the tensor, batch row and day of a bad value (or the rule the store's validation
    found broken), or the minimum T; ``TooLarge`` beyond ``MAX_HISTORY_DAYS``.
    """
    missing = [n for n in REQUIRED if n not in inputs]
    if missing:
        raise BadRequest(f"raw inputs need tensors {', '.join(REQUIRED)}; missing {', '.join(missing)}")
    cross_asset = any(f.cross_asset for f in features_of(feature_set))
    if cross_asset and MARKET not in inputs:
        raise BadRequest(
            f"this model's {feature_set} features read the market: send {MARKET!r} [batch, T], the training "
            "universe's equal-weight daily return on the same days",
        )
    columns = {n: inputs[n] for n in (*REQUIRED, "adj_close", MARKET) if n in inputs}
    shape = inputs["close"].shape
    for name, array in columns.items():
        if array.ndim != 2 or array.shape != shape:
            raise BadRequest(
                f"input {name!r}: every raw tensor must be [batch, T] like 'close' {list(shape)}, "
                f"got {list(array.shape)}",
            )
    batch, days = shape
    if batch == 0:
        raise BadRequest("empty batch: 'close' has 0 rows")
    need = min_history(feature_set, seq_len)
    if days < need:
        raise BadRequest(
            f"too short a history: T = {days} days, this model ({feature_set} features, seq_len "
            f"{seq_len}) needs T >= {need}",
        )
    if days > MAX_HISTORY_DAYS:
        raise TooLarge(
            f"input 'close': T = {days} days exceeds the maximum raw history of {MAX_HISTORY_DAYS} days; send the "
            f"last {need} or more (up to {MAX_HISTORY_DAYS})"
        )
    if MARKET in columns and not np.isfinite(columns[MARKET]).all():
        row, day = (int(v) for v in np.argwhere(~np.isfinite(columns[MARKET]))[0])
        raise BadRequest(f"input {MARKET!r}: row {row}, day {day}: must be finite", row=row)
    features = _card_features(feature_set, feature_names)
    ohlcv = {n: columns.get(n, columns["close"]) for n in OHLCV_COLUMNS}
    broken = np.flatnonzero(broken_rows(ohlcv))
    if broken.size:
        _frame(columns, int(broken[0]), pd.bdate_range(end=_END, periods=days, name="date"))  # raises its message
        raise InternalError(f"raw inputs: batch row {int(broken[0])} breaks an OHLCV rule the store's check missed")
    # Only the rows the last seq_len windows can depend on (finmlops.features.settled_history), the whole batch as
    # one [batch, T'] panel: each feature computes along the last axis, row by row what a lone request gets.
    start = max(0, days - settled_history(features, seq_len))
    market = columns[MARKET][:, start:] if cross_asset else np.full((batch, days - start), np.nan)
    panel = TickerInputs.from_arrays(*(ohlcv[n][:, start:] for n in OHLCV_COLUMNS), market)
    windows = feature_matrix(panel, features)[:, -seq_len:].astype(np.float32)
    bad = ~np.isfinite(windows)
    if bad.any():
        row, step, j = (int(v) for v in np.argwhere(bad)[0])
        raise BadRequest(
            f"raw inputs: row {row}: feature {feature_names[j]!r} is undefined on day "
            f"{days - seq_len + step} (a constant or zero-range history?)",
            row=row,
        )
    return windows


def _card_features(feature_set: str, feature_names: list[str]) -> list[Feature]:
    """The ``Feature`` records of a model card's columns, in the card's order."""
    declared = {f.name: f for f in features_of(feature_set)}
    unknown = [n for n in feature_names if n not in declared]
    if unknown:
        raise InternalError(f"the model card names features outside its {feature_set!r} set: {', '.join(unknown)}")
    return [declared[n] for n in feature_names]


def _frame(columns: dict[str, np.ndarray], row: int, dates: pd.DatetimeIndex) -> pd.DataFrame:
    """Batch row ``row`` as an OHLCV frame on synthetic ``dates``, checked by the store's ``validate_ohlcv``.

    A whole-number volume becomes int64 (the store's dtype); a fractional one stays float and the validation names
    it. Messages name the batch row and the day (0 = oldest).
    """
    volume = columns["volume"][row]
    if np.all(np.abs(volume) < 2**62) and np.array_equal(volume, np.round(volume)):
        volume = volume.astype(np.int64)
    frame = pd.DataFrame(
        {
            "open": columns["open"][row],
            "high": columns["high"][row],
            "low": columns["low"][row],
            "close": columns["close"][row],
            "adj_close": columns.get("adj_close", columns["close"])[row],
            "volume": volume,
        },
        index=dates,
    )
    try:
        validate_ohlcv(frame, f"raw inputs, batch row {row}", rows=range(len(dates)))
    except DataValidationError as exc:
        day = "" if exc.row is None else f", day {exc.row}"
        raise BadRequest(f"raw inputs: batch row {row}{day}: rule {exc.rule!r} failed: {exc.detail}", row=row) from None
    return frame
