"""Shared fixtures: synthetic predictions frames with a known structure."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest


def synthetic_predictions(
    *, n_dates: int = 300, tickers: tuple[str, ...] = ("AAA", "BBB", "CCC", "DDD"), skill: float = 0.1, seed: int = 0
) -> pd.DataFrame:
    """A predictions frame with one informative model ("net"), and "majority" and "momentum" baselines.

    ``ret_next`` is Gaussian; "net" sees ``ret_next`` through noise (more skill, more signal); "majority" always
    says up with probability 0.55; "momentum" is noise. Two yearly folds split the dates in half.
    """
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=n_dates)
    grid = pd.MultiIndex.from_product([dates, tickers], names=["date", "ticker"]).to_frame(index=False)
    ret = rng.normal(0.0005, 0.01, len(grid))
    y = (ret > 0).astype(int)
    fold = np.where(grid["date"] < dates[n_dates // 2], 2020, 2021)
    logits = {
        "net": skill * ret / 0.01 * 5 + rng.normal(0, 1, len(grid)),
        "majority": np.full(len(grid), np.log(0.55 / 0.45)),
        "momentum": rng.normal(0, 1, len(grid)),
    }
    frames = [
        grid.assign(fold=fold, model=name, prob_up=1 / (1 + np.exp(-z)), y_true=y, ret_next=ret)
        for name, z in logits.items()
    ]
    return pd.concat(frames, ignore_index=True)


def price_universe(preds: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """OHLCV bars whose adjusted close-to-close returns are the predictions' ``ret_next`` (one bar more than
    there are dates, so every decision date's t+1 is known; the last date's t+2 is not)."""
    universe = {}
    for ticker, rows in preds.drop_duplicates(["date", "ticker"]).groupby("ticker"):
        rows = rows.sort_values("date")
        dates = pd.DatetimeIndex([*rows["date"], rows["date"].iloc[-1] + pd.offsets.BDay()], name="date")
        close = 100.0 * np.concatenate([[1.0], np.cumprod(1.0 + rows["ret_next"].to_numpy())])
        universe[str(ticker)] = pd.DataFrame(
            {"open": close, "high": close * 1.01, "low": close * 0.99, "close": close, "adj_close": close,
             "volume": np.full(len(close), 1_000_000, dtype=np.int64)},
            index=dates,
        )  # fmt: skip
    return universe


@pytest.fixture
def make_universe() -> Callable[[pd.DataFrame], dict[str, pd.DataFrame]]:
    """The :func:`price_universe` factory."""
    return price_universe


@pytest.fixture
def make_predictions() -> Callable[..., pd.DataFrame]:
    """The :func:`synthetic_predictions` factory (test modules cannot import conftest under importlib mode)."""
    return synthetic_predictions


@pytest.fixture
def preds() -> pd.DataFrame:
    return synthetic_predictions()
