"""Fischer & Krauss study periods: 750 training days, 250 trading days, trading blocks back to back."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from finmlops.features.splits import min_gap, study_period_folds


def test_lengths_no_overlap_and_gaps() -> None:
    dates = pd.bdate_range("2000-01-03", periods=2600)
    folds = study_period_folds(dates, seq_len=240, reach=2)
    gap = min_gap(240, 2)
    assert [f.name for f in folds][:2] == ["sp01", "sp02"]
    for f in folds:
        assert len(f.train_dates) + gap + len(f.val_dates) == 750
        assert len(f.val_dates) == 150
        f.check_gaps(240, 2)
        u = np.asarray(dates.to_numpy(dtype="datetime64[ns]"))
        assert np.searchsorted(u, f.test_dates[0]) - np.searchsorted(u, f.val_dates[-1]) - 1 == gap
        assert f.train_dates[-1] < f.val_dates[0] < f.test_dates[0]
    tests = np.concatenate([f.test_dates for f in folds])
    assert len(tests) == len(np.unique(tests))  # no trading day twice
    assert [len(f.test_dates) for f in folds[:-1]] == [250] * (len(folds) - 1)
    assert tests[0] == dates[750 + gap] and tests[-1] == dates[-1]  # back to back up to the end
    assert np.all(np.diff(tests) > np.timedelta64(0))


def test_refuses_small_gaps_and_short_histories() -> None:
    dates = pd.bdate_range("2000-01-03", periods=900)
    with pytest.raises(ValueError, match="embargo=5 trading days is too small"):
        study_period_folds(dates, seq_len=240, reach=2, embargo=5)
    with pytest.raises(ValueError, match="too few for one study period"):
        study_period_folds(dates, seq_len=240, reach=2)
