"""Raw OHLCV inputs, shadows, admin changes with auth, the drift gauge, and `finmlops serve` as a process."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from finmlops_testing import wait_until
from finmlops_testing.serving import (
    Client,
    free_port,
    serve,
    settle,
    shadow_registered,
    tiny_onnx,
    tiny_reference,
    v2_body,
    wait_ready,
)

from finmlops.data import load_snapshot
from finmlops.features import compute_features, feature_names, market_returns
from finmlops.serving.app import ServingApp
from finmlops.serving.config import parse_config
from finmlops.serving.feedback import ModelStats
from finmlops.serving.raw import min_history
from finmlops.serving.requestlog import read_admin_log, read_requests
from finmlops.stats.drift import reference_profile

TOKEN = "alice-token-0123456789"


def _card_model(folder: Path, seq_len: int = 10, bias: float = 0.0, drift: dict[str, Any] | None = None) -> Path:
    """A finmlops export folder: model.onnx + finmlops-model.json (basic features) [+ drift_reference.json]."""
    names = feature_names("basic")
    tiny_onnx(folder / "model.onnx", seq_len, len(names), bias=bias)
    card = {"variant": "baseline", "feature_set": "basic", "feature_names": names, "seq_len": seq_len,
            "data_hash": "d" * 64}  # fmt: skip
    (folder / "finmlops-model.json").write_text(json.dumps(card))
    if drift is not None:
        (folder / "drift_reference.json").write_text(json.dumps(drift))
    return folder


@pytest.fixture(scope="module")
def universe() -> dict[str, Any]:
    return {t: f.iloc[-120:] for t, f in load_snapshot(["AAPL", "MSFT", "JPM"]).items()}


@pytest.fixture(scope="module")
def feature_server(tmp_path_factory: pytest.TempPathFactory, universe: dict[str, Any]) -> Any:
    root = tmp_path_factory.mktemp("feature-models")
    frame = compute_features(universe, "basic").dropna()
    profile = reference_profile(frame.to_numpy(), list(frame.columns))
    os.environ["FINMLOPS_TEST_ADMIN_TOKEN"] = TOKEN
    config = parse_config({
        "models": [
            {"name": "baseline-predictor", "source": str(_card_model(root / "baseline", drift=profile))},
            {"name": "enhanced-predictor", "source": str(_card_model(root / "enhanced", bias=0.5))},
        ],
        "experiments": [{"name": "ab", "default": "baseline-predictor", "shadows": ["enhanced-predictor"],
                         "candidates": [{"name": "baseline-predictor", "weight": 1}]}],
        "auth": {"admin_tokens": {"alice": "${FINMLOPS_TEST_ADMIN_TOKEN}"}},
    })  # fmt: skip
    app = ServingApp(config, registry=None, request_log=root / "requests.db")
    with serve(app) as base:
        yield base, app


def _raw_body(universe: dict[str, Any], days: int | None = None) -> dict[str, Any]:
    frames = list(universe.values())
    inputs = []
    for column in ("open", "high", "low", "close", "adj_close", "volume"):
        data = np.stack([f[column].to_numpy(np.float64)[-(days or len(f)) :] for f in frames])
        inputs.append({"name": column, "shape": list(data.shape), "datatype": "FP64", "data": data.tolist()})
    return {"inputs": inputs}


def test_raw_ohlcv_uses_the_training_feature_path(feature_server: Any, universe: dict[str, Any]) -> None:
    base, _ = feature_server
    status, body, _ = Client(base).request(
        "POST", "/v2/models/baseline-predictor/versions/1/infer", _raw_body(universe)
    )
    assert status == 200, body
    frame = compute_features(universe, "basic")
    x = np.stack([frame.xs(t, level="ticker").to_numpy()[-10:] for t in universe]).astype(np.float32)
    np.testing.assert_allclose(body["outputs"][0]["data"], tiny_reference(x)[:, 0], atol=1e-5)


def test_raw_history_too_short_names_the_minimum(feature_server: Any, universe: dict[str, Any]) -> None:
    need = min_history("basic", 10)
    client = Client(feature_server[0])
    status, body, _ = client.request(
        "POST", "/v2/models/baseline-predictor/versions/1/infer", _raw_body(universe, need - 1)
    )
    assert status == 400 and f"T >= {need}" in body["error"], body
    status, body, _ = client.request(
        "POST", "/v2/models/baseline-predictor/versions/1/infer", _raw_body(universe, need)
    )
    assert status == 200, body


def test_a_window_of_another_width_is_a_400_naming_the_expected_shape(feature_server: Any) -> None:
    x = np.zeros((1, 10, 35), np.float32)
    status, body, _ = Client(feature_server[0]).request("POST", "/v2/models/baseline-predictor/infer", v2_body(x))
    assert status == 400 and "[-1, 10, 16]" in body["error"] and "raw OHLCV" in body["error"]


def test_shadow_is_logged_but_never_answers(feature_server: Any) -> None:
    base, app = feature_server
    x = np.random.default_rng(1).normal(size=(1, 10, 16)).astype(np.float32)
    status, body, headers = Client(base).request("POST", "/v2/models/baseline-predictor/infer", v2_body(x, id="sh-1"))
    assert status == 200 and headers["x-seldon-route"] == ":baseline-predictor_1:"
    assert body["outputs"][0]["data"][0] == pytest.approx(float(tiny_reference(x)[0, 0]), abs=1e-6)

    def both_logged() -> bool:
        app.request_log.flush()
        return (read_requests(app.request_log.path).id == "sh-1").sum() == 2

    wait_until(both_logged, timeout=10, what="the served and the shadow prediction of sh-1 in the log")
    rows = read_requests(app.request_log.path)
    rows = rows[rows.id == "sh-1"].set_index("model")
    assert rows.loc["baseline-predictor", "shadow"] == 0 and rows.loc["enhanced-predictor", "shadow"] == 1
    assert rows.loc["enhanced-predictor", "prob_up"] == pytest.approx(float(tiny_reference(x, 0.5)[0, 0]), abs=1e-6)


def test_admin_needs_the_token_and_logs_who_changed_what(feature_server: Any) -> None:
    base, app = feature_server
    client = Client(base)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.request("GET", "/admin/experiments/ab")[0] == 401
    assert client.request("GET", "/admin/experiments/ab", headers={"Authorization": "Bearer wrong"})[0] == 401
    status, state, _ = client.request("GET", "/admin/experiments/ab", headers=auth)
    assert status == 200 and state["traffic_share"] == {"baseline-predictor": 1.0}
    bad = {"candidates": [{"name": "ghost-predictor", "weight": 1}]}
    status, body, _ = client.request("PUT", "/admin/experiments/ab", bad, auth)
    assert status == 400 and "ghost-predictor" in body["error"]
    patch = {"candidates": [{"name": "baseline-predictor", "weight": 0}, {"name": "enhanced-predictor", "weight": 1}]}
    status, state, _ = client.request("PUT", "/admin/experiments/ab", patch, auth)
    assert status == 200 and state["traffic_share"]["enhanced-predictor"] == 1.0 and state["updated_by"] == "alice"
    x = np.zeros((1, 10, 16), np.float32)
    assert client.request("POST", "/v2/models/baseline-predictor/infer", v2_body(x))[2]["x-seldon-route"] == (
        ":enhanced-predictor_1:"
    )
    assert client.request("PUT", "/admin/experiments/nope", patch, auth)[0] == 404
    app.request_log.flush()
    admin = read_admin_log(app.request_log.path)
    assert list(admin.who) == ["alice"] and json.loads(admin.change.iloc[0]) == patch
    client.request("PUT", "/admin/experiments/ab", {"candidates": [{"name": "baseline-predictor", "weight": 1}]}, auth)


def test_psi_gauge_follows_the_drift_reference(feature_server: Any, universe: dict[str, Any]) -> None:
    base, _ = feature_server
    client = Client(base)
    for _ in range(20):
        assert client.request("POST", "/v2/models/baseline-predictor/versions/1/infer", _raw_body(universe))[0] == 200
    text = client.request("GET", "/metrics")[1]
    lines = [line for line in text.splitlines() if line.startswith('finmlops_feature_psi{feature="rsi_14"')]
    assert len(lines) == 1 and np.isfinite(float(lines[0].split()[-1])), lines
    assert "finmlops_feature_psi" in text and 'model="enhanced-predictor"' not in " ".join(
        line for line in text.splitlines() if line.startswith("finmlops_feature_psi")
    )


def test_finmlops_serve_never_imports_torch_and_flushes_its_log_on_sigterm(tmp_path: Path) -> None:
    model = tiny_onnx(tmp_path / "m.onnx", 10, 35)
    db = tmp_path / "requests.db"
    (tmp_path / "serving.yaml").write_text(
        f"models:\n  - name: tiny\n    source: {model}\nserver:\n  request_log: {db}\n"
    )
    port = free_port()
    probe = tmp_path / "modules.json"
    code = (
        "import json, os, sys, threading, time\n"
        "def probe():\n"  # write then rename, so the test never reads a half-written list
        "    while True:\n"
        f"        open({str(probe)!r} + '.tmp', 'w').write(json.dumps(sorted(sys.modules)))\n"
        f"        os.replace({str(probe)!r} + '.tmp', {str(probe)!r})\n"
        "        time.sleep(0.1)\n"
        "threading.Thread(target=probe, daemon=True).start()\n"
        "from finmlops.cli import main\n"
        f"sys.argv = ['finmlops', 'serve', '--config', {str(tmp_path / 'serving.yaml')!r}, '--port', '{port}', "
        "'--log-level', 'warning']\n"
        "main()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, proc)
        client = Client(base)
        x = np.zeros((1, 10, 35), np.float32)
        for i in range(30):
            assert client.request("POST", "/v2/models/tiny/infer", v2_body(x, id=f"p{i}"))[0] == 200
        for _ in range(2):  # the probe rewrites the list every 0.1 s: the second new file was begun after the requests
            probe.unlink()
            wait_until(probe.exists, timeout=10, what="the module list written after the requests")
        modules = json.loads(probe.read_text())
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0].decode()
    # uvicorn re-raises the SIGTERM it caught once it has drained requests and run the shutdown
    assert proc.returncode in (0, -signal.SIGTERM) and "Traceback" not in out, out
    assert "onnxruntime" in modules and "torch" not in modules
    assert {f"p{i}" for i in range(30)} <= set(read_requests(db)["id"])


def test_feedback_for_an_id_evicted_from_memory_is_found_in_the_request_log(tmp_path: Path) -> None:
    model = tiny_onnx(tmp_path / "m.onnx", 10, 35)
    config = parse_config({"models": [{"name": "tiny", "source": str(model)}], "server": {"feedback_ids": 100}})
    app = ServingApp(config, registry=None, request_log=tmp_path / "requests.db")
    x = np.zeros((1, 10, 35), np.float32)
    with serve(app) as base:
        client = Client(base)
        for i in range(120):
            assert client.request("POST", "/v2/models/tiny/infer", v2_body(x, id=f"e{i}"))[0] == 200
        settle(client)
        app.request_log.flush()
        assert len(app.ledger) == 100
        first = client.request("POST", "/v2/feedback", {"id": "e0", "outcome": 0})[1]
        assert (
            first["counted"] is True and first["model"] == "tiny" and first["correct"] is True
        )  # P(up) = 0.5 predicts down
        assert client.request("POST", "/v2/feedback", {"id": "e0", "outcome": 1})[1]["counted"] is False


def test_cross_asset_features_need_the_training_market_and_then_match_training(tmp_path: Path) -> None:
    """An advanced-set model scores one ticker's raw history exactly as training saw it, given the market return."""
    full = {t: f.iloc[-150:] for t, f in load_snapshot(["AAPL", "MSFT", "JPM", "XOM"]).items()}
    names = feature_names("advanced")
    folder = tmp_path / "advanced"
    folder.mkdir()
    tiny_onnx(folder / "model.onnx", 10, len(names))
    card = {"variant": "advanced", "feature_set": "advanced", "feature_names": names, "seq_len": 10}
    (folder / "finmlops-model.json").write_text(json.dumps(card))
    app = ServingApp(
        parse_config({"models": [{"name": "advanced-predictor", "source": str(folder)}]}),
        registry=None,
        request_log=tmp_path / "requests.db",
    )
    aapl = {"AAPL": full["AAPL"]}
    with serve(app) as base:
        client = Client(base)
        status, body, _ = client.request("POST", "/v2/models/advanced-predictor/infer", _raw_body(aapl))
        assert status == 400 and "market_return" in body["error"], body
        # The first day has no return; it only feeds warm-up rows, so 0 stands in for it (JSON has no NaN).
        market = np.nan_to_num(market_returns(full).reindex(full["AAPL"].index).to_numpy(), nan=0.0)
        request = _raw_body(aapl)
        request["inputs"].append({"name": "market_return", "shape": [1, len(market)], "datatype": "FP64",
                                  "data": [market.tolist()]})  # fmt: skip
        status, body, _ = client.request("POST", "/v2/models/advanced-predictor/infer", request)
    assert status == 200, body
    trained = compute_features(full, "advanced").xs("AAPL", level="ticker")[names].to_numpy()[-10:]
    np.testing.assert_allclose(body["outputs"][0]["data"], tiny_reference(trained[None].astype(np.float32))[:, 0],
                               atol=1e-5)  # fmt: skip


def test_explain_extension_attributes_one_window_and_keeps_serving(
    feature_server: Any, universe: dict[str, Any]
) -> None:
    """POST /v2/models/{name}/explain: IG over the ONNX model, complete (attributions sum to the change in P(up))."""
    base, _ = feature_server
    client = Client(base)
    frame = compute_features(universe, "basic")
    x = frame.xs("AAPL", level="ticker").to_numpy()[-10:][None].astype(np.float32)
    status, body, _ = client.request(
        "POST", "/v2/models/baseline-predictor/versions/1/explain", {**v2_body(x), "parameters": {"top": 3}}
    )
    assert status == 200, body
    assert body["model_name"] == "baseline-predictor" and len(body["top_features"]) == 3
    assert [d["day"] for d in body["days"]][-1] == "t" and len(body["days"]) == 10
    np.testing.assert_allclose(body["prob_up"], tiny_reference(x)[0, 0], atol=1e-6)
    assert abs(body["sum_attributions"] - (body["prob_up"] - body["baseline_prob_up"])) < 1e-4
    assert client.request("POST", "/v2/models/baseline-predictor/versions/1/infer", v2_body(x))[0] == 200
    two = np.concatenate([x, x])
    status, body, _ = client.request("POST", "/v2/models/baseline-predictor/versions/1/explain", v2_body(two))
    assert status == 400 and "batch 1" in body["error"], body
    status, body, _ = client.request(
        "POST", "/v2/models/baseline-predictor/versions/1/explain", {**v2_body(x), "parameters": {"steps": 1000}}
    )
    assert status == 400 and "'steps'" in body["error"], body
    assert client.request("GET", "/v2/models/baseline-predictor/explain")[0] == 405
    assert client.request("POST", "/v2/models/nope/explain", v2_body(x))[0] == 404


def _start_serve(tmp_path: Path, config: str) -> tuple[subprocess.Popen[bytes], int]:
    """``finmlops serve`` as a process on a free port, once it answers readiness."""
    (tmp_path / "serving.yaml").write_text(config)
    port = free_port()
    code = (
        "import sys\nfrom finmlops.cli import main\n"
        f"sys.argv = ['finmlops', 'serve', '--config', {str(tmp_path / 'serving.yaml')!r}, '--port', '{port}', "
        "'--log-level', 'warning']\nmain()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
    except AssertionError as error:
        proc.kill()
        raise AssertionError(f"{error}\n{proc.communicate()[0].decode()}") from None
    return proc, port


def test_sigterm_drains_a_request_whose_body_is_still_arriving(tmp_path: Path) -> None:
    """Headers and half the body, then SIGTERM, then the rest: the server stops listening but answers it (200)."""
    model = tiny_onnx(tmp_path / "m.onnx", 10, 35)
    db = tmp_path / "requests.db"
    proc, port = _start_serve(tmp_path, f"models:\n  - name: tiny\n    source: {model}\nserver:\n  request_log: {db}\n")
    x = np.random.default_rng(3).normal(size=(1, 10, 35)).astype(np.float32)
    body = json.dumps(v2_body(x, id="in-flight")).encode()
    head = (
        f"POST /v2/models/tiny/infer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    signalled = False
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(head + body[: len(body) // 2])
            time.sleep(0.3)  # the server has parsed the headers: the request is in flight
            proc.send_signal(signal.SIGTERM)
            signalled = True
            deadline = time.monotonic() + 10
            while True:  # shutdown has begun once the listening socket is gone
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                except ConnectionRefusedError:
                    break
                assert time.monotonic() < deadline, "the server kept listening after SIGTERM"
                time.sleep(0.05)
            assert proc.poll() is None  # still running: draining the request
            sock.sendall(body[len(body) // 2 :])
            response = b""
            while chunk := sock.recv(65536):  # the server closes the connection after its last answer
                response += chunk
    finally:
        if not signalled:  # a second SIGTERM would make uvicorn skip the drain and the log flush
            proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0].decode()
    status_line, _, rest = response.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 200 OK", response[:500]
    answer = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert answer["id"] == "in-flight"
    assert answer["outputs"][0]["data"][0] == pytest.approx(float(tiny_reference(x)[0, 0]), abs=1e-6)
    assert proc.returncode in (0, -signal.SIGTERM) and "Traceback" not in out, out
    assert read_requests(db).set_index("id").loc["in-flight", "status"] == 200  # logged before the exit


def test_infer_tokens_guard_infer_feedback_and_explain(tmp_path: Path) -> None:
    """With ``auth.infer_tokens`` set: 401 (and a Bearer challenge) without a valid token, 200 with it."""
    folder = _card_model(tmp_path / "model")
    config = parse_config(
        {"models": [{"name": "tiny", "source": str(folder)}], "auth": {"infer_tokens": {"bob": "bob-token-0123456789"}}}
    )
    app = ServingApp(config, registry=None, request_log=tmp_path / "requests.db")
    x = np.random.default_rng(4).normal(size=(1, 10, 16)).astype(np.float32)
    calls = [
        ("/v2/models/tiny/infer", v2_body(x, id="auth-1")),
        ("/v2/models/tiny/explain", {**v2_body(x), "parameters": {"steps": 2}}),
        ("/v2/feedback", {"id": "auth-1", "outcome": 1}),
    ]
    good = {"Authorization": "Bearer bob-token-0123456789"}
    with serve(app) as base:
        client = Client(base)
        for path, body in calls:
            for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": "bob"}):
                status, payload, got = client.request("POST", path, body, headers)
                assert status == 401 and "bearer token" in payload["error"], (path, headers, payload)
                assert got["www-authenticate"].startswith("Bearer"), got
            status, payload, _ = client.request("POST", path, body, good)
            assert status == 200, (path, payload)
        assert client.request("GET", "/v2/health/ready")[0] == 200  # health and metadata stay open
        assert client.request("GET", "/v2/models/tiny")[0] == 200


def test_every_documented_series_is_exported_and_every_exported_one_documented(feature_server: Any) -> None:
    """docs/metrics.md against a live scrape, after the traffic that creates every series (PSI, feedback, arms)."""
    from prometheus_client.parser import text_string_to_metric_families

    base, _ = feature_server
    client = Client(base)
    x = np.random.default_rng(6).normal(size=(1, 10, 16)).astype(np.float32)
    assert client.request("POST", "/v2/models/baseline-predictor/infer", v2_body(x, id="docs-1"))[0] == 200
    assert client.request("POST", "/v2/models/baseline-predictor/infer", v2_body(x[:, :5]))[0] == 400
    shadow_registered(feature_server[1], "docs-1", "enhanced-predictor")
    assert client.request("POST", "/v2/feedback", {"id": "docs-1", "outcome": 1})[0] == 200
    text = client.request("GET", "/metrics")[1]
    exported = {
        f.name + ("_total" if f.type == "counter" else "")
        for f in text_string_to_metric_families(text)
        if f.name.startswith("finmlops_") and f.samples
    }
    doc = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    documented = set(re.findall(r"^\| `(finmlops_\w+)`", doc, flags=re.MULTILINE))
    assert len(documented) >= 9
    assert exported == documented, {"undocumented": exported - documented, "not exported": documented - exported}


def test_shadow_predictions_count_toward_their_models_feedback_accuracy(feature_server: Any) -> None:
    """The per-model gauges cover shadow predictions (that is how a shadow is judged live); the served model's
    gauge counts only its own answers."""
    base, app = feature_server
    client = Client(base)
    before = app.ledger.stats()
    x = np.random.default_rng(7).normal(size=(1, 10, 16)).astype(np.float32)
    assert client.request("POST", "/v2/models/baseline-predictor/infer", v2_body(x, id="shadow-fb"))[0] == 200
    shadow_registered(app, "shadow-fb", "enhanced-predictor")
    result = client.request("POST", "/v2/feedback", {"id": "shadow-fb", "outcome": 1})[1]
    assert result["model"] == "baseline-predictor"
    after = app.ledger.stats()
    for model in ("baseline-predictor", "enhanced-predictor"):
        assert after[model].n == before.get(model, ModelStats()).n + 1, model
    text = client.request("GET", "/metrics")[1]
    gauge = re.search(r'^finmlops_feedback_accuracy\{model="enhanced-predictor"\} (\S+)$', text, re.MULTILINE)
    assert gauge is not None and float(gauge.group(1)) == pytest.approx(after["enhanced-predictor"].accuracy)


def test_each_arm_is_exported_at_zero_before_its_first_request(tmp_path: Path) -> None:
    """So that FinmlopsExperimentArmStarved sees an arm that never gets traffic (an absent series cannot alert)."""
    model = tiny_onnx(tmp_path / "m.onnx", 10, 35)
    sources = [{"name": n, "source": str(model)} for n in ("a-model", "b-model", "c-model")]
    arms = [{"name": "a", "model": "a-model", "weight": 1}, {"name": "b", "model": "b-model", "weight": 1},
            {"name": "c", "model": "c-model", "weight": 0}]  # fmt: skip
    experiments = [{"name": "ab", "candidates": arms}]
    config = parse_config({"models": sources, "experiments": experiments, "auth": {"insecure_admin": True}})
    app = ServingApp(config, registry=None, request_log=None)

    def zero_arms(text: str) -> set[str]:
        pattern = (
            r'^finmlops_requests_total\{arm="(\w)",experiment="ab",model="\w-model",'
            r'protocol="rest",status="200"\} 0\.0$'
        )
        return set(re.findall(pattern, text, re.MULTILINE))

    assert zero_arms(app.render_metrics().decode()) == {"a", "b"}  # c is off (weight 0) on purpose
    with serve(app) as base:
        client = Client(base)
        patch = {"candidates": [{**arm, "weight": 1} for arm in arms]}
        assert client.request("PUT", "/admin/experiments/ab", patch)[0] == 200
        assert zero_arms(client.request("GET", "/metrics")[1]) == {"a", "b", "c"}


def _binary_raw(days: int, close: float = 100.0) -> tuple[bytes, dict[str, str]]:
    """One ticker's synthetic raw OHLCV history of ``days`` days as binary FP64 tensors (small on the wire)."""
    rng = np.random.default_rng(3)
    c = close * np.exp(np.cumsum(rng.normal(0, 0.01, days)))
    cols = {"open": c, "high": c * 1.01, "low": c * 0.99, "close": c, "volume": np.full(days, 1e6)}
    head = json.dumps({"inputs": [{"name": n, "shape": [1, days], "datatype": "FP64",
                                   "parameters": {"binary_data_size": days * 8}} for n in cols]}).encode()  # fmt: skip
    body = head + b"".join(v.astype("<f8").tobytes() for v in cols.values())
    return body, {"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"}


def test_raw_history_beyond_the_documented_maximum_is_a_413_not_a_500(feature_server: Any) -> None:
    """11.5: T >= ~80,000 days overflowed the synthetic calendar (OutOfBoundsTimedelta, a 500) on infer and
    explain. Beyond MAX_HISTORY_DAYS it is a 413 naming the limit; at the limit it is scored."""
    from finmlops.serving.raw import MAX_HISTORY_DAYS

    client = Client(feature_server[0])
    for tail in ("infer", "explain"):
        for days in (80_000, MAX_HISTORY_DAYS + 1):
            body, headers = _binary_raw(days)
            status, payload, _ = client.request(
                "POST", f"/v2/models/baseline-predictor/versions/1/{tail}", raw=body, headers=headers
            )
            assert status == 413 and f"maximum raw history of {MAX_HISTORY_DAYS} days" in payload["error"], payload
    body, headers = _binary_raw(MAX_HISTORY_DAYS)
    status, payload, _ = client.request("POST", "/v2/models/baseline-predictor/versions/1/infer", raw=body,
                                        headers=headers)  # fmt: skip
    assert status == 200, payload


@pytest.mark.parametrize(
    ("column", "change", "rule"),
    [("high", 0.5, "high_bound"), ("low", 2.0, "low_bound"), ("volume", -1.0, "volume_negative"),
     ("close", -1.0, "positive_price"), ("volume", 0.5, "dtype")],
)  # fmt: skip
def test_raw_rows_the_store_rejects_are_refused_by_the_stores_own_rule(
    feature_server: Any, universe: dict[str, Any], column: str, change: float, rule: str
) -> None:
    """11.5: raw OHLCV with High < Low was scored although the store rejects it. Raw requests go through
    ``validate_ohlcv`` (one rule set), and the 400 names the batch row, the day and the store's rule."""
    body = _raw_body(universe)
    tensor = next(t for t in body["inputs"] if t["name"] == column)
    day = len(tensor["data"][1]) - 3
    tensor["data"][1][day] = tensor["data"][1][day] * change if change > 0 else change
    if rule == "dtype":
        tensor["data"][1][day] = tensor["data"][1][day] + 0.5
    status, payload, _ = Client(feature_server[0]).request(
        "POST", "/v2/models/baseline-predictor/versions/1/infer", body
    )
    assert status == 400 and f"rule '{rule}' failed" in payload["error"], payload
    assert "batch row 1" in payload["error"] and payload["row"] == 1, payload  # a client can resend the others
    if rule != "dtype":
        assert f"day {day}" in payload["error"], payload


def test_explain_parameters_and_values_are_type_checked(feature_server: Any, universe: dict[str, Any]) -> None:
    """11.5: ``steps: true`` was read as 1, and an FP64 1e300 window was a 500 on /explain; both are 400s now."""
    frame = compute_features(universe, "basic")
    x = frame.xs("AAPL", level="ticker").to_numpy()[-10:][None].astype(np.float32)
    client = Client(feature_server[0])
    path = "/v2/models/baseline-predictor/versions/1/explain"
    for params, words in (({"steps": True}, "'steps'"), ({"top": True}, "'top'"), ({"steps": "4"}, "'steps'"),
                          ({"steps": 4.0}, "'steps'")):  # fmt: skip
        status, payload, _ = client.request("POST", path, {**v2_body(x), "parameters": params})
        assert status == 400 and words in payload["error"], (params, payload)
    huge = {"inputs": [{"name": "input_data", "shape": list(x.shape), "datatype": "FP64",
                        "data": np.full(x.size, 1e300).tolist()}]}  # fmt: skip
    status, payload, _ = client.request("POST", path, huge)
    assert status == 400 and "input 'input_data': values beyond the FP32 range" in payload["error"], payload
    assert client.request("POST", path, {**v2_body(x), "parameters": {"steps": 4}})[0] == 200
