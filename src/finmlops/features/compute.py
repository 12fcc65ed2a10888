"""``compute_features``: the long feature frame of a universe, per ticker, from data at or before each date.

The universe is computed as panels of tickers (``finmlops.features.panel``); ``compute_features_per_ticker`` is
the original one-ticker-at-a-time loop, kept as the reference that the panel must equal bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from finmlops.data.validation import OHLCV_COLUMNS
from finmlops.features.panel import compute_panel
from finmlops.features.registry import Feature, TickerInputs, features_of

_PRICE_COLUMNS = ("open", "high", "low", "close", "adj_close")


def check_universe(universe: Mapping[str, pd.DataFrame]) -> None:
    """Raise ValueError naming the ticker, row and field of the first frame that breaks the OHLCV convention.

    Checked: the columns, an ascending unique DatetimeIndex, finite positive prices, finite non-negative volume.
    TA-Lib silently corrupts everything after a NaN, so bad rows must stop here rather than be skipped.
    """
    if not universe:
        raise ValueError("the universe is empty: no tickers to compute features for")
    for ticker, frame in universe.items():
        missing = [c for c in OHLCV_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"{ticker}: missing column(s) {', '.join(missing)}")
        index = frame.index
        if not isinstance(index, pd.DatetimeIndex):
            raise ValueError(f"{ticker}: index must be a DatetimeIndex named 'date', got {type(index).__name__}")
        if not index.is_unique:
            raise ValueError(f"{ticker}: row {index[index.duplicated()][0].date()}: duplicate date")
        if not index.is_monotonic_increasing:
            bad = int(np.argmax(np.diff(index.asi8) < 0)) + 1
            raise ValueError(f"{ticker}: row {index[bad].date()}: dates are not ascending")
        # The store's frames hold exactly these columns, in this order: one to_numpy, no column take.
        ordered = tuple(frame.columns) == OHLCV_COLUMNS
        block = (frame if ordered else frame[list(OHLCV_COLUMNS)]).to_numpy(np.float64)
        prices, volume = block[:, : len(_PRICE_COLUMNS)], block[:, len(_PRICE_COLUMNS)]
        if np.isfinite(prices).all() and (prices > 0).all() and np.isfinite(volume).all() and (volume >= 0).all():
            continue  # the common case, in two array checks; the loop below names the first bad cell
        for column in OHLCV_COLUMNS:
            values = frame[column].to_numpy(np.float64)
            bad_rows = ~np.isfinite(values) | (values <= 0 if column in _PRICE_COLUMNS else values < 0)
            if bad_rows.any():
                row = int(np.argmax(bad_rows))
                rule = "positive and finite" if column in _PRICE_COLUMNS else "non-negative and finite"
                raise ValueError(f"{ticker}: row {index[row].date()}: field {column!r} = {values[row]} must be {rule}")


def _returns_grid(universe: Mapping[str, pd.DataFrame]) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Each ticker's daily returns laid on the union calendar: ``(grid [n_dates, tickers sorted], each ticker's
    date codes [n_t] in that order, calendar [n_dates])``; NaN where the ticker has no row or no previous row."""
    names = sorted(universe)
    dates = [universe[t].index.to_numpy(dtype="datetime64[ns]") for t in names]
    calendar = np.unique(np.concatenate(dates)) if names else np.array([], dtype="datetime64[ns]")
    codes = [np.searchsorted(calendar, d) for d in dates]
    grid = np.full((len(calendar), len(names)), np.nan)
    for k, t in enumerate(names):
        close = universe[t]["adj_close"].to_numpy(np.float64)
        if len(close) > 1:
            grid[codes[k][1:], k] = close[1:] / close[:-1] - 1.0  # pandas' pct_change, on the ticker's own rows
    return grid, codes, calendar


def _grid_mean(grid: np.ndarray) -> np.ndarray:
    """The NaN-skipping mean over tickers (axis 1, contiguous) of a returns grid ``[n_dates, tickers]``: numpy's
    pairwise sum of each date's row in ticker order, as pandas' ``DataFrame.mean(axis=1)`` over the same columns
    takes it (bitwise; tests/features/test_operators.py)."""
    present = ~np.isnan(grid)
    total = np.where(present, grid, 0.0).sum(axis=1)
    count = present.sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def market_returns(universe: Mapping[str, pd.DataFrame]) -> pd.Series:
    """The universe's equal-weight daily return on the union of its dates (``[n_dates]``, fraction).

    On each date the mean of ``adj_close_t / adj_close_{t-1} - 1`` over the tickers that trade that day, each
    return taken on the ticker's own previous row: same-day data or earlier only. NaN where no ticker has a return.
    Summed in ticker order, so the result is bitwise the same however the universe is ordered.
    """
    grid, _, calendar = _returns_grid(universe)
    return pd.Series(_grid_mean(grid), index=pd.DatetimeIndex(calendar, name="date"))


def _markets(
    universe: Mapping[str, pd.DataFrame], features: list[Feature], market: Mapping[str, pd.Series] | None
) -> dict[str, np.ndarray | None]:
    """Each ticker's market return on its own dates (``[n]``), or None when no feature of the set reads it."""
    if not any(f.cross_asset for f in features):
        return dict.fromkeys(universe)
    if market is not None:
        if missing := sorted(set(universe) - set(market)):
            raise ValueError(f"market returns missing for tickers {', '.join(map(str, missing))}")
        return {t: market[t].reindex(frame.index).to_numpy(np.float64) for t, frame in universe.items()}
    grid, codes, _ = _returns_grid(universe)
    shared = _grid_mean(grid)
    return {t: shared[c] for t, c in zip(sorted(universe), codes, strict=True)}


def feature_matrix(inputs: TickerInputs, features: Sequence[Feature]) -> np.ndarray:
    """One ticker's features ``[n, len(features)]`` float64, in the order of ``features``, or a panel's
    ``[k, n, len(features)]`` when the inputs are ``[k, n]`` (every feature computes along the last axis, row by
    row the same values: ``finmlops.features.panel``); warm-up rows and undefined values (a division by zero) are
    NaN. The per-ticker core of ``compute_features``; the server's raw inputs call it on a request's ``[batch, T]``
    arrays (no frame, no index), so both compute with the same code."""
    # Feature-major while filling (each feature's values one contiguous write), then the [..., n, F] view.
    block = np.empty((len(features), *np.shape(inputs.close)), dtype=np.float64)
    for j, feature in enumerate(features):
        block[j] = feature.compute(inputs)
    block[~np.isfinite(block)] = np.nan
    return np.moveaxis(block, 0, -1)


def settled_history(features: Sequence[Feature], seq_len: int) -> int:
    """Rows of history that give the last ``seq_len`` rows of ``features`` as any longer history does.

    ``max(window + memory) + seq_len - 1``: a feature of finite window reads no older row (the value can differ in
    the last bits only, where TA-Lib's running sums round differently); an exponential smoothing keeps less than
    ``MEMORY_TOL`` (1e-12) of older rows (tests/features/test_compute.py bounds the difference on real data).
    """
    return max(f.window + f.memory for f in features) + seq_len - 1


def compute_features(
    universe: Mapping[str, pd.DataFrame],
    feature_set: str,
    *,
    market: Mapping[str, pd.Series] | None = None,
    dtype: type[np.floating] = np.float64,
) -> pd.DataFrame:
    """Long feature frame ``[sum of rows, n_features]`` indexed by ``(date, ticker)``, sorted, of ``dtype``.

    Each ticker is computed on its own rows; only the cross-asset features read the other tickers, through the
    same-day equal-weight market return. Warm-up rows and undefined values (a division by zero) are NaN: a ticker
    that starts late (an IPO, a late listing) has NaN features until it has its own ``window`` rows of each
    feature, whatever the other tickers hold.

    ``market`` maps each ticker to the market return series (fraction, by date) its cross-asset features use, in
    place of ``market_returns(universe)``: for callers that hold only part of the training universe (serving one
    ticker's history), so that they see the market the model was trained on.

    ``dtype``: float64 (default) or float32. Values are always computed in float64; float32 rounds each finished
    value once (relative error <= 6e-8), halving the frame (Alpha158 over the S&P 500 set: 2.7 GB -> 1.35 GB).
    """
    features = features_of(feature_set)
    check_universe(universe)
    if np.dtype(dtype) not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise ValueError(f"dtype must be float64 or float32, got {np.dtype(dtype)}")
    values, index = compute_panel(universe, features, _markets(universe, features, market), dtype)
    return pd.DataFrame(values, index=index, columns=[f.name for f in features], copy=False)


def compute_features_per_ticker(
    universe: Mapping[str, pd.DataFrame],
    feature_set: str,
    *,
    market: Mapping[str, pd.Series] | None = None,
) -> pd.DataFrame:
    """:func:`compute_features` one ticker at a time on ``[n]`` arrays (float64): the reference for the panel."""
    features = features_of(feature_set)
    check_universe(universe)
    markets = _markets(universe, features, market)
    blocks: list[np.ndarray] = []
    dates: list[np.ndarray] = []
    tickers: list[np.ndarray] = []
    for ticker, frame in universe.items():
        n = len(frame)
        m = markets[ticker]
        inputs = TickerInputs.from_frame(frame, m if m is not None else np.full(n, np.nan))
        blocks.append(feature_matrix(inputs, features))
        dates.append(frame.index.to_numpy(dtype="datetime64[ns]"))
        tickers.append(np.full(n, str(ticker).upper(), dtype=object))
    values = np.concatenate(blocks)
    all_dates = np.concatenate(dates)
    all_tickers = np.concatenate(tickers)
    order = np.lexsort((all_tickers.astype(str), all_dates))
    index = pd.MultiIndex.from_arrays(
        [pd.DatetimeIndex(all_dates[order], name="date"), pd.Index(all_tickers[order], name="ticker")]
    )
    return pd.DataFrame(values[order], index=index, columns=[f.name for f in features])
