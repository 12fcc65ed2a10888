"""Metrics against scikit-learn and scipy; bootstrap mechanics; paired tests; calibration bins."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from finmlops.evaluation.metrics import (
    BootstrapConfig,
    calibration_bins,
    evaluate_predictions,
    mcnemar_exact,
    metrics_with_ci,
    paired_accuracy_test,
    paired_rows,
    prepare,
    validate_predictions,
    weighted_metrics,
)
from finmlops.evaluation.results import BaselineTest, Evaluation
from finmlops.provenance import json_safe
from finmlops.stats.bootstrap import block_bootstrap_weights


def _sklearn_metrics(rows: pd.DataFrame) -> dict[str, float]:
    y, p = rows["y_true"].to_numpy(), rows["prob_up"].to_numpy()
    pred = (p > 0.5).astype(int)
    return {
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        "roc_auc": skm.roc_auc_score(y, p),
        "log_loss": skm.log_loss(y, p, labels=[0, 1]),
        "brier": skm.brier_score_loss(y, p),
        "f1": skm.f1_score(y, pred, zero_division=0),
        "mcc": skm.matthews_corrcoef(y, pred),
        "up_share": pred.mean(),
    }


def _per_date(rows: pd.DataFrame, corr: Callable[..., Any]) -> pd.Series:
    return rows.groupby("date")[["prob_up", "ret_next"]].apply(lambda g: corr(g["prob_up"], g["ret_next"])[0])


def _scipy_ic(rows: pd.DataFrame) -> dict[str, float]:
    pearson = rows.groupby("date")[["prob_up", "ret_next"]].apply(
        lambda g: stats.pearsonr(g["prob_up"], g["ret_next"])[0]
    )
    spearman = rows.groupby("date")[["prob_up", "ret_next"]].apply(
        lambda g: stats.spearmanr(g["prob_up"], g["ret_next"])[0]
    )
    return {
        "ic": pearson.mean(),
        "rank_ic": spearman.mean(),
        "icir": pearson.mean() / pearson.std(ddof=1),
        "rank_icir": spearman.mean() / spearman.std(ddof=1),
    }


def _net_rows(preds: pd.DataFrame) -> pd.DataFrame:
    rows = validate_predictions(preds)
    rows = rows.loc[rows["model"] == "net"].reset_index(drop=True)
    # Rounding creates tied scores, which AUC and rank IC must handle like scikit-learn and scipy.
    return rows.assign(prob_up=rows["prob_up"].round(2))


def test_point_metrics_match_sklearn_and_scipy(preds: pd.DataFrame) -> None:
    rows = _net_rows(preds)
    ours = weighted_metrics(prepare(rows))
    expected = _sklearn_metrics(rows) | _scipy_ic(rows)
    for name, value in expected.items():
        assert ours[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


def test_date_weights_equal_explicit_resampling(preds: pd.DataFrame) -> None:
    rows = _net_rows(preds)
    p = prepare(rows)
    w = block_bootstrap_weights(p.n_dates, n_boot=1, block_len=7, seed=3)[0]
    # Expand the resample explicitly: each date's rows repeated as often as the date was drawn.
    dates = pd.Series(p.dates)
    drawn = dates.repeat(w.astype(int)).reset_index(drop=True)
    parts = [rows.loc[rows["date"] == d].assign(copy=i) for i, d in enumerate(drawn)]
    expanded = pd.concat(parts, ignore_index=True)
    ours = weighted_metrics(p, w)
    expected = _sklearn_metrics(expanded)
    for name, value in expected.items():
        assert ours[name] == pytest.approx(value, rel=1e-9), name
    per_date = rows.groupby("date")[["prob_up", "ret_next"]].apply(
        lambda g: stats.pearsonr(g["prob_up"], g["ret_next"])[0]
    )
    ic_draws = per_date.loc[drawn.to_numpy()]
    assert ours["ic"] == pytest.approx(ic_draws.mean(), rel=1e-9)
    assert ours["icir"] == pytest.approx(ic_draws.mean() / ic_draws.std(ddof=1), rel=1e-9)


def test_ci_reflects_dates_not_rows_when_tickers_move_together() -> None:
    # Four tickers that are always all right or all wrong on a day carry one date's worth of information.
    rng = np.random.default_rng(0)
    n_dates, tickers = 400, ["A", "B", "C", "D"]
    dates = pd.bdate_range("2021-01-01", periods=n_dates)
    day_correct = rng.random(n_dates) < 0.5
    rows = pd.DataFrame(
        {
            "date": np.repeat(dates, 4),
            "ticker": tickers * n_dates,
            "fold": 2021,
            "model": "m",
            "prob_up": 0.7,
            "y_true": np.repeat(day_correct.astype(int), 4),
            "ret_next": rng.normal(0, 0.01, 4 * n_dates),
        }
    )
    ci = metrics_with_ci(prepare(rows), BootstrapConfig(n_boot=2000, block_len=1, seed=0)).accuracy
    width = ci.ci_high - ci.ci_low
    by_dates = 2 * 1.96 * np.sqrt(0.25 / n_dates)
    assert width == pytest.approx(by_dates, rel=0.15)  # an iid-row bootstrap would give half this width
    assert ci.ci_low < ci.value < ci.ci_high


def test_paired_test_detects_skill_and_not_its_absence(preds: pd.DataFrame) -> None:
    v = validate_predictions(preds)
    boot = BootstrapConfig(n_boot=500, block_len=5, seed=0)
    better = paired_accuracy_test(paired_rows(v, "net", "momentum"), boot)
    assert better.difference > 0.05
    assert better.ci_low > 0 and better.p_value < 0.01 and better.p_value_greater < 0.01
    assert better.mcnemar is not None and better.mcnemar.p_value < 0.01
    same = paired_accuracy_test(paired_rows(v, "net", "net"), boot)
    assert same.difference == 0 and same.p_value == 1.0
    assert same.mcnemar is not None and same.mcnemar.p_value == 1.0


def test_mcnemar_matches_binomial_test_on_discordant_pairs() -> None:
    a = np.array([1] * 30 + [0] * 12 + [1] * 50 + [0] * 8)
    b = np.array([0] * 30 + [1] * 12 + [1] * 50 + [0] * 8)
    result = mcnemar_exact(a, b)
    assert (result.only_model_correct, result.only_baseline_correct) == (30, 12)
    assert result.p_value == pytest.approx(stats.binomtest(30, 42, 0.5).pvalue)


def test_calibration_bins_match_sklearn(preds: pd.DataFrame) -> None:
    rows = _net_rows(preds)
    bins = calibration_bins(rows["prob_up"].to_numpy(), rows["y_true"].to_numpy(), n_bins=10)
    freq, mean_p = calibration_curve(rows["y_true"], rows["prob_up"], n_bins=10, strategy="uniform")
    np.testing.assert_allclose(bins.observed_up, freq)
    np.testing.assert_allclose(bins.mean_predicted, mean_p)
    assert sum(bins.count) == len(rows)


def test_evaluate_predictions_structure_and_reproducibility(make_predictions: Callable[..., pd.DataFrame]) -> None:
    preds = make_predictions(n_dates=120)
    boot = BootstrapConfig(n_boot=100, block_len=5, seed=7)
    first = evaluate_predictions(preds, baselines=["majority", "momentum"], boot=boot)
    again = evaluate_predictions(preds.sample(frac=1.0, random_state=1), baselines=["majority", "momentum"], boot=boot)
    # Row order does not matter; the seed fixes the resamples.
    assert first.model_dump_json() == again.model_dump_json()
    net = first.models["net"]
    assert set(net.folds) == {"2020", "2021"}
    assert set(net.vs_baselines) == {"majority", "momentum"}
    assert set(first.models["majority"].vs_baselines) == {"momentum"}
    assert first.models["majority"].pooled.up_share.value == 1.0
    assert np.isnan(first.models["majority"].pooled.ic.value)  # constant forecast: IC undefined
    assert set(net.per_ticker) == {"AAA", "BBB", "CCC", "DDD"}
    # evaluation.json's round trip: NaN is written as null and read back as NaN.
    assert Evaluation.model_validate_json(first.model_dump_json()).model_dump_json() == first.model_dump_json()


@pytest.mark.parametrize(
    ("column", "value", "match"),
    [("prob_up", 1.5, "prob_up"), ("y_true", 2, "y_true"), ("ret_next", np.nan, "ret_next")],
)
def test_bad_predictions_name_column_and_row(preds: pd.DataFrame, column: str, value: float, match: str) -> None:
    bad = preds.copy()
    bad.loc[5, column] = value
    with pytest.raises(ValueError, match=rf"{match}.*model net, date 2020-01-02, ticker BBB"):
        validate_predictions(bad, source="p.parquet")


def test_missing_columns_and_duplicates_are_rejected(preds: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="missing columns"):
        validate_predictions(preds.drop(columns="ret_next"))
    with pytest.raises(ValueError, match="duplicate row"):
        validate_predictions(pd.concat([preds, preds.iloc[:1]]))


def test_a_model_worse_than_the_majority_class_reads_as_worse() -> None:
    """Issue 15.2: a significant two-sided p for a model BELOW the majority class is worded "worse than majority",
    never as a win, both from the result and from evaluation.json read back (and from a file written before the
    test was the stats PairedTest, whose keys were ``accuracy_diff`` and ``p_value_bootstrap``)."""
    from finmlops.stats import describe_comparison

    rng = np.random.default_rng(5)
    dates = np.repeat(pd.bdate_range("2020-01-01", periods=600), 5)
    y = (rng.random(len(dates)) < 0.56).astype(int)
    base = {"date": dates, "ticker": np.tile(list("ABCDE"), 600), "fold": 0, "y_true": y, "ret_next": 0.0}
    frame = pd.concat(
        [
            pd.DataFrame(base | {"model": "majority", "prob_up": 0.6}),
            pd.DataFrame(base | {"model": "coin", "prob_up": rng.random(len(dates))}),
        ]
    )
    result = evaluate_predictions(frame, baselines=["majority"], boot=BootstrapConfig(n_boot=300, block_len=5))
    test = result.models["coin"].vs_baselines["majority"]
    text = describe_comparison(test.comparison("accuracy", "majority"))
    assert test.difference < 0 and test.p_value < 0.05
    assert text.startswith("worse than majority (accuracy -0.") and "two-sided" in text
    written = json_safe(result.model_dump())["models"]["coin"]["vs_baselines"]["majority"]
    assert describe_comparison(BaselineTest.model_validate(written).comparison("accuracy", "majority")) == text
    old = {"accuracy_diff": test.difference, "ci_low": test.ci_low, "ci_high": test.ci_high,
           "p_value_bootstrap": test.p_value, "comparison": {"metric": "accuracy"}, "n_rows": test.n_rows}  # fmt: skip
    assert describe_comparison(BaselineTest.model_validate(old).comparison("accuracy", "majority")) == text


def test_within_date_auc_ignores_market_timing_and_pools_pairs_by_date() -> None:
    from finmlops.evaluation.metrics import within_date_auc
    from finmlops.stats.bootstrap import BootstrapConfig as Boot

    rng = np.random.default_rng(0)
    dates = np.repeat(pd.bdate_range("2021-01-04", periods=200), 10)
    market = np.repeat(rng.random(200) < 0.5, 10)
    # Labels follow the market on most dates; a score that knows only the market orders no ticker within a date.
    y = np.where(rng.random(dates.size) < 0.8, market, ~market).astype(int)
    rows = pd.DataFrame({"date": dates, "ticker": np.tile(list("ABCDEFGHIJ"), 200), "y_true": y})
    boot = Boot(n_boot=200, block_len=5, seed=1)
    timing = within_date_auc(rows.assign(prob_up=np.where(market, 0.6, 0.4)), boot)
    assert timing.value == pytest.approx(0.5) and timing.contains(0.5)
    # A score that sees the labels orders every pair of every date.
    assert within_date_auc(rows.assign(prob_up=y + 0.01 * rng.random(y.size)), boot).value == 1.0
    # It is the pair-weighted mean of the per-date Mann-Whitney AUCs.
    rows = rows.assign(prob_up=rng.random(y.size) + 0.3 * y)
    per_date = [
        (sum((a > b) + 0.5 * (a == b) for a in g.prob_up[g.y_true == 1] for b in g.prob_up[g.y_true == 0]),
         (g.y_true == 1).sum() * (g.y_true == 0).sum())
        for _, g in rows.groupby("date")
    ]  # fmt: skip
    expected = sum(u for u, _ in per_date) / sum(n for _, n in per_date)
    assert within_date_auc(rows, boot).value == pytest.approx(expected, rel=1e-12)
