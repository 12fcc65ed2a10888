"""Features of a whole universe at once: a panel ``[tickers, rows]`` per input instead of one loop per ticker.

Row k of a panel holds ticker k's own trading days, oldest first, left-aligned and NaN-padded to the longest ticker
of its chunk; column i is the ticker's i-th row, not a calendar date. Every feature function works along the last
axis (``finmlops.features.indicators``, ``finmlops.features.alpha158``), so it reads the same values in the same
order for a ticker's ``[n]`` series and for its panel row: each value depends only on the ticker's rows up to its
own, the padding sits after the last real row, and the results are the per-ticker ones bit for bit
(tests/features/test_panel.py checks every set). TA-Lib takes one 1-D array per call: :data:`ta` calls it on each
panel row (TA-Lib loops forward, so the trailing padding cannot reach a real row).

Tickers go in chunks of :data:`CHUNK_TICKERS`, sorted by length (little padding), so that the intermediates one
chunk memoises stay small (about 200 arrays of ``chunk x rows`` float64 for Alpha158), on :data:`THREADS` threads
(numpy and TA-Lib run without the GIL). Each chunk's columns are scattered straight into the output matrix in its
final ``(date, ticker)`` order: no per-ticker block, no concatenation, no sorted copy.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import talib

from finmlops.features.registry import Feature, TickerInputs

CHUNK_TICKERS = 32
THREADS = max(1, min(2, os.cpu_count() or 1))


class _RowWise:
    """``ta.SMA(x, 20)``: TA-Lib's function on ``x`` ``[n]``, or on each row of a panel ``[k, n]``, stacked.

    Multi-output functions (MACD, BBANDS, STOCH) give a tuple of arrays of the input's shape.
    """

    def __getattr__(self, name: str) -> Callable[..., Any]:
        function = getattr(talib, name)

        def call(*args: Any) -> Any:
            arrays = [a for a in args if isinstance(a, np.ndarray)]
            if not arrays or arrays[0].ndim == 1:
                return function(*args)
            rows = arrays[0].shape[0]
            results = []
            for k in range(rows):
                results.append(function(*(a[k] if isinstance(a, np.ndarray) else a for a in args)))
            if isinstance(results[0], tuple):
                return tuple(np.stack([r[j] for r in results]) for j in range(len(results[0])))
            return np.stack(results)

        return call


ta = _RowWise()


def _chunks(lengths: np.ndarray, size: int) -> list[np.ndarray]:
    """Ticker positions in chunks of ``size``, longest first, so each chunk pads to similar lengths."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + size] for i in range(0, len(order), size)]


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
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The long feature matrix of ``universe``: (values ``[rows, features]`` F-ordered, dates ``[rows]``
    datetime64[ns], tickers ``[rows]`` object), rows sorted by (date, ticker); non-finite values are NaN.

    ``markets`` maps each ticker to its market-return series on its own dates (``[n]``), or None. Computed in
    float64; ``dtype`` is the stored type (float32 rounds each finished value once).
    """
    names = list(universe)
    frames = [universe[t] for t in names]
    lengths = np.array([len(f) for f in frames], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    dates = np.concatenate([f.index.to_numpy(dtype="datetime64[ns]") for f in frames])
    labels = np.array([str(t).upper() for t in names], dtype=object)
    tickers = np.repeat(labels, lengths)
    order = np.lexsort((tickers.astype(str), dates))
    destination = np.empty(len(order), dtype=np.int64)  # row of the output for each (ticker, own row) in input order
    destination[order] = np.arange(len(order))
    values = np.empty((len(features), len(order)), dtype=dtype).T  # F-ordered: each feature's column is contiguous

    def run(chunk: np.ndarray) -> None:
        inputs = _panel_inputs([frames[i] for i in chunk], [markets[names[i]] for i in chunk])
        width = inputs.close.shape[-1]
        real = np.arange(width) < lengths[chunk][:, None]
        rows = np.concatenate([destination[starts[i] : starts[i + 1]] for i in chunk])
        for j, feature in enumerate(features):
            column = np.asarray(feature.compute(inputs), dtype=np.float64)[real].astype(dtype, copy=False)
            column[~np.isfinite(column)] = np.nan
            values[rows, j] = column

    chunks = _chunks(lengths, CHUNK_TICKERS)
    if THREADS > 1 and len(chunks) > 1:
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            list(pool.map(run, chunks))
    else:
        for chunk in chunks:
            run(chunk)
    return values, dates[order], tickers[order]
