"""The REST infer path driven in-process (no sockets, no HTTP client): CPU time per request at c=1 and c=32.

A companion to bench/serve.py for a loaded machine: process CPU time is far less disturbed by other processes than
wall-clock latency over loopback, so two trees can be compared side by side (run it once per tree, alternating,
pinned to one core). The app is configured as in bench/serve.py: the experiment takes over the model's endpoint,
metrics and the SQLite request log are on.

Usage: python bench/serve_asgi.py --model build/serve-bench/model.onnx [--rounds 8] [--label NAME]
(the model: ../shared/bench/serve_build_model.py --out model.onnx, or the one bench/serve.py built)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from finmlops.serving.app import ServingApp
from finmlops.serving.config import parse_config


def build(model: Path, workdir: Path) -> tuple[ServingApp, dict[str, Any], bytes]:
    """The app, the ASGI scope of ``POST /v2/models/lstm/infer`` and a [1, 10, 35] FP32 JSON body."""
    config = {
        "models": [{"name": "lstm", "source": str(model)}],
        "experiments": [{"name": "lstm-ab", "default": "lstm", "candidates": [{"name": "lstm", "weight": 1}]}],
        "server": {"reload_interval_s": 0},
    }
    app = ServingApp(parse_config(config), registry=None, request_log=workdir / "requests.db")
    x = np.random.default_rng(0).normal(size=(1, 10, 35)).astype(np.float32)
    tensor = {"name": "input_data", "shape": [1, 10, 35], "datatype": "FP32", "data": x.ravel().tolist()}
    body = json.dumps({"inputs": [tensor]}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return app, {"type": "http", "method": "POST", "path": "/v2/models/lstm/infer", "headers": headers}, body


async def run(app: ServingApp, scope: dict[str, Any], body: bytes, rounds: int) -> tuple[list[float], list[float]]:
    """Per round: CPU seconds per request over 500 sequential requests, and requests per CPU second over 20
    waves of 32 concurrent ones."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def one() -> None:
        status: list[int] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(scope, receive, send)
        if status != [200]:
            raise SystemExit(f"infer answered {status}")

    for _ in range(300):
        await one()
    c1, c32 = [], []
    for _ in range(rounds):
        t = time.process_time()
        for _ in range(500):
            await one()
        c1.append((time.process_time() - t) / 500)
        t = time.process_time()
        for _ in range(20):
            await asyncio.gather(*(one() for _ in range(32)))
        c32.append(640 / (time.process_time() - t))
    return c1, c32


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--label", default="finmlops")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app, scope, body = build(args.model.resolve(), Path(tmp))
        c1, c32 = asyncio.run(run(app, scope, body, args.rounds))
        assert app.request_log is not None
        app.request_log.close()
    print(
        f"{args.label}: c=1 {min(c1) * 1e6:.0f} us CPU/request (best of {args.rounds}), "
        f"{statistics.median(c1) * 1e6:.0f} median; c=32 {max(c32):.0f} requests/CPU-s (best), "
        f"{statistics.median(c32):.0f} median"
    )


if __name__ == "__main__":
    main()
