"""MLflow tracking on a real sqlite backend: experiments, what a training run records, listing, unreachable URIs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from finmlops.cli import app
from finmlops.features.registry import FEATURE_SETS, REGISTRY, feature_names, feature_set_version
from finmlops.settings import Settings
from finmlops.tracking import (
    TrackingError,
    TrainedNetwork,
    configure_tracking,
    ensure_experiment,
    list_runs,
    log_evaluation,
    log_ingestion,
    log_training_run,
)


def test_default_backend_is_the_workspace(settings: Settings) -> None:
    assert configure_tracking(settings) == f"sqlite:///{settings.home.resolve() / 'mlflow.db'}"
    experiment = mlflow.get_experiment(ensure_experiment(settings, "training"))
    assert experiment.artifact_location == (settings.home.resolve() / "mlartifacts" / "training").as_uri()
    assert ensure_experiment(settings, "training") == experiment.experiment_id
    with pytest.raises(ValueError, match="unknown experiment 'nope'"):
        ensure_experiment(settings, "nope")


def test_training_run_records_everything(
    settings: Settings, trained: Any, predictions: Callable[..., pd.DataFrame], tmp_path: Path
) -> None:
    windows = trained.windows
    result = tmp_path / "evaluation.json"
    result.write_text(json.dumps({"accuracy": 0.51}))
    run_id = log_training_run(
        settings, variant="baseline", params={"variant": {"hidden_size": 8, "lr": 0.002}, "train": {"epochs": 3}},
        feature_set="basic", feature_names=list(windows.feature_names), data_hash="d" * 64,
        epoch_losses={"train_loss": [0.70, 0.69, 0.68], "val_loss": [0.70, 0.695, 0.697]},
        fold_metrics=[{"accuracy": 0.50}, {"accuracy": 0.53}], metrics={"accuracy": 0.515, "auc": float("nan")},
        dataset=pd.DataFrame(windows.X[:, -1, :], columns=list(windows.feature_names)),
        predictions=predictions(windows, "baseline", 0.55, seed=1), artifacts=[result],
        trained=TrainedNetwork(trained.network, trained.scaler, windows.X[:64], "2021-01-15", "2022-12-30"),
    )  # fmt: skip
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    assert run.data.params["variant.hidden_size"] == "8" and run.data.params["train.epochs"] == "3"
    assert run.data.params["feature_set"] == "basic"
    assert run.data.metrics["accuracy"] == 0.515 and "auc" not in run.data.metrics  # NaN is not logged
    assert [m.value for m in client.get_metric_history(run_id, "epoch/val_loss")] == [0.70, 0.695, 0.697]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "fold/accuracy")] == [(0, 0.5), (1, 0.53)]
    assert run.data.tags["finmlops.data_hash"] == "d" * 64 and run.data.tags["finmlops.version.finmlops"]
    assert run.data.tags["finmlops.git_commit"] != ""
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest and dataset_input.dataset.name == "basic-features-dddddddddddd"
    artifacts = {a.path for a in client.list_artifacts(run_id)} | {
        a.path for d in ("results", "walk_forward") for a in client.list_artifacts(run_id, d)
    }
    assert {"features.json", "results/evaluation.json", "walk_forward/predictions.parquet"} <= artifacts
    card = mlflow.models.get_model_info(run.data.tags["finmlops.model_uri"]).metadata["finmlops"]
    assert card["feature_names"] == list(windows.feature_names) and card["seq_len"] == 10
    assert card["train_start"] == "2021-01-15" and card["walk_forward"] == {"accuracy": 0.515}
    assert card["feature_set_version"] == feature_set_version("basic") == run.data.tags["finmlops.feature_set_version"]
    assert len(card["feature_set_version"]) == 12 and int(card["feature_set_version"], 16) >= 0


def test_feature_set_version_follows_the_definitions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same declarations, same version; a changed formula or window of one feature in the set changes it."""
    before = {s: feature_set_version(s) for s in FEATURE_SETS}
    assert len(set(before.values())) == len(FEATURE_SETS)
    name = feature_names("basic")[0]
    original = REGISTRY[name]
    monkeypatch.setitem(REGISTRY, name, replace(original, formula=original.formula + " + 0"))
    assert feature_set_version("basic") != before["basic"]
    monkeypatch.setitem(REGISTRY, name, replace(original, window=original.window + 1))
    assert feature_set_version("basic") != before["basic"]
    monkeypatch.setitem(REGISTRY, name, original)
    assert feature_set_version("basic") == before["basic"]


def test_list_runs_newest_first(settings: Settings) -> None:
    log_ingestion(
        settings, tickers=["AAPL", "MSFT"], start="2021-01-01", end="2022-12-31", source="snapshot",
        dataset_hash="a" * 64, n_rows=1000, warnings=["AAPL: 1 zero-volume day"],
    )  # fmt: skip
    log_evaluation(settings, name="evaluate-baseline", metrics={"accuracy": 0.52, "brier": 0.249}, data_hash="a" * 64)
    runs = list_runs(settings)
    assert [r["experiment"] for r in runs] == ["evaluation", "ingestion"]
    assert runs[0]["metrics"] == {"accuracy": 0.52, "brier": 0.249} and runs[1]["data_hash"] == "a" * 64
    assert [r["name"] for r in list_runs(settings, "ingestion", limit=5)] == ["ingest-snapshot"]
    cli = CliRunner().invoke(app, ["runs", "--experiment", "evaluation", "--json"])
    assert cli.exit_code == 0, cli.output
    assert [r["metrics"]["accuracy"] for r in json.loads(cli.stdout)["runs"]] == [0.52]


def test_unreachable_server_fails_fast_naming_the_uri(port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"http://127.0.0.1:{port}"
    start = time.monotonic()
    with pytest.raises(TrackingError, match=f"{uri} is unreachable"):
        configure_tracking(Settings(mlflow_tracking_uri=uri))
    assert time.monotonic() - start < 5
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    start = time.monotonic()
    cli = CliRunner().invoke(app, ["runs"])
    assert cli.exit_code == 1 and time.monotonic() - start < 5
    assert uri in cli.output and "Traceback" not in cli.output


@pytest.mark.parametrize("scheme", ["postgresql", "postgresql+psycopg2"])
def test_unreachable_database_fails_fast_naming_the_uri(
    scheme: str, port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A closed local port: one error line naming the URI (password redacted) in seconds, not a psycopg import
    traceback (``postgresql://`` means psycopg 3 to SQLAlchemy 2.1) nor MLflow's minutes of retries."""
    uri = f"{scheme}://user:secret@127.0.0.1:{port}/db"
    start = time.monotonic()
    with pytest.raises(TrackingError, match=r"127\.0\.0\.1.*is unusable: OperationalError") as raised:
        configure_tracking(Settings(home=tmp_path, mlflow_tracking_uri=uri))
    assert "secret" not in str(raised.value) and "user:***@" in str(raised.value)
    assert time.monotonic() - start < 8
    monkeypatch.setenv("FINMLOPS_HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    start = time.monotonic()
    cli = CliRunner().invoke(app, ["runs"])
    assert cli.exit_code == 1 and time.monotonic() - start < 8, cli.output
    assert f"127.0.0.1:{port}/db" in cli.output and "Traceback" not in cli.output and "secret" not in cli.output


@pytest.mark.slow
@pytest.mark.integration
def test_a_real_postgresql_tracking_uri_works_as_given(postgres: str, tmp_path: Path) -> None:
    """``postgresql://`` (psycopg 3 to SQLAlchemy 2.1; only psycopg2 is installed) tracks runs as given."""
    settings = Settings(home=tmp_path, mlflow_tracking_uri=postgres)
    assert configure_tracking(settings).startswith("postgresql")
    run_id = log_evaluation(settings, name="pg", metrics={"accuracy": 0.5}, data_hash=None)
    assert [r["run_id"] for r in list_runs(settings, "evaluation")] == [run_id]


def test_database_without_its_driver_is_named(tmp_path: Path) -> None:
    with pytest.raises(TrackingError, match=r"mssql\+nodriver://h/db is unusable"):
        configure_tracking(Settings(home=tmp_path, mlflow_tracking_uri="mssql+nodriver://h/db"))


def test_uncreatable_sqlite_folder_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(TrackingError, match="cannot create"):
        configure_tracking(Settings(mlflow_tracking_uri=f"sqlite:///{blocker}/sub/mlflow.db"))


def test_predictions_frame_is_checked(settings: Settings) -> None:
    with pytest.raises(ValueError, match=r"lacks columns \['prob_up'"):
        log_training_run(
            settings, variant="baseline", params={}, feature_set="basic", feature_names=["a"], data_hash=None,
            predictions=pd.DataFrame({"date": [], "ticker": [], "model": [], "y_true": np.array([])}),
        )  # fmt: skip
