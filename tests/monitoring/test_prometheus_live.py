"""The dashboard and the alert rules against a real Prometheus scraping a real `finmlops serve` driven by
`finmlops traffic`: every dashboard query and every alert expression (thresholds stripped) returns data."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import yaml
from finmlops_testing.serving import free_port, tiny_onnx
from onnx import TensorProto, helper

from finmlops.data import load_snapshot
from finmlops.features import compute_features, feature_names
from finmlops.stats.drift import reference_profile

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "monitoring" / "grafana" / "finmlops-dashboard.json"
PROMETHEUS_YML = REPO / "monitoring" / "prometheus" / "prometheus.yml"
ALERT_RULES = REPO / "monitoring" / "prometheus" / "alert-rules.yaml"
FINMLOPS = str(Path(sys.executable).with_name("finmlops"))
# Dashboard variables as Grafana would fill them with "All" and a short range.
VARIABLES = {"$__rate_interval": "1m", "$model": ".*"}
SEQ_LEN = 10


def _card_model(folder: Path, bias: float, profile: dict[str, Any]) -> Path:
    """A `finmlops export` folder: a small real ONNX graph, its card and the drift reference beside it."""
    names = feature_names("basic")
    tiny_onnx(folder / "model.onnx", SEQ_LEN, len(names), bias=bias)
    card = {"variant": folder.name, "feature_set": "basic", "feature_names": names, "seq_len": SEQ_LEN,
            "data_hash": "d" * 64}  # fmt: skip
    (folder / "finmlops-model.json").write_text(json.dumps(card))
    (folder / "drift_reference.json").write_text(json.dumps(profile))
    return folder


def _failing_onnx(path: Path, n_features: int) -> Path:
    """A model that loads and passes the server's all-zeros warm-up but fails at run time on any other input
    (a Gather index of 5 into a one-element table): real 500s for the error-rate expressions."""
    graph = helper.make_graph(
        [
            helper.make_node("Abs", ["input_data"], ["a"]),
            helper.make_node("ReduceMax", ["a"], ["m"], keepdims=0),
            helper.make_node("Min", ["m", "one"], ["c"]),
            helper.make_node("Ceil", ["c"], ["k"]),
            helper.make_node("Mul", ["k", "five"], ["k5"]),
            helper.make_node("Cast", ["k5"], ["idx"], to=TensorProto.INT64),
            helper.make_node("Gather", ["table", "idx"], ["g"], axis=0),
            helper.make_node("ReduceMean", ["input_data"], ["mean"], axes=[1, 2], keepdims=0),
            helper.make_node("Unsqueeze", ["mean", "axis1"], ["col"]),
            helper.make_node("Add", ["col", "g"], ["z"]),
            helper.make_node("Sigmoid", ["z"], ["prob_up"]),
        ],
        "fails-at-run-time",
        [helper.make_tensor_value_info("input_data", TensorProto.FLOAT, ["batch", SEQ_LEN, n_features])],
        [helper.make_tensor_value_info("prob_up", TensorProto.FLOAT, ["batch", 1])],
        initializer=[
            helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
            helper.make_tensor("five", TensorProto.FLOAT, [], [5.0]),
            helper.make_tensor("table", TensorProto.FLOAT, [1], [0.0]),
            helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return bytes(response.read())


def _wait_until(check: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def _post(url: str, body: dict[str, Any]) -> int:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``(Prometheus URL, server URL)``: finmlops serve with an A/B experiment, replayed traffic with feedback,
    a few requests to a failing model, and Prometheus scraping it every second."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("the prometheus binary is not installed (apt-get install prometheus)")
    root = tmp_path_factory.mktemp("prom-live")
    universe = load_snapshot(["AAPL", "MSFT", "JPM"])
    reference = compute_features({t: f.loc["2019":"2021"] for t, f in universe.items()}, "basic").dropna()
    profile = reference_profile(reference.to_numpy(), list(reference.columns))
    config = {
        "models": [
            {"name": "baseline-predictor", "source": str(_card_model(root / "baseline", 0.0, profile))},
            {"name": "enhanced-predictor", "source": str(_card_model(root / "enhanced", 0.3, profile))},
            {"name": "broken-predictor", "source": str(_failing_onnx(root / "broken.onnx", len(reference.columns)))},
        ],
        "experiments": [
            {"name": "ab", "default": "baseline-predictor", "candidates": [
                {"name": "baseline-predictor", "weight": 70}, {"name": "enhanced-predictor", "weight": 30}]},
        ],
        "server": {"reload_interval_s": 0, "drift_window": 200},
    }  # fmt: skip
    (root / "serving.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "FINMLOPS_HOME": str(root / "home"), "OMP_NUM_THREADS": "1"}
    port, prom_port = free_port(), free_port()
    server_url = f"http://127.0.0.1:{port}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen(
            [FINMLOPS, "serve", "--config", str(root / "serving.yaml"), "--port", str(port), "--log-level", "warning",
             "--grpc-port", "0"],
            env=env, stdout=subprocess.DEVNULL, stderr=(root / "serve.log").open("wb"),
        ))  # fmt: skip
        _wait_until(lambda: _get(f"{server_url}/v2/health/ready") is not None, "finmlops serve", 60)
        scrape = yaml.safe_load(PROMETHEUS_YML.read_text())
        scrape["global"].update(scrape_interval="1s", evaluation_interval="1s")
        scrape["rule_files"] = [str(ALERT_RULES)]
        scrape["scrape_configs"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
        (root / "prometheus.yml").write_text(yaml.safe_dump(scrape))
        procs.append(subprocess.Popen(
            [binary, f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=subprocess.DEVNULL, stderr=(root / "prometheus.log").open("wb"),
        ))  # fmt: skip
        prom_url = f"http://127.0.0.1:{prom_port}"
        _wait_until(lambda: _get(f"{prom_url}/-/ready") is not None, "prometheus", 30)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(1, SEQ_LEN, len(reference.columns))).astype(np.float32)
        body = {
            "inputs": [{"name": "input_data", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]
        }
        broken = f"{server_url}/v2/models/broken-predictor/infer"
        statuses = {_post(broken, body) for _ in range(3)}
        traffic = subprocess.run(
            [FINMLOPS, "traffic", "--experiment", "ab", "--url", server_url, "--rate", "60", "--days", "60",
             "--tickers", "AAPL,MSFT,JPM", "--start", "2023-05-01", "--history", "90", "--json"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert traffic.returncode == 0, traffic.stderr[-2000:]
        summary = json.loads(traffic.stdout)
        assert summary["ok"] > 100 and summary["feedback_ok"] > 50, summary
        statuses |= {_post(broken, body) for _ in range(5)}
        assert statuses == {500}, statuses
        yield prom_url, server_url
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def query(prom_url: str, expr: str) -> list[dict[str, Any]]:
    """The instant-query result of ``expr`` (raises on a PromQL error)."""
    payload = json.loads(_get(f"{prom_url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"))
    assert payload["status"] == "success", (expr, payload)
    return list(payload["data"]["result"])


def _wait_for_data(
    prom_url: str, exprs: list[str], ready: Any = lambda results: True
) -> dict[str, list[dict[str, Any]]]:
    """Each expression's result once all have data and ``ready(results)`` holds (series appear within a few
    scrapes), or whatever they hold after 20 s."""
    results: dict[str, list[dict[str, Any]]] = {}
    deadline = time.monotonic() + 20
    while True:
        results = {e: query(prom_url, e) for e in exprs}
        if (all(results.values()) and ready(results)) or time.monotonic() > deadline:
            return results
        time.sleep(1)


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            exprs.append(variable["definition"].replace("label_values(", "").split(",")[0])
    out = []
    for expr in exprs:
        for name, value in VARIABLES.items():
            expr = expr.replace(name, value)
        assert "$" not in expr, f"unsubstituted variable in {expr}"
        out.append(expr)
    return out


def _top_level_split(expr: str) -> list[str]:
    """Split ``expr`` at its outermost comparisons and set operators, keeping what each side selects."""
    parts, depth, start, i = [], 0, 0, 0
    ops = re.compile(r"(<=|>=|==|!=|<|>|\band\b|\bor\b|\bunless\b)")
    while i < len(expr):
        ch = expr[i]
        if ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
        elif depth == 0 and (m := ops.match(expr, i)) and not expr.startswith("=~", i - 1):
            parts.append(expr[start:i])
            start = i = m.end()
            continue
        i += 1
    parts.append(expr[start:])
    cleaned = []
    for part in parts:
        part = re.sub(r"^\s*(bool\s*)?((on|ignoring)\s*\([^)]*\)\s*)?(group_(left|right)\s*(\([^)]*\))?\s*)?", "", part)
        if part.strip() and not re.fullmatch(r"\s*[-+]?[0-9.]+\s*", part):
            cleaned.append(part.strip())
    return cleaned


def alert_operands() -> dict[str, list[str]]:
    rules = yaml.safe_load(ALERT_RULES.read_text())
    return {r["alert"]: _top_level_split(r["expr"]) for g in rules["groups"] for r in g["rules"] if "alert" in r}


def test_threshold_stripping_keeps_each_operand() -> None:
    assert _top_level_split("a < on (model) b\nand on (model) c >= 250") == ["a", "b", "c"]
    assert _top_level_split('x{s=~"5.."} / y > 0.01') == ['x{s=~"5.."} / y']
    assert _top_level_split('up{job=~"f.*"} == 0') == ['up{job=~"f.*"}']
    assert set(alert_operands()) >= {"FinmlopsErrorRateHigh", "FinmlopsFeatureDrift", "FinmlopsScrapeTargetDown"}


def test_dashboard_uses_only_metrics_the_server_exports(prometheus: tuple[str, str]) -> None:
    _, server_url = prometheus
    exported = {m.group(1) for m in re.finditer(r"^# TYPE (\S+) (\S+)", _get(f"{server_url}/metrics").decode(), re.M)}
    names = {n + suffix for n in exported for suffix in ("", "_bucket", "_count", "_sum", "_total")}
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 36
    assert {v["type"] for v in dashboard["templating"]["list"]} >= {"datasource"}
    used = set(re.findall(r"\bfinmlops_[a-z_]+", " ".join(dashboard_queries())))
    assert used and used <= names, used - names
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("traffic", "latency", "error", "accuracy", "drift", "class balance", "versions"):
        assert topic in titles, topic


def test_every_dashboard_query_returns_data(prometheus: tuple[str, str]) -> None:
    prom_url, _ = prometheus
    queries = dashboard_queries()
    error_query = next(e for e in queries if 'status=~"5.."' in e)

    def error_rates(results: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
        return {s["metric"]["model"]: float(s["value"][1]) for s in results[error_query]}

    results = _wait_for_data(prom_url, queries, lambda r: error_rates(r).get("broken-predictor", 0) > 0)
    empty = [e for e, r in results.items() if not r]
    assert empty == [], empty
    rates = error_rates(results)
    assert rates["broken-predictor"] == 1.0 and rates["baseline-predictor"] == 0.0, rates


def test_every_alert_expression_returns_data_without_its_threshold(prometheus: tuple[str, str]) -> None:
    prom_url, _ = prometheus
    operands = alert_operands()
    results = _wait_for_data(prom_url, [e for exprs in operands.values() for e in exprs])
    empty = {alert: e for alert, exprs in operands.items() for e in exprs if not results[e]}
    assert empty == {}, empty
    # And the full rules load and evaluate in this Prometheus without errors.
    rules = json.loads(_get(f"{prom_url}/api/v1/rules"))["data"]["groups"]
    loaded = {r["name"]: r for g in rules for r in g["rules"]}
    assert set(loaded) == set(operands) and all(r["health"] == "ok" for r in loaded.values()), loaded
