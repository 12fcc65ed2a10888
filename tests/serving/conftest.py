"""Fixtures for the serving tests: real ONNX models and a real uvicorn server on 127.0.0.1.

Shared helpers live in the test-support package ``finmlops_testing.serving``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from finmlops_testing.serving import ab_config, lstm_onnx, serve


@pytest.fixture(scope="session")
def bench_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two seeded LSTMs (seeds 0 and 1) with input ``input_data`` [batch, 10, 35], built once by our own export."""
    folder = tmp_path_factory.mktemp("lstm-models")
    return lstm_onnx(folder / "baseline.onnx", seed=0), lstm_onnx(folder / "enhanced.onnx", seed=1)


@pytest.fixture(scope="module")
def ab_server(bench_models: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    """A real server (module-wide) for the A/B deployment with its request log; yields ``(base URL, app)``."""
    from finmlops.serving.app import ServingApp
    from finmlops.serving.config import parse_config

    db = tmp_path_factory.mktemp("serving") / "requests.db"
    app = ServingApp(parse_config(ab_config(*bench_models, max_body_bytes=64 * 1024)), registry=None, request_log=db)
    with serve(app) as base:
        yield base, app
