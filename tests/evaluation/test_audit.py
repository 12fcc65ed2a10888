"""Leakage audit: synthetic markets are valid and behave as designed; the four scenarios at a small size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from finmlops.data import load_snapshot
from finmlops.evaluation.audit import (
    LEAK_FEATURE,
    Audit,
    AuditConfig,
    bayes_accuracy,
    check_ohlcv,
    future_dependence,
    permute_bars,
    permute_labels,
    probe_predictions,
    run_audit,
    simulate_planted,
    simulate_random_walk,
    with_leak,
)
from finmlops.evaluation.metrics import BootstrapConfig
from finmlops.features import LabelSpec, compute_features

BOOT = BootstrapConfig(n_boot=200, block_len=10)


def basic(universe: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return compute_features(universe, "basic")


@pytest.fixture(scope="module")
def snapshot() -> dict[str, pd.DataFrame]:
    return load_snapshot(tickers=["AAPL", "JPM", "XOM", "JNJ"])


def test_synthetic_markets_are_valid_and_have_the_designed_statistics() -> None:
    walk = simulate_random_walk([0.02] * 3, 3000, seed=0)
    planted = simulate_planted([0.02] * 3, 3000, persistence=0.7, seed=0)
    for market in (walk, planted):
        check_ohlcv(market)
        assert all(list(f.columns) == ["open", "high", "low", "close", "adj_close", "volume"] for f in market.values())
    up = np.concatenate([np.diff(np.log(f["close"])) > 0 for f in walk.values()])
    assert up.mean() == pytest.approx(0.5, abs=0.015)
    signs = np.sign(np.diff(np.log(planted["SYN00"]["close"])))
    assert (signs[1:] == signs[:-1]).mean() == pytest.approx(0.7, abs=0.025)
    assert np.std(np.diff(np.log(planted["SYN00"]["close"]))) == pytest.approx(0.02, rel=0.05)


def test_permuted_bars_keep_moves_and_lose_order(snapshot: dict[str, pd.DataFrame]) -> None:
    shuffled = permute_bars(snapshot, seed=0)
    check_ohlcv(shuffled)
    real = np.diff(np.log(snapshot["AAPL"]["adj_close"].to_numpy()))
    moved = np.diff(np.log(shuffled["AAPL"]["close"].to_numpy()))
    np.testing.assert_allclose(np.sort(moved), np.sort(real - np.median(real)), atol=1e-9)
    assert (moved > 0).mean() == pytest.approx(0.5, abs=0.001)
    assert not np.allclose(moved, real - np.median(real))


def test_permuted_labels_keep_each_date_blocks_labels_and_lose_their_rows() -> None:
    dates = pd.bdate_range("2020-01-01", periods=100)
    index = pd.MultiIndex.from_product([dates, ["A", "B", "C"]], names=["date", "ticker"])
    rng = np.random.default_rng(0)
    target = pd.Series((rng.random(len(index)) < 0.3).astype(float), index=index)
    target.iloc[[0, 5, 299]] = np.nan
    out = permute_labels(target, block_days=20, seed=1)
    block = index.get_level_values("date").map({d: i // 20 for i, d in enumerate(dates)})
    assert out.index.equals(target.index)
    assert np.isnan(out.iloc[[0, 5, 299]]).all() and out.notna().sum() == target.notna().sum()
    pd.testing.assert_series_equal(out.groupby(block.to_numpy()).sum(), target.groupby(block.to_numpy()).sum())
    assert (out != target).sum() > 50  # rows lost their labels
    pd.testing.assert_series_equal(out, permute_labels(target, block_days=20, seed=1))


def test_bad_synthetic_bar_is_named() -> None:
    walk = simulate_random_walk([0.02], 10, seed=0)
    walk["SYN00"].iloc[3, walk["SYN00"].columns.get_loc("high")] = 1.0
    with pytest.raises(ValueError, match="SYN00: invalid bar on 2010-01-07"):
        check_ohlcv(walk)


def test_future_dependence_passes_the_pipeline_and_flags_the_leak() -> None:
    market = simulate_random_walk([0.02] * 3, 400, seed=1)
    assert future_dependence(basic, market) == {}
    flagged = future_dependence(with_leak(basic), market)
    assert set(flagged) == {LEAK_FEATURE}
    # The up/down jumps flip the cut date's next move for every ticker in one of the two perturbations.
    assert flagged[LEAK_FEATURE]["changed_cells"] >= 3 * 3

    def centred(universe: dict[str, pd.DataFrame]) -> pd.DataFrame:
        # A classic leak: z-scoring with the full-sample mean and std.
        features = basic(universe)
        return (features - features.mean()) / features.std()

    assert "return_1d" in future_dependence(centred, market)


def test_bayes_rate_follows_the_label() -> None:
    """The default label (close t+1 -> close t+2) is two sign steps after the last seen move: (1 + (2q-1)^2) / 2."""
    assert bayes_accuracy(0.7) == pytest.approx((1 + 0.4**2) / 2, abs=0.005)
    assert bayes_accuracy(0.5) == pytest.approx(0.5, abs=0.005)
    # Five days of moves after the entry day dilute the one-day memory further.
    assert 0.5 < bayes_accuracy(0.7, LabelSpec(horizon=5)) < bayes_accuracy(0.7) - 0.02


def test_probe_recovers_planted_signal_and_leak_beats_bayes() -> None:
    market = simulate_planted([0.02] * 4, 1000, persistence=0.8, seed=3)
    clean = probe_predictions(market, basic, test_years=[2013])
    leaked = probe_predictions(market, with_leak(basic), test_years=[2013])
    acc = lambda p: ((p["prob_up"] > 0.5) == p["y_true"]).mean()  # noqa: E731
    assert 0.62 < acc(clean) < 0.74  # Bayes (1 + 0.6^2) / 2 = 0.68
    assert acc(leaked) > 0.95
    assert set(clean["fold"]) == {2013} and (clean["date"].dt.year == 2013).all()


def test_run_audit_small_passes_with_an_honest_pipeline(snapshot: dict[str, pd.DataFrame]) -> None:
    def predictor_for(years: list[int], label_transform: Any):
        return lambda universe: probe_predictions(universe, basic, test_years=years, label_transform=label_transform)

    result = run_audit(
        snapshot, predictor_for, basic, AuditConfig(n_tickers=4, n_days=1100, test_years=2, seed=7, boot=BOOT)
    )
    by = {(c.scenario, c.model, c.check): c for c in result.checks}
    assert result.passed, [c for c in result.checks if not c.passed]
    assert {c.scenario for c in result.checks} == {
        "random_walk",
        "shuffled",
        "permuted_labels",
        "planted",
        "future_dependence",
        "leak",
    }
    assert by[("leak", "features+target_class", "future-dependence check flags target_class")].passed
    # audit.json round trip: the checks without intervals write no metrics, the others their accuracy and AUC.
    text = result.model_dump_json()
    assert Audit.model_validate_json(text).model_dump_json() == text
    written = json.loads(text)["checks"]
    assert [c["metrics"] for c in written if c["scenario"] == "future_dependence"] == [{}]
    assert all(set(c["metrics"]) == {"accuracy", "roc_auc"} for c in written if c["scenario"] == "planted")
    assert all("within_date_auc" in c["metrics"] for c in written if c["scenario"] == "permuted_labels")


def test_run_audit_fails_a_leaky_pipeline(snapshot: dict[str, pd.DataFrame]) -> None:
    def predictor_for(years: list[int], label_transform: Any):
        return lambda universe: probe_predictions(
            universe, with_leak(basic), test_years=years, label_transform=label_transform
        )

    result = run_audit(
        snapshot, predictor_for, basic, AuditConfig(n_tickers=3, n_days=800, test_years=1, seed=7, boot=BOOT)
    )
    failed = {(c.scenario, c.check.split(" ")[0]) for c in result.checks if not c.passed}
    assert not result.passed
    assert {("random_walk", "accuracy"), ("shuffled", "accuracy"), ("planted", "accuracy")} <= failed


@pytest.mark.slow
def test_quick_audit_of_the_real_pipeline_passes(tmp_path: Path) -> None:
    """The deep pipeline itself (lightweight LSTM plus every baseline) through `finmlops audit --quick`."""
    from finmlops.evaluation.workspace import run_audit_workspace
    from finmlops.settings import load_settings

    settings = load_settings(home=tmp_path, threads=1)
    result = run_audit_workspace(
        settings, quick=True, variants=["lightweight"], epochs=20, seed=42, boot=BootstrapConfig(n_boot=300)
    )
    assert result.passed, [c for c in result.checks if not c.passed]
    assert 0.99 < result.ci_level < 1  # Bonferroni over the whole audit
    planted = {c.model for c in result.checks if c.scenario == "planted" and "recovers" in c.check}
    assert "lightweight" in planted
    assert (tmp_path / "results" / "audit.json").exists()
