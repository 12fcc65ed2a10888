"""The gRPC transport against a real server on 127.0.0.1 (uvicorn + grpc.aio in one event loop), with the project's
own generated stubs (KServe's GRPCInferenceService): metadata, health, inference (raw and typed tensors), routing
through the experiment, the shared request log, feedback and metrics, error codes, auth, the repository RPCs.

tritonclient.grpc and MLServer's types define the same protobuf symbols (package ``inference``), so they cannot be
imported in this process beside the server: tests/serving/test_grpc_clients.py runs them against `finmlops serve`.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

grpc = pytest.importorskip("grpc", reason="the gRPC transport needs grpcio (the serve extra)")

from finmlops_testing.serving import AB, Client, ab_config, serve, settle, tiny_onnx, tiny_reference  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from finmlops.serving.app import ServingApp  # noqa: E402
from finmlops.serving.config import parse_config  # noqa: E402
from finmlops.serving.protos import grpc_predict_v2_pb2 as pb  # noqa: E402
from finmlops.serving.protos import grpc_predict_v2_pb2_grpc as pb_grpc  # noqa: E402
from finmlops.serving.requestlog import read_requests  # noqa: E402

SHAPE = (10, 35)
ADMIN = "admin-token-0123456789"
INFER = "infer-token-0123456789"


def _models(tmp: Path) -> tuple[Path, Path, Path]:
    return (
        tiny_onnx(tmp / "a.onnx", *SHAPE, bias=0.0),
        tiny_onnx(tmp / "b.onnx", *SHAPE, bias=1.0),
        tiny_onnx(tmp / "solo.onnx", *SHAPE, bias=-1.0),
    )


@pytest.fixture(scope="module")
def grpc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any, Any]]:
    """The A/B deployment plus a model outside the experiment, admin token set; yields (REST base, app, stub)."""
    tmp = tmp_path_factory.mktemp("grpc")
    a, b, solo = _models(tmp)
    raw = ab_config(a, b, max_body_bytes=64 * 1024)
    raw["models"].append({"name": "solo", "source": str(solo)})
    raw["auth"] = {"admin_tokens": {"ops": ADMIN}}
    app = ServingApp(parse_config(raw), registry=None, request_log=tmp / "requests.db")
    with serve(app, grpc=True) as base:
        channel = grpc.insecure_channel(f"127.0.0.1:{app.grpc_port}")
        yield base, app, pb_grpc.GRPCInferenceServiceStub(channel)
        channel.close()


def infer_request(x: np.ndarray, model: str = "baseline-predictor", raw: bool = True, **kw: Any) -> Any:
    tensor = pb.ModelInferRequest.InferInputTensor(name="input_data", datatype="FP32", shape=x.shape)
    request = pb.ModelInferRequest(model_name=model, inputs=[tensor], **kw)
    if raw:
        request.raw_input_contents.append(x.astype("<f4").tobytes())
    else:
        request.inputs[0].contents.fp32_contents.extend(x.ravel().tolist())
    return request


def output(response: Any) -> np.ndarray:
    out = response.outputs[0]
    if response.raw_output_contents:
        return np.frombuffer(response.raw_output_contents[0], "<f4").reshape(tuple(out.shape))
    return np.array(out.contents.fp32_contents, np.float32).reshape(tuple(out.shape))


def code_of(call: Any, *args: Any, **kw: Any) -> tuple[Any, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kw)
    return info.value.code(), info.value.details()


def test_health_and_metadata(grpc_server: tuple[str, Any, Any]) -> None:
    _, app, stub = grpc_server
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    meta = stub.ServerMetadata(pb.ServerMetadataRequest())
    assert meta.name == "finmlops" and "model_repository" in meta.extensions
    assert stub.ModelReady(pb.ModelReadyRequest(name="baseline-predictor")).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name="baseline-predictor", version="1")).ready
    model = stub.ModelMetadata(pb.ModelMetadataRequest(name="enhanced-predictor"))
    assert (model.name, list(model.versions), model.platform) == ("enhanced-predictor", ["1"], "onnxruntime_onnx")
    assert [(t.name, t.datatype, list(t.shape)) for t in model.inputs] == [("input_data", "FP32", [-1, *SHAPE])]
    code, details = code_of(stub.ModelMetadata, pb.ModelMetadataRequest(name="nope"))
    assert code == grpc.StatusCode.NOT_FOUND and "nope" in details and "baseline-predictor" in details
    assert code_of(stub.ModelReady, pb.ModelReadyRequest(name="nope"))[0] == grpc.StatusCode.NOT_FOUND

    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{app.grpc_port}"))
    serving = health_pb2.HealthCheckResponse.SERVING
    assert health.Check(health_pb2.HealthCheckRequest()).status == serving
    assert health.Check(health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService")).status == serving
    assert code_of(health.Check, health_pb2.HealthCheckRequest(service="other"))[0] == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("raw", [True, False], ids=["raw_input_contents", "fp32_contents"])
def test_infer_scores_the_model_and_answers_in_the_same_encoding(grpc_server: tuple[str, Any, Any], raw: bool) -> None:
    _, _, stub = grpc_server
    x = np.random.default_rng(0).normal(size=(3, *SHAPE)).astype(np.float32)
    # pinned to the baseline arm, so that the expected output is known
    response, call = stub.ModelInfer.with_call(
        infer_request(x, raw=raw, id="grpc-req-1"), metadata=(("x-seldon-route", ":baseline-predictor_1:"),)
    )
    assert (response.model_name, response.model_version, response.id) == ("baseline-predictor", "1", "grpc-req-1")
    assert bool(response.raw_output_contents) == raw
    np.testing.assert_allclose(output(response), tiny_reference(x, bias=0.0), rtol=1e-5)
    assert response.parameters["experiment"].string_param == AB
    assert response.parameters["arm"].string_param == "baseline-predictor"
    assert dict(call.trailing_metadata())["x-seldon-route"] == ":baseline-predictor_1:"


def test_experiment_routing_by_metadata_and_the_shared_log_feedback_and_metrics(
    grpc_server: tuple[str, Any, Any],
) -> None:
    base, app, stub = grpc_server
    x = np.random.default_rng(1).normal(size=(1, *SHAPE)).astype(np.float32)
    arms = {}
    for i in range(40):  # Seldon's experiment header as gRPC metadata: both arms answer, by the request id's hash
        response, call = stub.ModelInfer.with_call(
            infer_request(x, model="ignored", id=f"route-{i}"), metadata=(("seldon-model", f"{AB}.experiment"),)
        )
        arms[response.id] = response.model_name
        bias = 0.0 if response.model_name == "baseline-predictor" else 1.0
        np.testing.assert_allclose(output(response), tiny_reference(x, bias=bias), rtol=1e-5)
        assert dict(call.trailing_metadata())["x-seldon-route"] == f":{response.model_name}_1:"
    assert set(arms.values()) == {"baseline-predictor", "enhanced-predictor"}
    pinned = stub.ModelInfer(infer_request(x), metadata=(("x-seldon-route", ":enhanced-predictor_1:"),))
    assert pinned.model_name == "enhanced-predictor"

    client = Client(base)
    settle(client)  # the gRPC answers' events are delivered on the same loop as REST's
    status, body, _ = client.request("POST", "/v2/feedback", {"id": "route-0", "outcome": 1})
    assert status == 200 and body["counted"] and body["model"] == arms["route-0"]
    text = client.request("GET", "/metrics")[1]
    grpc_ok = re.findall(r'finmlops_requests_total\{arm="[\w-]+",experiment="' + AB + r'",model="[\w-]+",'
                         r'protocol="grpc",status="200"\} (\d+)\.0', text)  # fmt: skip
    assert sum(map(int, grpc_ok)) >= 41
    app.request_log.flush()
    rows = read_requests(app.request_log.path).set_index("id")
    assert rows.loc["route-0", "model"] == arms["route-0"] and rows.loc["route-0", "status"] == 200


def test_errors_have_grpc_codes_name_the_tensor_and_the_server_keeps_serving(
    grpc_server: tuple[str, Any, Any],
) -> None:
    base, _, stub = grpc_server
    x = np.ones((1, *SHAPE), np.float32)
    code, details = code_of(stub.ModelInfer, infer_request(x, model="nope"))
    assert code == grpc.StatusCode.NOT_FOUND and "unknown model 'nope'" in details

    wrong = np.ones((1, 5, 35), np.float32)
    code, details = code_of(stub.ModelInfer, infer_request(wrong, model="solo"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "input 'input_data'" in details and "[-1, 10, 35]" in details

    short = infer_request(x, model="solo")
    short.raw_input_contents[0] = b"\0" * 12
    code, details = code_of(stub.ModelInfer, short)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "input 'input_data'" in details and "1400 bytes" in details

    ints = pb.ModelInferRequest(model_name="solo", inputs=[{"name": "input_data", "datatype": "INT64", "shape": [1]}])
    code, details = code_of(stub.ModelInfer, ints)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "'INT64' is not supported" in details

    nan = x.copy()
    nan[0, 0, 0] = np.nan
    code, details = code_of(stub.ModelInfer, infer_request(nan, model="solo", raw=False))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "NaN" in details

    code, details = code_of(
        stub.ModelInfer, infer_request(x, model="solo", parameters={"as_of": {"string_param": "x"}})
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "as_of" in details

    big = np.ones((100, *SHAPE), np.float32)  # 140 kB > the server's 64 KiB max_body_bytes
    code, _ = code_of(stub.ModelInfer, infer_request(big, model="solo"))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED

    assert stub.ModelInfer(infer_request(x, model="solo")).model_name == "solo"  # good requests keep working
    assert Client(base).request("GET", "/v2/health/ready")[0] == 200


def test_repository_rpcs_need_the_admin_token_and_unload_then_load(grpc_server: tuple[str, Any, Any]) -> None:
    _, _, stub = grpc_server
    index = pb.RepositoryIndexRequest()
    assert code_of(stub.RepositoryIndex, index)[0] == grpc.StatusCode.UNAUTHENTICATED
    bad = (("authorization", "Bearer wrong-token-0123456789"),)
    assert code_of(stub.RepositoryIndex, index, metadata=bad)[0] == grpc.StatusCode.UNAUTHENTICATED
    auth = (("authorization", f"Bearer {ADMIN}"),)
    models = stub.RepositoryIndex(index, metadata=auth).models
    assert {(m.name, m.version, m.state) for m in models} == {
        ("baseline-predictor", "1", "READY"), ("enhanced-predictor", "1", "READY"), ("solo", "1", "READY"),
    }  # fmt: skip

    code, details = code_of(
        stub.RepositoryModelUnload, pb.RepositoryModelUnloadRequest(model_name="enhanced-predictor"), metadata=auth
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and AB in details  # an arm of the experiment
    no_such = pb.RepositoryModelLoadRequest(model_name="nope")
    assert code_of(stub.RepositoryModelLoad, no_such, metadata=auth)[0] == grpc.StatusCode.NOT_FOUND

    x = np.ones((1, *SHAPE), np.float32)
    stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="solo"), metadata=auth)
    assert not stub.ModelReady(pb.ModelReadyRequest(name="solo")).ready
    assert code_of(stub.ModelInfer, infer_request(x, model="solo"))[0] == grpc.StatusCode.NOT_FOUND
    state = {m.name: (m.state, m.reason) for m in stub.RepositoryIndex(index, metadata=auth).models}
    assert state["solo"][0] == "UNAVAILABLE" and "unloaded by ops" in state["solo"][1]
    ready_only = pb.RepositoryIndexRequest(ready=True)
    assert "solo" not in {m.name for m in stub.RepositoryIndex(ready_only, metadata=auth).models}

    stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="solo"), metadata=auth)
    assert stub.ModelReady(pb.ModelReadyRequest(name="solo")).ready
    np.testing.assert_allclose(output(stub.ModelInfer(infer_request(x, model="solo"))), tiny_reference(x, -1.0), 1e-5)


def test_auth_tokens_and_the_admin_api_off(tmp_path: Path) -> None:
    a, _, _ = _models(tmp_path)
    config = parse_config({"models": [{"name": "m", "source": str(a)}], "auth": {"infer_tokens": {"app": INFER}}})
    app = ServingApp(config, registry=None, request_log=None)
    with serve(app, grpc=True):
        stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{app.grpc_port}"))
        x = np.ones((1, *SHAPE), np.float32)
        code, details = code_of(stub.ModelInfer, infer_request(x, model="m"))
        assert code == grpc.StatusCode.UNAUTHENTICATED and "bearer token" in details
        assert stub.ModelInfer(infer_request(x, model="m"), metadata=(("authorization", f"Bearer {INFER}"),)).id
        # no admin token configured: the repository API is off, as /admin/* is
        code, details = code_of(stub.RepositoryIndex, pb.RepositoryIndexRequest())
        assert code == grpc.StatusCode.PERMISSION_DENIED and "admin_tokens" in details


def test_generated_stubs_are_current(tmp_path: Path) -> None:
    """The committed stubs are what the command in the .proto's header makes of it."""
    pytest.importorskip("grpc_tools", reason="regenerating the stubs needs grpcio-tools (the dev extra)")
    src = Path(__file__).resolve().parents[2] / "src"
    proto = "finmlops/serving/protos/grpc_predict_v2.proto"
    args = ["-I", str(src), f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}"]
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", *args, str(src / proto)], check=True)
    for name in ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi", "grpc_predict_v2_pb2_grpc.py"):
        fresh = (tmp_path / "finmlops/serving/protos" / name).read_text()
        assert fresh == (src / "finmlops/serving/protos" / name).read_text(), f"{name} is stale: regenerate it"
