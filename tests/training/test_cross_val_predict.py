"""The one walk-forward fit loop: fits on the training block only, refuses folds too short for the label, seeded."""

from __future__ import annotations

from datetime import date
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from finmlops.data import load_snapshot
from finmlops.features import LabelSpec, compute_features, make_target, make_windows
from finmlops.features.windows import Windows
from finmlops.models.baselines import make_baseline
from finmlops.training import cross_val_predict, label_folds


class Recorder:
    """A model that remembers what it was fitted on and predicts a constant."""

    name = "recorder"
    fits: ClassVar[list[tuple[np.ndarray, np.ndarray]]] = []

    def fit(self, train: Windows, val: Windows) -> Recorder:
        Recorder.fits.append((np.asarray(train.dates), np.asarray(val.dates)))
        return self

    def predict_proba(self, windows: Windows) -> np.ndarray:
        return np.full(len(windows), 0.5)


@pytest.fixture(scope="module")
def data() -> tuple[dict[str, pd.DataFrame], pd.Series, Windows]:
    universe = load_snapshot(["AAPL", "JPM"], start=date(2016, 1, 1), end=date(2019, 12, 31))
    target = make_target(universe, LabelSpec(horizon=3))
    return universe, target, make_windows(compute_features(universe, "basic"), target, 5)


def test_fits_on_the_training_block_only_and_calls_back_per_fold(data: tuple) -> None:
    _, target, windows = data
    label = LabelSpec(horizon=3)
    folds = label_folds(target, seq_len=5, label=label, test_years=[2018, 2019])
    seen: list[str] = []
    Recorder.fits.clear()
    preds = cross_val_predict(Recorder, windows, folds, label, on_fold=lambda f, m, t, p: seen.append(f.name))
    assert seen == ["2018", "2019"] and list(preds["fold"].unique()) == ["2018", "2019"]
    calendar = np.unique(target.index.get_level_values("date").to_numpy())
    for (train, val), fold in zip(Recorder.fits, folds, strict=True):
        first_test = np.searchsorted(calendar, fold.test_dates[0])
        # No training or validation window within seq_len + horizon + 1 = 9 trading days of the test block.
        assert np.searchsorted(calendar, val.max()) <= first_test - 9
        assert np.searchsorted(calendar, train.max()) <= np.searchsorted(calendar, val.min()) - 9
    keys = pd.MultiIndex.from_frame(preds[["date", "ticker"]])
    np.testing.assert_array_equal(preds["y_true"], target.reindex(keys).to_numpy())


def test_refuses_folds_built_for_a_shorter_label(data: tuple) -> None:
    _, target, windows = data
    folds = label_folds(target, seq_len=5, label=LabelSpec(horizon=1), test_years=[2019])
    with pytest.raises(ValueError, match=r"fold 2019: purge of 7 .* \(needs 9\)"):
        cross_val_predict(Recorder, windows, folds, LabelSpec(horizon=3))


def test_the_same_seeded_factory_gives_the_same_predictions(data: tuple) -> None:
    universe, target, windows = data
    label = LabelSpec(horizon=3)
    folds = label_folds(target, seq_len=5, label=label, test_years=[2019])
    factory = lambda: make_baseline("lightgbm", universe=universe, seed=3, threads=1)  # noqa: E731
    first, again = (cross_val_predict(factory, windows, folds, label) for _ in range(2))
    pd.testing.assert_frame_equal(first, again)
