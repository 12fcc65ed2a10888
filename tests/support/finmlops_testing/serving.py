"""Helpers for the serving tests: real ONNX graphs, a keep-alive HTTP client, V2 bodies and the A/B config."""

from __future__ import annotations

import http.client
import json
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from finmlops.serving.server import free_port, running_server
from finmlops_testing import wait_until

serve = running_server  # the tests' name for it
__all__ = ["free_port", "serve"]

SHAPE = (10, 35)  # the original clients' windows: [batch, 10, 35]


def lstm_onnx(path: Path, seed: int, hidden_size: int = 32) -> Path:
    """A seeded, randomly initialised 2-layer ``LSTMNet`` exported by finmlops' own ``export_onnx``.

    Identity scaling, so the graph is ``input_data`` float32 ``[batch, 10, 35]`` -> ``prob_up`` ``[batch, 1]``;
    the export checks torch/onnxruntime parity itself. Seeds 0 and 1 give the two A/B arms.
    """
    # torch: imported here so that the serving helpers the torch-free tests use stay light.
    import torch

    from finmlops.models.networks import LSTMNet
    from finmlops.tracking.onnx_export import export_onnx

    torch.manual_seed(seed)
    network = LSTMNet(SHAPE[1], hidden_size, num_layers=2, dropout=0.0).eval()
    scaler = SimpleNamespace(mean_=np.zeros(SHAPE[1]), scale_=np.ones(SHAPE[1]))
    windows = np.random.default_rng(seed).normal(size=(64, *SHAPE)).astype(np.float32)
    return export_onnx(network, scaler, windows, path).path


def tiny_onnx(path: Path, seq_len: int, n_features: int, bias: float = 0.0, output: str = "prob_up") -> Path:
    """A small real graph: sigmoid(mean over features, weighted over time, + bias); ``[n, S, F] -> [n, 1]``."""
    weights = np.linspace(-1.0, 1.0, seq_len, dtype=np.float32).reshape(seq_len, 1)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input_data"], ["m"], axes=[2], keepdims=0),
            helper.make_node("MatMul", ["m", "w"], ["z"]),
            helper.make_node("Add", ["z", "b"], ["zb"]),
            helper.make_node("Sigmoid", ["zb"], [output]),
        ],
        "tiny",
        [helper.make_tensor_value_info("input_data", TensorProto.FLOAT, ["batch", seq_len, n_features])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", 1])],
        initializer=[
            helper.make_tensor("w", TensorProto.FLOAT, [seq_len, 1], weights.ravel().tolist()),
            helper.make_tensor("b", TensorProto.FLOAT, [1], [bias]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def carded_model(folder: Path, variant: str, bias: float = 0.0) -> Path:
    """``tiny_onnx`` as wide as ``variant``'s feature set, with the model card ``finmlops export`` writes beside it,
    so that the server computes that set from raw OHLCV; returns the folder (a ``source`` for serving.yaml)."""
    from finmlops.features import feature_names
    from finmlops.models.variants import get_variant
    from finmlops.tracking.packaging import CARD_FILE

    config = get_variant(variant)
    names = feature_names(config.feature_set)
    tiny_onnx(folder / "model.onnx", config.seq_len, len(names), bias=bias)
    card = {"variant": variant, "feature_set": config.feature_set, "feature_names": names, "seq_len": config.seq_len}
    (folder / CARD_FILE).write_text(json.dumps(card))
    return folder


def tiny_reference(x: np.ndarray, bias: float = 0.0) -> np.ndarray:
    """What ``tiny_onnx`` computes, in numpy: ``[n, S, F] -> [n, 1]``."""
    weights = np.linspace(-1.0, 1.0, x.shape[1], dtype=np.float32)
    return 1.0 / (1.0 + np.exp(-(x.mean(axis=2) @ weights + bias)))[:, None]


class Client:
    """A keep-alive HTTP/1.1 JSON client (standard library, so nothing between the test and the wire)."""

    def __init__(self, base: str) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, raw: bytes | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        """``(status, parsed JSON or text, lower-cased response headers)``."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        hdrs = {"Content-Type": "application/json"} if data is not None and raw is None else {}
        hdrs.update(headers or {})
        self.conn.request(method, path, body=data, headers=hdrs)
        response = self.conn.getresponse()
        payload = response.read()
        if response.getheader("Connection", "").lower() == "close":
            self.conn.close()
        resp_headers = {k.lower(): v for k, v in response.getheaders()}
        try:
            parsed: Any = json.loads(payload)
        except ValueError:
            parsed = payload.decode("latin-1")
        return response.status, parsed, resp_headers


def wait_ready(base: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 60.0) -> None:
    """Wait until the server at ``base`` answers ``/v2/health/ready`` with 200; fails at once if ``proc`` (the
    server's process, when it is one) exits first."""

    def ready() -> bool:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the server at {base} exited with code {proc.returncode} before it was ready")
        try:
            return Client(base).request("GET", "/v2/health/ready")[0] == 200
        except OSError:
            return False

    wait_until(ready, timeout=timeout, what=f"{base}/v2/health/ready", interval=0.1)


def shadow_registered(app: Any, request_id: str, model: str, timeout: float = 10.0) -> None:
    """Wait until ``model``'s shadow answer to ``request_id`` reaches ``app``'s feedback ledger (it is scored after
    the served answer went out, so a test that sends feedback right away must wait for this event)."""
    entries = app.ledger._entries
    wait_until(
        lambda: request_id in entries and model in entries[request_id].shadows,
        timeout=timeout, what=f"the shadow prediction of {model} for {request_id!r} in the feedback ledger",
    )  # fmt: skip


def settle(client: Client) -> None:
    """Return once the server has delivered the events (metrics, request-log rows, ledger) of every request this
    client has had an answer to. The data plane publishes an event on the event loop's next turn, before the loop
    reads another request, so one more round trip is a barrier: no sleep."""
    client.request("GET", "/v2/health/live")


def v2_body(x: np.ndarray, **extra: Any) -> dict[str, Any]:
    """The original clients' request: one ``input_data`` FP32 tensor, flat data."""
    return {
        "inputs": [{"name": "input_data", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}],
        **extra,
    }


AB = "financial-ab-test-experiment"


def ab_config(baseline: Path, enhanced: Path, **server: Any) -> dict[str, Any]:
    """The original deployment: two models and the 70/30 experiment with baseline as default."""
    return {
        "models": [
            {"name": "baseline-predictor", "source": str(baseline)},
            {"name": "enhanced-predictor", "source": str(enhanced)},
        ],
        "experiments": [
            {
                "name": AB,
                "default": "baseline-predictor",
                "candidates": [
                    {"name": "baseline-predictor", "weight": 70},
                    {"name": "enhanced-predictor", "weight": 30},
                ],
            }
        ],
        "server": server,
    }
