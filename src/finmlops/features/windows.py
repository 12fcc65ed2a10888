"""Sliding windows over the long feature frame, vectorised per ticker (no Python object per sample)."""

from __future__ import annotations

from collections.abc import Iterator
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


@dataclass(frozen=True)
class WindowIndex:
    """Windows as an index into one array of rows, not a copy per window: the lean form at universe scale.

    ``rows`` float32 ``[n_rows, n_features]``: every ticker's rows laid on its dense calendar span (a missing
    trading day or a calendar break is a NaN row), tickers one after another. Window ``i`` is
    ``rows[first[i] : first[i] + seq_len]``; ``y``, ``dates`` and ``tickers`` ``[n]`` as in :class:`Windows`, rows
    in (date, ticker) order. At 2.1 M windows of 60 x 36 float32, the copy-per-window ``X`` would be 18 GB; the
    index holds the rows once (about 0.3 GB). ``batch`` and ``batches`` copy only the windows asked for;
    ``materialise`` gives :class:`Windows` (what ``make_windows`` returns).
    """

    rows: np.ndarray
    first: np.ndarray
    seq_len: int
    y: np.ndarray
    dates: np.ndarray
    tickers: np.ndarray
    feature_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.first)

    def batch(self, select: np.ndarray | slice = slice(None)) -> np.ndarray:
        """The windows ``select`` picks (a slice, a boolean mask or positions ``[k]``): ``[k, seq_len, f]``
        float32, gathered from ``rows`` through a ``sliding_window_view`` (one copy of these windows only)."""
        first = self.first[select]
        if len(self.rows) < self.seq_len or not len(first):
            return np.empty((len(first), self.seq_len, len(self.feature_names)), dtype=np.float32)
        return sliding_window_view(self.rows, (self.seq_len, len(self.feature_names)))[:, 0][first]

    def batches(self, size: int) -> Iterator[np.ndarray]:
        """Consecutive batches of ``size`` windows ``[<= size, seq_len, f]``, in order: a model scores or trains
        on the universe with one batch in memory at a time."""
        if size < 1:
            raise ValueError(f"batch size must be >= 1, got {size}")
        for start in range(0, len(self), size):
            yield self.batch(slice(start, start + size))

    def last_rows(self) -> np.ndarray:
        """Each window's last row (the decision date's features) ``[n, f]``: ``X[:, -1, :]`` without ``X``."""
        return self.rows[self.first + self.seq_len - 1]

    def subset(self, mask: np.ndarray) -> WindowIndex:
        """The windows where boolean ``mask`` ``[n]`` is true; ``rows`` is shared, not copied."""
        return WindowIndex(
            self.rows, self.first[mask], self.seq_len, self.y[mask], self.dates[mask], self.tickers[mask],
            self.feature_names,
        )  # fmt: skip

    def materialise(self) -> Windows:
        """Every window copied out: :class:`Windows` with ``X`` ``[n, seq_len, f]``."""
        return Windows(self.batch(), self.y, self.dates, self.tickers, self.feature_names)


def make_window_index(
    features: pd.DataFrame, target: pd.Series | None, seq_len: int, *, require_target: bool = True
) -> WindowIndex:
    """The windows of :func:`make_windows` as a :class:`WindowIndex` (same windows, order and values), built
    without a copy per window: the features are read column by column into the dense rows (float32) once."""
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    if list(features.index.names) != ["date", "ticker"]:
        raise ValueError(f"features must be indexed by (date, ticker), got {features.index.names}")
    if target is None and require_target:
        raise ValueError("a target is required unless require_target=False")
    names = tuple(str(c) for c in features.columns)
    n = len(features)
    if not n:
        return WindowIndex(
            np.empty((0, len(names)), np.float32), np.empty(0, np.int64), seq_len, np.empty(0, np.float32),
            np.empty(0, "datetime64[ns]"), np.empty(0, str), names,
        )  # fmt: skip
    all_dates = features.index.get_level_values("date").to_numpy(dtype="datetime64[ns]")
    all_tickers = features.index.get_level_values("ticker").to_numpy().astype(str)
    order = np.lexsort((all_dates, all_tickers))  # ticker-major, dates ascending within a ticker
    calendar = np.unique(all_dates)
    # Calendar position of each date, plus one empty slot per break before it: that slot stays a NaN row.
    position = (np.arange(len(calendar)) + np.r_[0, np.cumsum(calendar_breaks(calendar))])[
        np.searchsorted(calendar, all_dates[order])
    ]
    tickers = all_tickers[order]
    starts = np.flatnonzero(np.r_[True, tickers[1:] != tickers[:-1]])
    stops = np.r_[starts[1:], n]
    spans = position[stops - 1] - position[starts] + 1
    offsets = np.r_[0, np.cumsum(spans)]
    lengths = stops - starts
    dense = position - np.repeat(position[starts] - offsets[:-1], lengths)  # each sorted row's dense row
    rows = np.full((int(offsets[-1]), len(names)), np.nan, dtype=np.float32)
    finite = np.ones(n, dtype=bool)
    values = features.to_numpy(copy=False)
    for j in range(len(names)):
        column = np.asarray(values[:, j], dtype=np.float64)[order]
        finite &= np.isfinite(column)
        rows[:, j][dense] = column
    bad = np.ones(len(rows), dtype=np.int64)
    bad[dense] = ~finite
    bad = np.r_[0, np.cumsum(bad)]
    y_sorted = np.full(n, np.nan) if target is None else target.reindex(features.index).to_numpy(np.float64)[order]
    ok = dense - np.repeat(offsets[:-1], lengths) >= seq_len - 1  # the window starts in its own ticker
    ok[ok] &= bad[dense[ok] + 1] - bad[dense[ok] + 1 - seq_len] == 0
    if require_target:
        ok &= np.isfinite(y_sorted)
    kept = np.flatnonzero(ok)
    dates, kept_tickers = all_dates[order][kept], tickers[kept]
    final = np.lexsort((kept_tickers, dates))
    return WindowIndex(
        rows, (dense[kept] - seq_len + 1)[final].astype(np.int64), seq_len, y_sorted[kept][final].astype(np.float32),
        dates[final], kept_tickers[final], names,
    )  # fmt: skip


def make_windows(
    features: pd.DataFrame, target: pd.Series | None, seq_len: int, *, require_target: bool = True
) -> Windows:
    """Windows of ``seq_len`` consecutive rows of one ticker, ending at each decision date t.

    ``features``: the ``(date, ticker)`` frame of ``compute_features``; ``target``: a ``(date, ticker)`` series
    (``make_target``), aligned by index, or None with ``require_target=False`` for prediction. A window never spans
    two tickers, a trading day missing from the ticker (relative to the dates in ``features``), a gap that all
    tickers share (more than ``MAX_GAP_BUSINESS_DAYS`` business days between consecutive dates of ``features``,
    ``finmlops.data.validation.calendar_breaks``) or a row with a NaN feature; with ``require_target`` its last row
    also needs a known target. Every window is copied into ``X``: at universe scale use
    :func:`make_window_index` and its batches instead.
    """
    return make_window_index(features, target, seq_len, require_target=require_target).materialise()
