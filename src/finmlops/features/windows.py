"""Sliding windows over the long feature frame, vectorised per ticker (no Python object per sample)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from finmlops.data.validation import calendar_breaks


@dataclass(frozen=True)
class Windows:
    """Model inputs: ``X`` float32 ``[n, seq_len, n_features]``, ``y`` float32 ``[n]`` (NaN where unknown),
    ``dates`` datetime64 ``[n]`` (decision date t, the window's last row), ``tickers`` str ``[n]``.

    Rows are ordered by (date, ticker).
    """

    X: np.ndarray
    y: np.ndarray
    dates: np.ndarray
    tickers: np.ndarray
    feature_names: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.X)
        if self.X.ndim != 3 or self.X.shape[2] != len(self.feature_names):
            raise ValueError(f"X must be [n, seq_len, {len(self.feature_names)}], got {self.X.shape}")
        if not len(self.y) == len(self.dates) == len(self.tickers) == n:
            raise ValueError(f"X, y, dates and tickers disagree on n: {n}, {len(self.y)}, {len(self.dates)}")

    def __len__(self) -> int:
        return len(self.X)

    @property
    def seq_len(self) -> int:
        return int(self.X.shape[1])

    def subset(self, mask: np.ndarray) -> Windows:
        """The windows where boolean ``mask`` ``[n]`` is true (e.g. a fold's training dates)."""
        return Windows(self.X[mask], self.y[mask], self.dates[mask], self.tickers[mask], self.feature_names)


def _plan(
    values: np.ndarray, target: np.ndarray, positions: np.ndarray, seq_len: int, require_target: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One ticker's windows, planned but not yet copied.

    ``values`` ``[k, f]`` and ``target`` ``[k]`` are its rows at calendar ``positions`` ``[k]`` (ascending; a
    calendar break counts as one extra position). Rows are laid on the dense calendar span, so a missing trading
    day, or a break, becomes a NaN row that no window can cover.
    Returns the dense rows ``[span, f]``, each kept window's last dense row ``[w]``, its target ``[w]`` and its
    row in ``values`` ``[w]``.
    """
    offsets = positions - positions[0]
    span = int(offsets[-1]) + 1
    dense = np.full((span, values.shape[1]), np.nan)
    dense[offsets] = values
    dense_target = np.full(span, np.nan)
    dense_target[offsets] = target
    bad = np.concatenate([[0], np.cumsum(~np.isfinite(dense).all(axis=1))])
    ends = np.arange(seq_len - 1, span)
    ok = bad[ends + 1] - bad[ends + 1 - seq_len] == 0
    if require_target:
        ok &= np.isfinite(dense_target[ends])
    ends = ends[ok]
    return dense, ends, dense_target[ends], np.searchsorted(offsets, ends)


def make_windows(
    features: pd.DataFrame, target: pd.Series | None, seq_len: int, *, require_target: bool = True
) -> Windows:
    """Windows of ``seq_len`` consecutive rows of one ticker, ending at each decision date t.

    ``features``: the ``(date, ticker)`` frame of ``compute_features``; ``target``: a ``(date, ticker)`` series
    (``make_target``), aligned by index, or None with ``require_target=False`` for prediction. A window never spans
    two tickers, a trading day missing from the ticker (relative to the dates in ``features``), a gap that all
    tickers share (more than ``MAX_GAP_BUSINESS_DAYS`` business days between consecutive dates of ``features``,
    ``finmlops.data.validation.calendar_breaks``) or a row with a NaN feature; with ``require_target`` its last row
    also needs a known target.
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    if list(features.index.names) != ["date", "ticker"]:
        raise ValueError(f"features must be indexed by (date, ticker), got {features.index.names}")
    if target is None and require_target:
        raise ValueError("a target is required unless require_target=False")
    names = tuple(str(c) for c in features.columns)
    frame = features.sort_index(level=["ticker", "date"])
    all_dates = frame.index.get_level_values("date").to_numpy(dtype="datetime64[ns]")
    all_tickers = frame.index.get_level_values("ticker").to_numpy().astype(str)
    calendar = np.unique(all_dates)
    # Calendar position of each date, plus one empty slot per break before it: _plan leaves that slot NaN.
    position = np.arange(len(calendar)) + np.r_[0, np.cumsum(calendar_breaks(calendar))]
    values = frame.to_numpy(np.float64)
    y_all = np.full(len(frame), np.nan) if target is None else target.reindex(frame.index).to_numpy(np.float64)
    starts = np.flatnonzero(np.r_[True, all_tickers[1:] != all_tickers[:-1]]) if len(frame) else np.array([], int)
    stops = np.r_[starts[1:], len(frame)].astype(int)
    plans = [
        _plan(values[a:b], y_all[a:b], position[np.searchsorted(calendar, all_dates[a:b])], seq_len, require_target)
        for a, b in zip(starts, stops, strict=True)
    ]
    rows = np.concatenate([[], *(a + plan[3] for a, plan in zip(starts, plans, strict=True))]).astype(int)
    dates, tickers = all_dates[rows], all_tickers[rows]
    order = np.lexsort((tickers, dates))
    # Stack every ticker's dense rows; a window is then one contiguous block [seq_len, f] of this array, so the
    # gather below is a run of block copies straight into (date, ticker) order.
    offsets = np.cumsum([0, *(len(plan[0]) for plan in plans)])
    stacked = np.concatenate([plan[0] for plan in plans]).astype(np.float32) if plans else np.empty((0, len(names)))
    first_rows = np.concatenate([[], *(o + plan[1] - seq_len + 1 for o, plan in zip(offsets, plans, strict=False))])
    y = np.concatenate([[], *(plan[2] for plan in plans)]).astype(np.float32)
    if len(stacked) >= seq_len:
        blocks = sliding_window_view(stacked, (seq_len, len(names)))[:, 0]
        X = blocks[first_rows.astype(int)[order]]
    else:
        X = np.empty((0, seq_len, len(names)), dtype=np.float32)
    return Windows(X, y[order], dates[order], tickers[order], names)
