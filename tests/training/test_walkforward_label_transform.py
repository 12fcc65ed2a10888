"""walk_forward_predictions' label_transform: the audit's permuted-label control trains and scores on new labels."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from finmlops.data import load_snapshot
from finmlops.features import make_target
from finmlops.training import walk_forward_predictions


def test_label_transform_replaces_the_labels_models_see_and_are_scored_on() -> None:
    universe = load_snapshot(["AAPL", "XOM"], start=date(2017, 1, 1), end=date(2019, 12, 31))
    flipped = walk_forward_predictions(
        universe, variants=[], baselines=["majority"], test_years=[2019], threads=1, progress=False,
        label_transform=lambda target: 1.0 - target,
    )  # fmt: skip
    plain = walk_forward_predictions(
        universe, variants=[], baselines=["majority"], test_years=[2019], threads=1, progress=False
    )
    keys = pd.MultiIndex.from_arrays([pd.DatetimeIndex(flipped["date"]), flipped["ticker"]])
    assert np.array_equal(flipped["y_true"], 1 - make_target(universe).reindex(keys).to_numpy())
    # The majority baseline learnt the flipped base rate; ret_next stays the real return.
    np.testing.assert_allclose(flipped["prob_up"], 1 - plain["prob_up"])
    np.testing.assert_allclose(flipped["ret_next"], plain["ret_next"])
