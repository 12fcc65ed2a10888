"""Other projects' gRPC clients, unchanged, against a real finmlops server: ``tritonclient.grpc`` and MLServer's
generated types (``mlserver.grpc.dataplane_pb2``).

Both define protobuf package ``inference`` as the server's own stubs do, and one process cannot hold two files with
the same symbols, so each client runs in its own Python process (the server runs here, on 127.0.0.1). MLServer
1.7.1 needs a venv of its own (uvloop<0.22): the one ``bench/serve.py`` builds (``build/serve-bench/mlserver-venv``)
or ``$FINMLOPS_MLSERVER_PYTHON``; the test skips, naming it, when there is none.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("grpc", reason="the gRPC transport needs grpcio (the serve extra)")

from finmlops_testing.serving import AB, ab_config, serve, tiny_onnx, tiny_reference

from finmlops.serving.app import ServingApp
from finmlops.serving.config import parse_config

ADMIN = "admin-token-0123456789"
ROOT = Path(__file__).resolve().parents[2]
MLSERVER_PYTHON = Path(
    os.environ.get("FINMLOPS_MLSERVER_PYTHON", ROOT / "build" / "serve-bench" / "mlserver-venv" / "bin" / "python")
)

TRITON = r"""
import json, sys
import numpy as np
import tritonclient.grpc as g
from tritonclient.utils import InferenceServerException
target, token, experiment = sys.argv[1:4]
c = g.InferenceServerClient(target)
out = {"live": c.is_server_live(), "ready": c.is_server_ready(), "model_ready": c.is_model_ready("solo")}
out["extensions"] = list(c.get_server_metadata().extensions)
meta = c.get_model_metadata("solo")
out["inputs"] = [[t.name, t.datatype, list(t.shape)] for t in meta.inputs]
x = np.linspace(-1, 1, 350, dtype=np.float32).reshape(1, 10, 35)
inp = g.InferInput("input_data", [1, 10, 35], "FP32")
inp.set_data_from_numpy(x)
r = c.infer("solo", [inp], request_id="triton-1", outputs=[g.InferRequestedOutput("prob_up")])
out["solo"] = r.as_numpy("prob_up").tolist()
out["id"] = r.get_response().id
r = c.infer("ignored", [inp], headers={"seldon-model": experiment + ".experiment",
                                       "x-seldon-route": ":enhanced-predictor_1:"})
out["pinned"] = [r.get_response().model_name, r.as_numpy("prob_up").tolist()]
try:
    c.infer("nope", [inp])
except InferenceServerException as e:
    out["unknown"] = [e.status(), e.message()]
admin = {"authorization": "Bearer " + token}
try:
    c.get_model_repository_index()
except InferenceServerException as e:
    out["no_token"] = e.status()
out["index"] = sorted([m.name, m.state] for m in c.get_model_repository_index(headers=admin).models)
c.unload_model("solo", headers=admin)
out["after_unload"] = c.is_model_ready("solo")
c.load_model("solo", headers=admin)
out["after_load"] = c.is_model_ready("solo")
print(json.dumps(out))
"""

MLSERVER = r"""
import json, sys
import grpc
import numpy as np
from mlserver.grpc import dataplane_pb2 as pb, dataplane_pb2_grpc as pbg
target = sys.argv[1]
stub = pbg.GRPCInferenceServiceStub(grpc.insecure_channel(target))
x = np.linspace(-1, 1, 350, dtype=np.float32).reshape(1, 10, 35)
out = {"live": stub.ServerLive(pb.ServerLiveRequest()).live,
       "model_ready": stub.ModelReady(pb.ModelReadyRequest(name="solo")).ready}
typed = pb.ModelInferRequest(model_name="solo", inputs=[pb.ModelInferRequest.InferInputTensor(
    name="input_data", datatype="FP32", shape=[1, 10, 35], contents=pb.InferTensorContents(fp32_contents=x.ravel()))])
r = stub.ModelInfer(typed)
out["typed"] = list(r.outputs[0].contents.fp32_contents)
raw = pb.ModelInferRequest(model_name="solo", inputs=[pb.ModelInferRequest.InferInputTensor(
    name="input_data", datatype="FP32", shape=[1, 10, 35])], raw_input_contents=[x.tobytes()])
out["raw"] = np.frombuffer(stub.ModelInfer(raw).raw_output_contents[0], "<f4").tolist()
short = pb.InferTensorContents(fp32_contents=x.ravel()[:175])
bad = pb.ModelInferRequest(model_name="solo", inputs=[pb.ModelInferRequest.InferInputTensor(
    name="input_data", datatype="FP32", shape=[1, 5, 35], contents=short)])
try:
    stub.ModelInfer(bad)
except grpc.RpcError as e:
    out["bad"] = [e.code().name, e.details()]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("clients")
    a, b = tiny_onnx(tmp / "a.onnx", 10, 35), tiny_onnx(tmp / "b.onnx", 10, 35, bias=1.0)
    raw = ab_config(a, b)
    raw["models"].append({"name": "solo", "source": str(tiny_onnx(tmp / "solo.onnx", 10, 35, bias=-1.0))})
    raw["auth"] = {"admin_tokens": {"ops": ADMIN}}
    app = ServingApp(parse_config(raw), registry=None, request_log=None)
    with serve(app, grpc=True):
        yield app


def _run(python: str | Path, script: str, *args: str) -> dict[str, Any]:
    done = subprocess.run([str(python), "-c", script, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


X = np.linspace(-1, 1, 350, dtype=np.float32).reshape(1, 10, 35)


def test_tritonclient_grpc_unchanged(server: Any) -> None:
    pytest.importorskip("tritonclient", reason="tritonclient[grpc] (the dev extra)")
    out = _run(sys.executable, TRITON, f"127.0.0.1:{server.grpc_port}", ADMIN, AB)
    assert out["live"] and out["ready"] and out["model_ready"] and "model_repository" in out["extensions"]
    assert out["inputs"] == [["input_data", "FP32", [-1, 10, 35]]]
    np.testing.assert_allclose(out["solo"], tiny_reference(X, bias=-1.0), rtol=1e-5)
    assert out["id"] == "triton-1"
    assert out["pinned"][0] == "enhanced-predictor"
    np.testing.assert_allclose(out["pinned"][1], tiny_reference(X, bias=1.0), rtol=1e-5)
    assert out["unknown"][0] == "StatusCode.NOT_FOUND" and "unknown model 'nope'" in out["unknown"][1]
    assert out["no_token"] == "StatusCode.UNAUTHENTICATED"
    assert out["index"] == [["baseline-predictor", "READY"], ["enhanced-predictor", "READY"], ["solo", "READY"]]
    assert out["after_unload"] is False and out["after_load"] is True


def test_mlserver_grpc_types(server: Any) -> None:
    if not MLSERVER_PYTHON.exists():
        pytest.skip(f"no MLServer 1.7.1 venv at {MLSERVER_PYTHON} (python bench/serve.py builds it)")
    out = _run(MLSERVER_PYTHON, MLSERVER, f"127.0.0.1:{server.grpc_port}")
    assert out["live"] and out["model_ready"]
    np.testing.assert_allclose(out["typed"], tiny_reference(X, bias=-1.0).ravel(), rtol=1e-5)
    np.testing.assert_allclose(out["raw"], tiny_reference(X, bias=-1.0).ravel(), rtol=1e-5)
    assert out["bad"][0] == "INVALID_ARGUMENT" and "input 'input_data'" in out["bad"][1]
