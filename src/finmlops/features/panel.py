"""Features of a whole universe at once: a panel ``[tickers, rows]`` per input instead of one loop per ticker.

Row k of a panel holds ticker k's own trading days, oldest first, left-aligned and NaN-padded to the longest ticker
of its chunk; column i is the ticker's i-th row, not a calendar date. Every feature function works along the last
axis (``finmlops.features.indicators``, ``finmlops.features.alpha158``), so it reads the same values in the same
order for a ticker's ``[n]`` series and for its panel row: each value depends only on the ticker's rows up to its
own, the padding sits after the last real row, and the results are the per-ticker ones bit for bit
(tests/features/test_panel.py checks every set). TA-Lib takes one 1-D array per call: :data:`ta` calls it on each
panel row (TA-Lib loops forward, so the trailing padding cannot reach a real row).

Tickers go in chunks of :data:`CHUNK_TICKERS` consecutive ones, so that the intermediates one
chunk memoises stay small (about 250 arrays of ``chunk x rows`` float64 for Alpha158, 0.5 GB at 16 tickers of
5,400 rows), on :data:`THREADS` threads (numpy, bottleneck and TA-Lib run without the GIL). Each chunk's cells are
scattered straight into their rows of the output matrix, in its final ``(date, ticker)`` order (the chunk's
tickers are consecutive, so each date's cells are one short run): no per-ticker block, no concatenation, no sorted
copy, no second pass.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import talib

from finmlops.features.registry import Feature, TickerInputs

CHUNK_TICKERS = 16
THREADS = max(1, min(2, os.cpu_count() or 1))


def _rowwise(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` on ``x`` ``[n]`` (one direct call), or on each row of a panel ``[k, n]``, stacked;
    multi-output functions (MACD, BBANDS, STOCH) give a tuple of arrays of the input's shape."""

    def call(*args: Any) -> Any:
        if args[0].ndim == 1:
            return function(*args)
        k = len(args[0])
        # Iterating a [k, n] array yields its row views in C; a scalar argument repeats. (A raw day request pays
        # one call per ticker and per TA-Lib function: the loop's own overhead is most of its features' time.)
        rows = zip(*(a if isinstance(a, np.ndarray) else itertools.repeat(a, k) for a in args), strict=False)
        first = function(*next(rows))
        if isinstance(first, tuple):
            outs = tuple(np.empty((k, *r.shape), dtype=r.dtype) for r in first)
            for out, r in zip(outs, first, strict=True):
                out[0] = r
            for i, row in enumerate(rows, start=1):
                for out, r in zip(outs, function(*row), strict=True):
                    out[i] = r
            return outs
        out = np.empty((k, *first.shape), dtype=first.dtype)
        out[0] = first
        for i, row in enumerate(rows, start=1):
            out[i] = function(*row)
        return out

    return call


# TA-Lib's C functions without the pandas/polars dispatch its package wraps them in (about half of a call's 2.3 us
# on 120 rows, which the server's raw inputs pay per request): every input here is a float64 array already. Same
# functions, same results; each takes one ticker's [n] series or a panel [k, n] (one call per row).
ta = SimpleNamespace(
    **{
        name: _rowwise(getattr(getattr(talib, name), "__wrapped__", getattr(talib, name)))
        for name in ("ATR", "BBANDS", "CORREL", "MACD", "OBV", "ROC", "RSI", "SMA", "STDDEV", "STOCH", "SUM")
    }
)


def _panel_inputs(frames: Sequence[pd.DataFrame], markets: Sequence[np.ndarray | None]) -> TickerInputs:
    """One chunk's inputs as ``[k, n_max]`` panels, NaN after each ticker's last row."""
    width = max(len(f) for f in frames)
    fields = ("open", "high", "low", "close", "adj_close", "volume")
    raw = {name: np.full((len(frames), width), np.nan) for name in fields}
    market = np.full((len(frames), width), np.nan)
    for k, frame in enumerate(frames):
        n = len(frame)
        for name in fields:
            raw[name][k, :n] = frame[name].to_numpy(np.float64)
        if markets[k] is not None:
            market[k, :n] = markets[k]
    factor = raw["adj_close"] / raw["close"]
    return TickerInputs(
        open=raw["open"] * factor,
        high=raw["high"] * factor,
        low=raw["low"] * factor,
        close=raw["adj_close"],
        raw_close=raw["close"],
        volume=raw["volume"],
        market_return=market,
    )


def compute_panel(
    universe: Mapping[str, pd.DataFrame],
    features: Sequence[Feature],
    markets: Mapping[str, np.ndarray | None],
    dtype: type[np.floating[Any]] = np.float64,
) -> tuple[np.ndarray, pd.MultiIndex]:
    """The long feature matrix of ``universe``: values ``[rows, features]`` (F-ordered: each feature's column is
    contiguous) and its ``(date, ticker)`` index, rows sorted by date then ticker; non-finite values are NaN.

    ``markets`` maps each ticker to its market-return series on its own dates (``[n]``), or None. Computed in
    float64; ``dtype`` is the stored type (float32 rounds each finished value once).

    Each row's output position is counted once on the ``[dates, tickers]`` grid of present cells; each chunk then
    gathers its real cells from its ``[k, width]`` panels and scatters them to those positions, one feature column
    (a contiguous 1-D view) at a time.
    """
    names = sorted(universe, key=lambda t: str(t).upper())
    frames = [universe[t] for t in names]
    labels = np.array([str(t).upper() for t in names], dtype=object)
    lengths = np.array([len(f) for f in frames], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    n_rows = int(starts[-1])
    own_dates = np.concatenate([f.index.to_numpy(dtype="datetime64[ns]") for f in frames])
    calendar = np.unique(own_dates)
    date_codes = np.searchsorted(calendar, own_dates)
    ticker_codes = np.repeat(np.arange(len(names)), lengths)
    # Cell of each (ticker-major) row on the transposed grid [dates, tickers]; its present cells in order are the
    # output's (date, ticker) rows, so a row's output position is the count of present cells before its own.
    cells = date_codes * len(names) + ticker_codes
    present = np.zeros(len(calendar) * len(names), dtype=bool)
    present[cells] = True
    date_major = np.flatnonzero(present)
    destination = np.cumsum(present)[cells] - 1
    del present, cells, date_codes, ticker_codes
    values = np.empty((len(features), n_rows), dtype=dtype).T

    def run(chunk: np.ndarray) -> None:
        inputs = _panel_inputs([frames[i] for i in chunk], [markets[names[i]] for i in chunk])
        width = inputs.close.shape[-1]
        first, last = int(starts[chunk[0]]), int(starts[chunk[-1] + 1])
        # The chunk's real cells of the [k, width] panel (ticker k's row i: k * width + i), in output order, and
        # their output rows, ascending: each feature is one gather and one scatter of near-contiguous runs.
        shift = starts[chunk] - first - np.arange(len(chunk)) * width
        cell = np.arange(last - first) - np.repeat(shift, lengths[chunk])
        order = np.argsort(destination[first:last], kind="stable")
        cell, rows = cell[order], destination[first:last][order]
        for j, feature in enumerate(features):
            column = np.asarray(feature.compute(inputs), dtype=np.float64).reshape(-1)[cell].astype(dtype, copy=False)
            column[~np.isfinite(column)] = np.nan
            values[:, j][rows] = column  # a 1-D view: numpy's fast scatter (values[rows, j] is ~40x slower)

    chunks = [np.arange(i, min(i + CHUNK_TICKERS, len(names))) for i in range(0, len(names), CHUNK_TICKERS)]
    if THREADS > 1 and len(chunks) > 1:
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            list(pool.map(run, chunks))
    else:
        for chunk in chunks:
            run(chunk)
    codes_date, codes_ticker = np.divmod(date_major, len(names))
    index = pd.MultiIndex(
        levels=[pd.DatetimeIndex(calendar, name="date"), pd.Index(labels, name="ticker")],
        codes=[codes_date, codes_ticker],
        names=["date", "ticker"],
        verify_integrity=False,
    )
    return values, index
