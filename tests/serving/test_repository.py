"""The model repository extension over REST (``POST /v2/repository/index``, ``/v2/repository/models/{name}/load``
and ``/unload``, as Triton and MLServer define them): admin token only, and load/unload under concurrent REST and
gRPC load with no failed request."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from finmlops_testing.serving import Client, ab_config, serve, tiny_onnx, v2_body

from finmlops.serving.app import ServingApp
from finmlops.serving.config import parse_config
from finmlops.serving.requestlog import read_admin_log

SHAPE = (10, 35)
ADMIN = "admin-token-0123456789"


def _app(tmp: Path, **auth: Any) -> ServingApp:
    a, b = tiny_onnx(tmp / "a.onnx", *SHAPE), tiny_onnx(tmp / "b.onnx", *SHAPE, bias=1.0)
    raw = ab_config(a, b)
    raw["models"].append({"name": "solo", "source": str(tiny_onnx(tmp / "solo.onnx", *SHAPE, bias=-1.0))})
    raw["auth"] = auth
    return ServingApp(parse_config(raw), registry=None, request_log=tmp / "requests.db")


def test_repository_api_is_admin_only_and_off_without_a_token(tmp_path: Path) -> None:
    with serve(_app(tmp_path)) as base:
        status, body, _ = Client(base).request("POST", "/v2/repository/index", {})
        assert status == 403 and "admin_tokens" in body["error"]
    with serve(_app(tmp_path, admin_tokens={"ops": ADMIN})) as base:
        client = Client(base)
        assert client.request("POST", "/v2/repository/models/solo/unload")[0] == 401
        assert client.request("GET", "/v2/repository/index", headers={"Authorization": f"Bearer {ADMIN}"})[0] == 405


def test_index_unload_load(tmp_path: Path) -> None:
    app = _app(tmp_path, admin_tokens={"ops": ADMIN})
    auth = {"Authorization": f"Bearer {ADMIN}"}
    x = np.ones((1, *SHAPE), np.float32)
    with serve(app) as base:
        client = Client(base)
        status, index, _ = client.request("POST", "/v2/repository/index", headers=auth)  # no body: all models
        assert status == 200
        assert {(m["name"], m["version"], m["state"]) for m in index} == {
            ("baseline-predictor", "1", "READY"), ("enhanced-predictor", "1", "READY"), ("solo", "1", "READY"),
        }  # fmt: skip
        status, body, _ = client.request("POST", "/v2/repository/models/baseline-predictor/unload", headers=auth)
        assert status == 409 and "financial-ab-test-experiment" in body["error"]  # an arm: change the experiment first
        assert client.request("POST", "/v2/repository/models/nope/load", headers=auth)[0] == 404

        assert client.request("POST", "/v2/repository/models/solo/unload", headers=auth)[:2] == (200, {})
        status, body, _ = client.request("POST", "/v2/models/solo/infer", v2_body(x))
        assert status == 404 and "unknown model 'solo'" in body["error"]
        ready = client.request("POST", "/v2/repository/index", {"ready": True}, headers=auth)[1]
        assert "solo" not in {m["name"] for m in ready}
        everything = client.request("POST", "/v2/repository/index", {"ready": False}, headers=auth)[1]
        assert {m["name"]: m["state"] for m in everything}["solo"] == "UNAVAILABLE"
        assert "solo" not in client.request("GET", "/metrics")[1].split("finmlops_model_info")[-1].split("# HELP")[0]

        assert client.request("POST", "/v2/repository/models/solo/load", headers=auth)[0] == 200
        assert client.request("POST", "/v2/models/solo/infer", v2_body(x))[0] == 200
    admin = read_admin_log(app.request_log.path)
    changes = [(row.who, row.change) for row in admin.itertuples()]
    assert [c for w, c in changes if w == "ops" and '"repository"' in c] == [
        '{"repository":"unload","model":"solo","versions":["1"]}',
        '{"repository":"load","model":"solo","versions":["1"]}',
    ]


def test_load_and_unload_under_concurrent_rest_and_grpc_load_fail_no_request(tmp_path: Path) -> None:
    """8 REST and 4 gRPC clients call the experiment and the model being reloaded while an operator reloads it
    5 times and unloads and reloads another: every one of their requests is answered 200."""
    grpc = pytest.importorskip("grpc", reason="the gRPC clients need grpcio (the serve extra)")
    from finmlops.serving.protos import grpc_predict_v2_pb2 as pb
    from finmlops.serving.protos import grpc_predict_v2_pb2_grpc as pb_grpc

    app = _app(tmp_path, admin_tokens={"ops": ADMIN})
    auth = {"Authorization": f"Bearer {ADMIN}"}
    x = np.random.default_rng(0).normal(size=(1, *SHAPE)).astype(np.float32)
    stop = threading.Event()
    results: list[tuple[str, int]] = []
    lock = threading.Lock()
    answered = [0]  # requests answered so far, by all clients

    def note_answer() -> None:
        with lock:
            answered[0] += 1

    def wait_for_answers(n: int) -> None:
        """Until ``n`` more requests have been answered (the clients are running), or fail after 60 s."""
        target, deadline = answered[0] + n, time.monotonic() + 60
        while answered[0] < target:
            assert time.monotonic() < deadline, f"only {answered[0]} requests answered"
            time.sleep(0.01)

    with serve(app, grpc=True) as base:

        def rest_client(path: str) -> None:
            client, seen = Client(base), []
            while not stop.is_set():
                seen.append(("rest", client.request("POST", path, v2_body(x))[0]))
                note_answer()
            with lock:
                results.extend(seen)

        def grpc_client(model: str) -> None:
            stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{app.grpc_port}"))
            tensor = pb.ModelInferRequest.InferInputTensor(name="input_data", datatype="FP32", shape=x.shape)
            request = pb.ModelInferRequest(model_name=model, inputs=[tensor], raw_input_contents=[x.tobytes()])
            seen = []
            while not stop.is_set():
                try:
                    stub.ModelInfer(request, timeout=30)
                    seen.append(("grpc", 200))
                except grpc.RpcError as exc:
                    seen.append(("grpc", exc.code().value[0]))
                note_answer()
            with lock:
                results.extend(seen)

        paths = ["/v2/models/baseline-predictor/infer", "/v2/models/enhanced-predictor/infer"] * 4
        threads = [threading.Thread(target=rest_client, args=(p,)) for p in paths]
        threads += [
            threading.Thread(target=grpc_client, args=(m,)) for m in ("baseline-predictor", "enhanced-predictor")
        ]
        threads += [
            threading.Thread(target=grpc_client, args=(m,)) for m in ("baseline-predictor", "enhanced-predictor")
        ]
        for t in threads:
            t.start()
        operator = Client(base)
        wait_for_answers(50)  # every kind of client is in flight before the first load
        for _ in range(5):
            for name in ("baseline-predictor", "enhanced-predictor"):
                assert operator.request("POST", f"/v2/repository/models/{name}/load", headers=auth)[0] == 200
        assert operator.request("POST", "/v2/repository/models/solo/unload", headers=auth)[0] == 200
        assert operator.request("POST", "/v2/repository/models/solo/load", headers=auth)[0] == 200
        wait_for_answers(50)  # and still answering after the last one
        stop.set()
        for t in threads:
            t.join(timeout=60)
    failed = [r for r in results if r[1] != 200]
    assert len(results) > 200 and {p for p, _ in results} == {"rest", "grpc"}
    assert failed == [], f"{len(failed)} of {len(results)} requests failed during load/unload: {failed[:5]}"
