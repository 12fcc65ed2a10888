"""Issue 11.6: no command, log line or workspace file shows the password of the tracking URI."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from finmlops_testing.serving import free_port, tiny_onnx

from finmlops.contract import OnnxExport
from finmlops.data import load_snapshot
from finmlops.serving.batching import ArrivalGate
from finmlops.serving.config import parse_config
from finmlops.serving.models import ModelStore, Registry
from finmlops.tracking.backend import redact
from finmlops.tracking.packaging import ModelCard, log_onnx_model

SECRET = "s3cr3t"
URIS = (f"postgresql://u:{SECRET}@127.0.0.1:1/db", f"http://u:{SECRET}@127.0.0.1:1")


def test_redact_hides_every_password_in_a_message() -> None:
    text = f"API request to http://u:p@{SECRET}@127.0.0.1:1/api failed; also postgresql://me:{SECRET}@db:5432/x"
    out = redact(text)
    assert SECRET not in out and "http://u:***@127.0.0.1:1/api" in out and "postgresql://me:***@db:5432/x" in out
    assert redact("http://host:5000/x sqlite:///a/b.db") == "http://host:5000/x sqlite:///a/b.db"


@pytest.mark.slow
@pytest.mark.parametrize("uri", URIS, ids=["postgresql", "http"])
def test_commands_against_a_uri_with_a_password_never_show_it(uri: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    csvs = tmp_path / "csv"
    csvs.mkdir()
    load_snapshot(["AAPL"]).get("AAPL").to_csv(csvs / "AAPL.csv")
    env = {
        **os.environ,
        "FINMLOPS_HOME": str(home),
        "MLFLOW_TRACKING_URI": uri,
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    commands = [
        ["serve", "--port", str(free_port())],
        ["ingest", "--source", "csv", "--data-dir", str(csvs)],
        ["train", "--variant", "baseline"],
        ["predict", "--model", "baseline-predictor", "--data", str(csvs)],
    ]
    for args in commands:
        done = subprocess.run(
            [sys.executable, "-c", "from finmlops.cli import main; main()", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        output = done.stdout + done.stderr
        assert done.returncode != 0, f"{args[0]} should fail against a dead tracking URI: {output}"
        assert SECRET not in output, f"finmlops {args[0]} printed the password:\n{output}"
        assert "u:***@127.0.0.1:1" in output, f"finmlops {args[0]} should name the (redacted) URI:\n{output}"
    leaked = [p for p in home.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert not leaked, f"the workspace holds the password in {leaked}"


def test_reload_warning_is_redacted_and_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registry that goes away after start-up: every poll fails, one warning line, password redacted."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("secrets", (tmp_path / "art").as_uri()))
    graph = tiny_onnx(tmp_path / "m.onnx", 10, 4)
    card = ModelCard(variant="baseline", feature_set="basic", feature_names=list("abcd"), seq_len=10, data_hash="h")
    with mlflow.start_run():
        info = log_onnx_model(OnnxExport(graph, 10, 4, 0.0, 0), card, np.zeros((2, 10, 4), np.float32), "m-predictor")
    registry = Registry(uri, tmp_path / "cache")
    registry.client.set_registered_model_alias("m-predictor", "champion", str(info.registered_model_version))
    config = parse_config({"models": [{"name": "m", "source": "models:/m-predictor@champion"}]})
    store = ModelStore(config.server, registry, ArrivalGate())
    store.load_all(config.models)
    dead = URIS[1]
    registry.client, registry.uri = mlflow.MlflowClient(tracking_uri=dead, registry_uri=dead), dead
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with caplog.at_level(logging.DEBUG, logger="finmlops.serving"):
        for _ in range(3):
            assert store.poll() == []
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "still serving version 1" in warnings[0].getMessage() and "u:***@127.0.0.1:1" in warnings[0].getMessage()
    assert all(SECRET not in r.getMessage() for r in caplog.records)
