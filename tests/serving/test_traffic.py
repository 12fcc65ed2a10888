"""`finmlops traffic`: a real-history replay against a stub V2 server on 127.0.0.1 (real HTTP, real snapshot)."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from finmlops_testing import wait_until
from typer.testing import CliRunner

from finmlops.cli import app
from finmlops.data import load_snapshot
from finmlops.serving.experiments import Experiment, parse_config, seldon_route_value
from finmlops.serving.traffic import TrafficSummary, replay_days, run_traffic, volatility_regime

TICKERS = ["AAPL", "MSFT", "XOM"]


class StubV2(ThreadingHTTPServer):
    """A V2 server that routes through a real sticky 50/50 Experiment, fails on purpose, and logs what it got."""

    daemon_threads = True

    def __init__(self, fail_every: int = 0, garbage_every: int = 0):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.experiment = Experiment(
            parse_config({"name": "ab", "sticky_header": "x-user-id", "candidates": [{"name": "up"}, {"name": "dn"}]})
        )
        self.fail_every, self.garbage_every = fail_every, garbage_every
        self.fail_status, self.fail_body = 500, b'{"error": "boom"}'
        self.lock = threading.Lock()
        self.events: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.served: dict[str, str] = {}
        self.feedback: dict[str, int] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client expects
    disable_nagle_algorithm = True  # headers and body go out in two writes; Nagle would delay the second by 40 ms
    server: StubV2

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in {"content-type": "application/json", "content-length": str(len(body)), **(headers or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        headers = {k.lower(): v for k, v in self.headers.items()}
        s = self.server
        with s.lock:
            s.events.append((self.path, body, headers))
            n = len(s.events)
        if self.path == "/v2/feedback":
            if body["id"] not in s.served:
                return self._send(404, b'{"error": "unknown id"}')
            s.feedback[body["id"]] = body["outcome"]
            return self._send(200, b"{}")
        if s.fail_every and n % s.fail_every == 0:
            return self._send(s.fail_status, s.fail_body)
        if s.garbage_every and n % s.garbage_every == 0:
            return self._send(200, b"not json")
        arm = s.experiment.route(headers).arm
        s.served[body["id"]] = arm
        out = {"id": body["id"], "model_name": arm, "outputs": [{"name": "p", "data": [0.9 if arm == "up" else 0.1]}]}
        self._send(200, json.dumps(out).encode(), {"x-seldon-route": seldon_route_value(arm, 1)})


@pytest.fixture
def stub() -> Iterator[StubV2]:
    server = StubV2(fail_every=13, garbage_every=17)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def universe() -> dict:
    return load_snapshot(TICKERS, start=date(2022, 1, 1), end=date(2023, 3, 31))


def test_replay_items_are_real_history_with_the_training_target(universe: dict) -> None:
    days = list(replay_days(universe, start=date(2023, 3, 1), history=60))
    assert [d[0].day for d in days] == [d.date() for d in universe["AAPL"].loc["2023-03-01":].index]
    item = days[0][1]
    frame = universe[item.ticker]
    pos = frame.index.get_loc(item.day.isoformat())
    inputs = {t["name"]: t for t in item.body["inputs"]}
    assert inputs["adj_close"]["shape"] == [1, 60]
    assert inputs["adj_close"]["data"][-1] == frame["adj_close"].iloc[pos]  # the day itself is the last row
    assert inputs["volume"]["data"][0] == float(frame["volume"].iloc[pos - 59])
    expected = int(frame["adj_close"].iloc[pos + 1] > frame["adj_close"].iloc[pos])
    assert item.outcome == expected
    assert days[-1][0].outcome is None  # the last day's next close is not in the data
    assert item.regime == volatility_regime(frame["adj_close"]).iloc[pos]


def test_tensor_items_are_unscaled_feature_windows(universe: dict) -> None:
    from finmlops.features import compute_features, feature_names

    day = next(replay_days(universe, start=date(2023, 3, 1), model_input="tensor", feature_set="basic", seq_len=10))
    tensor = day[0].body["inputs"][0]
    assert tensor["name"] == "input_data"
    assert tensor["shape"] == [1, 10, len(feature_names("basic"))]
    features = compute_features(universe, "basic").xs(day[0].ticker, level="ticker").loc[:"2023-03-01"].tail(10)
    assert tensor["data"][-1] == pytest.approx(float(features.iloc[-1, -1]), rel=1e-6)


def test_replay_against_a_stub_server_counts_errors_arms_and_feedback(stub: StubV2, universe: dict) -> None:
    days = replay_days(universe, start=date(2023, 2, 1), history=60)
    summary = run_traffic(days, url=stub.url, experiment="ab", rate=400, feedback_delay=1, seed=3, concurrency=3)
    n_days = len(universe["AAPL"].loc["2023-02-01":])
    assert summary.data_exhausted and summary.days == n_days
    infers = [e for e in stub.events if e[0] != "/v2/feedback"]
    assert summary.requests == len(infers) == n_days * len(TICKERS)
    assert summary.errors.get("status:500", 0) > 0 and summary.errors.get("bad-body", 0) > 0
    assert summary.ok + sum(summary.errors.values()) == summary.requests
    assert sum(summary.arms.values()) == summary.ok == len(stub.served)
    assert set(summary.arms) == {"up", "dn"}
    # Every answered request with a known label gets exactly its true outcome (the close of d+1 to the close of d+2,
    # the models' label); the last two days have none.
    assert summary.feedback_sent == summary.feedback_ok == len(stub.feedback)
    for rid, outcome in stub.feedback.items():
        ticker, day = rid.split("-")[2], rid.split("-")[1]
        frame = universe[ticker]
        pos = frame.index.get_loc(f"{day[:4]}-{day[4:6]}-{day[6:]}")
        assert outcome == int(frame["adj_close"].iloc[pos + 2] > frame["adj_close"].iloc[pos + 1])
    assert len(stub.feedback) >= len(stub.served) - 2 * len(TICKERS)
    # The arm that always says "up" is right on the up days: the client-side tally agrees with the data.
    ups = sum(stub.feedback[r] for r, arm in stub.served.items() if arm == "up" and r in stub.feedback)
    assert summary.arm_accuracy["up"].n * summary.arm_accuracy["up"].accuracy == pytest.approx(ups)
    # Headers: experiment routing, a sticky user key from a pool, the volatility regime.
    _, body, headers = infers[0]
    assert headers["seldon-model"] == "ab.experiment" and headers["x-user-id"].startswith("user-")
    assert headers["x-volatility-regime"] in {"high", "low"} and body["parameters"]["ticker"] in TICKERS


def test_feedback_waits_a_simulated_day(stub: StubV2, universe: dict) -> None:
    stub.fail_every = stub.garbage_every = 0
    days = replay_days(universe, start=date(2023, 3, 1), history=60)
    run_traffic(days, url=stub.url, experiment="ab", feedback_delay=2, concurrency=1)
    day_of = lambda body: body["id"].split("-")[1]  # noqa: E731
    calendar = sorted({day_of(b) for p, b, _ in stub.events if p != "/v2/feedback"})
    fed = 0
    # One worker: the server sees requests in submission order.
    for k, (path, body, _) in enumerate(stub.events):
        if path != "/v2/feedback":
            continue
        fed += 1
        i = calendar.index(day_of(body))
        before = {day_of(b) for p, b, _ in stub.events[:k] if p != "/v2/feedback"}
        if i + 2 < len(calendar):
            # Posted when the replay reaches day d+2: after every request of d+1, before any of d+2.
            assert calendar[i + 1] in before and calendar[i + 2] not in before
        else:
            assert before == set(calendar)  # the last days' outcomes are posted once the replay ends
    assert fed == sum(1 for d in calendar[:-2] for _ in TICKERS)


def test_days_bound_the_replay_and_the_rate_caps_its_speed(stub: StubV2, universe: dict) -> None:
    days = replay_days(universe, start=date(2022, 6, 1), end=date(2022, 12, 30), history=60)
    began = time.perf_counter()
    summary = run_traffic(days, url=stub.url, experiment="ab", rate=60, max_days=10, concurrency=2)
    elapsed = time.perf_counter() - began
    assert not summary.data_exhausted
    assert summary.days == 10 and summary.requests == 10 * len(TICKERS) == 10 * summary.requests_per_day
    assert summary.first_day == date(2022, 6, 1) and summary.last_day == date(2022, 6, 14)
    sent = summary.requests + summary.feedback_sent
    assert sent <= 60 * elapsed + 5  # never faster than the cap
    with pytest.raises(ValueError, match="positive"):
        run_traffic(days, url=stub.url, experiment="ab", max_days=0)


def test_end_is_the_last_replayed_day(universe: dict) -> None:
    days = list(replay_days(universe, start=date(2022, 12, 1), end=date(2022, 12, 30), history=60))
    assert [d[0].day for d in days] == [d.date() for d in universe["AAPL"].loc["2022-12-01":"2022-12-30"].index]


def test_unreachable_server_is_counted_not_fatal(universe: dict) -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), _Handler) as closed:
        port = closed.server_address[1]  # bound then closed: nothing listens there
    days = replay_days(universe, start=date(2023, 3, 27), history=60)
    summary = run_traffic(days, url=f"http://127.0.0.1:{port}", experiment="ab")
    assert summary.ok == 0 and summary.requests == 5 * len(TICKERS)
    assert list(summary.errors) == ["connection:ConnectionRefusedError"]
    assert "refused" in summary.error_text["connection:ConnectionRefusedError"].lower()
    assert summary.feedback_sent == 0
    assert summary.failure() == (
        f"15 of 15 requests failed: 15 connection:ConnectionRefusedError "
        f"({summary.error_text['connection:ConnectionRefusedError']})"
    )
    with pytest.raises(ValueError, match="--url must look like"):
        run_traffic(iter([]), url="ftp://x", experiment="ab", rate=1)


def test_cli_traffic_prints_a_json_summary(stub: StubV2) -> None:
    result = CliRunner().invoke(
        app,
        [
            "traffic",
            "--experiment",
            "ab",
            "--url",
            stub.url,
            "--rate",
            "300",
            "--tickers",
            "AAPL,JPM",
            "--start",
            "2023-12-01",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = TrafficSummary.model_validate_json(result.stdout)
    assert summary.first_day == date(2023, 12, 1) and summary.last_day == date(2023, 12, 29)
    assert summary.requests == 2 * summary.days and summary.data_exhausted
    assert TrafficSummary.model_validate_json(summary.model_dump_json()) == summary  # round trip through JSON
    bad = CliRunner().invoke(app, ["traffic", "--experiment", "ab", "--rate", "0"])
    assert bad.exit_code == 2


def test_cli_traffic_prints_the_latency_its_help_promises(stub: StubV2) -> None:
    args = ["traffic", "--experiment", "ab", "--url", stub.url, "--tickers", "AAPL"]
    result = CliRunner().invoke(app, [*args, "--start", "2023-12-20"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "client-side latency" in " ".join(CliRunner().invoke(app, ["traffic", "--help"]).output.split())
    assert re.search(r"client-side latency: p50 \d+\.\d ms, p99 \d+\.\d ms, max \d+\.\d ms", result.stdout), (
        result.stdout
    )


def test_cli_traffic_fails_with_the_servers_words_when_most_requests_fail(stub: StubV2) -> None:
    """Every infer answered 404 (a wrong experiment): exit 1 and the server's error text, no dict repr."""
    stub.fail_every = 1
    stub.fail_status, stub.fail_body = 404, b'{"error": "no experiment \'nope\'; configured: ab"}'
    args = ["traffic", "--experiment", "nope", "--url", stub.url, "--tickers", "AAPL", "--start", "2023-12-20"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "7 of 7 requests failed: 7 status:404 (no experiment 'nope'; configured: ab)" in " ".join(
        result.output.split()
    )
    assert "{" not in result.stdout and "None" not in result.output


def _tiny_model(folder: Path, feature_set: str, seq_len: int, scale: float) -> Path:
    """A real ONNX graph (sigmoid of the scaled window mean) and its card, as `finmlops export` lays them out."""
    import onnx
    from onnx import TensorProto, helper

    from finmlops.features import feature_names

    names = feature_names(feature_set)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input_data"], ["m"], axes=[1, 2], keepdims=1),
            helper.make_node("Flatten", ["m"], ["f"], axis=1),
            helper.make_node("Mul", ["f", "scale"], ["s"]),
            helper.make_node("Sigmoid", ["s"], ["prob_up"]),
        ],
        f"tiny-{feature_set}",
        [helper.make_tensor_value_info("input_data", TensorProto.FLOAT, ["batch", seq_len, len(names)])],
        [helper.make_tensor_value_info("prob_up", TensorProto.FLOAT, ["batch", 1])],
        [helper.make_tensor("scale", TensorProto.FLOAT, [1], [scale])],
    )
    folder.mkdir(parents=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), folder / "model.onnx")
    card = {"variant": folder.name, "feature_set": feature_set, "feature_names": names, "seq_len": seq_len}
    (folder / "finmlops-model.json").write_text(json.dumps(card))
    return folder


@contextlib.contextmanager
def _tiny_server(folder: Path, sticky: bool = True) -> Iterator[tuple[str, Any]]:
    """A real finmlops server on 127.0.0.1 with two tiny arms (different feature sets and windows) in experiment
    ``ab``, 1:1, sticky by ``x-user-id`` or (``sticky=False``, like the default A/B test) routed by request id.
    Yields ``(url, app)``; the request log is ``folder / "requests.db"``."""
    pytest.importorskip("uvicorn")
    serving = pytest.importorskip("finmlops.serving.app")
    import socket

    import uvicorn

    from finmlops.serving.config import parse_config as parse_serving_config

    experiment: dict[str, Any] = {
        "name": "ab",
        "candidates": [{"name": "basic-arm", "weight": 1}, {"name": "enh-arm", "weight": 1}],
    }
    if sticky:
        experiment["sticky_header"] = "x-user-id"
    config = parse_serving_config(
        {
            "models": [
                {"name": "basic-arm", "source": str(_tiny_model(folder / "basic", "basic", 10, 1.0))},
                {"name": "enh-arm", "source": str(_tiny_model(folder / "enh", "enhanced", 15, -1.0))},
            ],
            "experiments": [experiment],
            # Unbatched, as `finmlops run` replays (workflow.live.serving_config): batching moves float32 last bits.
            "server": {"reload_interval_s": 0, **({} if sticky else {"max_batch_size": 1})},
        }
    )
    app = serving.ServingApp(config, registry=None, request_log=folder / "requests.db")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=10, what="uvicorn's start")
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(10)


def test_replay_against_the_finmlops_server(tmp_path: Path) -> None:
    """Raw OHLCV requests answered by two arms with different feature sets and window lengths, feedback counted."""
    universe = load_snapshot(["AAPL", "MSFT"], start=date(2022, 6, 1), end=date(2023, 3, 31))
    with _tiny_server(tmp_path) as (url, app):
        days = replay_days(universe, start=date(2023, 3, 13), history=90)
        result = run_traffic(days, url=url, experiment="ab", rate=200)
    assert result.days == len(universe["AAPL"].loc["2023-03-13":]) and result.errors == {}
    assert result.ok == result.requests == 2 * result.days
    assert set(result.arms) == {"basic-arm", "enh-arm"}
    assert result.feedback_errors == {} and result.feedback_ok == result.feedback_sent > 0
    stats = app.ledger.stats()
    assert sum(s.n for s in stats.values()) == result.feedback_ok
    arms = app.experiments.get("ab").posteriors()
    assert sum(a["outcomes"] for a in arms.values()) == result.feedback_ok
    # Each request carries its simulated trading day, so the A/B timeline has one look per replayed day (bucketed
    # by wall-clock day, a replay of weeks in seconds would be a single look).
    from finmlops.monitoring.abtest import analyze
    from finmlops.serving.requestlog import read_feedback, read_requests

    log = read_requests(tmp_path / "requests.db")
    replayed = {d.date().isoformat() for d in universe["AAPL"].loc["2023-03-13":].index}
    assert set(log["as_of"]) == replayed
    timeline = analyze(log, read_feedback(tmp_path / "requests.db"), "ab", min_outcomes=1).timeline
    assert [day.date for day in timeline] == sorted(replayed) and len(timeline) == result.days > 1
    assert sum(timeline[-1].outcomes.values()) == result.feedback_ok  # every outcome on some day


# Wall-clock columns: when a row was written and how long it took; everything else is what was sent and answered.
_TIMING_COLUMNS = ["ts", "latency_ms"]


def test_two_replays_log_the_same_requests_and_reach_the_same_decision(tmp_path: Path) -> None:
    """The A/B replay is a function of the data, the days and the seed: routing by request id (no sticky key, as in
    the default experiment), at different speeds and concurrency, two fresh servers log the same rows."""
    from finmlops.monitoring.abtest import analyze
    from finmlops.serving.requestlog import read_feedback, read_requests

    universe = load_snapshot(["AAPL", "MSFT", "XOM"], start=date(2022, 6, 1), end=date(2023, 12, 31))
    runs = []
    for name, concurrency, rate in (("first", 4, None), ("second", 1, 400.0)):
        folder = tmp_path / name
        with _tiny_server(folder, sticky=False) as (url, _):
            days = replay_days(universe, start=date(2023, 9, 1), end=date(2023, 12, 31), history=90)
            summary = run_traffic(days, url=url, experiment="ab", seed=7, rate=rate, concurrency=concurrency)
        log = read_requests(folder / "requests.db").drop(columns=_TIMING_COLUMNS)
        log = log.sort_values(["id", "model"], ignore_index=True)
        feedback = read_feedback(folder / "requests.db").drop(columns="ts").sort_values("id", ignore_index=True)
        decision = analyze(read_requests(folder / "requests.db"), read_feedback(folder / "requests.db"), "ab")
        runs.append((summary, log, feedback, decision.decision))
    (one, log1, fb1, decision1), (two, log2, fb2, decision2) = runs
    assert one.errors == {} and one.last_day == date(2023, 12, 29) and one.requests == 3 * one.days
    assert one.arms == two.arms and len(one.arms) == 2
    pd.testing.assert_frame_equal(log1, log2)
    pd.testing.assert_frame_equal(fb1, fb2)
    assert decision1 == decision2
    assert log1["id"].str.startswith("s7-").all()


def test_a_day_request_scores_every_ticker_and_feeds_back_each_row(tmp_path: Path) -> None:
    """per="day": one binary [n, T] request per trading day, one arm a day, feedback per row id."""
    from finmlops.serving.requestlog import read_feedback, read_requests

    universe = load_snapshot(["AAPL", "MSFT", "XOM"], start=date(2022, 6, 1), end=date(2023, 3, 31))
    with _tiny_server(tmp_path) as (url, app):
        days = replay_days(universe, start=date(2023, 3, 1), history=90, per="day")
        result = run_traffic(days, url=url, experiment="ab", seed=3)
    n_days = len(universe["AAPL"].loc["2023-03-01":])
    assert (result.per, result.days, result.requests, result.requests_per_day) == ("day", n_days, n_days, 1)
    assert result.errors == {} and result.ok == n_days and result.rows_scored == 3 * n_days
    assert result.rows_dropped == {} and sum(result.arms.values()) == n_days
    log = read_requests(tmp_path / "requests.db")
    assert len(log) == 3 * n_days and log["id"].str.fullmatch(r"s3-\d{8}/[012]").all()
    assert (log.groupby("as_of")["model"].nunique() == 1).all()  # one arm answers the whole day
    feedback = read_feedback(tmp_path / "requests.db")
    assert result.feedback_ok == result.feedback_sent == len(feedback) > 0
    assert set(feedback["id"]) <= set(log["id"])
    assert sum(s.n for s in app.ledger.stats().values()) == result.feedback_ok


def test_a_day_request_leaves_out_the_row_the_server_refuses_and_says_why(tmp_path: Path) -> None:
    universe = load_snapshot(["AAPL", "MSFT", "XOM"], start=date(2022, 6, 1), end=date(2023, 3, 31))
    msft = universe["MSFT"].copy()
    msft.loc["2023-01-03":, "volume"] = 0  # volume_change is undefined on a zero-volume day
    universe["MSFT"] = msft
    with _tiny_server(tmp_path) as (url, _):
        days = replay_days(universe, start=date(2023, 3, 1), history=90, per="day")
        result = run_traffic(days, url=url, experiment="ab", max_days=3)
    assert result.ok == result.requests == 3 and result.errors == {}
    assert result.rows_dropped and all(key.startswith("MSFT 2023-03-") for key in result.rows_dropped)
    assert all("volume" in reason and "row 1" in reason for reason in result.rows_dropped.values())
    assert result.rows_scored == 3 * 3 - len(result.rows_dropped)
