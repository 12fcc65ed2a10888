"""The panel computation equals the one-ticker-at-a-time reference bit for bit, and late starters warm up alone.

On the bundled snapshot (always) and on a 25-ticker slice of ../shared's S&P 500 set (IPOs from 2008 to 2015
beside full 1999-2021 histories; skipped when ../shared is absent).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from finmlops_testing.universe import SLICE, sp500_slice

from finmlops.data import DataStore, ingest, load_snapshot
from finmlops.features import FEATURE_SETS, compute_features, features_of
from finmlops.features.compute import compute_features_per_ticker


@pytest.fixture(scope="module")
def sp500(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    root = tmp_path_factory.mktemp("sp500")
    folder = sp500_slice(root / "csv")
    ingest(DataStore(root / "store"), "csv", list(SLICE), data_dir=folder)
    return DataStore(root / "store").read()


def _assert_bitwise(panel: pd.DataFrame, reference: pd.DataFrame) -> None:
    assert panel.index.equals(reference.index) and list(panel.columns) == list(reference.columns)
    a, b = panel.to_numpy(), reference.to_numpy()
    assert np.array_equal(np.isnan(a), np.isnan(b))
    assert np.array_equal(a, b, equal_nan=True), f"max |diff| {np.nanmax(np.abs(a - b))}"


@pytest.mark.parametrize("feature_set", FEATURE_SETS)
def test_panel_equals_per_ticker_on_the_snapshot(feature_set: str) -> None:
    universe = load_snapshot(None, pd.Timestamp("2019-01-01").date(), pd.Timestamp("2021-12-31").date())
    _assert_bitwise(compute_features(universe, feature_set), compute_features_per_ticker(universe, feature_set))


@pytest.mark.parametrize("feature_set", FEATURE_SETS)
def test_panel_equals_per_ticker_on_an_sp500_slice(sp500: dict[str, pd.DataFrame], feature_set: str) -> None:
    _assert_bitwise(compute_features(sp500, feature_set), compute_features_per_ticker(sp500, feature_set))


def test_a_late_ticker_enters_with_its_own_warm_up(sp500: dict[str, pd.DataFrame]) -> None:
    """FB lists on 2012-05-18: its first ``window - 1`` own rows of every feature are NaN, whatever the other
    tickers hold, and its values are those of FB computed alone (the sets without cross-asset features)."""
    for feature_set in ("alpha158", "kdh", "enhanced"):
        frame = compute_features(sp500, feature_set)
        fb = frame.xs("FB", level="ticker")
        assert fb.index[0] == pd.Timestamp("2012-05-18")
        for feature in features_of(feature_set):
            assert fb[feature.name].iloc[: feature.window - 1].isna().all(), feature.name
        alone = compute_features({"FB": sp500["FB"]}, feature_set).xs("FB", level="ticker")
        pd.testing.assert_frame_equal(fb, alone, check_exact=True)
    kdh = compute_features(sp500, "kdh").xs("FB", level="ticker")
    assert kdh["R240"].iloc[:240].isna().all() and np.isfinite(kdh["R240"].iloc[240:]).all()
    # Before 2012-05-18 FB has no rows at all (no NaN rows stand in for it).
    assert kdh.index.min() == pd.Timestamp("2012-05-18")


def test_float32_output_rounds_the_float64_values_once(sp500: dict[str, pd.DataFrame]) -> None:
    wide = compute_features(sp500, "kdh")
    narrow = compute_features(sp500, "kdh", dtype=np.float32)
    assert narrow.dtypes.unique().tolist() == [np.dtype(np.float32)]
    assert np.array_equal(narrow.to_numpy(), wide.to_numpy().astype(np.float32), equal_nan=True)
    with pytest.raises(ValueError, match="float64 or float32"):
        compute_features(sp500, "kdh", dtype=np.int64)  # type: ignore[arg-type]


def test_the_output_frame_is_not_copied(sp500: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    frame = compute_features(sp500, "kdh")
    values = frame.to_numpy()
    assert values.flags.f_contiguous or values.base is not None  # one F-ordered block, no sorted copy
