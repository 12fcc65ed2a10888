"""Issue 11.7: the request log on a full disk (a 1 MiB tmpfs in the test's own folder): bounded memory, counted
write errors and dropped rows in /metrics, one error line, a clean shutdown, and the rows written stay readable."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from finmlops_testing.serving import tiny_onnx

from finmlops.serving.app import ServingApp
from finmlops.serving.config import parse_config
from finmlops.serving.requestlog import RequestLog, RequestRecord, read_requests


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted on ``tmp_path/disk`` (needs root and mount permission), unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    run = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True, text=True)
    if run.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): {run.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _row(i: int) -> RequestRecord:
    return RequestRecord(f"r{i}", "m", time.time(), None, None, "1", 0, None, 0.5, 1.0, 200, "x" * 1000)


def test_a_full_disk_bounds_memory_counts_the_loss_and_shuts_down_cleanly(
    small_disk: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    graph = tiny_onnx(tmp_path / "m.onnx", 10, 4)
    config = parse_config({"models": [{"name": "m", "source": str(graph)}], "server": {"request_log_max_rows": 500}})
    app = ServingApp(config, registry=None, request_log=small_disk / "requests.db")
    log = app.request_log
    assert log is not None
    with caplog.at_level(logging.WARNING, logger="finmlops.serving"):
        for i in range(3000):  # ~3 MB of rows for a 1 MiB disk
            log.append(_row(i))
            if i % 100 == 0:
                time.sleep(0.02)  # let the writer run
        deadline = time.monotonic() + 20
        while log.write_errors == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        for i in range(3000, 4000):
            log.append(_row(i))
        assert log.write_errors > 0 and log.buffered <= 500 and log.dropped_rows > 0
        metrics = app.render_metrics().decode()
        assert f"finmlops_request_log_write_errors_total {float(log.write_errors)}" in metrics
        assert f"finmlops_request_log_dropped_rows_total {float(log.dropped_rows)}" in metrics
        log.close()  # must not raise, although the last flush fails
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "cannot write" in errors[0].getMessage(), [r.getMessage() for r in errors]
    assert any("closed with" in r.getMessage() for r in caplog.records)
    written = read_requests(small_disk / "requests.db")
    assert 0 < len(written) < 3000 and list(written.id) == [f"r{i}" for i in range(len(written))]  # in order


def test_the_counters_are_exported_at_zero_on_a_healthy_log(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "requests.db", max_buffered_rows=10)
    for i in range(5):
        log.append(_row(i))
    log.close()
    assert log.write_errors == 0 and log.dropped_rows == 0 and len(read_requests(log.path)) == 5
    graph = tiny_onnx(tmp_path / "m.onnx", 10, 4)
    app = ServingApp(parse_config({"models": [{"name": "m", "source": str(graph)}]}), registry=None, request_log=None)
    text = app.render_metrics().decode()
    assert (
        "finmlops_request_log_write_errors_total 0.0" in text and "finmlops_request_log_dropped_rows_total 0.0" in text
    )
