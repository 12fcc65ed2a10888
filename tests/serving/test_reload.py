"""Hot reload against a real sqlite MLflow registry: when the champion alias moves, no request fails."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
from finmlops_testing import wait_until
from finmlops_testing.serving import Client, serve, tiny_onnx, tiny_reference, v2_body

from finmlops.contract import OnnxExport
from finmlops.serving.app import ServingApp
from finmlops.serving.config import default_config, parse_config
from finmlops.serving.models import Registry
from finmlops.tracking.packaging import ModelCard, log_onnx_model

NAME = "baseline-predictor"


def _register(folder: Path, bias: float) -> str:
    """Log a tiny finmlops pyfunc model and register it as a new version of NAME; returns the version."""
    graph = tiny_onnx(folder / f"m{bias}.onnx", 10, 4, bias=bias)
    card = ModelCard(variant="baseline", feature_set="basic", feature_names=["a", "b", "c", "d"], seq_len=10,
                     data_hash=f"hash-{bias}")  # fmt: skip
    with mlflow.start_run():  # the registry test's experiment (set in the fixture)
        info = log_onnx_model(OnnxExport(graph, 10, 4, 0.0, 0), card, np.zeros((2, 10, 4), np.float32), NAME)
    return str(info.registered_model_version)


@pytest.fixture()
def registry(tmp_path: Path) -> tuple[Registry, Path]:
    """A fresh sqlite registry whose artifacts stay under tmp_path."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.create_experiment("serving-tests", artifact_location=(tmp_path / "artifacts").as_uri())
    mlflow.set_experiment("serving-tests")
    return Registry(uri, tmp_path / "cache"), tmp_path


def test_alias_move_swaps_the_model_under_load_without_a_failed_request(registry: tuple[Registry, Path]) -> None:
    reg, tmp = registry
    v1 = _register(tmp, 0.0)
    reg.client.set_registered_model_alias(NAME, "champion", v1)
    config = default_config(reg.champions())
    assert [m.source for m in config.models] == [f"models:/{NAME}@champion"] and config.experiments == []
    config = parse_config({**config.model_dump(mode="json"), "server": {"reload_interval_s": 0.2}})
    app = ServingApp(config, registry=reg, request_log=None)
    x = np.random.default_rng(3).normal(size=(1, 10, 4)).astype(np.float32)
    seen: list[tuple[int, str, float]] = []
    stop = threading.Event()

    with serve(app) as base:

        def hammer() -> None:
            client = Client(base)
            while not stop.is_set():
                status, body, _ = client.request("POST", f"/v2/models/{NAME}/infer", v2_body(x))
                seen.append((status, body.get("model_version", ""), body.get("outputs", [{}])[0].get("data", [0])[0]))

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for t in threads:
            t.start()
        wait_until(lambda: len(seen) >= 10, timeout=120, what="v1 answering the first requests")
        v2 = _register(tmp, 1.0)
        reg.client.set_registered_model_alias(NAME, "champion", v2)
        wait_until(lambda: any(v == v2 for _, v, _ in seen[-5:]), timeout=120, what=f"the swap to version {v2}")
        # enough answers after the swap that "it stays swapped" is checked on data, not on a guessed pause
        wait_until(lambda: sum(v == v2 for _, v, _ in seen) >= 30, timeout=120, what=f"30 answers from version {v2}")
        stop.set()
        for t in threads:
            t.join()
        metrics: Any = Client(base).request("GET", "/metrics")[1]
    assert seen and all(status == 200 for status, _, _ in seen)
    versions = [v for _, v, _ in seen]
    assert versions[0] == v1 and versions[-1] == v2
    first = versions.index(v2)
    assert all(v == v2 for v in versions[first + len(threads) :])  # once swapped, it stays swapped
    by_version = {v: p for _, v, p in seen}
    assert by_version[v1] == pytest.approx(float(tiny_reference(x, 0.0)[0, 0]), abs=1e-6)
    assert by_version[v2] == pytest.approx(float(tiny_reference(x, 1.0)[0, 0]), abs=1e-6)
    assert f'finmlops_model_info{{data_hash="hash-1.0",model="{NAME}",version="{v2}"}} 1.0' in metrics
    assert f'version="{v1}"' not in metrics.split("finmlops_model_info", 1)[1]
