"""Issue 11.2: the admin API is secure by default (off without a token) and can live on its own listener."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from finmlops_testing.serving import Client, free_port, serve, tiny_onnx

from finmlops.serving.app import ServingApp
from finmlops.serving.config import parse_config

TOKEN = "admin-token-0123456789"
INFER = "infer-token-0123456789"


def _config(model: Path, **extra: Any) -> dict[str, Any]:
    arms = [{"name": "a", "model": "m", "weight": 1}]
    return {"models": [{"name": "m", "source": str(model)}], "experiments": [{"name": "ab", "candidates": arms}],
            **extra}  # fmt: skip


@pytest.mark.parametrize("auth", [{}, {"infer_tokens": {"client": INFER}}], ids=["no-auth", "infer-tokens-only"])
def test_without_an_admin_token_the_admin_api_is_off(tmp_path: Path, auth: dict[str, Any]) -> None:
    app = ServingApp(parse_config(_config(tiny_onnx(tmp_path / "m.onnx", 10, 4), auth=auth)), registry=None,
                     request_log=None)  # fmt: skip
    bearer = {"Authorization": f"Bearer {INFER}"}
    with serve(app) as base:
        client = Client(base)
        for method, path, body in [("GET", "/admin/experiments", None), ("GET", "/admin/experiments/ab", None),
                                   ("PUT", "/admin/experiments/ab", {"candidates": []})]:  # fmt: skip
            for headers in ({}, bearer):
                status, answer, _ = client.request(method, path, body, headers)
                assert status == 403, (method, path, answer)
                assert "auth.admin_tokens" in answer["error"] and "insecure_admin" in answer["error"]
        assert client.request("GET", "/v2/health/live")[0] == 200


def test_the_insecure_flag_opens_it_for_local_use(tmp_path: Path) -> None:
    config = _config(tiny_onnx(tmp_path / "m.onnx", 10, 4), auth={"insecure_admin": True})
    with serve(ServingApp(parse_config(config), registry=None, request_log=None)) as base:
        status, state, _ = Client(base).request("GET", "/admin/experiments/ab")
        assert status == 200 and state["name"] == "ab"


def test_admin_on_its_own_port_is_not_served_on_the_main_one(tmp_path: Path) -> None:
    admin_port = free_port()
    config = _config(tiny_onnx(tmp_path / "m.onnx", 10, 4), server={"admin_port": admin_port},
                     auth={"admin_tokens": {"ops": TOKEN}})  # fmt: skip
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with serve(ServingApp(parse_config(config), registry=None, request_log=None)) as base:
        main, admin = Client(base), Client(f"http://127.0.0.1:{admin_port}")
        status, body, _ = main.request("GET", "/admin/experiments/ab", headers=auth)
        assert status == 404 and "admin_port" in body["error"]
        assert admin.request("GET", "/admin/experiments/ab", headers=auth)[0] == 200
        assert admin.request("GET", "/admin/experiments/ab")[0] == 401
        assert admin.request("GET", "/v2/health/live")[0] == 200  # probes work on both
        assert admin.request("GET", "/metrics")[0] == 404 and admin.request("GET", "/v2/models/m")[0] == 404
        assert main.request("GET", "/metrics")[0] == 200 and main.request("GET", "/v2/models/m")[0] == 200


def test_serve_flags_insecure_admin_and_admin_port(tmp_path: Path) -> None:
    """`finmlops serve --insecure-admin --admin-port` as a process: admin answers on the admin port only."""
    model = tiny_onnx(tmp_path / "m.onnx", 10, 4)
    (tmp_path / "serving.yaml").write_text(
        f"models: [{{name: m, source: {model}}}]\nexperiments: [{{name: ab, candidates: [{{name: a, model: m}}]}}]\n"
    )
    port, admin_port = free_port(), free_port()
    env = {**os.environ, "FINMLOPS_HOME": str(tmp_path / "home"), "PYTHONPATH": os.pathsep.join(sys.path)}
    args = [
        "--config",
        str(tmp_path / "serving.yaml"),
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--grpc-port",
        "0",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-c", "from finmlops.cli import main; main()", "serve", *args, "--insecure-admin",
         "--admin-port", str(admin_port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert Client(f"http://127.0.0.1:{port}").request("GET", "/v2/health/live")[0] == 200
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()  # type: ignore[union-attr]
                time.sleep(0.2)
        assert Client(f"http://127.0.0.1:{admin_port}").request("GET", "/admin/experiments/ab")[0] == 200
        assert Client(f"http://127.0.0.1:{port}").request("GET", "/admin/experiments/ab")[0] == 404
    finally:
        proc.terminate()
        proc.wait(timeout=60)
