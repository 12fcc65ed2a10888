"""The pipeline commands log to MLflow: ingest, train (registered as the challenger) and evaluate (per-fold
metrics, tables and plots); --no-track logs nothing; an unreachable tracking server is one clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from typer.testing import CliRunner

from finmlops.cli import app
from finmlops.evaluation.results import EvaluationResult
from finmlops.features.registry import feature_set_version
from finmlops.settings import Settings
from finmlops.tracking import list_runs, log_evaluation_result
from finmlops.tracking.runs import PREDICTIONS_SHA_TAG as SHA_TAG
from finmlops.training.results import TrainRun

INGEST = ["ingest", "--tickers", "AAPL,JPM,XOM", "--start", "2016-01-01", "--end", "2019-12-31"]


def _run(*args: str) -> dict:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _artifacts(run_id: str, folder: str | None = None) -> set[str]:
    return {a.path for a in mlflow.MlflowClient().list_artifacts(run_id, folder)}


def test_ingest_train_and_evaluate_are_tracked(settings: Settings, tmp_path: Path) -> None:
    report = _run(*INGEST, "--json")  # --json still tracks; stdout stays one JSON document
    (ingestion,) = list_runs(settings, "ingestion")
    run = mlflow.MlflowClient().get_run(ingestion["run_id"])
    assert run.data.params["tickers"] == "AAPL,JPM,XOM" and run.data.params["source"] == "snapshot"
    assert ingestion["data_hash"] == report["dataset_hash"] and run.data.metrics["n_rows"] == 3 * 1006

    train = ("train", "--variant", "baseline", "--epochs", "2", "--threads", "1", "--json")
    result = TrainRun.model_validate(_run(*train))
    assert result.mlflow is not None
    assert result.mlflow.model == "baseline-predictor" and result.mlflow.version == 1
    assert result.mlflow.alias == "challenger" and result.mlflow.champion is None
    client = mlflow.MlflowClient()
    run = client.get_run(result.mlflow.run_id)
    assert run.data.params["variant.hidden_size"] == "32" and run.data.params["train.epochs"] == "2"
    assert run.data.tags["finmlops.data_hash"] == report["dataset_hash"] and run.data.tags["finmlops.git_commit"]
    losses = [m.value for m in client.get_metric_history(run.info.run_id, "epoch/val_loss")]
    assert losses == pytest.approx([h["val_loss"] for h in result.history])
    assert run.data.metrics["test_accuracy"] == pytest.approx(result.metrics.test.accuracy)
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.digest and dataset.dataset.name.startswith("basic-features-")
    assert {"features.json", "results", "walk_forward"} <= _artifacts(run.info.run_id)
    card = mlflow.models.get_model_info(run.data.tags["finmlops.model_uri"]).metadata["finmlops"]
    assert card["train_start"] == result.split.train.first and card["seq_len"] == 10
    version = client.get_model_version("baseline-predictor", "1")
    # The held-out test block, tagged as what it is: never as walk-forward evidence (issue 15.3).
    assert int(version.tags["test_rows"]) == result.windows.test and "wf_accuracy" not in version.tags
    assert float(version.tags["test_accuracy"]) == pytest.approx(result.metrics.test.accuracy, abs=1e-6)
    split = result.split.test
    assert version.tags["evidence"].startswith("test split, ") and version.tags["evidence"].endswith(split.last)
    assert client.get_registered_model("baseline-predictor").aliases == {"challenger": 1}

    text = CliRunner().invoke(app, ["train", "--variant", "baseline", "--epochs", "1", "--threads", "1", "--quiet"])
    assert text.exit_code == 0, text.output
    assert "registered baseline-predictor version 2 as challenger; no champion yet" in text.output
    assert "finmlops promote --model baseline-predictor --version 2 --alias champion" in text.output
    registered = CliRunner().invoke(app, ["register", "--variant", "baseline"])
    assert registered.exit_code == 0, registered.output
    assert "registered baseline-predictor version 3 (test-split accuracy 0." in registered.output
    assert "walk-forward" not in registered.output
    listing = CliRunner().invoke(app, ["models"])
    assert listing.output.count("test-split accuracy") == 3 and "walk-forward" not in listing.output

    evaluation = _run("evaluate", "--variant", "baseline", "--epochs", "1", "--folds", "2018-2019", "--n-boot", "100",
                      "--json")  # fmt: skip
    (logged,) = list_runs(settings, "evaluation")
    run_id = logged["run_id"]
    pooled = evaluation["models"]["baseline"]["pooled"]["accuracy"]
    assert logged["metrics"]["baseline/accuracy"] == pytest.approx(pooled["value"])
    assert logged["metrics"]["baseline/accuracy_ci_low"] == pytest.approx(pooled["ci_low"])
    history = client.get_metric_history(run_id, "fold/baseline/accuracy")
    folds = evaluation["models"]["baseline"]["folds"]
    assert [(m.step, m.value) for m in history] == [
        (int(f), pytest.approx(v["accuracy"]["value"])) for f, v in folds.items()
    ]
    files = _artifacts(run_id, "results")
    expected = {"evaluation.json", "evaluation.md", "predictions.parquet", "folds.csv", "calibration.csv"}
    assert {f"results/{name}" for name in expected | {"fold_accuracy.png", "calibration.png"}} <= files
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="results/folds.csv", dst_path=str(tmp_path))
    table = pd.read_csv(path)
    assert len(table) == 2 * len(evaluation["models"]) and set(table["fold"]) == {2018, 2019}
    sha = evaluation["predictions"]["sha256"]
    assert "results/backtest.json" not in files and client.get_run(run_id).data.tags[SHA_TAG] == sha
    assert card["feature_set_version"] == feature_set_version("basic")

    # backtest logs its own run, tagged with the SHA of the predictions it read
    backtest = _run("backtest", "--top-k", "1", "--json")
    logged = list_runs(settings, "evaluation")[0]
    assert logged["name"] == "backtest" and client.get_run(logged["run_id"]).data.tags[SHA_TAG] == sha
    sharpe = backtest["results"]["baseline"]["long_flat"]["sharpe"]
    assert logged["metrics"]["baseline/long_flat/sharpe"] == pytest.approx(sharpe)
    assert logged["metrics"]["buy_hold/sharpe"] == pytest.approx(backtest["benchmark"]["sharpe"])
    assert _artifacts(logged["run_id"], "results") == {"results/backtest.json"}
    # an evaluation of these same predictions attaches that backtest; a new evaluation (new predictions) does not
    attached = log_evaluation_result(settings, result=EvaluationResult.model_validate(evaluation))
    assert "results/backtest.json" in _artifacts(attached, "results")
    again = _run("evaluate", "--variant", "baseline", "--epochs", "1", "--folds", "2019", "--n-boot", "100", "--json")
    newest = list_runs(settings, "evaluation")[0]["run_id"]
    assert again["predictions"]["sha256"] != sha and client.get_run(newest).data.tags[SHA_TAG] != sha
    assert "results/backtest.json" not in _artifacts(newest, "results")


def test_no_track_logs_nothing(settings: Settings) -> None:
    _run(*INGEST, "--no-track", "--json")
    assert list_runs(settings) == []


def test_unreachable_tracking_server_fails_fast_naming_it(port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    started = time.monotonic()
    result = CliRunner().invoke(app, INGEST)
    assert result.exit_code == 1 and f"http://127.0.0.1:{port}" in result.output
    assert time.monotonic() - started < 10


def test_dead_tracking_server_stops_train_and_evaluate_before_the_work(
    settings: Settings, port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(*INGEST, "--no-track", "--json")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    for command in (["train", "--epochs", "1", "--threads", "1"], ["evaluate", "--epochs", "1", "--folds", "2019"]):
        started = time.monotonic()
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 1 and f"http://127.0.0.1:{port}" in result.output, result.output
        assert "--no-track" in result.output and "Traceback" not in result.output
        assert time.monotonic() - started < 5
    assert not (settings.results_dir / "train_baseline.json").exists()
    assert not (settings.results_dir / "evaluation.json").exists()


def test_parity_failure_in_train_is_one_error_line(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real export whose parity check cannot pass (tolerance -1): exit 1, one line, the result still written."""
    import finmlops.tracking.onnx_export as onnx_export

    _run(*INGEST, "--no-track", "--json")
    monkeypatch.setattr(onnx_export, "export_onnx", partial(onnx_export.export_onnx, tolerance=-1.0))
    result = CliRunner().invoke(app, ["train", "--epochs", "1", "--threads", "1", "--quiet"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "failed its parity check" in result.output and "max |dP(up)|" in result.output, result.output
    assert (settings.results_dir / "train_baseline.json").is_file()
    assert mlflow.MlflowClient().search_model_versions("name = 'baseline-predictor'") == []


def test_without_mlflow_tracking_is_skipped_with_one_line(settings: Settings) -> None:
    """A core install has no MLflow: the command says tracking is skipped and does its work (exit 0)."""
    code = f"""
import sys
sys.modules["mlflow"] = None  # import mlflow now raises ModuleNotFoundError, as without the package
from finmlops.cli import app
from finmlops.cli.common import track
from finmlops.settings import Settings
try:
    app({INGEST!r}, standalone_mode=False)
finally:
    print("track returned", track("ingestion", "log_ingestion", Settings(), tickers=[], start=None, end=None,
                                  source="snapshot", dataset_hash="x"))
"""
    env = {**os.environ, "FINMLOPS_HOME": str(settings.home), "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "tracking skipped: mlflow is not installed" in done.stderr
    assert "tracking ingestion skipped: mlflow is not installed" in done.stderr and "track returned None" in done.stdout
    assert "Traceback" not in done.stderr and (settings.data_dir).is_dir()
