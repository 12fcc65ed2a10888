"""The REST transport of the finmlops inference server: a raw ASGI app (Open Inference Protocol V2 over REST,
Seldon-compatible routing) in front of the transport-agnostic data plane (``finmlops.serving.dataplane``).

This module only speaks HTTP: it matches the path, checks the method, content type, size and bearer token, parses
the body (``finmlops.serving.protocol``) into an ``InferRequest``, calls the data plane and renders its answer or
its typed error (``finmlops.serving.errors``: each class has its status). The infer path is hand-written ASGI (no
framework routing, orjson, numpy parsing) because it is the hot path, and ``answer_infer`` is its one body: a plain
infer request is answered by the HTTP protocol itself (``finmlops.serving.limits``) through the same function,
without the ASGI layer. The other endpoints share the same small dispatcher. Metrics, the request log, the feedback
ledger and drift observe the data plane's events. See docs/serving.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from finmlops import __version__
from finmlops.contract.explain import SERVER_STEPS, explain_payload
from finmlops.serving.config import ADMIN_OFF, ServingConfig
from finmlops.serving.dataplane import DataPlane, InferenceEvent
from finmlops.serving.errors import (
    BadRequest,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    ServingError,
    TooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from finmlops.serving.experiments import seldon_route_value
from finmlops.serving.models import LoadedModel, Registry
from finmlops.serving.openapi import openapi_schema
from finmlops.serving.protocol import error_body, infer_response, loads_json, parse_infer

log = logging.getLogger("finmlops.serving")
Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
JSON = b"application/json"
_MODEL_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/infer|/explain)?$")
_ADMIN_PATH = re.compile(r"^/admin/experiments(?:/([^/]+))?$")
_REPOSITORY_PATH = re.compile(r"^/v2/repository/(?:index|models/([^/]+)/(load|unload))$")
EXTENSIONS = ["binary_tensor_data", "model_repository", "experiments", "feedback"]
_CHALLENGE = [(b"www-authenticate", b'Bearer realm="finmlops"')]


class ServingApp:
    """ASGI application serving ``config``'s models and experiments over REST, through one :class:`DataPlane`.

    Models load in the constructor (a failure raises ``ModelLoadError``/``ServingConfigError`` before any port is
    bound). ``registry`` is needed for ``models:/`` sources; ``request_log`` is the SQLite file of the request log.
    """

    def __init__(self, config: ServingConfig, *, registry: Registry | None, request_log: Path | None) -> None:
        self.config = config
        self.options = config.server
        self.plane = DataPlane(config, registry=registry, request_log=request_log, drift_factory=self._on_loaded)
        self._admin = config.auth.admin_tokens
        self._infer_tokens = config.auth.infer_tokens
        self._reload_task: asyncio.Task[None] | None = None
        # Where the gRPC transport listens, set before start (``server.run``, ``running_server``); None: no gRPC.
        # ``grpc_port`` is the bound port once it started (the OS's pick for port 0).
        self.grpc_listen: tuple[str, int] | None = None
        self.grpc_port: int | None = None
        self._grpc: Any = None
        self._schema = orjson.dumps(openapi_schema())

    # The data plane's parts, for callers that inspect a running server (tests, the soak benchmark).
    store = property(lambda self: self.plane.store)
    experiments = property(lambda self: self.plane.experiments)
    ledger = property(lambda self: self.plane.ledger)
    metrics = property(lambda self: self.plane.metrics)
    request_log = property(lambda self: self.plane.request_log)
    gate = property(lambda self: self.plane.gate)

    def _on_loaded(self, model: LoadedModel) -> tuple[Any, np.ndarray] | None:
        """The drift tracker of a newly served model version and its column order (None when unusable)."""
        from finmlops.stats.drift import SlidingDrift  # deferred: scipy

        try:
            tracker = SlidingDrift(model.drift_reference, window=self.options.drift_window)
            names = model.feature_names or []
            order = np.array([names.index(n) for n in tracker.names])
        except (ValueError, KeyError) as exc:
            log.warning("%s v%s: drift reference unusable, no PSI gauge: %s", model.name, model.version, exc)
            return None
        return tracker, order

    # --- ASGI -----------------------------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            if scope["method"] == "POST" and path.endswith("/infer"):
                await self._infer(scope, receive, send)
            else:
                await self._dispatch(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # Everything loaded so far lives as long as the server: keep it out of every GC pass, so a full
                # collection scans only per-request objects (measured: 108 ms pauses with a large heap otherwise).
                gc.collect()
                gc.freeze()
                try:
                    await self.start_grpc()
                except Exception as exc:  # a port taken between the check and the bind: one line, no traceback
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                self.start_background()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop_grpc()
                await self.stop_background()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def start_grpc(self) -> None:
        """Start the gRPC transport on ``grpc_listen`` (on this event loop, so that it shares the data plane)."""
        if self.grpc_listen is None or self._grpc is not None:
            return
        from finmlops.serving.grpc_transport import GrpcTransport  # deferred: grpc

        self._grpc = GrpcTransport(self.plane, self.config)
        self.grpc_port = await self._grpc.start(*self.grpc_listen)

    async def stop_grpc(self, grace_s: float = 10.0) -> None:
        """Stop taking gRPC calls and let the in-flight ones finish (at most ``grace_s``)."""
        if self._grpc is not None:
            await self._grpc.stop(grace_s)
            self._grpc = None

    def start_background(self) -> None:
        """Start polling the registry for moved aliases (when any source is an alias and polling is on)."""
        polled = any(e.spec.registry_ref and e.spec.registry_ref[1] for e in self.store.entries)
        if polled and self.options.reload_interval_s > 0 and self._reload_task is None:
            self._reload_task = asyncio.get_running_loop().create_task(self._reload_loop())

    async def stop_background(self) -> None:
        """Stop the reload loop and flush the request log (in-flight requests were drained by the server)."""
        if self._reload_task is not None:
            self._reload_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reload_task
            self._reload_task = None
        await self.plane.close()

    async def _reload_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.reload_interval_s)
            await self.reload_now()

    async def reload_now(self) -> list[tuple[str, str, str]]:
        """Poll the registry once (in a worker thread) and swap the models whose alias moved."""
        return await self.plane.reload_now()

    # --- inference ------------------------------------------------------------------------------------------------

    async def _infer(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        t0 = time.perf_counter()
        self.plane.gate.enter()  # the arrival phase: batches wait for requests being read; answer_infer ends it
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        limit = self.options.max_body_bytes
        status, payload, extra = await self.answer_infer(
            scope["path"], headers, lambda: _read_body(receive, headers, limit), t0
        )
        await send({"type": "http.response.start", "status": status, "headers": extra})
        await send({"type": "http.response.body", "body": payload})

    async def answer_infer(
        self, path: str, headers: dict[str, str], body: bytes | Callable[[], Awaitable[bytes]], t0: float
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """``POST path`` (an infer route) with ``headers`` (lower-case names) and ``body`` (or a function whose
        awaitable reads it; not called when the request is refused first) -> ``(status, response body, response
        headers)``. The one infer path of both HTTP front ends: the ASGI route above and the fast path of
        ``finmlops.serving.limits``. The caller has entered ``plane.gate`` (when it began reading the request); this
        leaves it, whatever happens."""
        plane = self.plane
        try:
            match = _MODEL_PATH.match(path)
            if match is None or match.group(3) != "/infer":
                raise NotFound(f"no route {path}; infer is POST /v2/models/{{name}}[/versions/{{v}}]/infer")
            if self._infer_tokens:
                self._authorize(headers, self._infer_tokens)
            json_length = _binary_header(headers)
            request = parse_infer(body if isinstance(body, bytes) else await body(), json_length)
        except ServingError as exc:
            plane.gate.leave()
            plane.refused(exc, t0)
            return _error_response(exc)
        except BaseException:
            plane.gate.leave()
            raise
        request.model, request.version, request.headers, request.received = match.group(1), match.group(2), headers, t0
        try:
            event = await plane.infer(request, arriving=True)
        except ServingError as exc:
            return _error_response(exc)
        return _infer_response(event, request.binary_output)

    # --- everything else ------------------------------------------------------------------------------------------

    async def _dispatch(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            status, body, ctype, extra = await self._handle(method, path, headers, receive, scope)
        except ServingError as exc:
            status, body, ctype, extra = exc.status, error_body(exc.message, exc.row), JSON, _error_headers(exc)
        except Exception as exc:
            log.exception("%s %s failed", method, path)
            status, body, ctype, extra = 500, error_body(f"internal error: {type(exc).__name__}"), JSON, None
        await _respond(send, status, body, ctype, extra)

    async def _handle(
        self, method: str, path: str, headers: dict[str, str], receive: Receive, scope: dict[str, Any]
    ) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]] | None]:
        def ok(doc: Any, status: int = 200) -> tuple[int, bytes, bytes, None]:
            return status, orjson.dumps(doc), JSON, None

        def only(*methods: str) -> None:
            if method not in methods:
                raise MethodNotAllowed(f"{method} is not allowed on {path}; use {' or '.join(methods)}")

        if path in ("/v2", "/v2/"):
            only("GET")
            return ok(
                {
                    "name": "finmlops",
                    "version": __version__,
                    "extensions": EXTENSIONS,
                }
            )
        if path == "/v2/health/live":
            only("GET")
            return ok({"live": True})
        if path == "/v2/health/ready":
            only("GET")
            ready = self.plane.ready()
            return ok({"ready": ready}, 200 if ready else 503)
        if path == "/metrics":
            only("GET")
            return 200, self.plane.render_metrics(), b"text/plain; version=0.0.4; charset=utf-8", None
        if path in ("/openapi.json", "/v2/openapi.json"):
            only("GET")
            return 200, self._schema, JSON, None
        if path == "/v2/feedback":
            only("POST")
            if self._infer_tokens:
                self._authorize(headers, self._infer_tokens)
            return ok(await self._feedback(headers, receive))
        match = _MODEL_PATH.match(path)
        if match is not None:
            name, version, tail = match.groups()
            only("POST" if tail in ("/explain", "/infer") else "GET")
            model = self.plane.model(name, version)
            if tail == "/ready":
                return ok({"name": model.name, "version": model.version, "ready": True})
            if tail == "/explain":
                if self._infer_tokens:
                    self._authorize(headers, self._infer_tokens)
                return ok(await self._explain(name, version, headers, receive))
            return ok(model.metadata())
        match = _REPOSITORY_PATH.match(path)
        if match is not None:
            only("POST")
            who = self._admin_who(headers, scope)
            name, action = match.groups()
            if name is None:  # POST /v2/repository/index, body {"ready": bool} (optional)
                doc = await _read_json(receive, headers, self.options.max_body_bytes, empty_ok=True)
                ready = doc.get("ready", False)
                if not isinstance(ready, bool):
                    raise BadRequest(f"'ready' must be true or false, got {ready!r}")
                return ok([m.as_dict() for m in self.plane.repository_index(ready)])
            await _read_body(receive, headers, self.options.max_body_bytes)  # Triton's optional parameters: unused
            if action == "load":
                await self.plane.load_model(name, who)
            else:
                await self.plane.unload_model(name, who)
            return ok({})
        match = _ADMIN_PATH.match(path)
        if match is not None:
            who = self._admin_who(headers, scope)
            name = match.group(1)
            if name is None:
                only("GET")
                return ok({"experiments": [e.describe() for e in self.experiments]})
            only("GET", "PUT")
            if method == "GET":
                return ok(self.plane.describe_experiment(name))
            patch = await _read_json(receive, headers, self.options.max_body_bytes)
            return ok((await self.plane.update_experiment(name, patch, who)).describe())
        raise NotFound(f"no route {path}")

    async def _explain(
        self, name: str, version: str | None, headers: dict[str, str], receive: Receive
    ) -> dict[str, Any]:
        """``POST /v2/models/{name}/explain`` (an extension): Integrated Gradients of one window, computed on the
        ONNX model with numpy (no torch) in a worker thread, so inference keeps being served meanwhile. The body is
        a V2 infer request for one window (``input_data`` [1, seq_len, n_features] or raw OHLCV [1, T]);
        parameters ``steps`` (1-64, default 16) and ``top``."""

        request = parse_infer(await _read_body(receive, headers, self.options.max_body_bytes), _binary_header(headers))
        request.model, request.version, request.headers = name, version, headers
        return await self.plane.explain(request, explain_payload, SERVER_STEPS)

    async def _feedback(self, headers: dict[str, str], receive: Receive) -> dict[str, Any]:
        doc = await _read_json(receive, headers, self.options.max_body_bytes)
        event = await self.plane.feedback(doc.get("id"), doc.get("outcome"))
        result, served = event.result, event.result.served
        return {
            "id": result.id,
            "outcome": result.outcome,
            "counted": result.counted,
            "model": served.model if served else None,
            "correct": served.correct if served else None,
        }

    def _admin_who(self, headers: dict[str, str], scope: dict[str, Any]) -> str:
        """Who makes an admin call (experiments, the model repository): the admin token's holder (401 without a
        valid one); with no token configured, 403 unless ``insecure_admin``."""
        if self._admin:
            return self._authorize(headers, self._admin)
        if self.config.auth.insecure_admin:
            return _anonymous(headers, scope)
        raise Forbidden(ADMIN_OFF)  # secure by default: no token configured means no admin API, not an open one

    def _authorize(self, headers: dict[str, str], tokens: dict[str, str]) -> str:
        """The holder of the request's bearer token; 401 without a valid one."""
        return self.plane.authorize(headers.get("authorization", ""), tokens)

    def render_metrics(self) -> bytes:
        """Refresh the state gauges (traffic shares, PSI) and render every series."""
        return self.plane.render_metrics()


# --- helpers -----------------------------------------------------------------------------------------------------


def _binary_header(headers: dict[str, str]) -> int | None:
    """The JSON length of a binary-extension body, and the content-type check (415 for anything but JSON)."""
    raw = headers.get("inference-header-content-length")
    ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if raw is not None:
        try:
            return int(raw)
        except ValueError:
            raise BadRequest(f"Inference-Header-Content-Length must be an integer, got {raw!r}") from None
    if ctype and ctype != "application/json":
        raise UnsupportedMediaType(
            f"unsupported content type {ctype!r}; send application/json (or the binary extension)"
        )
    return None


async def _read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes:
    """The whole request body; 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks, size = [body], len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_json(receive: Receive, headers: dict[str, str], limit: int, empty_ok: bool = False) -> dict[str, Any]:
    """The JSON object body (``empty_ok``: an empty body is ``{}``); 415 for another content type."""
    ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype and ctype != "application/json":
        raise UnsupportedMediaType(f"unsupported content type {ctype!r}; send application/json")
    body = await _read_body(receive, headers, limit)
    if empty_ok and not body.strip():
        return {}
    doc = loads_json(body)
    if not isinstance(doc, dict):
        raise BadRequest("the body must be a JSON object")
    return doc


async def _respond(
    send: Send, status: int, body: bytes, ctype: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _infer_response(event: InferenceEvent, binary: bool) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """The V2 infer response (JSON, or the binary extension) with Seldon's ``x-seldon-route`` header."""
    assert event.y is not None and event.version is not None
    payload, json_len = infer_response(
        event.model, event.version, event.id, event.output_name, event.y, event.parameters, binary
    )
    headers = [
        (b"content-type", b"application/octet-stream" if json_len is not None else JSON),
        (b"content-length", str(len(payload)).encode()),
        (b"x-seldon-route", seldon_route_value(event.model, event.version).encode()),
    ]
    if json_len is not None:
        headers.append((b"inference-header-content-length", str(json_len).encode()))
    return 200, payload, headers


def _error_headers(exc: ServingError) -> list[tuple[bytes, bytes]] | None:
    return _CHALLENGE if isinstance(exc, Unauthorized) else None


def _error_response(exc: ServingError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """A V2 error body with the error's status (and a bearer challenge for a 401), as ``(status, body, headers)``."""
    body = error_body(exc.message, exc.row)
    headers = [(b"content-type", JSON), (b"content-length", str(len(body)).encode()), *(_error_headers(exc) or ())]
    return exc.status, body, headers


def _anonymous(headers: dict[str, str], scope: dict[str, Any]) -> str:
    """Who made an admin change when no admin token is configured: the client address (and a claimed user)."""
    client = scope.get("client") or ("unknown", 0)
    user = headers.get("x-finmlops-user")
    return f"{user} (unauthenticated, {client[0]})" if user else f"unauthenticated {client[0]}"
