"""``settled_history``: the last rows of a short tail equal those of the whole history (the server's raw inputs).

Finite-window features read no older row, so the tail differs from the whole history only where TA-Lib's running
sums (and Alpha158's cumulative sums) round differently. An exponential smoothing (RSI and ATR: Wilder; MACD: EMA)
never forgets its start: ``Feature.memory`` adds the rows after which it keeps less than 1e-12 of older history.
Measured on the bundled snapshot (10 tickers, 2010-2023), as a fraction of each feature's standard deviation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from finmlops.features import FEATURE_SETS, feature_matrix, features_of, market_returns, settled_history
from finmlops.features.registry import TickerInputs

SEQ_LEN = 30
TICKERS = ("AAPL", "JPM", "TSLA", "XOM")
# Largest |tail - whole history| / std(feature) allowed. basic, enhanced and advanced: measured at most 6e-11
# (BBANDS' running sum of squared prices); alpha158: 2.5e-7 (RSQR5, cumulative sums over 3,500 rows); kdh: 0.
TOLERANCE = {"basic": 1e-9, "enhanced": 1e-9, "advanced": 1e-9, "alpha158": 1e-5, "kdh": 0.0, "fk240": 0.0}


def _worst(snapshot: dict[str, pd.DataFrame], feature_set: str, rows: int) -> tuple[np.ndarray, float]:
    """Per feature, the largest |tail of ``rows`` - whole history| / std over the last SEQ_LEN rows of tails
    ending every 173 days; and the share of those float32 values that are bit-identical (NaN counts as equal)."""
    features = features_of(feature_set)
    market = market_returns(snapshot)
    worst = np.zeros(len(features))
    same = total = 0
    for ticker in TICKERS:
        frame = snapshot[ticker]
        m = market.reindex(frame.index).to_numpy()
        whole = feature_matrix(TickerInputs.from_frame(frame, m), features)
        scale = np.nanstd(whole, axis=0)
        for end in range(rows + 40, len(frame) + 1, 173):
            tail = feature_matrix(TickerInputs.from_frame(frame.iloc[end - rows : end], m[end - rows : end]), features)
            got, want = tail[-SEQ_LEN:], whole[end - SEQ_LEN : end]
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
            worst = np.fmax(worst, np.nanmax(np.abs(got - want), axis=0, initial=0.0) / scale)
            same += int((got.astype(np.float32) == want.astype(np.float32)).sum() + np.isnan(want).sum())
            total += want.size
    return worst, same / total


@pytest.mark.parametrize("feature_set", FEATURE_SETS)
def test_the_settled_tail_gives_the_whole_historys_windows(snapshot: dict, feature_set: str) -> None:
    worst, identical = _worst(snapshot, feature_set, settled_history(features_of(feature_set), SEQ_LEN))
    names = [f.name for f in features_of(feature_set)]
    j = int(np.argmax(worst))
    assert worst[j] <= TOLERANCE[feature_set], f"{names[j]}: {worst[j]:.3g} std from the whole history"
    exact = ("basic", "enhanced", "advanced", "kdh", "fk240")
    assert identical >= (0.9999 if feature_set in exact else 0.99), identical


@pytest.mark.parametrize("feature_set", ["basic", "enhanced", "advanced"])
def test_without_the_smoothings_memory_the_tail_is_far_off(snapshot: dict, feature_set: str) -> None:
    """The memory is what makes the tail exact: with windows only, RSI and MACD miss by a sizeable share of a std
    (measured 0.15 to 0.66), while the finite-window features stay within the tolerance."""
    features = features_of(feature_set)
    worst, _ = _worst(snapshot, feature_set, max(f.window for f in features) + SEQ_LEN - 1)
    smoothed = np.array([f.memory > 0 for f in features])
    assert smoothed.any() and worst[smoothed].max() > 0.01, worst[smoothed]
    assert worst[~smoothed].max() <= TOLERANCE[feature_set], worst[~smoothed].max()


def test_memory_is_declared_for_every_smoothing_and_only_there() -> None:
    """RSI and ATR (Wilder, weight 1/n) and MACD (EMA, 2/(n+1)) carry memory; everything else has none."""
    memory = {f.name: f.memory for s in FEATURE_SETS for f in features_of(s)}
    smoothed = {n for n in memory if n.startswith(("rsi_", "atr_", "macd"))}
    assert smoothed == {n for n, m in memory.items() if m > 0}
    # (1 - 1/14)^373 < 1e-12 <= (1 - 1/14)^372
    assert memory["rsi_14"] == 373 and (13 / 14) ** 373 < 1e-12 <= (13 / 14) ** 372
