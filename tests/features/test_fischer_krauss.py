"""fk240: the one-day return sequence, standardised with the training block's statistics only."""

from __future__ import annotations

import numpy as np
import pandas as pd

from finmlops.features import FeatureScaler, compute_features, feature_names, make_target, make_windows


def test_fk240_is_the_one_day_return(small_universe: dict[str, pd.DataFrame]) -> None:
    assert feature_names("fk240") == ["R1"]
    frame = compute_features(small_universe, "fk240")
    jnj = small_universe["JNJ"]["adj_close"]
    want = (jnj / jnj.shift(1) - 1).to_numpy()
    np.testing.assert_allclose(frame.xs("JNJ", level="ticker")["R1"].to_numpy(), want, equal_nan=True)


def test_standardisation_uses_training_windows_only(small_universe: dict[str, pd.DataFrame]) -> None:
    frame = compute_features(small_universe, "fk240")
    windows = make_windows(frame, make_target(small_universe), 40)
    dates = np.unique(windows.dates)
    cut = dates[len(dates) // 2]
    train = windows.subset(windows.dates < cut)
    scaler = FeatureScaler().fit(train.X)
    # The statistics are the mean and std over every (window, step) of the training windows.
    assert np.isclose(scaler.mean_[0], train.X.astype(np.float64).mean())
    assert np.isclose(scaler.scale_[0], train.X.astype(np.float64).std())
    # Perturbing the test block (returns after the cut) leaves the training statistics unchanged.
    perturbed = frame.copy()
    later = perturbed.index.get_level_values("date") >= cut
    perturbed.loc[later, "R1"] *= 5.0
    again = make_windows(perturbed, make_target(small_universe), 40)
    scaler2 = FeatureScaler().fit(again.subset(again.dates < cut).X)
    assert np.array_equal(scaler.mean_, scaler2.mean_) and np.array_equal(scaler.scale_, scaler2.scale_)
    assert not np.allclose(again.subset(again.dates >= cut).X, windows.subset(windows.dates >= cut).X)
