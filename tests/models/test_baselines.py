from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from finmlops.models import BASELINES, make_baseline


def _universe() -> dict[str, pd.DataFrame]:
    idx = pd.bdate_range("2020-01-01", periods=6, name="date")
    close = [10.0, 11.0, 10.5, 10.5, 12.0, 11.0]
    frame = pd.DataFrame({c: close for c in ("open", "high", "low", "close", "adj_close")}, index=idx)
    frame["volume"] = 100
    return {"AAA": frame}


def test_momentum_is_yesterdays_direction_from_prices(make_windows: Any) -> None:
    uni = _universe()
    dates = uni["AAA"].index[1:].to_numpy()
    w = make_windows(np.zeros((5, 2, 1), np.float32), np.zeros(5, np.float32), dates, np.array(["AAA"] * 5))
    # adj_close 10 -> 11 (up), 10.5 (down), 10.5 (flat counts as not up), 12 (up), 11 (down)
    assert make_baseline("momentum", universe=uni).fit(w, w).predict_proba(w).tolist() == [1, 0, 0, 1, 0]


def test_momentum_names_the_missing_row(make_windows: Any) -> None:
    uni = _universe()
    w = make_windows(
        np.zeros((1, 2, 1), np.float32), np.zeros(1, np.float32), uni["AAA"].index[:1].to_numpy(), np.array(["AAA"])
    )
    with pytest.raises(ValueError, match=r"AAA on 2020-01-01"):
        make_baseline("momentum", universe=uni).predict_proba(w)


def test_majority_predicts_the_training_up_rate(linear: Any) -> None:
    w = linear(50, 3, 2, seed=0)
    w.y[:] = 0
    w.y[:10] = 1
    p = make_baseline("majority").fit(w, w).predict_proba(linear(7, 3, 2, seed=1))
    assert p.shape == (7,) and np.allclose(p, 0.2)


@pytest.mark.parametrize("name", ["logistic", "lightgbm"])
def test_feature_baselines_learn_a_last_day_rule(name: str, linear: Any) -> None:
    train, val, test = (linear(n, 4, 5, seed=s) for n, s in ((1500, 0), (300, 1), (400, 2)))
    model = make_baseline(name, seed=3, threads=1).fit(train, val)
    p = model.predict_proba(test)
    assert p.shape == (400,) and ((p >= 0) & (p <= 1)).all()
    assert np.mean((p > 0.5) == (test.y > 0.5)) > 0.85
    again = make_baseline(name, seed=3, threads=1).fit(train, val).predict_proba(test)
    assert np.array_equal(p, again)


def test_baseline_registry_and_errors(linear: Any) -> None:
    assert set(BASELINES) == {"majority", "momentum", "logistic", "lightgbm"}
    with pytest.raises(KeyError):
        make_baseline("oracle")
    with pytest.raises(ValueError, match="universe"):
        make_baseline("momentum")
    bad = linear(10, 3, 2, seed=0)
    bad.X[4, 1, 0] = np.nan
    with pytest.raises(ValueError, match="window 4"):
        make_baseline("logistic").fit(bad, bad)
