"""Raw OHLCV windows (``finmlops.serving.raw``) against the training path, ``compute_features``, on real data.

Up to ``settled_history`` days the server computes on every row it is sent, with the training code's core: the
windows are bit-identical to ``compute_features`` on the same rows. Beyond, it computes on that many last rows:
within 1e-9 of a std of the whole history's (tests/features/test_history.py measures it per feature set).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from finmlops.data import load_snapshot
from finmlops.data.validation import OHLCV_COLUMNS
from finmlops.features import compute_features, feature_names, features_of, market_returns, settled_history
from finmlops.serving.errors import BadRequest
from finmlops.serving.raw import raw_windows

TICKERS = ["AAPL", "JPM", "XOM"]
SEQ_LEN = 10


@pytest.fixture(scope="module")
def universe() -> dict[str, pd.DataFrame]:
    return load_snapshot(TICKERS)


def _inputs(universe: dict[str, pd.DataFrame], days: int) -> dict[str, np.ndarray]:
    """The last ``days`` rows of each ticker as [batch, T] tensors, with the universe's market return."""
    frames = [f.iloc[-days:] for f in universe.values()]
    inputs = {c: np.stack([f[c].to_numpy(np.float64) for f in frames]) for c in OHLCV_COLUMNS}
    market = market_returns(universe)
    inputs["market_return"] = np.stack([market.reindex(f.index).fillna(0.0).to_numpy() for f in frames])
    return inputs


def _trained(universe: dict[str, pd.DataFrame], feature_set: str, days: int) -> np.ndarray:
    """What training computes: compute_features on the same rows and market, the last SEQ_LEN rows per ticker."""
    frames = {t: f.iloc[-days:] for t, f in universe.items()}
    market = market_returns(universe)
    given = {t: market.reindex(f.index).fillna(0.0) for t, f in frames.items()}
    features = compute_features(frames, feature_set, market=given)[feature_names(feature_set)]
    return np.stack([features.xs(t, level="ticker").to_numpy()[-SEQ_LEN:] for t in frames]).astype(np.float32)


@pytest.mark.parametrize("feature_set", ["basic", "enhanced", "advanced"])
def test_up_to_the_settled_history_the_windows_are_training_bit_for_bit(universe: dict, feature_set: str) -> None:
    days = settled_history(features_of(feature_set), SEQ_LEN)
    for t in (days - 7, days):  # shorter than the settled history, and exactly it
        got = raw_windows(_inputs(universe, t), feature_set, feature_names(feature_set), SEQ_LEN)
        np.testing.assert_array_equal(got, _trained(universe, feature_set, t))


@pytest.mark.parametrize("feature_set", ["basic", "enhanced", "advanced"])
def test_a_whole_history_is_scored_from_its_settled_tail_within_tolerance(universe: dict, feature_set: str) -> None:
    days = len(universe["AAPL"])
    assert days > 3 * settled_history(features_of(feature_set), SEQ_LEN)
    got = raw_windows(_inputs(universe, days), feature_set, feature_names(feature_set), SEQ_LEN)
    want = _trained(universe, feature_set, days)
    scale = compute_features(universe, feature_set)[feature_names(feature_set)].std().to_numpy()
    assert (np.abs(got.astype(np.float64) - want) / scale).max() <= 1e-9
    assert (got == want).mean() >= 0.99  # the rest differ in the last bits (1 of 480 values here)


def test_a_bad_row_older_than_the_tail_is_still_refused_by_the_stores_rule(universe: dict) -> None:
    """Only the tail is computed, but every row sent is checked: day 0 of a 3,000-day history is refused."""
    inputs = _inputs(universe, 3000)
    inputs["high"][2, 0] = inputs["low"][2, 0] * 0.5
    with pytest.raises(BadRequest, match=r"batch row 2, day 0: rule 'high_bound' failed") as refused:
        raw_windows(inputs, "basic", feature_names("basic"), SEQ_LEN)
    assert refused.value.row == 2


def test_each_batch_row_is_scored_as_if_it_came_alone(universe: dict) -> None:
    inputs = _inputs(universe, 700)
    batch = raw_windows(inputs, "advanced", feature_names("advanced"), SEQ_LEN)
    for i in range(len(TICKERS)):
        alone = raw_windows({k: v[i : i + 1] for k, v in inputs.items()}, "advanced", feature_names("advanced"), 10)
        np.testing.assert_array_equal(batch[i : i + 1], alone)


def test_a_card_in_its_own_column_order_gets_those_columns(universe: dict) -> None:
    names = feature_names("enhanced")[::-1][:34]
    inputs = _inputs(universe, 200)
    reordered = raw_windows(inputs, "enhanced", names, SEQ_LEN)
    plain = raw_windows(inputs, "enhanced", feature_names("enhanced"), SEQ_LEN)
    np.testing.assert_array_equal(reordered, plain[:, :, [feature_names("enhanced").index(n) for n in names]])


def test_one_or_two_rows_are_computed_on_the_loop_and_larger_batches_in_a_thread(universe: dict) -> None:
    """A worker thread costs more than a row's features (bench/raw_path.py); a large batch must not stall the loop."""
    from finmlops.serving.raw import INLINE_ROWS, runs_inline

    inputs = _inputs(universe, 200)
    assert len(TICKERS) > INLINE_ROWS
    assert runs_inline({k: v[:1] for k, v in inputs.items()}) and not runs_inline(inputs)
    assert not runs_inline({k: v for k, v in inputs.items() if k != "close"})
