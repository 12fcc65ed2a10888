"""Windows: exact contents, never across tickers, gaps or NaN rows, and fast on the whole snapshot."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from finmlops.features import compute_features, make_target, make_window_index, make_windows


def _long(rows: dict[str, list[int]], nan_rows: dict[str, list[int]] | None = None) -> pd.DataFrame:
    """Features ``[rows, 2]`` whose values encode (ticker number, calendar day), on given calendar days."""
    calendar = pd.bdate_range("2024-01-01", periods=20, name="date")
    parts = []
    for k, (ticker, days) in enumerate(rows.items()):
        values = np.array([[k * 100 + d, -(k * 100 + d)] for d in days], dtype=float)
        for d in (nan_rows or {}).get(ticker, []):
            values[days.index(d), 1] = np.nan
        index = pd.MultiIndex.from_arrays([calendar[days], [ticker] * len(days)], names=["date", "ticker"])
        parts.append(pd.DataFrame(values, index=index, columns=["f0", "f1"]))
    return pd.concat(parts).sort_index()


def test_windows_skip_gaps_nan_rows_and_ticker_borders() -> None:
    # A: days 0-9 with day 5 missing (a gap); B: days 0-9 with a NaN feature on day 7.
    features = _long({"A": [0, 1, 2, 3, 4, 6, 7, 8, 9], "B": list(range(10))}, nan_rows={"B": [7]})
    target = pd.Series(features["f0"].to_numpy() % 2, index=features.index)
    w = make_windows(features, target, seq_len=3)
    ends = sorted((t, int(x[-1, 0]) % 100) for t, x in zip(w.tickers, w.X, strict=True))
    # A loses the windows over its day-5 gap (ends 5 to 7); B those containing its NaN day 7 (ends 7 to 9).
    assert ends == [("A", 2), ("A", 3), ("A", 4), ("A", 8), ("A", 9), ("B", 2), ("B", 3), ("B", 4), ("B", 5), ("B", 6)]
    for x, ticker, y in zip(w.X, w.tickers, w.y, strict=True):
        days = x[:, 0] % 100
        assert np.array_equal(days, np.arange(days[0], days[0] + 3)), "window spans a gap"
        assert set((x[:, 0] // 100).astype(int)) == {0 if ticker == "A" else 1}, "window crosses tickers"
        assert y == days[-1] % 2 and np.isfinite(x).all()
    assert w.X.dtype == np.float32 and w.y.dtype == np.float32 and w.X.shape == (10, 3, 2)
    assert w.feature_names == ("f0", "f1")
    order = pd.MultiIndex.from_arrays([w.dates, w.tickers])
    assert order.is_monotonic_increasing and order.is_unique


def test_target_requirement() -> None:
    features = _long({"A": list(range(6))})
    target = pd.Series([1.0, 0.0, 1.0, np.nan, 1.0, np.nan], index=features.index)
    assert len(make_windows(features, target, 2)) == 3
    predict = make_windows(features, None, 2, require_target=False)
    assert len(predict) == 5 and np.isnan(predict.y).all()
    with pytest.raises(ValueError, match="target is required"):
        make_windows(features, None, 2)
    with pytest.raises(ValueError, match="seq_len"):
        make_windows(features, target, 0)


def test_window_contents_match_the_frame(small_universe: dict[str, pd.DataFrame]) -> None:
    features = compute_features(small_universe, "advanced")
    w = make_windows(features, make_target(small_universe), seq_len=10)
    for i in np.random.default_rng(0).choice(len(w), 25, replace=False):
        rows = features.xs(w.tickers[i], level="ticker").loc[: w.dates[i]].tail(10)
        np.testing.assert_array_equal(w.X[i], rows.to_numpy(np.float32))
    assert {"JNJ", "TSLA", "XOM"} == set(w.tickers)


def test_full_snapshot_advanced_windows(snapshot: dict[str, pd.DataFrame]) -> None:
    """Every ticker's windows of the whole snapshot (its time: bench/datapath.py)."""
    w = make_windows(compute_features(snapshot, "advanced"), make_target(snapshot), 30)
    assert len(w) > 30_000 and w.X.shape[1:] == (30, 36)


def test_no_window_spans_a_gap_every_ticker_shares() -> None:
    """One ticker with 30 trading days removed: the dates in ``features`` show no missing day, yet no window may
    read rows from both sides of the 6-week hole."""
    calendar = pd.bdate_range("2024-01-01", periods=100, name="date")
    keep = np.r_[0:40, 70:100]
    index = pd.MultiIndex.from_arrays([calendar[keep], ["A"] * len(keep)], names=["date", "ticker"])
    features = pd.DataFrame({"day": keep.astype(float)}, index=index)
    w = make_windows(features, pd.Series(1.0, index=index), seq_len=5)
    first = w.X[:, 0, 0]
    last = w.X[:, -1, 0]
    assert not ((first < 40) & (last >= 70)).any(), "a window spans the gap"
    # Every window that stays on one side is kept: 36 before the gap, 26 after it.
    assert len(w) == (40 - 4) + (30 - 4)
    np.testing.assert_array_equal(last - first, np.full(len(w), 4.0))


def test_the_window_index_holds_the_rows_once_and_gives_the_same_windows(
    small_universe: dict[str, pd.DataFrame],
) -> None:
    """make_window_index: the windows of make_windows (same order, values, labels) without a copy per window; its
    batches, subsets and last rows are those of the materialised X, and its rows array is the only big one."""
    features = compute_features(small_universe, "advanced")
    features = features.drop(features.index[::41])  # missing days: NaN rows in the dense layout
    target = make_target(small_universe)
    index = make_window_index(features, target, seq_len=20)
    windows = make_windows(features, target, seq_len=20)
    assert len(index) == len(windows) > 0
    assert np.array_equal(index.batch(), windows.X) and np.array_equal(index.y, windows.y, equal_nan=True)
    assert np.array_equal(index.dates, windows.dates) and np.array_equal(index.tickers, windows.tickers)
    assert np.array_equal(np.concatenate(list(index.batches(97))), windows.X)
    assert np.array_equal(index.last_rows(), windows.X[:, -1, :])
    mask = windows.tickers == "XOM"
    sub = index.subset(mask)
    assert sub.rows is index.rows and np.array_equal(sub.batch(), windows.subset(mask).X)
    # The rows: about one per feature row (plus the NaN rows of missing days), not seq_len of them.
    assert index.rows.nbytes < 1.2 * len(features) * features.shape[1] * 4 and index.rows.nbytes < windows.X.nbytes / 5
    with pytest.raises(ValueError, match="batch size"):
        next(index.batches(0))
