"""Alpha158 and kdh against independent computations: pandas' rolling operators, numpy's polyfit, and the
formulas of Qlib's Alpha158DL written out by hand on a small, irregular series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from finmlops.features import compute_features, feature_names

N = 90


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """One ticker, 90 business days of a random walk with ties and a zero-volume day; adj_close = close."""
    rng = np.random.default_rng(7)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, N)))
    close[40] = close[39]  # a tie for RANK and the up/down counts
    open_ = close * np.exp(rng.normal(0, 0.01, N))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.02, N))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.02, N))
    volume = rng.integers(1_000, 100_000, N).astype(np.int64)
    index = pd.bdate_range("2020-01-01", periods=N, name="date")
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "adj_close": close, "volume": volume}, index=index
    )


@pytest.fixture(scope="module")
def alpha(frame: pd.DataFrame) -> pd.DataFrame:
    return compute_features({"AAA": frame}, "alpha158").xs("AAA", level="ticker")


def test_the_sets_have_qlibs_and_the_papers_sizes() -> None:
    names = feature_names("alpha158")
    assert len(names) == 158 and len(set(names)) == 158
    assert names[:9] == ["KMID", "KLEN", "KMID2", "KUP", "KUP2", "KLOW", "KLOW2", "KSFT", "KSFT2"]
    assert names[13:18] == ["ROC5", "ROC10", "ROC20", "ROC30", "ROC60"] and names[-1] == "VSUMD60"
    kdh = feature_names("kdh")
    assert len(kdh) == 31 and kdh[:3] == ["R1", "R2", "R3"] and kdh[19:] == [f"R{m}" for m in range(20, 241, 20)]


def test_a_sample_of_factors_matches_independent_formulas(frame: pd.DataFrame, alpha: pd.DataFrame) -> None:
    o, h, lo, c, v = (frame[k] for k in ("open", "high", "low", "close", "volume"))
    v = v.astype(float)
    t = np.arange(10.0)

    def fit(y: np.ndarray) -> tuple[float, float, float]:
        slope, intercept = np.polyfit(t, y, 1)
        resid = y - (slope * t + intercept)
        return slope, 1 - (resid @ resid) / ((y - y.mean()) @ (y - y.mean())), resid[-1]

    regression = np.array([fit(c.to_numpy()[i - 9 : i + 1]) if i >= 9 else (np.nan,) * 3 for i in range(N)])
    expected = {
        "KMID": (c - o) / o,
        "KSFT2": (2 * c - h - lo) / (h - lo + 1e-12),
        "KLOW": (np.minimum(o, c) - lo) / o,
        "ROC5": c.shift(5) / c,
        "MA20": c.rolling(20).mean() / c,
        "STD20": c.rolling(20).std() / c,
        "BETA10": regression[:, 0] / c,
        "RSQR10": pd.Series(regression[:, 1], index=c.index),
        "RESI10": regression[:, 2] / c,
        "MAX30": h.rolling(30).max() / c,
        "QTLU20": c.rolling(20).quantile(0.8) / c,
        "QTLD5": c.rolling(5).quantile(0.2) / c,
        "RANK5": c.rolling(5).rank(pct=True),
        "RSV10": (c - lo.rolling(10).min()) / (h.rolling(10).max() - lo.rolling(10).min() + 1e-12),
        "IMAX5": h.rolling(5).apply(lambda w: np.argmax(w) + 1, raw=True) / 5,
        "IMXD10": (h.rolling(10).apply(np.argmax, raw=True) - lo.rolling(10).apply(np.argmin, raw=True)) / 10,
        "CORR10": c.rolling(10).corr(np.log(v)),
        "CORD20": (c / c.shift(1)).rolling(20).corr(np.log(v / v.shift(1) + 1)),
        "CNTP10": (c > c.shift(1)).astype(float).where(c.shift(1).notna()).rolling(10).mean(),
        "SUMN20": np.maximum(c.shift(1) - c, 0).rolling(20).sum() / (np.abs(c - c.shift(1)).rolling(20).sum() + 1e-12),
        "VMA5": v.rolling(5).mean() / (v + 1e-12),
        "VSTD10": v.rolling(10).std() / (v + 1e-12),
        "WVMA20": (np.abs(c / c.shift(1) - 1) * v).rolling(20).std()
        / ((np.abs(c / c.shift(1) - 1) * v).rolling(20).mean() + 1e-12),
        "VSUMD30": (np.maximum(v - v.shift(1), 0) - np.maximum(v.shift(1) - v, 0)).rolling(30).sum()
        / (np.abs(v - v.shift(1)).rolling(30).sum() + 1e-12),
    }
    for name, want in expected.items():
        got = alpha[name].to_numpy()
        want = np.asarray(want, dtype=float)
        assert np.array_equal(np.isnan(got), np.isnan(want)), f"{name}: warm-up rows differ"
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-10, equal_nan=True, err_msg=name)


def test_kdh_returns(frame: pd.DataFrame) -> None:
    kdh = compute_features({"AAA": frame}, "kdh").xs("AAA", level="ticker")
    c = frame["adj_close"]
    np.testing.assert_allclose(kdh["R20"], c / c.shift(20) - 1, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(kdh["R1"], c.pct_change(fill_method=None), rtol=1e-12, equal_nan=True)
    assert kdh["R240"].isna().all()  # 90 rows hold no 240-day return
    assert kdh["R40"].isna().sum() == 40 and kdh["R40"].iloc[40:].notna().all()
