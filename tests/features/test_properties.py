"""Properties on random OHLCV series: stated warm-up, finite values, ranges, and scale invariance."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from finmlops.features import FEATURE_SETS, compute_features, feature_names
from finmlops.features.registry import all_features

ALL = [f.name for f in all_features()]
series = st.tuples(st.integers(0, 2**32 - 1), st.integers(80, 260))


def _all_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Every registered feature of a one-ticker universe, dates as the index."""
    out = pd.concat([compute_features({"T": frame}, s).droplevel("ticker") for s in FEATURE_SETS], axis=1)
    return out.loc[:, ~out.columns.duplicated()]


@settings(max_examples=25, deadline=None)
@given(series)
def test_warm_up_is_exactly_the_stated_window(make_ohlcv: Callable[..., pd.DataFrame], seed_n: tuple[int, int]) -> None:
    seed, n = seed_n
    features = _all_features(make_ohlcv(np.random.default_rng(seed), n))
    for feature in all_features():
        values = features[feature.name].to_numpy()
        warm = feature.window - 1
        assert np.isnan(values[:warm]).all(), f"{feature.name}: value before its window of {feature.window}"
        assert np.isfinite(values[warm:]).all(), f"{feature.name}: NaN/inf after its window of {feature.window}"


@settings(max_examples=25, deadline=None)
@given(series)
def test_ranges(make_ohlcv: Callable[..., pd.DataFrame], seed_n: tuple[int, int]) -> None:
    seed, n = seed_n
    f = _all_features(make_ohlcv(np.random.default_rng(seed), n))
    within = lambda name, lo, hi: ((f[name].dropna() >= lo) & (f[name].dropna() <= hi)).all()  # noqa: E731
    for name in ("rsi_9", "rsi_14", "rsi_21", "stoch_k", "stoch_d"):
        assert within(name, 0.0, 100.0), name
    assert within("obv", -1.0, 1.0)
    assert within("market_corr_20", -1.0 - 1e-9, 1.0 + 1e-9)
    assert within("close_to_high", -1.0, 1e-12) and within("close_to_low", -1e-12, np.inf)
    # With 20 points and a population std, |c - SMA20| <= sqrt(19) std, so %B lies in 0.5 -/+ sqrt(19) / 4.
    bound = np.sqrt(19) / 4
    assert within("bb_pct_b", 0.5 - bound - 1e-9, 0.5 + bound + 1e-9)
    assert (f["bb_upper"].dropna() >= f["bb_lower"].dropna()).all()
    assert within("volatility_20", 0.0, np.inf) and within("atr_14", 0.0, np.inf)


def _split(frame: pd.DataFrame, k: float) -> pd.DataFrame:
    """The same history as a k-for-1 reverse split re-adjusted it: prices x k, volume / k."""
    out = frame.copy()
    out[["open", "high", "low", "close", "adj_close"]] *= k
    out["volume"] = out["volume"] / k
    return out


@settings(max_examples=15, deadline=None)
@given(series, st.sampled_from([0.1, 7.0, 250.0]))
def test_scale_invariance(make_ohlcv: Callable[..., pd.DataFrame], seed_n: tuple[int, int], k: float) -> None:
    """A later split or dividend re-adjusts the whole history; no feature may change with it."""
    seed, n = seed_n
    frame = make_ohlcv(np.random.default_rng(seed), n)
    base = _all_features(frame)
    rebased = frame.copy()
    rebased["adj_close"] *= k  # a new dividend re-bases the adjusted series only
    for other in (_split(frame, k), rebased):
        np.testing.assert_allclose(_all_features(other).to_numpy(), base.to_numpy(), rtol=1e-8, atol=1e-9)


def test_sets_are_nested_and_sized() -> None:
    basic, enhanced, advanced = (feature_names(s) for s in ("basic", "enhanced", "advanced"))
    assert enhanced[: len(basic)] == basic
    assert len(advanced) == 36 and advanced[-3:] == ["market_return", "market_corr_20", "market_beta_20"]
    standard = feature_names("alpha158") + feature_names("kdh")  # the field's sets, sized in test_alpha158.py
    assert sorted(set(basic + enhanced + advanced + standard)) == sorted(ALL)
