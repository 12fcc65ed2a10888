"""Bad input gets a 4xx V2 error naming the problem, the server keeps serving, and off-the-shelf clients work."""

from __future__ import annotations

import json
import random
import threading
from typing import Any

import numpy as np
import pytest
from finmlops_testing.serving import AB, Client, v2_body

GOOD = np.random.default_rng(0).normal(size=(1, 10, 35)).astype(np.float32)
INFER = "/v2/models/baseline-predictor/versions/1/infer"


def _tensor(**overrides: Any) -> dict[str, Any]:
    tensor = {"name": "input_data", "shape": [1, 10, 35], "datatype": "FP32", "data": GOOD.ravel().tolist()}
    return {"inputs": [{**tensor, **overrides}]}


# (what, path, raw body, extra headers, expected status, words the error must contain)
BAD: list[tuple[str, str, bytes, dict[str, str], int, str]] = [
    ("malformed JSON", INFER, b'{"inputs": [', {}, 400, "malformed JSON"),
    ("not an object", INFER, b"[1, 2]", {}, 400, "JSON object"),
    ("no inputs", INFER, b'{"inputs": []}', {}, 400, "inputs"),
    ("wrong shape", INFER, json.dumps(_tensor(shape=[1, 35, 10])).encode(), {}, 400, "[-1, 10, 35]"),
    ("shape/data mismatch", INFER, json.dumps(_tensor(shape=[2, 10, 35])).encode(), {}, 400, "needs 700 values"),
    ("wrong datatype", INFER, json.dumps(_tensor(datatype="BYTES")).encode(), {}, 400, "datatype 'BYTES'"),
    ("wrong input name", INFER, json.dumps(_tensor(name="features")).encode(), {}, 400, "input_data"),
    ("string data", INFER, json.dumps(_tensor(data=["a"] * 350)).encode(), {}, 400, "only numbers"),
    ("ragged data", INFER, json.dumps(_tensor(data=[[1.0], [1.0, 2.0]])).encode(), {}, 400, "ragged"),
    ("NaN literal", INFER, json.dumps(_tensor(data=[float("nan")] * 350)).encode(), {}, 400,
     "non-finite number NaN"),
    ("infinity", INFER, json.dumps(_tensor(data=[1e308 * 10] * 350)).encode(), {}, 400, "non-finite number Infinity"),
    ("minus infinity", INFER, json.dumps(_tensor(data=[-1e308 * 10] * 350)).encode(), {}, 400,
     "non-finite number -Infinity"),
    ("bad as_of", INFER, json.dumps({**_tensor(), "parameters": {"as_of": "03/01/2023"}}).encode(), {}, 400,
     "'as_of' must be a date"),
    ("float32 overflow", INFER, json.dumps(_tensor(data=[1e300] * 350)).encode(), {}, 400,
     "input 'input_data': values beyond the FP32 range"),
    ("FP64 beyond FP32", INFER, json.dumps(_tensor(datatype="FP64", data=[1e300] * 350)).encode(), {}, 400,
     "input 'input_data': values beyond the FP32 range"),
    ("numeric strings", INFER, json.dumps(_tensor(data=["1.5"] * 350)).encode(), {}, 400,
     "input 'input_data': 'data' must hold only numbers, got '1.5'"),
    ("padded strings", INFER, json.dumps(_tensor(data=[" 1 "] * 350)).encode(), {}, 400, "got ' 1 '"),
    ("booleans", INFER, json.dumps(_tensor(data=[True] * 350)).encode(), {}, 400, "got True (bool)"),
    ("a boolean among numbers", INFER, json.dumps(_tensor(data=[0.5] * 349 + [False])).encode(), {}, 400,
     "input 'input_data': 'data' must hold only numbers, got False (bool)"),
    ("a string among numbers", INFER, json.dumps(_tensor(data=[0.5] * 349 + ["2"])).encode(), {}, 400,
     "got '2' (str)"),
    ("null among numbers", INFER, json.dumps(_tensor(data=[0.5] * 349 + [None])).encode(), {}, 400, "got None"),
    ("empty batch", INFER, json.dumps(_tensor(shape=[0, 10, 35], data=[])).encode(), {}, 400, "empty batch"),
    ("negative shape", INFER, json.dumps(_tensor(shape=[-1, 10, 35])).encode(), {}, 400, "shape"),
    ("too large", INFER, b'{"inputs": [' + b" " * 70_000 + b"]}", {}, 413, "exceeds the limit"),
    ("content type", INFER, json.dumps(_tensor()).encode(), {"Content-Type": "text/plain"}, 415, "text/plain"),
    ("unknown model", "/v2/models/nope/infer", json.dumps(_tensor()).encode(), {}, 404, "unknown model 'nope'"),
    ("unknown version", "/v2/models/baseline-predictor/versions/9/infer", json.dumps(_tensor()).encode(), {}, 404,
     "no version '9'"),
    ("unknown experiment", INFER.replace("/versions/1", ""), json.dumps(_tensor()).encode(),
     {"seldon-model": "nope.experiment"}, 404, "no experiment 'nope'"),
    ("bad id", INFER, json.dumps({**_tensor(), "id": 5}).encode(), {}, 400, "'id'"),
    ("unknown output", INFER, json.dumps({**_tensor(), "outputs": [{"name": "logits"}]}).encode(), {}, 400, "logits"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "path", "body", "headers", "status", "words"), BAD, ids=[b[0] for b in BAD])
def test_bad_request_gets_a_v2_error_naming_the_problem(
    ab_server: tuple[str, Any], what: str, path: str, body: bytes, headers: dict[str, str], status: int, words: str
) -> None:
    client = Client(ab_server[0])
    got, payload, _ = client.request("POST", path, raw=body, headers={"Content-Type": "application/json", **headers})
    assert got == status, (what, payload)
    assert isinstance(payload, dict) and words in payload["error"], payload
    assert Client(ab_server[0]).request("POST", INFER, v2_body(GOOD))[0] == 200


def test_binary_extension_rejects_nan_and_accepts_good_tensors(ab_server: tuple[str, Any]) -> None:
    client = Client(ab_server[0])
    for values, status in ((np.full((1, 10, 35), np.nan, np.float32), 400), (GOOD, 200)):
        head = json.dumps({"inputs": [{"name": "input_data", "shape": [1, 10, 35], "datatype": "FP32",
                                       "parameters": {"binary_data_size": values.nbytes}}]}).encode()  # fmt: skip
        got, payload, _ = client.request(
            "POST", INFER, raw=head + values.tobytes(),
            headers={"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"},
        )  # fmt: skip
        assert got == status, payload


def test_binary_tensor_with_trailing_bytes_is_refused(ab_server: tuple[str, Any]) -> None:
    """Every byte after the JSON header must belong to a declared tensor (11.5: trailing bytes were ignored)."""
    client = Client(ab_server[0])
    head = json.dumps({"inputs": [{"name": "input_data", "shape": [1, 10, 35], "datatype": "FP32",
                                   "parameters": {"binary_data_size": GOOD.nbytes}}]}).encode()  # fmt: skip
    headers = {"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"}
    got, payload, _ = client.request("POST", INFER, raw=head + GOOD.tobytes() + b"junk", headers=headers)
    assert got == 400 and "4 bytes after the last binary tensor" in payload["error"], payload
    assert client.request("POST", INFER, raw=head + GOOD.tobytes(), headers=headers)[0] == 200


def test_a_barrage_of_bad_requests_never_fails_a_good_one(ab_server: tuple[str, Any]) -> None:
    base, _ = ab_server
    failures: list[Any] = []

    def good_client() -> None:
        client = Client(base)
        for i in range(60):
            status, payload, _ = client.request("POST", f"/v2/models/{AB}/infer", v2_body(GOOD, id=f"good-{i}"),
                                                {"seldon-model": f"{AB}.experiment"})  # fmt: skip
            if status != 200 or len(payload["outputs"][0]["data"]) != 1:
                failures.append((status, payload))

    def bad_client(seed: int) -> None:
        rng = random.Random(seed)
        client = Client(base)
        for _ in range(60):
            _, path, body, headers, status, _ = rng.choice(BAD)
            got = client.request("POST", path, raw=body, headers={"Content-Type": "application/json", **headers})[0]
            if got != status:
                failures.append(("bad request answered", got, "expected", status))

    threads = [threading.Thread(target=good_client) for _ in range(2)]
    threads += [threading.Thread(target=bad_client, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert Client(base).request("GET", "/v2/health/ready")[0] == 200
    assert ab_server[1].gate.arriving == 0  # every request left the arrival phase, so no batch waits in vain


def test_tritonclient_works_unchanged(ab_server: tuple[str, Any]) -> None:
    tritonhttp = pytest.importorskip("tritonclient.http")
    url = ab_server[0].removeprefix("http://")
    client = tritonhttp.InferenceServerClient(url=url)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("enhanced-predictor")
    meta = client.get_model_metadata("enhanced-predictor")
    assert meta["inputs"][0]["shape"] == [-1, 10, 35]
    x = np.random.default_rng(5).normal(size=(3, 10, 35)).astype(np.float32)
    reference = None
    for binary in (True, False):
        inp = tritonhttp.InferInput("input_data", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        out = tritonhttp.InferRequestedOutput("prob_up", binary_data=binary)
        result = client.infer("enhanced-predictor", [inp], model_version="1", outputs=[out], request_id="triton-1")
        y = result.as_numpy("prob_up")
        assert y.shape == (3, 1) and result.get_response()["id"] == "triton-1"
        reference = y if reference is None else reference
        np.testing.assert_allclose(y, reference, atol=1e-6)


def test_openapi_schema_fuzzing_finds_no_server_error(ab_server: tuple[str, Any]) -> None:
    schemathesis = pytest.importorskip("schemathesis")

    base = ab_server[0]
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    errors: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:
        _fuzz(operation, base, errors)()
    assert errors == []
    assert Client(base).request("GET", "/v2/health/live")[0] == 200


def _fuzz(operation: Any, base: str, errors: list[str]) -> Any:
    """A hypothesis test that sends ``operation``'s generated cases to ``base`` and notes any 5xx."""
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=6, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def fuzz(case: Any) -> None:
        response = case.call(base_url=base)
        if response.status_code >= 500:
            errors.append(f"{operation.label}: {response.status_code} {response.text[:200]}")

    return fuzz


def test_nan_in_a_feedback_body_is_named_too(ab_server: tuple[str, Any]) -> None:
    status, payload, _ = Client(ab_server[0]).request("POST", "/v2/feedback", raw=b'{"id": "x", "outcome": NaN}')
    assert status == 400 and "non-finite number NaN at character 23" in payload["error"], payload


def test_infer_is_post_only(ab_server: tuple[str, Any]) -> None:
    """GET on an infer path is a 405 with a V2 error body, not the model's metadata."""
    client = Client(ab_server[0])
    for path in (INFER, "/v2/models/baseline-predictor/infer"):
        status, payload, _ = client.request("GET", path)
        assert status == 405 and "use POST" in payload["error"], (path, payload)
    assert client.request("GET", "/v2/models/baseline-predictor")[0] == 200  # metadata stays GET
