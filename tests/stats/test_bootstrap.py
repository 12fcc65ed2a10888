"""The circular block bootstrap's weights and the one paired test (evaluation and promotion)."""

from __future__ import annotations

import numpy as np
import pytest

from finmlops.stats.bootstrap import BootstrapConfig, block_bootstrap_weights, paired_test, paired_test_of_dates


def test_block_bootstrap_weights_are_contiguous_blocks_and_seeded() -> None:
    w = block_bootstrap_weights(50, n_boot=200, block_len=5, seed=1)
    assert w.shape == (200, 50)
    assert (w.sum(axis=1) == 50).all()
    np.testing.assert_array_equal(w, block_bootstrap_weights(50, n_boot=200, block_len=5, seed=1))
    assert not np.array_equal(w, block_bootstrap_weights(50, n_boot=200, block_len=5, seed=2))
    # One block as long as the series is a rotation of it: every date exactly once.
    assert (block_bootstrap_weights(50, n_boot=10, block_len=50, seed=0) == 1).all()
    # Circular blocks: every date is drawn once per resample on average.
    assert block_bootstrap_weights(50, n_boot=4000, block_len=5, seed=0).mean(axis=0) == pytest.approx(
        np.ones(50), abs=0.1
    )
    with pytest.raises(ValueError, match="block_len"):
        block_bootstrap_weights(50, n_boot=10, block_len=0, seed=0)


def test_paired_test_p_values_are_null_centred_and_sided() -> None:
    """The model is right where the reference is, and on a tenth of the rest: a clear gain, 300 dates x 5 rows.
    Two-sided p, greater p (H1: difference > margin) and a margin that makes the same gain insufficient; an equal
    pair has p = 1."""
    rng = np.random.default_rng(0)
    date_idx = np.repeat(np.arange(300), 5)
    diff = ((rng.random(1500) < 0.5) & (rng.random(1500) < 0.1)).astype(float)
    boot = BootstrapConfig(n_boot=1000, block_len=5, seed=1)
    test = paired_test(diff, date_idx, boot)
    assert test.difference == pytest.approx(diff.mean())
    assert test.ci_low > 0 and test.p_value < 0.01 and test.p_value_greater <= test.p_value
    assert test.n_rows == 1500 and test.n_dates == 300 and test.block_len == 5
    # Null-centred: the resamples minus the estimate, against the estimate's distance from the null.
    draws = (boot.weights(300) @ np.bincount(date_idx, diff)) / 5 / 300
    expected = (1 + np.sum(np.abs(draws - test.difference) >= abs(test.difference))) / 1001
    assert test.p_value == pytest.approx(expected)
    worse = paired_test(-diff, date_idx, boot)
    assert worse.p_value == test.p_value and worse.p_value_greater > 0.99
    assert worse.comparison("accuracy", "r").verdict == "worse"
    assert worse.comparison("accuracy", "r", side="greater").verdict == "not different"
    assert paired_test(diff, date_idx, boot, margin=0.2).p_value_greater > 0.5
    same = paired_test(np.zeros(1500), date_idx, boot)
    assert same.difference == 0 and same.p_value == 1.0 and same.comparison("accuracy", "r").verdict == "not different"
    with pytest.raises(ValueError, match="no shared rows"):
        paired_test(np.array([]), np.array([], dtype=int), boot)


def test_paired_test_of_dates_is_paired_test_on_the_dates_sums() -> None:
    """The aggregate form (per-date sums and row counts, as the live comparison keeps them) gives the row form's
    test exactly, including dates without rows."""
    rng = np.random.default_rng(5)
    date_idx = np.sort(rng.integers(0, 40, 300))
    date_idx[date_idx == 7] = 8  # date 7 has no row
    diff = rng.integers(-1, 2, 300).astype(float)
    boot = BootstrapConfig(n_boot=400, block_len=5, seed=3)
    rows = paired_test(diff, date_idx, boot, margin=0.01)
    n_dates = int(date_idx.max()) + 1
    sums = np.bincount(date_idx, diff, n_dates)
    counts = np.bincount(date_idx, minlength=n_dates)
    assert counts[7] == 0
    assert paired_test_of_dates(sums, counts, boot, margin=0.01) == rows
    with pytest.raises(ValueError, match="no shared rows"):
        paired_test_of_dates(np.zeros(3), np.zeros(3), boot)
