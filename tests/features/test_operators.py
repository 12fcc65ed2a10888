"""The fast operators equal the code they replaced, bit for bit: Alpha158's order statistics (bottleneck's running
extremes and ranks, numpy's sort for the quantiles) against the former ``sliding_window_view`` + numpy reductions,
and the grid market return against the former pandas ``concat(...).mean(axis=1)``. On a 20-ticker slice of
../shared's S&P 500 set (skipped when it is absent) and on a small series with ties."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from finmlops_testing.universe import SLICE, sp500_slice
from numpy.lib.stride_tricks import sliding_window_view

from finmlops.data import DataStore, ingest
from finmlops.features import compute_features, market_returns
from finmlops.features.alpha158 import WINDOWS

TWENTY = SLICE[:20]


def _pad(values: np.ndarray, n: int) -> np.ndarray:
    out = np.full((*values.shape[:-1], n), np.nan)
    if values.shape[-1]:
        out[..., n - values.shape[-1] :] = values
    return out


def _reference(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The replaced implementation of MAX, MIN, IMAX, IMIN, QTLU, QTLD and RANK, on one ticker."""
    factor = frame["adj_close"].to_numpy() / frame["close"].to_numpy()
    c = frame["adj_close"].to_numpy(np.float64)
    h, lo = frame["high"].to_numpy() * factor, frame["low"].to_numpy() * factor
    n, out = len(c), {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for d in WINDOWS:
            if n < d:
                continue
            wc, wh, wl = (sliding_window_view(x, d) for x in (c, h, lo))
            out[f"MAX{d}"] = _pad(wh.max(axis=-1), n) / c
            out[f"MIN{d}"] = _pad(wl.min(axis=-1), n) / c
            out[f"IMAX{d}"] = (_pad(wh.argmax(axis=-1), n) + 1) / d
            out[f"IMIN{d}"] = (_pad(wl.argmin(axis=-1), n) + 1) / d
            out[f"IMXD{d}"] = _pad(wh.argmax(axis=-1), n) / d - _pad(wl.argmin(axis=-1), n) / d
            q = _pad(np.quantile(wc, [0.2, 0.8], axis=-1), n)
            out[f"QTLD{d}"], out[f"QTLU{d}"] = q[0] / c, q[1] / c
            last = wc[..., -1:]
            rank = ((wc < last).sum(axis=-1) + 0.5 * ((wc == last).sum(axis=-1) - 1) + 1) / d
            out[f"RANK{d}"] = _pad(rank, n)
    return out


def _assert_like_reference(universe: dict[str, pd.DataFrame]) -> None:
    alpha = compute_features(universe, "alpha158")
    for ticker, frame in universe.items():
        own = alpha.xs(ticker, level="ticker")
        for name, want in _reference(frame).items():
            got = own[name].to_numpy()
            assert np.array_equal(got, want, equal_nan=True), (
                f"{ticker} {name}: max |diff| {np.nanmax(abs(got - want))}"
            )


def _pandas_market(universe: dict[str, pd.DataFrame]) -> pd.Series:
    returns = pd.concat(
        {t: universe[t]["adj_close"].astype(np.float64).pct_change(fill_method=None) for t in sorted(universe)}, axis=1
    )
    return returns.mean(axis=1, skipna=True)


@pytest.fixture(scope="module")
def twenty(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    root = tmp_path_factory.mktemp("sp500-20")
    ingest(DataStore(root / "store"), "csv", list(TWENTY), data_dir=sp500_slice(root / "csv", TWENTY))
    return DataStore(root / "store").read()


def test_order_statistics_equal_the_former_numpy_ones_on_20_tickers(twenty: dict[str, pd.DataFrame]) -> None:
    _assert_like_reference(twenty)


def test_order_statistics_equal_the_former_ones_with_ties(make_ohlcv) -> None:  # type: ignore[no-untyped-def]
    frame = make_ohlcv(np.random.default_rng(3), 150)
    for column in ("open", "high", "low", "close", "adj_close"):
        frame[column] = frame[column].round(0)  # many ties in every window: argmax/argmin and RANK must agree
    frame["high"] = frame[["open", "high", "close"]].max(axis=1)
    frame["low"] = frame[["open", "low", "close"]].min(axis=1)
    _assert_like_reference({"TIE": frame})


def test_the_market_return_equals_pandas_mean(twenty: dict[str, pd.DataFrame]) -> None:
    got, want = market_returns(twenty), _pandas_market(twenty)
    assert got.index.equals(want.index)
    assert np.array_equal(got.to_numpy(), want.to_numpy(), equal_nan=True)
