"""Units without HTTP: the request log, the micro-batcher, the config and model loading."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
from finmlops_testing.serving import tiny_onnx, tiny_reference

from finmlops.serving.batching import ArrivalGate, MicroBatcher
from finmlops.serving.config import ServingConfigError, default_config, parse_config
from finmlops.serving.models import ModelLoadError, load_local
from finmlops.serving.requestlog import (
    AdminRecord,
    FeedbackRecord,
    RequestLog,
    RequestRecord,
    read_admin_log,
    read_feedback,
    read_requests,
)


def _record(i: int, model: str = "m") -> RequestRecord:
    return RequestRecord(f"r{i}", model, 1.0 + i, None, None, "1", 0, "d", 0.5, 0.3, 200, None, b"\0\0\0\0")


def test_request_log_buffers_until_flush_and_keeps_every_row_under_concurrent_appends(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "serving" / "requests.db", flush_interval_s=3600)
    log.append(_record(0))
    assert read_requests(log.path).empty  # nothing on disk before a flush: append is memory only

    def writer(k: int) -> None:
        for i in range(500):
            log.append(_record(1 + k * 500 + i))

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        log.flush()
    log.append(FeedbackRecord("r1", 5.0, 1))
    log.append(FeedbackRecord("r1", 6.0, 0))  # a repeat is ignored by the table
    log.append(AdminRecord(7.0, "alice", "ab", '{"x": 1}'))
    log.close()
    rows = read_requests(log.path)
    assert len(rows) == 2001 and rows.id.is_unique
    assert list(read_feedback(log.path).outcome) == [1]
    assert read_admin_log(log.path).who.tolist() == ["alice"]


def test_request_log_failed_write_keeps_the_rows(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "requests.db", flush_interval_s=3600)
    log.append(_record(1))
    blocker = sqlite3.connect(log.path, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")
    log._db.execute("PRAGMA busy_timeout = 0")
    with pytest.raises(sqlite3.OperationalError):
        log.flush()
    blocker.rollback()
    blocker.close()
    assert log.flush() == 1 and log.write_errors == 1
    log.close()
    assert read_requests(log.path).id.tolist() == ["r1"]


def test_read_requests_names_a_missing_log(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no request log"):
        read_requests(tmp_path / "none.db")


def test_batcher_splits_results_in_order_and_caps_the_batch() -> None:
    calls: list[int] = []

    def run(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        return x.sum(axis=(1, 2))[:, None]

    batcher = MicroBatcher(run, max_batch=4, max_wait_s=0.0)

    async def many() -> list[np.ndarray]:
        futures = [batcher.submit(np.full((1 + i % 2, 2, 2), float(i), np.float32)) for i in range(6)]
        return await asyncio.gather(*futures)

    results = asyncio.run(many())
    for i, y in enumerate(results):
        assert y.shape == (1 + i % 2, 1) and np.all(y == 4 * i)
    assert sum(calls) == 9 and max(calls) <= 4 and len(calls) < 6


def test_batcher_waits_for_requests_still_arriving_but_not_longer_than_max_wait() -> None:
    """A request still being read joins the batch, which leaves as soon as that request is in (not after max_wait:
    with max_wait 60 s, a batcher that sat out its timer would miss the 10 s bound); a request that never arrives
    does not hold the batch past max_wait (the gate stays entered, so only the timer can dispatch it)."""
    gate = ArrivalGate()
    sizes: list[int] = []

    def score(x: np.ndarray) -> np.ndarray:
        sizes.append(len(x))
        return np.zeros((len(x), 1))

    async def joined() -> None:
        batcher = MicroBatcher(score, 8, 60.0, gate)
        gate.enter()  # a second request is being read
        first = batcher.submit(np.zeros((1, 1, 1), np.float32))

        async def late() -> None:
            await asyncio.sleep(0.01)
            batcher.submit(np.zeros((1, 1, 1), np.float32))
            gate.leave()

        await asyncio.wait_for(asyncio.gather(first, late()), timeout=10)

    async def never_arrives() -> None:
        batcher = MicroBatcher(score, 8, 0.05, gate)
        gate.enter()  # a request that is never completed
        await asyncio.wait_for(batcher.submit(np.zeros((1, 1, 1), np.float32)), timeout=30)
        gate.leave()

    asyncio.run(joined())
    assert sizes == [2]
    asyncio.run(never_arrives())
    assert sizes == [2, 1]


def test_batcher_reports_a_model_failure_to_every_waiter() -> None:
    def run(x: np.ndarray) -> np.ndarray:
        raise RuntimeError("boom")

    batcher = MicroBatcher(run, 8, 0.0)

    async def two() -> list[object]:
        return await asyncio.gather(*(batcher.submit(np.zeros((1, 1, 1))) for _ in range(2)), return_exceptions=True)

    assert [str(e) for e in asyncio.run(two())] == ["boom", "boom"]


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ServingConfigError, match="models"):
        parse_config({"models": []})
    with pytest.raises(ServingConfigError, match=r"server\.max_batch_size"):
        parse_config({"models": [{"name": "a", "source": "x.onnx"}], "server": {"max_batch_size": 0}})
    with pytest.raises(ServingConfigError, match="FINMLOPS_NOPE"):
        parse_config({"models": [{"name": "a", "source": "x"}], "auth": {"admin_tokens": {"a": "${FINMLOPS_NOPE}"}}})
    with pytest.raises(ServingConfigError, match="no \\*-predictor"):
        default_config([])
    config = default_config(["enhanced-predictor", "baseline-predictor", "other"])
    assert [m.name for m in config.models] == ["baseline-predictor", "enhanced-predictor"]
    assert config.experiments[0]["candidates"][0] == {"name": "baseline-predictor", "weight": 70}


def test_registry_references_parse() -> None:
    config = parse_config({"models": [
        {"name": "a", "source": "models:/a-predictor@champion"}, {"name": "b", "source": "models:/b-predictor/3"},
        {"name": "c", "source": "c-predictor@challenger"}, {"name": "d", "source": "/tmp/x/model.onnx"},
    ]})  # fmt: skip
    refs = [m.registry_ref for m in config.models]
    assert refs == [
        ("a-predictor", "champion", None),
        ("b-predictor", None, "3"),
        ("c-predictor", "challenger", None),
        None,
    ]


def test_load_local_checks_the_graph(tmp_path: Path) -> None:
    model = load_local("m", "1", "x", tiny_onnx(tmp_path / "m.onnx", 5, 3, bias=0.2), threads=1)
    x = np.random.default_rng(0).normal(size=(4, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(model.run(x), tiny_reference(x, 0.2), atol=1e-6)
    assert (model.seq_len, model.n_features, model.output_name) == (5, 3, "prob_up")
    (tmp_path / "bad.onnx").write_bytes(b"not a graph")
    with pytest.raises(ModelLoadError, match=r"bad\.onnx"):
        load_local("m", "1", "x", tmp_path / "bad.onnx", threads=1)
    with pytest.raises(ModelLoadError, match="no such model"):
        load_local("m", "1", "x", tmp_path / "missing", threads=1)


def test_the_example_serving_yaml_is_valid() -> None:
    from finmlops.serving.config import load_config
    from finmlops.serving.experiments import ExperimentSet

    path = Path(__file__).resolve().parents[2] / "serving.yaml"
    config = load_config(path)
    assert [m.registry_ref for m in config.models] == [
        ("baseline-predictor", "champion", None),
        ("enhanced-predictor", "champion", None),
    ]
    assert ExperimentSet.from_yaml({"experiments": config.experiments}).names() == ["financial-ab-test-experiment"]
