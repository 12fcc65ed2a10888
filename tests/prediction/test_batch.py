"""``finmlops predict``: CSVs written here (a training ticker, an unseen one, one too short), every model
reference form, the realised metrics, and clear errors for missing, corrupt and cross-asset cases."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from finmlops.cli import app
from finmlops.data import load_snapshot
from finmlops.features import compute_features, feature_names, make_target, make_windows
from finmlops.prediction.batch import PredictionReport, min_history, prediction_windows, registry_uri
from finmlops.settings import Settings
from finmlops.tracking import TrainedNetwork, export_model, log_training_run
from finmlops.tracking.onnx_export import ProbabilityModel, torch_probabilities
from finmlops.tracking.packaging import CARD_FILE, ModelCard


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    out = frame.rename(columns={"adj_close": "Adj Close"}).rename(columns=str.title)
    out.index = out.index.strftime("%Y-%m-%d")
    out.to_csv(path, index_label="Date")


@pytest.fixture
def csv_dir(tmp_path: Path) -> Path:
    """AAPL (a training ticker) and NVDA (never seen) over 2023, XOM with 20 rows only."""
    folder = tmp_path / "csv"
    folder.mkdir()
    for ticker, frame in load_snapshot(["AAPL", "NVDA"], date(2023, 1, 1), date(2023, 12, 31)).items():
        _write_csv(frame, folder / f"{ticker}.csv")
    _write_csv(load_snapshot(["XOM"], date(2023, 12, 1), date(2023, 12, 31))["XOM"].iloc[:20], folder / "XOM.csv")
    return folder


@pytest.fixture
def champion(settings: Settings, trained: Any, predictions: Any) -> dict[str, Any]:
    """The conftest's small baseline network, logged, registered as baseline-predictor v1 and made champion."""
    w = trained.windows
    run_id = log_training_run(
        settings, variant="baseline", params={"hidden_size": 8}, feature_set="basic",
        feature_names=list(w.feature_names), data_hash="d" * 64, predictions=predictions(w, "baseline", 0.55, 1),
        trained=TrainedNetwork(trained.network, trained.scaler, w.X[:256]), register=True,
    )  # fmt: skip
    mlflow.MlflowClient().set_registered_model_alias("baseline-predictor", "champion", "1")
    return {"run_id": run_id, "network": trained.network, "scaler": trained.scaler}


def _predict(*args: str) -> Any:
    return CliRunner().invoke(app, ["predict", *args, "--n-boot", "200"])


def test_predict_scores_unseen_tickers_with_the_training_feature_path(
    champion: dict[str, Any], csv_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "preds.csv"
    result = _predict("--model", "baseline-predictor@champion", "--data", str(csv_dir), "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    report = PredictionReport.model_validate_json(result.stdout)
    preds = pd.read_csv(out, parse_dates=["date"])
    assert list(preds.columns) == ["date", "ticker", "prob_up", "pred_up", "y_true"]
    assert set(preds["ticker"]) == {"AAPL", "NVDA"} and report.rows == len(preds)

    # Independent recomputation: snapshot features -> windows -> torch graph with the same scaler.
    universe = load_snapshot(["AAPL", "NVDA"], date(2023, 1, 1), date(2023, 12, 31))
    windows = make_windows(compute_features(universe, "basic"), None, 10, require_target=False)
    expected = torch_probabilities(ProbabilityModel(champion["network"], champion["scaler"].mean_,
                                                    champion["scaler"].scale_), windows.X)[:, 0]  # fmt: skip
    assert len(windows) == len(preds)
    np.testing.assert_allclose(preds["prob_up"], expected, atol=1e-5)
    assert (preds["pred_up"] == (preds["prob_up"] > 0.5)).all()

    # y_true is the realised next-day direction: empty on each ticker's last day (no next close in the file) and
    # on unchanged closes, as make_target.
    target = make_target(universe).reindex(pd.MultiIndex.from_frame(preds[["date", "ticker"]]))
    np.testing.assert_array_equal(preds["y_true"].to_numpy(float), target.to_numpy())
    assert preds.loc[preds["date"] == pd.Timestamp("2023-12-29"), "y_true"].isna().all()
    known = preds["y_true"].notna()

    realised = report.realised
    assert realised is not None
    accuracy = float((preds.loc[known, "pred_up"] == preds.loc[known, "y_true"]).mean())
    assert realised.n == known.sum() and realised.accuracy.value == pytest.approx(accuracy)
    assert realised.accuracy.ci_low < accuracy < realised.accuracy.ci_high
    up = preds.loc[known, "y_true"].mean()
    assert realised.majority_class_rate == pytest.approx(max(up, 1 - up))

    skipped = {s.ticker: s for s in report.skipped}
    need = min_history(ModelCard(variant="baseline", feature_set="basic", feature_names=["x"], seq_len=10))
    assert skipped["XOM"].windows == 0 and skipped["XOM"].first_usable is None
    assert f">= {need} rows" in skipped["XOM"].reason
    assert skipped["AAPL"].skipped == need - 1
    assert skipped["AAPL"].first_usable == preds.loc[preds["ticker"] == "AAPL", "date"].min().date()

    text = _predict("--model", "baseline-predictor@champion", "--data", str(csv_dir), "--out", str(out))
    assert "skipped: XOM: 20 of 20 rows" in text.output and "majority class" in text.output


def test_too_little_history_is_an_error_saying_how_many_rows(champion: dict[str, Any], tmp_path: Path) -> None:
    """One 20-row file: exit 1 with the rows needed and had, no "0 predictions ... (None to None)", no file."""
    folder = tmp_path / "short"
    folder.mkdir()
    _write_csv(load_snapshot(["XOM"], date(2023, 12, 1), date(2023, 12, 31))["XOM"].iloc[:20], folder / "XOM.csv")
    out = tmp_path / "preds.csv"
    result = _predict("--model", "baseline-predictor@champion", "--data", str(folder), "--out", str(out))
    need = min_history(ModelCard(variant="baseline", feature_set="basic", feature_names=["x"], seq_len=10))
    text = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert f"needs at least {need} rows of history per ticker" in text and "XOM has 20" in text
    assert "None" not in text and "Traceback" not in text and not out.exists()


def test_every_model_reference_gives_the_same_predictions(
    champion: dict[str, Any], csv_dir: Path, tmp_path: Path
) -> None:
    exported = export_model("models:/baseline-predictor/1", "triton", tmp_path / "triton")
    refs = ["models:/baseline-predictor@champion", "baseline-predictor/1", f"runs:/{champion['run_id']}/model",
            str(exported)]  # fmt: skip
    frames = []
    for i, ref in enumerate(refs):
        out = tmp_path / f"p{i}.csv"
        result = _predict("--model", ref, "--data", str(csv_dir), "--out", str(out), "--json")
        assert result.exit_code == 0, f"{ref}: {result.output}"
        frames.append(pd.read_csv(out))
    for frame in frames[1:]:
        pd.testing.assert_frame_equal(frame, frames[0])
    assert registry_uri("m@champion") == "models:/m@champion" and registry_uri("m/2") == "models:/m/2"
    assert registry_uri("runs:/abc/model") == "runs:/abc/model" and registry_uri("baseline") == "baseline"


def test_missing_or_corrupt_models_are_one_clear_error(champion: dict[str, Any], csv_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.csv"
    out.write_text("old\n")
    missing = _predict("--model", "baseline-predictor@nobody", "--data", str(csv_dir), "--out", str(out))
    assert missing.exit_code == 1 and "baseline-predictor@nobody" in missing.output
    exported = export_model("baseline-predictor", "mlserver", tmp_path / "mlserver")
    (exported / "model.onnx").write_bytes(b"not a graph")
    corrupt = _predict("--model", str(exported), "--data", str(csv_dir), "--out", str(out))
    assert corrupt.exit_code == 1 and "corrupt ONNX" in corrupt.output and "model.onnx" in corrupt.output
    assert out.read_text() == "old\n"  # a failed run leaves the old output alone
    nothing = _predict("--model", str(tmp_path), "--data", str(csv_dir), "--out", str(out))
    assert nothing.exit_code == 1 and "neither an MLflow model" in nothing.output


def test_unreachable_tracking_server_is_named_fast(
    csv_dir: Path, tmp_path: Path, port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    result = _predict("--model", "baseline-predictor@champion", "--data", str(csv_dir), "--out", str(tmp_path / "p"))
    assert result.exit_code == 1 and f"http://127.0.0.1:{port}" in result.output


def test_cross_asset_features_need_the_universe(tmp_path: Path) -> None:
    card = ModelCard(variant="advanced", feature_set="advanced", feature_names=feature_names("advanced"), seq_len=5)
    universe = load_snapshot(["AAPL", "MSFT"], date(2022, 1, 1), date(2023, 12, 31))
    with pytest.raises(ValueError, match=r"cross-asset features .*only AAPL"):
        prediction_windows({"AAPL": universe["AAPL"]}, card)
    windows, notes = prediction_windows(universe, card)
    assert len(windows) > 0 and "over the 2 tickers in the folder: AAPL, MSFT" in notes[0]
    # With both tickers the market features match the ones computed for training on the same universe.
    expected = make_windows(compute_features(universe, "advanced"), None, 5, require_target=False)
    np.testing.assert_array_equal(windows.X, expected.X)


def test_exported_card_must_be_readable(champion: dict[str, Any], csv_dir: Path, tmp_path: Path) -> None:
    exported = export_model("baseline-predictor", "triton", tmp_path / "t")
    (exported / CARD_FILE).write_text("{")
    result = _predict("--model", str(exported), "--data", str(csv_dir), "--out", str(tmp_path / "p.csv"))
    assert result.exit_code == 1 and "unreadable model card" in result.output
