"""Fixtures for the serving tests: real ONNX models and a real uvicorn server on 127.0.0.1.

Shared helpers live in serving_support.py; with --import-mode=importlib this folder is put on sys.path for them.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from serving_support import BENCH_BUILD, ab_config, serve


@pytest.fixture(scope="session")
def bench_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two shared-bench LSTMs (seeds 0 and 1) with input ``input_data`` [batch, 10, 35], built once (torch)."""
    folder = tmp_path_factory.mktemp("bench-models")
    paths = (folder / "baseline.onnx", folder / "enhanced.onnx")
    procs = [
        subprocess.Popen(
            [sys.executable, str(BENCH_BUILD), "--out", str(p), "--seed", str(seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
        )
        for seed, p in enumerate(paths)
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, out.decode()
    return paths


@pytest.fixture(scope="module")
def ab_server(bench_models: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    """A real server (module-wide) for the A/B deployment with its request log; yields ``(base URL, app)``."""
    from finmlops.serving.app import ServingApp
    from finmlops.serving.config import parse_config

    db = tmp_path_factory.mktemp("serving") / "requests.db"
    app = ServingApp(parse_config(ab_config(*bench_models, max_body_bytes=64 * 1024)), registry=None, request_log=db)
    with serve(app) as base:
        yield base, app
