"""Issue 11.4: HTTP limits against bounded slow clients on 127.0.0.1 (raw sockets), while good requests keep being
served: oversized headers refused, slow headers and bodies timed out, a connection cap with 503 beyond it."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from finmlops_testing.serving import Client, serve, tiny_onnx, v2_body

from finmlops.serving.app import ServingApp
from finmlops.serving.config import parse_config

LIMITS = {
    "max_header_bytes": 4096,
    "max_header_line_bytes": 1024,
    "max_headers": 20,
    "header_timeout_s": 1.0,
    "body_timeout_s": 1.0,
    "max_connections": 8,
}
X = np.zeros((1, 10, 4), np.float32)


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    graph = tiny_onnx(tmp_path_factory.mktemp("limits") / "m.onnx", 10, 4)
    app = ServingApp(parse_config({"models": [{"name": "m", "source": str(graph)}], "server": LIMITS}), registry=None,
                     request_log=None)  # fmt: skip
    with serve(app) as base:
        yield base, int(base.rsplit(":", 1)[1])


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


def status_of(sock: socket.socket) -> tuple[int | None, float]:
    """The status of the response read from ``sock`` (None if it closed without one), and when it closed."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    closed = time.monotonic()
    sock.close()
    return (int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else None), closed


def good_request(base: str) -> None:
    status, body, _ = Client(base).request("POST", "/v2/models/m/infer", v2_body(X))
    assert status == 200, body


def send_head(sock: socket.socket, headers: list[str], body_length: int | None = None) -> None:
    lines = ["POST /v2/models/m/infer HTTP/1.1", "Host: x", *headers]
    if body_length is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {body_length}"]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())


@pytest.mark.parametrize(
    "headers, status",
    [
        ([f"X-Big: {'a' * 2000}"], 431),  # one line over max_header_line_bytes
        ([f"X-{i}: {'a' * 900}" for i in range(6)], 431),  # each line fits, all of them not
        ([f"X-{i}: 1" for i in range(30)], 431),  # more than max_headers
    ],
    ids=["long-line", "total-size", "count"],
)
def test_oversized_headers_are_refused(limited: tuple[str, int], headers: list[str], status: int) -> None:
    base, port = limited
    sock = connect(port)
    send_head(sock, headers)
    assert status_of(sock)[0] == status
    good_request(base)


def test_a_huge_header_is_refused_before_it_is_read(limited: tuple[str, int]) -> None:
    """8 MB of one header: refused once the limit is crossed, the connection closed (no 8 MB buffered)."""
    base, port = limited
    sock = connect(port)
    sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: ")
    sent = 0
    with pytest.raises(OSError):  # the server closes the connection long before the 8 MB are written
        while sent < 8 * 1024 * 1024:
            sock.sendall(b"a" * 65536)
            sent += 65536
            time.sleep(0.001)
    sock.close()
    assert sent < 4 * 1024 * 1024
    good_request(base)


def test_a_long_request_line_is_414(limited: tuple[str, int]) -> None:
    base, port = limited
    sock = connect(port)
    sock.sendall(f"GET /v2/{'a' * 2000} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status_of(sock)[0] == 414
    good_request(base)


def test_slow_headers_and_slow_bodies_are_timed_out_while_good_requests_are_served(limited: tuple[str, int]) -> None:
    base, port = limited
    silent = connect(port)  # connects and says nothing
    trickle = connect(port)
    trickle.sendall(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\n")
    slow_body = connect(port)
    send_head(slow_body, [], body_length=1000)
    slow_body.sendall(b'{"inputs": [')
    t0 = time.monotonic()
    for _ in range(5):
        good_request(base)
        time.sleep(0.05)
    results: list[Any] = []
    for sock in (silent, trickle, slow_body):
        sock.settimeout(10)
        results.append(status_of(sock))
    for status, closed in results:
        assert status == 408 and 0.5 < closed - t0 < 5, results
    good_request(base)


def test_beyond_the_connection_cap_requests_get_503(limited: tuple[str, int]) -> None:
    base, port = limited
    held = [connect(port) for _ in range(LIMITS["max_connections"])]
    time.sleep(0.1)
    try:
        extra = connect(port)
        extra.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(extra)[0] == 503
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.1)
    good_request(base)


def test_limits_are_validated() -> None:
    from finmlops.serving.config import ServingConfigError

    with pytest.raises(ServingConfigError, match=r"server\.max_headers"):
        parse_config({"models": [{"name": "a", "source": "x"}], "server": {"max_headers": 0}})


def test_the_defaults_are_near_nginx_and_envoy() -> None:
    options = parse_config({"models": [{"name": "a", "source": str(Path("x"))}]}).server
    assert 8 * 1024 <= options.max_header_line_bytes <= 16 * 1024 and 32 * 1024 <= options.max_header_bytes <= 64 * 1024
    assert options.max_headers == 100 and 10 <= options.header_timeout_s <= 60 and options.max_connections >= 100


# --- the infer fast path (limits.guarded_protocol with answer_infer) -------------------------------------------------


@pytest.fixture(scope="module", params=[True, False], ids=["fast-path", "asgi-only"])
def fast(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[tuple[ServingApp, int]]:
    """The server with the fast path on, and off (``server.rest_fast_path``): each test holds for both."""
    graph = tiny_onnx(tmp_path_factory.mktemp("fast") / "m.onnx", 10, 4)
    config = {"models": [{"name": "m", "source": str(graph)}], "server": {"rest_fast_path": request.param}}
    app = ServingApp(parse_config(config), registry=None, request_log=None)
    with serve(app) as base:
        yield app, int(base.rsplit(":", 1)[1])


def infer_request(x: np.ndarray, *, version: str = "1.1", extra: tuple[str, ...] = (), chunked: bool = False) -> bytes:
    body = json.dumps(v2_body(x)).encode()
    head = [f"POST /v2/models/m/infer HTTP/{version}", "Host: x", "Content-Type: application/json", *extra]
    if chunked:
        head.append("Transfer-Encoding: chunked")
        half = len(body) // 2
        body = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:half], body[half:])) + b"0\r\n\r\n"
    else:
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def read_responses(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """``count`` responses read off ``sock`` in order: (status, headers, body), each body by its Content-Length."""
    data, out = b"", []
    while len(out) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(out)} of {count} responses"
            data += chunk
        head, data = data.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
        length = int(headers["content-length"])
        while len(data) < length:
            data += sock.recv(65536)
        out.append((int(status_line.split(" ")[1]), headers, data[:length]))
        data = data[length:]
    return out


def outputs(body: bytes) -> list[float]:
    return json.loads(body)["outputs"][0]["data"]


def test_pipelined_requests_are_answered_in_order_on_both_paths(fast: tuple[ServingApp, int]) -> None:
    """Two infers and a health check in one write: the first infer takes the fast path, the ones queued behind it
    go through uvicorn's pipeline, and the answers come back in the order asked."""
    _, port = fast
    xs = [np.full((1, 10, 4), v, np.float32) for v in (0.1, 0.9)]
    with connect(port) as sock:
        sock.sendall(infer_request(xs[0]) + infer_request(xs[1]) + b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        answers = read_responses(sock, 3)
    assert [status for status, _, _ in answers] == [200, 200, 200]
    with connect(port) as sock:  # each alone, for the expected values
        alone = []
        for x in xs:
            sock.sendall(infer_request(x))
            alone.append(outputs(read_responses(sock, 1)[0][2]))
    assert [outputs(answers[0][2]), outputs(answers[1][2])] == alone
    assert alone[0] != alone[1]


def test_a_chunked_body_takes_the_asgi_path_and_gets_the_same_answer(fast: tuple[ServingApp, int]) -> None:
    _, port = fast
    x = np.random.default_rng(0).normal(size=(2, 10, 4)).astype(np.float32)
    with connect(port) as sock:
        sock.sendall(infer_request(x))
        ((status, headers, body),) = read_responses(sock, 1)
        sock.sendall(infer_request(x, chunked=True))
        ((status_chunked, headers_chunked, body_chunked),) = read_responses(sock, 1)
    assert status == status_chunked == 200
    assert outputs(body) == outputs(body_chunked)
    for name in ("content-type", "x-seldon-route"):
        assert headers[name] == headers_chunked[name]


@pytest.mark.parametrize(("version", "extra"), [("1.0", ()), ("1.1", ("Connection: close",))])
def test_a_request_without_keep_alive_is_answered_then_closed(
    fast: tuple[ServingApp, int], version: str, extra: tuple[str, ...]
) -> None:
    _, port = fast
    with connect(port) as sock:
        sock.sendall(infer_request(np.zeros((1, 10, 4), np.float32), version=version, extra=extra))
        ((status, headers, _),) = read_responses(sock, 1)
        assert status == 200 and headers.get("connection") == "close"
        sock.settimeout(5)
        assert sock.recv(1) == b""  # the server closed it


def test_a_client_gone_mid_body_leaves_the_arrival_gate(fast: tuple[ServingApp, int]) -> None:
    """A fast-path request enters the batcher's arrival gate at its headers; a client that leaves before its body
    is complete must not keep batches waiting for it."""
    app, port = fast
    request = infer_request(np.zeros((1, 10, 4), np.float32))
    sock = connect(port)
    sock.sendall(request[: len(request) - 10])
    deadline = time.monotonic() + 5
    while app.plane.gate.arriving == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert app.plane.gate.arriving == 1
    sock.close()
    while app.plane.gate.arriving != 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert app.plane.gate.arriving == 0
    with connect(port) as again:
        again.sendall(request)
        assert read_responses(again, 1)[0][0] == 200
