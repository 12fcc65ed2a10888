"""A changed label reaches every command: evaluate, backtest, explain --global, champions, predict, tune and the
audit all learn, score, trade and record the settings' label (here horizon 5), not the default one.

Tiny data (2 tickers, 2016-2019, one test year, 1 epoch); it lives beside the MLflow fixtures that tune and the
champions' registration need."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from finmlops.data import DataStore, load_snapshot
from finmlops.evaluation.audit import Audit
from finmlops.evaluation.backtest import BacktestConfig
from finmlops.evaluation.metrics import BootstrapConfig
from finmlops.evaluation.workspace import run_backtest_workspace, run_evaluation
from finmlops.features import LabelSpec, forward_return, label_from_settings, make_target
from finmlops.models.variants import get_variant
from finmlops.monitoring.explain import run_global_importance
from finmlops.prediction.batch import predict_folder
from finmlops.settings import Settings
from finmlops.tracking.packaging import fetch_model, read_model
from finmlops.workflow.champions import register_final_model

H5 = LabelSpec(horizon=5)
BOOT = BootstrapConfig(n_boot=50, block_len=5, seed=0)
YEAR = 2019


@pytest.fixture
def universe() -> dict[str, pd.DataFrame]:
    return load_snapshot(["AAPL", "JPM"], start=date(2016, 1, 1), end=date(2019, 12, 31))


@pytest.fixture
def h5(settings: Settings, universe: dict[str, pd.DataFrame]) -> Settings:
    DataStore(settings.data_dir).write(universe, "snapshot")
    return settings.model_copy(update={"horizon": 5, "threads": 1})


def _keys(frame: pd.DataFrame) -> pd.MultiIndex:
    return pd.MultiIndex.from_arrays([pd.DatetimeIndex(frame["date"]), frame["ticker"]])


def _write_csvs(universe: dict[str, pd.DataFrame], folder: Path) -> Path:
    folder.mkdir()
    for ticker, frame in universe.items():
        out = frame.rename(columns={"adj_close": "Adj Close"}).rename(columns=str.title)
        out.index = out.index.strftime("%Y-%m-%d")
        out.to_csv(folder / f"{ticker}.csv", index_label="Date")
    return folder


def test_settings_build_the_label_in_one_place(h5: Settings) -> None:
    assert label_from_settings(h5) == H5
    assert label_from_settings(h5.model_copy(update={"execution": "open"})).execution == "open"


def test_every_command_follows_a_changed_horizon(
    h5: Settings, universe: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    # evaluate: y_true is the horizon-5 label and ret_next its traded return, recorded in evaluation.json.
    evaluation = run_evaluation(h5, variants=["lightweight"], epochs=1, seed=h5.seed, test_years=[YEAR], boot=BOOT,
                                progress=False)  # fmt: skip
    assert evaluation.label == H5 and evaluation.provenance.config["label"] == H5.model_dump()
    preds = pd.read_parquet(h5.results_dir / "predictions.parquet")
    keys = _keys(preds)
    np.testing.assert_array_equal(preds["y_true"], make_target(universe, H5).reindex(keys).to_numpy())
    np.testing.assert_allclose(preds["ret_next"], forward_return(universe, H5).reindex(keys).to_numpy())
    # The default label's targets differ: the setting is not silently ignored.
    assert not np.array_equal(preds["y_true"], make_target(universe).reindex(keys).to_numpy())

    # backtest: trades the 5-day traded return, rebalancing every 5 days.
    backtest = run_backtest_workspace(h5, BacktestConfig(strategies=("long_flat",)))
    assert backtest.config.label == H5 and backtest.config.periods_per_year == 252 / 5
    assert "held 5 trading day(s) to the close of t+6" in backtest.timing
    days = preds.loc[preds["model"] == "lightweight", "date"].nunique()
    assert backtest.results["lightweight"]["long_flat"].days == len(range(0, days, 5))

    # explain --global: the importance folds are fit and scored on the horizon-5 label.
    importance = run_global_importance(h5, "lightweight", test_years=[YEAR], epochs=1, n_repeats=1)
    assert importance.label == H5 and importance.provenance["config"]["label"] == H5.model_dump()
    wf = preds[preds["model"] == "lightweight"]
    assert importance.folds[0].n >= len(wf)  # the runner's rows, before the intersection with the baselines

    # champions: the final fit learns the horizon-5 label and its registered card says so.
    registered = register_final_model(
        h5, get_variant("lightweight"), label=H5, universe=universe, predictions=preds, evaluation=evaluation,
        data_hash="d" * 64, gap_seq_len=10, test_years=[YEAR], epochs=1,
    )  # fmt: skip
    assert registered.max_abs_diff_last_fold is not None and registered.max_abs_diff_last_fold < 1e-5
    card = read_model(fetch_model(f"{registered.name}/{registered.version}", tmp_path / "champion")).card
    assert (card.horizon, card.threshold, card.execution) == (5, 0.0, "close")

    # predict: the model card's label, not the settings' (here back at the default horizon).
    csvs = _write_csvs({t: f[f.index.year == YEAR] for t, f in universe.items()}, tmp_path / "csv")
    report = predict_folder(
        h5.model_copy(update={"horizon": 1}), f"{registered.name}/{registered.version}", csvs,
        tmp_path / "out.csv", boot=BOOT,
    )  # fmt: skip
    assert report.label == H5
    scored = pd.read_csv(tmp_path / "out.csv", parse_dates=["date"])
    year = {t: f[f.index.year == YEAR] for t, f in universe.items()}
    expected = make_target(year, H5).reindex(_keys(scored)).to_numpy()
    np.testing.assert_array_equal(scored["y_true"].to_numpy(dtype=float), expected)
    assert not np.array_equal(np.nan_to_num(expected, nan=-1), np.nan_to_num(
        make_target(year).reindex(_keys(scored)).to_numpy(), nan=-1))  # fmt: skip


def test_tune_fits_and_registers_the_settings_label(h5: Settings, universe: dict[str, pd.DataFrame]) -> None:
    import optuna

    from finmlops.tuning.search import default_storage, run_tuning

    report = run_tuning(h5, "lightweight", trials=1, folds=[YEAR], epochs=1)
    study = optuna.load_study(study_name=report.study, storage=default_storage(h5))
    assert study.user_attrs["finmlops"]["label"] == H5.model_dump()
    assert report.registered is not None
    card_dir = fetch_model(f"{report.registered.model}/{report.registered.version}", h5.home / "tuned")
    assert read_model(card_dir).card.horizon == 5
    # The trial's out-of-sample rows carry the horizon-5 label and its traded return.
    import mlflow

    from finmlops.tracking.registry import PREDICTIONS_ARTIFACT

    trial_run = study.best_trial.user_attrs["mlflow_run_id"]
    path = mlflow.artifacts.download_artifacts(run_id=trial_run, artifact_path=PREDICTIONS_ARTIFACT,
                                               dst_path=str(h5.home / "trial"))  # fmt: skip
    rows = pd.read_parquet(path)
    keys = _keys(rows)
    np.testing.assert_array_equal(rows["y_true"], make_target(universe, H5).reindex(keys).to_numpy())
    np.testing.assert_allclose(rows["ret_next"], forward_return(universe, H5).reindex(keys).to_numpy())


def test_the_audit_runs_on_the_settings_label(h5: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """``finmlops audit`` hands the settings' label to the audit, whose pipeline and Bayes rate then follow it."""
    import finmlops.evaluation.audit as audit
    import finmlops.evaluation.workspace as workspace
    from finmlops.evaluation.workspace import run_audit_workspace

    seen: dict[str, Any] = {}

    def fake_run_audit(snapshot: Any, predictor_for: Any, feature_fn: Any, config: Any) -> Audit:
        seen["config"] = config
        small = {t: f.iloc[-900:] for t, f in list(snapshot.items())[:2]}
        seen["preds"] = predictor_for([2022], None)(small)
        return Audit(passed=True, checks=[], config={"label": config.label.model_dump()}, bayes_accuracy=0.5)

    monkeypatch.setattr(workspace, "run_audit", fake_run_audit)
    result = run_audit_workspace(h5, quick=True, variants=[], epochs=1, seed=0, boot=BOOT)
    assert seen["config"].label == H5 and result.provenance["config"]["label"] == H5.model_dump()
    preds = seen["preds"]
    small = {t: f.iloc[-900:] for t, f in list(load_snapshot().items())[:2]}
    np.testing.assert_array_equal(preds["y_true"], make_target(small, H5).reindex(_keys(preds)).to_numpy())
    assert audit.bayes_accuracy(0.7, H5) < audit.bayes_accuracy(0.7) - 0.02


def test_train_fits_records_and_purges_by_the_label(h5: Settings, universe: dict[str, pd.DataFrame]) -> None:
    from finmlops.training.pipeline import run_training

    result = run_training(h5, "lightweight", epochs=1, device="cpu", verbosity="silent")
    saved = json.loads((h5.models_dir / "lightweight" / "config.json").read_text())
    assert result.label.model_dump() == saved["label"] == result.config["label"] == H5.model_dump()
    # The purge grows with the label's reach: seq_len + horizon + 1 = 16 trading days from the last training date
    # to the first validation date (12 with the default label).
    calendar = pd.DatetimeIndex(sorted(set().union(*(f.index for f in universe.values()))))
    split = result.split
    gap = calendar.get_loc(pd.Timestamp(split.val.first)) - calendar.get_loc(pd.Timestamp(split.train.last))
    assert gap > 16
