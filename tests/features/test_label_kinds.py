"""Label kinds on a hand-built universe: values by hand, cross-sectional balance, NaN where unknown."""

from __future__ import annotations

import numpy as np
import pandas as pd

from finmlops.features import LabelSpec, forward_return, make_target, relative_return


def _frame(closes: list[float]) -> pd.DataFrame:
    dates = pd.bdate_range("2024-01-01", periods=len(closes), name="date")
    c = np.asarray(closes, dtype=float)
    return pd.DataFrame({"open": c, "high": c, "low": c, "close": c, "adj_close": c, "volume": 1e6}, index=dates)


# Day 0 decisions trade from the close of day 1 to day 2: A +10 %, B -10 %, C +0 %, D +20 %.
UNIVERSE = {
    "A": _frame([100, 100, 110, 110]),
    "B": _frame([100, 100, 90, 90]),
    "C": _frame([100, 100, 100, 100]),
    "D": _frame([100, 100, 120, 120]),
}
DAY0 = pd.Timestamp("2024-01-01")


def _day0(series: pd.Series) -> dict[str, float]:
    return {t: float(v) for t, v in series.xs(DAY0, level="date").items()}


def test_direction_is_the_traded_returns_sign() -> None:
    assert _day0(make_target(UNIVERSE)) == {"A": 1.0, "B": 0.0, "C": 0.0, "D": 1.0}


def test_cross_sectional_beats_the_dates_median() -> None:
    label = LabelSpec(kind="cross_sectional")
    # median of (0.1, -0.1, 0.0, 0.2) = 0.05: A and D above, B and C below.
    rel = _day0(relative_return(UNIVERSE, label))
    assert np.allclose([rel[t] for t in "ABCD"], [0.05, -0.15, -0.05, 0.15])
    assert _day0(make_target(UNIVERSE, label)) == {"A": 1.0, "B": 0.0, "C": 0.0, "D": 1.0}


def test_cross_sectional_tie_with_the_median_is_unlabelled_and_balanced() -> None:
    three = {t: UNIVERSE[t] for t in "ABC"}  # returns 0.1, -0.1, 0.0: C is the median
    got = _day0(make_target(three, LabelSpec(kind="cross_sectional")))
    assert got["A"] == 1.0 and got["B"] == 0.0 and np.isnan(got["C"])
    target = make_target(UNIVERSE, LabelSpec(kind="cross_sectional"))
    known = target.dropna()
    per_date = known.groupby(level="date").mean()
    assert (per_date == 0.5).all()  # balanced on every date, by construction


def test_excess_is_above_the_equal_weight_universe() -> None:
    label = LabelSpec(kind="excess", threshold=0.04)
    # mean of (0.1, -0.1, 0.0, 0.2) = 0.05; excess A 0.05, B -0.15, C -0.05, D 0.15.
    got = _day0(make_target(UNIVERSE, label))
    assert got == {"A": 1.0, "B": 0.0, "C": 0.0, "D": 1.0}
    got = _day0(make_target(UNIVERSE, LabelSpec(kind="excess", threshold=0.06)))
    assert np.isnan(got["A"]) and np.isnan(got["C"]) and got["B"] == 0.0 and got["D"] == 1.0


def test_unknown_returns_stay_nan_and_the_traded_return_is_unchanged() -> None:
    for kind in ("direction", "cross_sectional", "excess"):
        label = LabelSpec(kind=kind)
        target = make_target(UNIVERSE, label)
        last = target.index.get_level_values("date") >= pd.Timestamp("2024-01-03")
        assert target[last].isna().all(), kind
        # The backtest's return (ret_next) is the raw traded return whatever the kind.
        pd.testing.assert_series_equal(forward_return(UNIVERSE, label), forward_return(UNIVERSE))


def test_one_ticker_has_no_relative_label() -> None:
    solo = {"A": UNIVERSE["A"]}
    for kind in ("cross_sectional", "excess"):
        assert make_target(solo, LabelSpec(kind=kind)).isna().all()
