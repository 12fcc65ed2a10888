"""Helpers for the serving tests (imported by name: conftest.py puts this folder on sys.path)."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from finmlops.serving.server import free_port, running_server

serve = running_server  # the tests' name for it
__all__ = ["free_port", "serve"]

# ../shared beside the repository root (the same layout in CI).
BENCH_BUILD = Path(__file__).resolve().parents[3] / "shared" / "bench" / "serve_build_model.py"
SHAPE = (10, 35)  # the shared bench model and the original clients: [batch, 10, 35]


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
