"""The request log is append-only: a reused id adds a row, old logs are migrated, and feedback finds the right row."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import numpy as np
from finmlops_testing.serving import Client, serve, tiny_onnx, tiny_reference, v2_body

from finmlops.serving.app import ServingApp
from finmlops.serving.config import parse_config
from finmlops.serving.dataplane import InferenceEvent, RequestLogObserver
from finmlops.serving.requestlog import RequestLog, RequestRecord, connect, read_feedback, read_requests

# The schema before the log was append-only (rows keyed by (id, model), no as_of), as older servers wrote it.
LEGACY = """
CREATE TABLE requests (
    id TEXT NOT NULL, model TEXT NOT NULL, ts REAL NOT NULL, experiment TEXT, arm TEXT, model_version TEXT,
    shadow INTEGER NOT NULL DEFAULT 0, inputs_digest TEXT, prob_up REAL, latency_ms REAL, status INTEGER NOT NULL,
    context TEXT, last_features BLOB, PRIMARY KEY (id, model)
);
CREATE TABLE feedback (id TEXT PRIMARY KEY, ts REAL NOT NULL, outcome INTEGER NOT NULL);
CREATE TABLE admin_log (ts REAL NOT NULL, who TEXT NOT NULL, experiment TEXT, change TEXT);
"""


def _row(rid: str, ts: float, status: int = 200, prob: float | None = 0.7, as_of: str | None = None) -> RequestRecord:
    return RequestRecord(rid, "m", ts, None, None, "1", 0, "d", prob, 0.3, status, as_of=as_of)


def _legacy_log(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.executescript(LEGACY)
        db.executemany(
            "INSERT INTO requests VALUES (?, 'm', ?, NULL, NULL, '1', 0, 'd', 0.6, 0.3, 200, NULL, NULL)",
            [("b", 2.0), ("a", 1.0)],
        )
    db.close()


def test_a_reused_id_adds_a_row_and_keeps_the_first(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "requests.db", flush_interval_s=60)
    log.append(_row("same", 1.0, as_of="2023-01-03"))
    log.append(_row("same", 2.0, status=400, prob=None))
    log.close()
    rows = read_requests(tmp_path / "requests.db")
    assert rows[["id", "status", "as_of"]].values.tolist() == [["same", 200, "2023-01-03"], ["same", 400, None]]


def test_an_old_keyed_log_is_migrated_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "requests.db"
    _legacy_log(path)
    assert read_requests(path)["as_of"].isna().all()  # readers cope with a log not migrated yet
    log = RequestLog(path, flush_interval_s=60)
    log.append(_row("a", 3.0, as_of="2023-01-04"))  # the old primary key would have refused (or replaced) it
    log.close()
    rows = read_requests(path)
    assert rows[["id", "ts", "as_of"]].values.tolist() == [["a", 1.0, None], ["b", 2.0, None], ["a", 3.0, "2023-01-04"]]
    with sqlite3.connect(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "requests_keyed" not in tables
    connect(path).close()  # migrating twice is a no-op
    assert len(read_requests(path)) == 3


def test_a_log_without_as_of_gets_the_column(tmp_path: Path) -> None:
    path = tmp_path / "requests.db"
    with sqlite3.connect(path) as db:
        db.executescript(LEGACY.replace(", PRIMARY KEY (id, model)", ""))
        db.execute("INSERT INTO requests (id, model, ts, status) VALUES ('a', 'm', 1.0, 200)")
    db.close()
    connect(path).close()
    with sqlite3.connect(path) as db:
        assert "as_of" in [c[1] for c in db.execute("PRAGMA table_info(requests)")]
    db.close()
    assert read_requests(path)["id"].tolist() == ["a"]


def _ramp(sign: float) -> np.ndarray:
    """A window whose P(up) under ``tiny_onnx`` is above 0.5 (sign +1) or below it (sign -1)."""
    return np.broadcast_to(sign * np.linspace(-1, 1, 10, dtype=np.float32)[None, :, None], (1, 10, 35)).copy()


def test_a_reused_id_keeps_both_rows_and_feedback_uses_the_latest_answer(tmp_path: Path) -> None:
    """200 then 400 for one id: both logged, feedback still found after eviction; a later 200 is the one scored."""
    model = tiny_onnx(tmp_path / "m.onnx", 10, 35)
    config = parse_config({"models": [{"name": "tiny", "source": str(model)}], "server": {"feedback_ids": 100}})
    app = ServingApp(config, registry=None, request_log=tmp_path / "requests.db")
    up, down = _ramp(1.0), _ramp(-1.0)
    assert tiny_reference(up)[0, 0] > 0.5 > tiny_reference(down)[0, 0]
    infer = "/v2/models/tiny/infer"

    def evict(client: Client, tag: str) -> None:
        """Push the earlier ids out of the ledger's memory (feedback_ids: 100), so feedback reads the log."""
        for i in range(100):
            assert client.request("POST", infer, v2_body(up, id=f"{tag}{i}"))[0] == 200
        assert len(app.ledger) == 100

    with serve(app) as base:
        client = Client(base)
        assert client.request("POST", infer, v2_body(up, id="dup"))[0] == 200
        wrong_shape = v2_body(np.zeros((1, 5, 35), np.float32), id="dup")
        assert client.request("POST", infer, wrong_shape)[0] == 400
        evict(client, "a")
        app.request_log.flush()
        status, result, _ = client.request("POST", "/v2/feedback", {"id": "dup", "outcome": 1})
        assert status == 200 and result["counted"] and result["correct"] is True, result
        # The same id answered twice: the outcome belongs to the latest answer (down), as in memory.
        assert client.request("POST", infer, v2_body(up, id="twice"))[0] == 200
        assert client.request("POST", infer, v2_body(down, id="twice"))[0] == 200
        evict(client, "b")
        app.request_log.flush()
        status, result, _ = client.request("POST", "/v2/feedback", {"id": "twice", "outcome": 1})
        assert status == 200 and result["counted"] and result["correct"] is False, result
    rows = read_requests(tmp_path / "requests.db")
    assert rows.loc[rows["id"] == "dup", "status"].tolist() == [200, 400]
    assert len(rows[rows["id"] == "twice"]) == 2
    assert sorted(read_feedback(tmp_path / "requests.db")["id"]) == ["dup", "twice"]


def test_a_batch_logs_each_row_with_its_own_digest_and_last_timestep(tmp_path: Path) -> None:
    """One row per batch row: id ``<id>/<i>``, the SHA-1 of that row's window and its last timestep's features."""
    log = RequestLog(tmp_path / "requests.db", flush_interval_s=60)
    x = np.random.default_rng(0).normal(size=(3, 4, 5)).astype(np.float32)
    event = InferenceEvent(id="day", model="m", started=0.0, version="2", x=x, y=np.full((3, 1), 0.25, "f4"))
    event._scored()
    RequestLogObserver(log).on_inference(event)
    log.close()
    rows = read_requests(tmp_path / "requests.db").set_index("id")
    assert list(rows.index) == ["day/0", "day/1", "day/2"]
    for i in range(3):
        assert rows.loc[f"day/{i}", "inputs_digest"] == hashlib.sha1(x[i].tobytes()).hexdigest()
        assert rows.loc[f"day/{i}", "last_features"] == x[i, -1].tobytes()
    assert (rows["prob_up"] == 0.25).all() and (rows["model_version"] == "2").all()


def test_a_batch_beyond_the_buffer_bound_keeps_what_fits_and_counts_the_rest(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "requests.db", flush_interval_s=60, max_buffered_rows=100)
    log.extend(RequestRecord(f"r{i}", "m", 0.0, None, None, None, 0, None, 0.5, 1.0, 200) for i in range(130))
    log.extend(RequestRecord(f"s{i}", "m", 0.0, None, None, None, 0, None, 0.5, 1.0, 200) for i in range(5))
    assert log.buffered == 100 and log.dropped_rows == 35
    log.close()
    assert list(read_requests(tmp_path / "requests.db")["id"])[-1] == "r99"
