"""Splits keep purge/embargo gaps of at least seq_len + reach; the scaler sees training rows only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from finmlops.features import (
    FeatureScaler,
    Fold,
    chronological_split,
    compute_features,
    make_target,
    make_windows,
    min_gap,
    walk_forward_folds,
)

DATES = pd.bdate_range("2010-01-01", "2023-12-31")
CAL = DATES.to_numpy(dtype="datetime64[ns]")


def _gap(before: np.ndarray, after: np.ndarray) -> int:
    """Trading days strictly between the last date of ``before`` and the first of ``after``."""
    return int(np.searchsorted(CAL, after[0]) - np.searchsorted(CAL, before[-1]) - 1)


def test_min_gap() -> None:
    assert min_gap(60, 1) == 61 and min_gap(1, 5) == 6
    with pytest.raises(ValueError, match="seq_len"):
        min_gap(0, 1)


def test_chronological_split_fractions_and_gaps() -> None:
    split = chronological_split(np.repeat(CAL, 3), val_frac=0.15, test_frac=0.15, seq_len=20, reach=1)
    assert len(split.test_dates) == round(len(CAL) * 0.15) and len(split.val_dates) == round(len(CAL) * 0.15)
    assert split.test_dates[-1] == CAL[-1]
    assert _gap(split.train_dates, split.val_dates) == 21 and _gap(split.val_dates, split.test_dates) == 21
    assert _gap(split.train_dates, split.val_dates) >= min_gap(20, 1)
    with pytest.raises(ValueError, match=r"gap=10 .* at least 21"):
        chronological_split(CAL, gap=10, seq_len=20, reach=1)
    no_val = chronological_split(CAL, val_frac=0.0, test_frac=0.2, gap=50, seq_len=20, reach=1)
    assert len(no_val.val_dates) == 0 and _gap(no_val.train_dates, no_val.test_dates) == 50


@pytest.mark.parametrize("mode,train_years", [("expanding", None), ("rolling", 3)])
def test_walk_forward_years(mode: str, train_years: int | None) -> None:
    folds = walk_forward_folds(
        CAL, seq_len=30, reach=2, test_years=range(2014, 2024), mode=mode, train_years=train_years, purge=40
    )
    assert [f.name for f in folds] == [str(y) for y in range(2014, 2024)]
    for fold in folds:
        year = int(fold.name)
        assert (pd.DatetimeIndex(fold.test_dates).year == year).all()
        assert len(fold.test_dates) == (DATES.year == year).sum()
        assert _gap(fold.train_dates, fold.val_dates) == 40  # purge
        assert _gap(fold.val_dates, fold.test_dates) == min_gap(30, 2)  # embargo, defaulted
        assert fold.train_dates[-1] < fold.val_dates[0] <= fold.val_dates[-1] < fold.test_dates[0]
        first = pd.Timestamp(fold.train_dates[0])
        if mode == "rolling":
            assert first >= pd.Timestamp(f"{year - 3}-01-01") and first <= pd.Timestamp(f"{year - 3}-01-08")
        else:
            assert first == DATES[0]


def test_walk_forward_n_folds_and_errors() -> None:
    folds = walk_forward_folds(CAL, seq_len=10, reach=1, n_folds=4, val_frac=0.0)
    assert len(folds) == 4 and all(len(f.val_dates) == 0 for f in folds)
    tests = np.concatenate([f.test_dates for f in folds])
    assert len(np.unique(tests)) == len(tests) and tests[-1] == CAL[-1]
    assert all(_gap(f.train_dates, f.test_dates) == 11 for f in folds)
    with pytest.raises(ValueError, match=r"purge=5 .* at least 11"):
        walk_forward_folds(CAL, seq_len=10, reach=1, n_folds=4, purge=5)
    with pytest.raises(ValueError, match=r"embargo=3"):
        walk_forward_folds(CAL, seq_len=10, reach=1, n_folds=4, embargo=3)
    with pytest.raises(ValueError, match="test year 2030 has no dates"):
        walk_forward_folds(CAL, seq_len=10, reach=1, test_years=[2030])
    with pytest.raises(ValueError, match="fold 2010: no training dates"):
        walk_forward_folds(CAL, seq_len=10, reach=1, test_years=[2010])
    with pytest.raises(ValueError, match="exactly one"):
        walk_forward_folds(CAL, seq_len=10, reach=1)
    with pytest.raises(ValueError, match="train_years"):
        walk_forward_folds(CAL, seq_len=10, reach=1, n_folds=2, mode="rolling")


def test_fold_records_its_gaps_and_checks_them_against_a_label() -> None:
    (fold,) = walk_forward_folds(CAL, seq_len=10, reach=2, test_years=[2020])
    assert (fold.purge, fold.embargo) == (12, 12)
    fold.check_gaps(10, 2)
    with pytest.raises(ValueError, match=r"fold 2020: purge of 12 .* \(needs 16\)"):
        fold.check_gaps(10, 6)  # a horizon-5 label reads past the gap these folds were built for


def test_fold_masks() -> None:
    fold = Fold("x", CAL[:5], CAL[7:9], CAL[12:14])
    dates = np.repeat(CAL[:15], 2)
    train, val, test = fold.masks(dates)
    assert train.sum() == 10 and val.sum() == 4 and test.sum() == 4
    assert not (train & test).any()


def test_scaler_fits_training_windows_only(small_universe: dict[str, pd.DataFrame]) -> None:
    features = compute_features(small_universe, "advanced")
    windows = make_windows(features, make_target(small_universe), seq_len=5)
    fold = chronological_split(windows.dates, val_frac=0.0, test_frac=0.3, seq_len=5, reach=2)
    train_mask, _, test_mask = fold.masks(windows.dates)
    scaler = FeatureScaler().fit(windows.X[train_mask])
    train_rows = windows.X[train_mask].reshape(-1, 36).astype(np.float64)
    np.testing.assert_allclose(scaler.mean_, train_rows.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(scaler.scale_, train_rows.std(axis=0), rtol=1e-10)
    # The test block differs (e.g. market regime), so a scaler that saw it would have other statistics.
    everything = FeatureScaler().fit(windows.X)
    assert not np.allclose(everything.mean_, scaler.mean_)
    scaled = scaler.transform(windows.X[test_mask])
    assert scaled.dtype == np.float32 and scaled.shape == windows.X[test_mask].shape
    np.testing.assert_allclose(scaler.transform(windows.X[train_mask]).reshape(-1, 36).mean(axis=0), 0.0, atol=1e-4)
    restored = FeatureScaler.from_dict(scaler.to_dict())
    np.testing.assert_array_equal(restored.transform(windows.X[:3]), scaler.transform(windows.X[:3]))


def test_scaler_errors() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        FeatureScaler().transform(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="feature column 1"):
        FeatureScaler().fit(np.array([[1.0, np.nan], [2.0, 3.0]]))
    constant = FeatureScaler().fit(np.array([[1.0, 5.0], [3.0, 5.0]]))
    np.testing.assert_array_equal(constant.transform(np.array([[1.0, 5.0]])), [[-1.0, 0.0]])
