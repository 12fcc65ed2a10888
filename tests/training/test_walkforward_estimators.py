"""The walk-forward fits the papers' tree estimators beside baselines, on the cross-sectional label, on yearly folds
and on Fischer & Krauss's study periods, serially and (slow) as Ray tasks with the same bytes.

On a 25-ticker slice of ../shared's S&P 500 set (skipped, naming ../shared, when it is absent).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from finmlops_testing.universe import SLICE, sp500_dir

from finmlops.data.csv_source import load_csv_folder
from finmlops.executor import ExecutorConfig, RayConfig
from finmlops.features.target import LabelSpec
from finmlops.training import walk_forward_predictions

CROSS = LabelSpec(kind="cross_sectional")


@pytest.fixture(scope="module")
def universe() -> dict[str, pd.DataFrame]:
    return load_csv_folder(sp500_dir(), SLICE, start=date(2016, 1, 1), end=date(2021, 4, 21))


def _run(universe: dict[str, pd.DataFrame], **kwargs: object) -> pd.DataFrame:
    args: dict[str, object] = {
        "variants": [], "baselines": ["majority", "reversal", "random"], "estimators": ["kdh_gbt"],
        "test_years": [2020], "threads": 1, "progress": False, "label": CROSS,
    }  # fmt: skip
    return walk_forward_predictions(universe, **(args | kwargs))  # type: ignore[arg-type]


def test_kdh_gbt_on_the_cross_sectional_label_scores_every_row_of_the_baselines(
    universe: dict[str, pd.DataFrame],
) -> None:
    preds = _run(universe)
    assert set(preds["model"]) == {"majority", "reversal", "random", "kdh_gbt"}
    by_model = {m: g[["date", "ticker"]].reset_index(drop=True) for m, g in preds.groupby("model")}
    assert all(frame.equals(by_model["kdh_gbt"]) for frame in by_model.values())
    gbt = preds[preds["model"] == "kdh_gbt"]
    assert gbt["fold"].unique().tolist() == ["2020"] and gbt["date"].dt.year.eq(2020).all()
    assert gbt["prob_up"].between(0, 1).all() and gbt["prob_up"].nunique() > 100
    # The label beats the day's median: about half of each day's tickers, whatever the market did.
    daily = gbt.groupby("date")["y_true"].mean()
    assert daily.between(0.3, 0.7).all() and abs(daily.mean() - 0.5) < 0.03
    assert preds.attrs["label"]["kind"] == "cross_sectional"
    assert {f["model"] for f in preds.attrs["fit_seconds"]} == {"majority", "reversal", "random", "kdh_gbt"}


def test_estimator_params_change_the_forest_and_a_typo_fails_before_any_fit(
    universe: dict[str, pd.DataFrame],
) -> None:
    def forest(trees: int) -> pd.Series:
        preds = _run(universe, baselines=["majority"], estimators=["kdh_rf"],
                     estimator_params={"kdh_rf": {"n_estimators": trees, "max_depth": 4}})  # fmt: skip
        return preds.loc[preds["model"] == "kdh_rf", "prob_up"].reset_index(drop=True)

    three, again, five = forest(3), forest(3), forest(5)
    assert three.equals(again) and not three.equals(five)
    with pytest.raises(ValueError, match="kdh_rf has no hyperparameter trees"):
        _run(universe, estimators=["kdh_rf"], estimator_params={"kdh_rf": {"trees": 3}})


def test_the_ensembles_members_take_their_own_params() -> None:
    from finmlops.training.walkforward import estimator, train_config

    ensemble = estimator("kdh_ensemble", train_config(epochs=1, seed=1, threads=1),
                         {"kdh_rf": {"n_estimators": 7}, "kdh_gbt": {"n_estimators": 9}})  # fmt: skip
    _, gbt, rf = ensemble.members  # type: ignore[attr-defined]
    assert (gbt.model.n_estimators, rf.model.n_estimators) == (9, 7)


def test_the_ensemble_beside_its_members_is_their_mean_and_the_same_as_refitting_them(
    universe: dict[str, pd.DataFrame],
) -> None:
    small = {"kdh_rf": {"n_estimators": 5, "max_depth": 4}}
    alone = _run(universe, baselines=["majority"], estimators=["kdh_ensemble"], estimator_params=small, epochs=1)
    beside = _run(universe, variants=["kdh_dnn"], baselines=["majority"], epochs=1, estimator_params=small,
                  estimators=["kdh_gbt", "kdh_rf", "kdh_ensemble"])  # fmt: skip
    refit = alone[alone["model"] == "kdh_ensemble"].reset_index(drop=True)
    mean = beside[beside["model"] == "kdh_ensemble"].reset_index(drop=True)
    assert len(mean) == len(refit) > 1000
    np.testing.assert_array_equal(mean["prob_up"].to_numpy(), refit["prob_up"].to_numpy())
    members = beside[beside["model"].isin(["kdh_dnn", "kdh_gbt", "kdh_rf"])].pivot_table(
        index=["date", "ticker"], columns="model", values="prob_up"
    )
    np.testing.assert_allclose(mean.set_index(["date", "ticker"])["prob_up"], members.mean(axis=1), rtol=1e-12)
    seconds = {f["model"]: f["seconds"] for f in beside.attrs["fit_seconds"]}
    assert seconds["kdh_ensemble"] == 0.0 and seconds["kdh_rf"] > 0  # not fitted a second time


def test_study_periods_trade_blocks_of_trade_days_after_the_training_block(universe: dict[str, pd.DataFrame]) -> None:
    preds = _run(universe, baselines=["majority"], study_periods=(500, 120), val_frac=0.2, test_years=[2020])
    folds = preds[preds["model"] == "kdh_gbt"].groupby("fold")["date"]
    assert list(folds.groups) == sorted(folds.groups) and all(f.startswith("sp") for f in folds.groups)
    assert all(d.min().year == 2020 for _, d in folds)  # each kept period starts trading in a test year
    assert all(d.nunique() <= 120 for _, d in folds) and max(d.nunique() for _, d in folds) == 120
    starts = sorted(d.min() for _, d in folds)
    ends = sorted(d.max() for _, d in folds)
    assert all(end < nxt for end, nxt in zip(ends, starts[1:], strict=False))  # blocks follow without overlap
    with pytest.raises(ValueError, match="no study period"):
        _run(universe, baselines=["majority"], study_periods=(500, 120), test_years=[2016])


@pytest.mark.slow
def test_estimators_on_ray_give_the_serial_bytes(
    universe: dict[str, pd.DataFrame], local_ray: None, tmp_path: Path
) -> None:
    from finmlops.evaluation.workspace import write_parquet_atomic
    from finmlops.provenance import file_sha256

    serial = _run(universe, test_years=[2019, 2020])
    distributed = _run(universe, test_years=[2019, 2020], executor=ExecutorConfig(kind="ray", ray=RayConfig()))
    digests = [file_sha256(write_parquet_atomic(p, tmp_path / f"{i}.parquet")) for i, p in enumerate((serial,
               distributed))]  # fmt: skip
    assert digests[0] == digests[1]
    assert np.array_equal(serial["prob_up"].to_numpy(), distributed["prob_up"].to_numpy())
