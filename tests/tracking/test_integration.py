"""Against real services on loopback: an ``mlflow server`` as the tracking backend, and ``mlflow models serve``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
import torch

from finmlops.settings import Settings
from finmlops.tracking import TrainedNetwork, list_runs, log_training_run

# Each starts a server (15-25 s on a 2-core machine), so both are also slow.
pytestmark = [pytest.mark.integration, pytest.mark.slow]
MLFLOW = str(Path(sys.executable).with_name("mlflow"))


def wait_for(url: str, proc: subprocess.Popen[bytes], timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with code {proc.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} not healthy after {timeout_s} s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no output)"


def serve(args: list[str], health: str, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    # `mlflow models serve` execs `uvicorn` through bash: the virtualenv's bin must be on PATH.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = os.environ | {"MLFLOW_DISABLE_TELEMETRY": "true", "PATH": path}
    # Its own process group: the server's workers are stopped with it, by the group id of the process we started.
    log = cwd / f"{Path(args[0]).name}-{args[1]}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # 15-25 s on a quiet 2-core machine; CI machines can be busier than that.
        wait_for(health, proc, 150, log)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


@pytest.fixture
def server(tmp_path: Path, port: int) -> Iterator[str]:
    args = [
        MLFLOW, "server", "--workers", "1", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
        "--default-artifact-root", str(tmp_path / "server-artifacts"),
    ]  # fmt: skip
    yield from (f"http://127.0.0.1:{port}" for _ in serve(args, f"http://127.0.0.1:{port}/health", tmp_path))


def test_tracking_server_backend(server: str, trained: Any, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", mlflow_tracking_uri=server)
    run_id = log_training_run(
        settings, variant="baseline", params={"lr": 0.002}, feature_set="basic",
        feature_names=list(trained.windows.feature_names), data_hash="c" * 64, metrics={"accuracy": 0.51},
        trained=TrainedNetwork(trained.network, trained.scaler, trained.windows.X[:8]),
    )  # fmt: skip
    assert [r["run_id"] for r in list_runs(settings)] == [run_id]
    assert not (tmp_path / "home" / "mlartifacts").exists()  # the server owns the artifacts
    model_uri = mlflow.MlflowClient().get_run(run_id).data.tags["finmlops.model_uri"]
    x = trained.windows.X[:6]
    with torch.no_grad():
        want = torch.sigmoid(trained.network(torch.from_numpy(trained.scaler.transform(x)))).numpy().reshape(-1, 1)
    np.testing.assert_allclose(mlflow.pyfunc.load_model(model_uri).predict(x), want, atol=1e-5)


def test_models_serve_answers_the_same_probabilities(settings: Settings, trained: Any, port: int) -> None:
    run_id = log_training_run(
        settings, variant="baseline", params={}, feature_set="basic",
        feature_names=list(trained.windows.feature_names), data_hash=None,
        trained=TrainedNetwork(trained.network, trained.scaler, trained.windows.X[:8]),
    )  # fmt: skip
    local = mlflow.artifacts.download_artifacts(mlflow.MlflowClient().get_run(run_id).data.tags["finmlops.model_uri"])
    args = [MLFLOW, "models", "serve", "-m", local, "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    x = trained.windows.X[-5:]
    for _ in serve(args, f"http://127.0.0.1:{port}/ping", settings.home):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=json.dumps({"inputs": x.tolist()}).encode(),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as response:
            got = np.asarray(json.loads(response.read())["predictions"], dtype=np.float32)
    with torch.no_grad():
        want = torch.sigmoid(trained.network(torch.from_numpy(trained.scaler.transform(x)))).numpy().reshape(-1, 1)
    np.testing.assert_allclose(got, want, atol=1e-5)
