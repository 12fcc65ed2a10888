"""The leakage tests: nothing at or before t may depend on prices after t; the label must not enter the features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from finmlops.features import FEATURE_SETS, compute_features, feature_names, forward_return, make_target


def _perturb_after(universe: dict[str, pd.DataFrame], t: pd.Timestamp, seed: int) -> dict[str, pd.DataFrame]:
    """Every ticker's rows after ``t`` with all prices and volume scaled by random, row-wise factors."""
    rng = np.random.default_rng(seed)
    out = {}
    for ticker, frame in universe.items():
        frame = frame.copy()
        later = frame.index > t
        shock = np.exp(rng.normal(0.0, 0.1, later.sum()))
        for column in ("open", "high", "low", "close", "adj_close"):
            frame.loc[later, column] = frame.loc[later, column] * shock
        frame.loc[later, "volume"] = (frame.loc[later, "volume"] * rng.uniform(0.2, 5.0, later.sum())).round()
        out[ticker] = frame
    return out


def _at_or_before(values: pd.DataFrame | pd.Series, t: pd.Timestamp) -> pd.DataFrame:
    frame = values.to_frame() if isinstance(values, pd.Series) else values
    return frame[frame.index.get_level_values("date") <= t]


def _moved_at_or_before(before: pd.DataFrame | pd.Series, after: pd.DataFrame | pd.Series, t: pd.Timestamp) -> list:
    """Columns (or the series name) whose values at dates <= t differ; NaN equals NaN."""
    a, b = _at_or_before(before, t), _at_or_before(after, t)
    return [c for c in a.columns if not np.array_equal(a[c].to_numpy(), b[c].to_numpy(), equal_nan=True)]


@pytest.mark.parametrize("feature_set", FEATURE_SETS)
def test_no_feature_reads_the_future(small_universe: dict[str, pd.DataFrame], feature_set: str) -> None:
    base = compute_features(small_universe, feature_set)
    dates = base.index.get_level_values("date").unique()
    for i, t in enumerate(dates[[60, 150, 300, len(dates) - 5]]):
        changed = compute_features(_perturb_after(small_universe, t, seed=i), feature_set)
        assert _moved_at_or_before(base, changed, t) == [], f"features at or before {t.date()} moved"
        # The perturbation is real: every feature moves somewhere after t.
        later = base.index.get_level_values("date") > t
        assert not np.allclose(base[later].fillna(0).to_numpy(), changed[later].fillna(0).to_numpy())


def test_the_check_catches_the_label(small_universe: dict[str, pd.DataFrame]) -> None:
    """Positive control: the same check flags the target and forward return, which do read t + 1."""
    t = small_universe["JNJ"].index[200]
    changed = _perturb_after(small_universe, t, seed=0)
    assert _moved_at_or_before(make_target(small_universe), make_target(changed), t) != []
    assert _moved_at_or_before(forward_return(small_universe), forward_return(changed), t) != []


def test_no_feature_tracks_the_next_day_return(snapshot: dict[str, pd.DataFrame]) -> None:
    """On real data, |corr(feature, next-day return)| stays far from 1 for every feature of every set."""
    nxt = forward_return(snapshot)
    for feature_set in FEATURE_SETS:
        frame = compute_features(snapshot, feature_set)
        assert nxt.name not in frame.columns and not any("target" in c or "forward" in c for c in frame.columns)
        corr = frame.corrwith(nxt.reindex(frame.index))
        assert corr.abs().max() < 0.2, corr.abs().sort_values().tail(3)
        assert set(corr.index) == set(feature_names(feature_set))
