"""Adaptive batching (``finmlops.serving.batching``): concurrent calls stacked into one onnxruntime run and split
back, on a real onnxruntime session; and through a real server, over gRPC (whose calls reach the event loop one at
a time, so only the batch window stacks them), with the request log, feedback ids and the run-count metric."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from finmlops.serving.batching import MicroBatcher

grpc = pytest.importorskip("grpc", reason="the gRPC transport needs grpcio (the serve extra)")

from finmlops_testing.serving import Client, serve, settle, tiny_onnx  # noqa: E402

from finmlops.serving.app import ServingApp  # noqa: E402
from finmlops.serving.config import parse_config  # noqa: E402
from finmlops.serving.protos import grpc_predict_v2_pb2 as pb  # noqa: E402
from finmlops.serving.protos import grpc_predict_v2_pb2_grpc as pb_grpc  # noqa: E402
from finmlops.serving.requestlog import read_requests  # noqa: E402

SHAPE = (10, 35)
# onnxruntime's kernels may vectorise a stacked batch differently from a lone row: an answer may differ from the
# unbatched one in its last bit (measured: 6e-8 at P(up) ~0.6), never more than a couple of float32 ulps.
ULP = 2.5e-7
POISON = -1234.5  # a value the test's run refuses, standing for an input that breaks onnxruntime


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> ort.InferenceSession:
    path = tiny_onnx(tmp_path_factory.mktemp("batching") / "m.onnx", *SHAPE, bias=0.5)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _inputs(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(1 + i % 3, *SHAPE)).astype(np.float32) for i in range(n)]


def test_the_window_stacks_calls_arriving_over_several_turns_and_answers_as_unbatched(
    session: ort.InferenceSession,
) -> None:
    """Calls that arrive one per turn of the loop (as gRPC's do) share one run within the window; each gets exactly
    what it gets scored alone; the run count is what ``observe`` (the metric) is told."""
    runs: list[int] = []

    def run(x: np.ndarray) -> np.ndarray:
        return session.run(None, {"input_data": x})[0]

    batcher = MicroBatcher(run, 64, 0.0, max_batch_time_s=30.0, observe=runs.append)
    xs = _inputs(8)

    async def calls() -> list[np.ndarray]:
        first = [batcher.submit(xs[0]), batcher.submit(xs[1])]  # together: a batch of two turns the window on
        await asyncio.gather(*first)
        futures = []
        for x in xs[2:]:
            futures.append(batcher.submit(x))
            await asyncio.sleep(0)  # the next call comes on a later turn
        batcher.submit(np.zeros((64, *SHAPE), np.float32))  # fills the batch: it leaves now, not after 30 s
        return [*(f.result() for f in first), *await asyncio.wait_for(asyncio.gather(*futures), timeout=20)]

    results = asyncio.run(calls())
    for x, y in zip(xs, results, strict=True):
        np.testing.assert_allclose(y, run(x), rtol=0, atol=ULP)
    rows = [len(x) for x in xs]
    # One run for the first two, one for the six that came turn by turn (the full batch leaves as its own run of
    # 64, since the six and it together exceed max_batch); not one run per call.
    assert runs == [sum(rows[:2]), sum(rows[2:]), 64] and batcher.runs == 3


def test_a_lone_client_does_not_wait_out_the_window(session: ort.InferenceSession) -> None:
    """The window is waited only after a batch of two or more: a client alone is answered at once, even with a
    30 s window (the 20 s bound would fail otherwise), and one lone batch after a busy one turns it off again."""
    batcher = MicroBatcher(lambda x: session.run(None, {"input_data": x})[0], 64, 0.0, max_batch_time_s=30.0)
    x = _inputs(1)[0]

    async def alone() -> None:
        for _ in range(5):
            await asyncio.wait_for(batcher.submit(x), timeout=20)

    asyncio.run(alone())
    assert batcher.runs == 5


def test_a_request_that_breaks_the_stacked_run_fails_alone(session: ort.InferenceSession) -> None:
    def run(x: np.ndarray) -> np.ndarray:
        if (x == POISON).any():
            raise RuntimeError("onnxruntime refused the input")
        return session.run(None, {"input_data": x})[0]

    batcher = MicroBatcher(run, 64, 0.0)
    xs = _inputs(5)
    xs[2] = np.full((2, *SHAPE), POISON, np.float32)

    async def calls() -> list[Any]:
        return await asyncio.gather(*(batcher.submit(x) for x in xs), return_exceptions=True)

    results = asyncio.run(calls())
    assert isinstance(results[2], RuntimeError) and "refused" in str(results[2])
    for i in (0, 1, 3, 4):
        np.testing.assert_allclose(results[i], run(xs[i]), rtol=0, atol=ULP)
    assert batcher.runs == 4  # the failed stacked run is not counted; each good request was scored again alone


def _request(x: np.ndarray, rid: str) -> Any:
    tensor = pb.ModelInferRequest.InferInputTensor(name="input_data", datatype="FP32", shape=x.shape)
    request = pb.ModelInferRequest(model_name="m", id=rid, inputs=[tensor])
    request.raw_input_contents.append(x.astype("<f4").tobytes())
    return request


def _runs(text: str) -> float:
    match = re.search(r'^finmlops_batch_size_count\{model="m"\} ([\d.e+]+)$', text, re.MULTILINE)
    assert match, "finmlops_batch_size is not exported"
    return float(match.group(1))


def test_concurrent_grpc_calls_in_a_batch_window_are_answered_as_alone_and_a_bad_call_fails_alone(
    session: ort.InferenceSession, tmp_path: Path
) -> None:
    """16 clients at once over gRPC with a batch window: every answer equal to the call scored alone, one
    request-log row and one feedback id per call, the runs counted by the metric; a malformed call among them gets
    INVALID_ARGUMENT by itself and the others are served. That calls share a run is tested deterministically above
    (test_the_window_stacks_calls_arriving_over_several_turns_and_answers_as_unbatched): here it depends on how the
    machine schedules the clients' threads."""
    model = tiny_onnx(tmp_path / "m.onnx", *SHAPE, bias=0.5)
    config = {"models": [{"name": "m", "source": str(model)}],
              "server": {"max_batch_time_ms": 20, "reload_interval_s": 0}}  # fmt: skip
    app = ServingApp(parse_config(config), registry=None, request_log=tmp_path / "requests.db")
    xs = _inputs(160, seed=3)
    with serve(app, grpc=True) as base:
        client = Client(base)
        before = _runs(client.request("GET", "/metrics")[1])
        channel = grpc.insecure_channel(f"127.0.0.1:{app.grpc_port}")
        stub = pb_grpc.GRPCInferenceServiceStub(channel)

        def call(i: int) -> Any:
            if i % 40 == 7:  # a tensor of the wrong width: refused before it reaches a batch
                bad = np.zeros((1, SHAPE[0], SHAPE[1] + 1), np.float32)
                with pytest.raises(grpc.RpcError) as info:
                    stub.ModelInfer(_request(bad, f"bad-{i}"))
                return info.value.code()
            response = stub.ModelInfer(_request(xs[i], f"call-{i}"))
            out = response.outputs[0]
            return response.id, np.frombuffer(response.raw_output_contents[0], "<f4").reshape(tuple(out.shape))

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(call, range(len(xs))))
        channel.close()
        settle(client)
        runs = _runs(client.request("GET", "/metrics")[1]) - before
    good = [i for i in range(len(xs)) if i % 40 != 7]
    assert all(answers[i] == grpc.StatusCode.INVALID_ARGUMENT for i in range(len(xs)) if i % 40 == 7)
    for i in good:
        rid, y = answers[i]
        assert rid == f"call-{i}"
        np.testing.assert_allclose(y, session.run(None, {"input_data": xs[i]})[0], rtol=0, atol=ULP)
    # 156 calls from 16 clients: measured 12-88 runs on 2 quiet cores, 123 and 156 (no call shared a run) under CI's
    # load: the clients share the server's process and GIL, so whether calls overlap is the scheduler's. The metric
    # counts one run at least per call batch and at most one per call.
    assert 0 < runs <= len(good), (runs, len(good))
    rows = read_requests(app.request_log.path)
    served = rows[rows.status == 200]
    expected_ids = {f"call-{i}" if len(xs[i]) == 1 else f"call-{i}/{j}" for i in good for j in range(len(xs[i]))}
    assert set(served.id) == expected_ids and len(served) == len(expected_ids)
    assert (rows.status == 400).sum() == len(xs) - len(good)
