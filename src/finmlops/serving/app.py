"""The finmlops inference server: a raw ASGI app (Open Inference Protocol V2 over REST, Seldon-compatible routing).

The infer path is hand-written ASGI (no framework routing, orjson, numpy parsing, inline micro-batched onnxruntime)
because it is the hot path; the other endpoints share the same small dispatcher. Per request the hot path does:
parse, route (``finmlops.serving.experiments``), score, answer, then count metrics and buffer one request-log row
(microseconds each). Shadow copies are scored after the response is sent. See docs/serving.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import hmac
import logging
import re
import sqlite3
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson

from finmlops import __version__
from finmlops.serving.batching import ArrivalGate
from finmlops.serving.config import ServingConfig, ServingConfigError
from finmlops.serving.experiments import (
    Experiment,
    ExperimentConfigError,
    ExperimentSet,
    UnknownExperiment,
    merge_patch,
    parse_config,
    seldon_route_value,
)
from finmlops.serving.feedback import FeedbackLedger, Prediction, UnknownRequestId
from finmlops.serving.metrics import ServerMetrics
from finmlops.serving.models import LoadedModel, ModelStore, Registry
from finmlops.serving.openapi import openapi_schema
from finmlops.serving.protocol import (
    RAW_INPUTS,
    V2Error,
    as_of_parameter,
    error_body,
    infer_response,
    loads_json,
    parse_infer,
)
from finmlops.serving.requestlog import AdminRecord, FeedbackRecord, RequestLog, RequestRecord

log = logging.getLogger("finmlops.serving")
Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
JSON = b"application/json"
_MODEL_PATH = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/infer|/explain)?$")
EXPLAIN_MAX_STEPS = 64
_ADMIN_PATH = re.compile(r"^/admin/experiments(?:/([^/]+))?$")


class ServingApp:
    """ASGI application serving ``config``'s models and experiments.

    Models load in the constructor (a failure raises ``ModelLoadError``/``ServingConfigError`` before any port is
    bound). ``registry`` is needed for ``models:/`` sources; ``request_log`` is the SQLite file of the request log.
    """

    def __init__(self, config: ServingConfig, *, registry: Registry | None, request_log: Path | None) -> None:
        self.config = config
        self.options = config.server
        self.gate = ArrivalGate()
        self.store = ModelStore(self.options, registry, self.gate)
        self.store.load_all(config.models)
        try:
            self.experiments = ExperimentSet.from_yaml({"experiments": config.experiments or []})
        except ExperimentConfigError as exc:
            raise ServingConfigError(f"experiments: {exc}") from None
        for experiment in self.experiments:
            self._check_models(experiment.name, experiment.models)
        self.metrics = ServerMetrics()
        for experiment in self.experiments:
            self._declare_arms(experiment)
        self.request_log = RequestLog(request_log) if request_log is not None else None
        self.ledger = FeedbackLedger(
            max_ids=self.options.feedback_ids,
            experiments=self.experiments,
            lookup=self._logged_predictions if request_log else None,
            already_counted=self._logged_feedback if request_log else None,
        )
        self._admin = config.auth.admin_tokens
        self._infer_tokens = config.auth.infer_tokens
        self._drift: dict[tuple[str, str], tuple[Any, np.ndarray, deque[bytes]]] = {}
        self._reload_task: asyncio.Task[None] | None = None
        self._schema = orjson.dumps(openapi_schema())
        for entry in self.store.entries:
            self._on_loaded(entry.current, None)

    # --- set-up ---------------------------------------------------------------------------------------------------

    def _check_models(self, experiment: str, models: tuple[str, ...] | list[str]) -> None:
        missing = [m for m in models if self.store.resolve(m) is None]
        if missing:
            raise ServingConfigError(
                f"experiment {experiment!r} calls {', '.join(missing)}, which the server does not serve "
                f"(served: {', '.join(self.store.names())})"
            )

    def _declare_arms(self, experiment: Experiment) -> None:
        """Export each arm meant to get traffic at 0 requests before its first one, so that an arm that never gets
        any is a series at 0 (which FinmlopsExperimentArmStarved sees), not an absent one. A weighted arm at
        weight 0 is switched off on purpose and is left out."""
        weighted = experiment.config.strategy == "weighted"
        for candidate in experiment.config.candidates:
            model = self.store.resolve(candidate.target)
            if model is not None and not (weighted and candidate.weight <= 0):
                self.metrics.declare_arm(model.name, experiment.name, candidate.name)

    def _on_loaded(self, model: LoadedModel, previous: str | None) -> None:
        self.metrics.set_model_info(model.name, model.version, model.data_hash, previous)
        if model.drift_reference is None:
            return
        from finmlops.stats.drift import SlidingDrift

        try:
            tracker = SlidingDrift(model.drift_reference, window=self.options.drift_window)
            names = model.feature_names or []
            order = np.array([names.index(n) for n in tracker.names])
        except (ValueError, KeyError) as exc:
            log.warning("%s v%s: drift reference unusable, no PSI gauge: %s", model.name, model.version, exc)
            return
        self._drift[(model.name, model.version)] = (tracker, order, deque(maxlen=self.options.drift_window))

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
                self.start_background()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop_background()
                await send({"type": "lifespan.shutdown.complete"})
                return

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
        if self.request_log is not None:
            await asyncio.to_thread(self.request_log.close)

    async def _reload_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.reload_interval_s)
            await self.reload_now()

    async def reload_now(self) -> list[tuple[str, str, str]]:
        """Poll the registry once (in a worker thread) and swap the models whose alias moved."""
        try:
            swaps = await asyncio.to_thread(self.store.poll)
        except Exception:  # an unreachable registry must not stop the server; the next poll retries
            log.exception("registry poll failed")
            return []
        for name, old, _ in swaps:
            model = self.store.get(name)
            if model is not None:
                self._on_loaded(model, old)
        return swaps

    # --- inference ------------------------------------------------------------------------------------------------

    async def _infer(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        t0 = time.perf_counter()
        model_label, experiment, arm = "", "", ""
        rid, as_of = "", None
        try:
            self.gate.enter()
            try:  # the arrival phase: batches may wait for requests in it, so it must always end
                match = _MODEL_PATH.match(scope["path"])
                if match is None or match.group(3) != "/infer":
                    raise V2Error(
                        404, f"no route {scope['path']}; infer is POST /v2/models/{{name}}[/versions/{{v}}]/infer"
                    )
                name, version = match.group(1), match.group(2)
                headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
                if self._infer_tokens:
                    self._authorize(headers, self._infer_tokens)
                json_length = _binary_header(headers)
                body = await _read_body(receive, headers, self.options.max_body_bytes)
                request = parse_infer(body, json_length)
                rid = request.id or uuid.uuid4().hex
                as_of = as_of_parameter(request.parameters)
                model, exp, route = self._route(name, version, headers, request.parameters)
                model_label = model.name
                if exp is not None:
                    experiment, arm = exp.name, route.arm
                for wanted in request.requested_outputs:
                    if wanted != model.output_name:
                        raise V2Error(400, f"model {model.name!r} has output {model.output_name!r}, not {wanted!r}")
                raw = model.input_name not in request.inputs
                if not raw:
                    x = self._model_input(model, request.inputs)
                    future = model.batcher.submit(x)  # type: ignore[union-attr]  # set by the store
            finally:
                self.gate.leave()
            if raw:
                # Raw OHLCV: computing its features is ~1.4 ms of pandas. In a worker thread the event loop keeps
                # serving meanwhile (measured: fewer and shorter stalls), and, out of the arrival gate, no batch
                # waits for it.
                x = await asyncio.to_thread(self._model_input, model, request.inputs)
                future = model.batcher.submit(x)  # type: ignore[union-attr]
            y = await future
        except V2Error as exc:
            await self._fail(send, exc.status, exc.message, t0, rid, model_label, experiment, arm, exc.headers, as_of)
            return
        except Exception as exc:  # a model that fails at run time is a 500, and the server keeps serving
            log.exception("inference failed")
            await self._fail(
                send,
                500,
                f"inference failed: {type(exc).__name__}: {exc}",
                t0,
                rid,
                model_label,
                experiment,
                arm,
                as_of=as_of,
            )
            return
        params = {"experiment": experiment, "arm": arm} if experiment else {}
        payload, json_len = infer_response(
            model.name, model.version, rid, model.output_name, y, params, request.binary_output
        )
        extra = [(b"x-seldon-route", seldon_route_value(model.name, model.version).encode())]
        if json_len is not None:
            extra.append((b"inference-header-content-length", str(json_len).encode()))
        await _respond(send, 200, payload, b"application/octet-stream" if json_len is not None else JSON, extra)
        seconds = time.perf_counter() - t0
        self.metrics.observe_request(model.name, experiment, arm, 200, seconds)
        self._after(
            rid, model, x, y, experiment or None, arm or None, 0, seconds, exp, headers, request.parameters, as_of
        )
        if exp is not None and route.shadows:
            asyncio.get_running_loop().call_soon(
                self._shadow, route.shadows, rid, x, request.inputs, experiment, arm, as_of
            )

    def _route(
        self, name: str, version: str | None, headers: dict[str, str], parameters: dict[str, Any]
    ) -> tuple[LoadedModel, Experiment | None, Any]:
        """The model that answers: Seldon's ``seldon-model`` header (``<experiment>.experiment`` or a model name),
        else the path's model; an experiment whose ``default`` is that model takes over its endpoint."""
        experiment: Experiment | None = None
        if version is None:
            target = headers.get("seldon-model") or name
            if target.endswith(".experiment"):
                experiment = self.experiments.from_header(target)
                if experiment is None:
                    raise V2Error(
                        404,
                        f"no experiment {target.removesuffix('.experiment')!r}; configured: "
                        f"{', '.join(self.experiments.names()) or 'none'}",
                    )
            else:
                name = target
                experiment = self.experiments.for_model(name) or (
                    self.experiments.get(name) if name in self.experiments and self.store.get(name) is None else None
                )
        if experiment is not None:
            route = experiment.route(headers, parameters)
            model = self.store.resolve(route.model)
            if model is None:
                raise V2Error(503, f"experiment {experiment.name!r} routed to {route.model!r}, which is not loaded")
            return model, experiment, route
        model = self.store.get(name, version)
        if model is None:
            known = self.store.get(name)
            if known is not None:
                raise V2Error(404, f"model {name!r} has no version {version!r}; serving version {known.version}")
            raise V2Error(404, f"unknown model {name!r}; serving: {', '.join(self.store.names())}")
        return model, None, None

    def _model_input(self, model: LoadedModel, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """The ``[batch, seq_len, n_features]`` float32 window tensor, given directly or computed from raw OHLCV."""
        expected = [-1, model.seq_len, model.n_features]
        x = inputs.get(model.input_name)
        if x is not None:
            if x.ndim != 3 or x.shape[1:] != (model.seq_len, model.n_features):
                raise V2Error(
                    400,
                    f"input {model.input_name!r}: model {model.name!r} expects shape {expected} "
                    f"(batch, seq_len, n_features), got {list(x.shape)}; or send raw OHLCV tensors",
                )
            if x.shape[0] == 0:
                raise V2Error(400, f"input {model.input_name!r}: empty batch (shape {list(x.shape)})")
            return x if x.dtype == np.float32 else x.astype(np.float32)
        if RAW_INPUTS.intersection(inputs):
            if not model.feature_names or not model.feature_set:
                raise V2Error(400, f"model {model.name!r} has no feature card, so it takes only {model.input_name!r}")
            from finmlops.serving.raw import raw_windows

            return raw_windows(inputs, model.feature_set, model.feature_names, model.seq_len)
        raise V2Error(
            400,
            f"model {model.name!r} takes input {model.input_name!r} with shape {expected}, or raw "
            f"tensors open/high/low/close/volume [batch, T]; got {sorted(inputs)}",
        )

    def _after(
        self,
        rid: str,
        model: LoadedModel,
        x: np.ndarray,
        y: np.ndarray,
        experiment: str | None,
        arm: str | None,
        shadow: int,
        seconds: float,
        exp: Experiment | None,
        headers: dict[str, str],
        parameters: dict[str, Any],
        as_of: str | None,
    ) -> None:
        """Metrics, request-log rows, feedback registration and drift samples for one scored request."""
        probs = y[:, 0].tolist()
        n_up = sum(p > 0.5 for p in probs)
        if not shadow:
            self.metrics.observe_predictions(model.name, n_up, len(probs) - n_up)
        context = _context_value(exp, headers, parameters) if exp is not None else None
        now, ms = time.time(), seconds * 1000.0
        drift = self._drift.get((model.name, model.version))
        single = len(probs) == 1
        for i, p in enumerate(probs):
            row_id = rid if single else f"{rid}/{i}"
            last = x[i, -1].tobytes()
            self.ledger.register(Prediction(row_id, model.name, p, bool(shadow), arm, experiment))
            if self.request_log is not None:
                digest = hashlib.sha1(x[i].tobytes()).hexdigest()  # a content id, not security
                self.request_log.append(
                    RequestRecord(
                        row_id,
                        model.name,
                        now,
                        experiment,
                        arm,
                        model.version,
                        shadow,
                        digest,
                        p,
                        ms,
                        200,
                        context,
                        last,
                        as_of,
                    )
                )
            if drift is not None and not shadow:
                drift[2].append(last)

    def _shadow(
        self,
        names: tuple[str, ...],
        rid: str,
        x: np.ndarray,
        inputs: dict[str, np.ndarray],
        experiment: str,
        arm: str,
        as_of: str | None,
    ) -> None:
        """Score the request on each shadow model (answers logged with shadow=1, never returned)."""
        for name in names:
            model = self.store.resolve(name)
            if model is None:
                continue
            try:
                xs = x if x.shape[1:] == (model.seq_len, model.n_features) else self._model_input(model, inputs)
            except V2Error as exc:
                log.warning("shadow %s skipped for %s: %s", name, rid, exc.message)
                continue
            t0 = time.perf_counter()
            future = model.batcher.submit(xs)  # type: ignore[union-attr]
            future.add_done_callback(
                lambda f, m=model, xs=xs, t0=t0: self._shadow_done(f, m, xs, t0, rid, experiment, arm, as_of)
            )

    def _shadow_done(
        self,
        future: asyncio.Future[np.ndarray],
        model: LoadedModel,
        x: np.ndarray,
        t0: float,
        rid: str,
        experiment: str,
        arm: str,
        as_of: str | None,
    ) -> None:
        if future.cancelled() or future.exception() is not None:
            log.warning(
                "shadow %s failed for %s: %s", model.name, rid, None if future.cancelled() else future.exception()
            )
            return
        self._after(rid, model, x, future.result(), experiment, arm, 1, time.perf_counter() - t0, None, {}, {}, as_of)

    async def _fail(
        self,
        send: Send,
        status: int,
        message: str,
        t0: float,
        rid: str,
        model: str,
        experiment: str,
        arm: str,
        headers: list[tuple[bytes, bytes]] | None = None,
        as_of: str | None = None,
    ) -> None:
        await _respond(send, status, error_body(message), JSON, headers)
        seconds = time.perf_counter() - t0
        self.metrics.observe_request(model, experiment, arm, status, seconds)
        if self.request_log is not None:
            self.request_log.append(
                RequestRecord(
                    rid or uuid.uuid4().hex,
                    model,
                    time.time(),
                    experiment or None,
                    arm or None,
                    None,
                    0,
                    None,
                    None,
                    seconds * 1000.0,
                    status,
                    as_of=as_of,
                )
            )

    # --- everything else ------------------------------------------------------------------------------------------

    async def _dispatch(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            status, body, ctype, extra = await self._handle(method, path, headers, receive, scope)
        except V2Error as exc:
            status, body, ctype, extra = exc.status, error_body(exc.message), JSON, exc.headers
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
                raise V2Error(405, f"{method} is not allowed on {path}; use {' or '.join(methods)}")

        if path in ("/v2", "/v2/"):
            only("GET")
            return ok(
                {
                    "name": "finmlops",
                    "version": __version__,
                    "extensions": ["binary_tensor_data", "model_repository_readonly", "experiments", "feedback"],
                }
            )
        if path == "/v2/health/live":
            only("GET")
            return ok({"live": True})
        if path == "/v2/health/ready":
            only("GET")
            ready = all(e.current is not None for e in self.store.entries)
            return ok({"ready": ready}, 200 if ready else 503)
        if path == "/metrics":
            only("GET")
            return 200, self.render_metrics(), b"text/plain; version=0.0.4; charset=utf-8", None
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
            model = self.store.get(name, version)
            if model is None:
                raise V2Error(
                    404,
                    f"unknown model {name!r}"
                    + (f" version {version!r}" if version else "")
                    + f"; serving: {', '.join(self.store.names())}",
                )
            if tail == "/ready":
                return ok({"name": model.name, "version": model.version, "ready": True})
            if tail == "/explain":
                if self._infer_tokens:
                    self._authorize(headers, self._infer_tokens)
                return ok(await self._explain(model, headers, receive))
            return ok(model.metadata())
        match = _ADMIN_PATH.match(path)
        if match is not None:
            who = self._authorize(headers, self._admin) if self._admin else _anonymous(headers, scope)
            name = match.group(1)
            if name is None:
                only("GET")
                return ok({"experiments": [e.describe() for e in self.experiments]})
            only("GET", "PUT")
            if method == "GET":
                try:
                    return ok(self.experiments.get(name).describe())
                except UnknownExperiment as exc:
                    raise V2Error(404, str(exc)) from None
            return ok(await self._update_experiment(name, who, headers, receive))
        raise V2Error(404, f"no route {path}")

    async def _explain(self, model: LoadedModel, headers: dict[str, str], receive: Receive) -> dict[str, Any]:
        """``POST /v2/models/{name}/explain`` (an extension): Integrated Gradients of one window, computed on the
        ONNX model with numpy (no torch) in a worker thread, so inference keeps being served meanwhile. The body is
        a V2 infer request for one window (``input_data`` [1, seq_len, n_features] or raw OHLCV [1, T]);
        parameters ``steps`` (1-64, default 16) and ``top``."""
        from finmlops.monitoring.explain import SERVER_STEPS, explain_payload

        request = parse_infer(await _read_body(receive, headers, self.options.max_body_bytes), _binary_header(headers))
        if not model.feature_names:
            raise V2Error(400, f"model {model.name!r} has no feature card, so its attributions cannot be named")
        x = self._model_input(model, request.inputs)
        if x.shape[0] != 1:
            raise V2Error(400, f"explain takes one window (batch 1), got a batch of {x.shape[0]}")
        steps, top = request.parameters.get("steps", SERVER_STEPS), request.parameters.get("top", 10)
        if not isinstance(steps, int) or not 1 <= steps <= EXPLAIN_MAX_STEPS:
            raise V2Error(400, f"parameter 'steps' must be an integer from 1 to {EXPLAIN_MAX_STEPS}, got {steps!r}")
        if not isinstance(top, int) or top < 1:
            raise V2Error(400, f"parameter 'top' must be a positive integer, got {top!r}")
        card = SimpleNamespace(
            variant=model.card.get("variant", model.name), feature_names=model.feature_names, seq_len=model.seq_len
        )
        payload = await asyncio.to_thread(explain_payload, model.session, card, x, steps=steps, top=top)
        return {"model_name": model.name, "model_version": model.version, **payload}

    async def _feedback(self, headers: dict[str, str], receive: Receive) -> dict[str, Any]:
        doc = await _read_json(receive, headers, self.options.max_body_bytes)
        rid, outcome = doc.get("id"), doc.get("outcome")
        if not isinstance(rid, str) or not rid:
            raise V2Error(400, "feedback needs 'id': the id of a served request (a string)")
        if type(outcome) is not int or outcome not in (0, 1):
            raise V2Error(400, f"feedback 'outcome' must be 0 (down) or 1 (up), got {outcome!r}")
        try:
            result = self.ledger.record(rid, outcome)
        except UnknownRequestId as exc:
            raise V2Error(404, str(exc)) from None
        if result.counted:
            scored = [s for s in (result.served, *result.shadows) if s is not None]
            stats = self.ledger.stats()
            for s in scored:
                self.metrics.feedback_total.labels(s.model).inc()
                st = stats[s.model]
                self.metrics.feedback_accuracy.labels(s.model).set(st.accuracy)
                self.metrics.baseline_accuracy.labels(s.model).set(st.baseline_accuracy)
            if self.request_log is not None:
                self.request_log.append(FeedbackRecord(rid, time.time(), outcome))
        served = result.served
        return {
            "id": rid,
            "outcome": outcome,
            "counted": result.counted,
            "model": served.model if served else None,
            "correct": served.correct if served else None,
        }

    async def _update_experiment(self, name: str, who: str, headers: dict[str, str], receive: Receive) -> Any:
        patch = await _read_json(receive, headers, self.options.max_body_bytes)
        try:
            old = self.experiments.get(name)
            candidate = parse_config(merge_patch(old.config.model_dump(mode="python", exclude_none=True), patch))
            self._check_models(name, Experiment(candidate).models)
            new = self.experiments.update(name, patch, who)
            self._declare_arms(new)
        except UnknownExperiment as exc:
            raise V2Error(404, str(exc)) from None
        except (ExperimentConfigError, ServingConfigError) as exc:
            raise V2Error(400, str(exc)) from None
        if self.request_log is not None:
            self.request_log.append(AdminRecord(time.time(), who, name, orjson.dumps(patch).decode()))
        log.info("experiment %s changed by %s: %s", name, who, patch)
        return new.describe()

    def _authorize(self, headers: dict[str, str], tokens: dict[str, str]) -> str:
        """The holder of the request's bearer token; 401 without a valid one."""
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token:
            for who, expected in tokens.items():
                if hmac.compare_digest(token.strip().encode(), expected.encode()):
                    return who
        raise V2Error(401, "missing or invalid bearer token", [(b"www-authenticate", b'Bearer realm="finmlops"')])

    def render_metrics(self) -> bytes:
        """Refresh the state gauges (traffic shares, PSI) and render every series."""
        for experiment in self.experiments:
            for arm, share in experiment.traffic_share().items():
                self.metrics.traffic_share.labels(experiment.name, arm).set(share)
        for (name, version), (tracker, order, pending) in list(self._drift.items()):
            current = self.store.get(name)
            if current is None or current.version != version:
                continue
            n = current.n_features
            while pending:
                tracker.update(np.frombuffer(pending.popleft(), np.float32, n)[order])
            if tracker.n:
                for feature, value in tracker.psi().items():
                    if np.isfinite(value):
                        self.metrics.feature_psi.labels(name, feature).set(value)
        return self.metrics.render()

    # request-log readers for the ledger (ids evicted from memory)

    def _logged_predictions(self, rid: str) -> list[Prediction]:
        assert self.request_log is not None
        # The log is append-only, so a reused id has several rows: per (model, shadow) the latest answered one, in
        # arrival order (the ledger keeps the last served row, as it does in memory).
        with contextlib.closing(sqlite3.connect(str(self.request_log.path))) as db:
            rows = db.execute(
                "SELECT model, prob_up, shadow, arm, experiment FROM requests WHERE rowid IN (SELECT max(rowid) "
                "FROM requests WHERE id = ? AND status = 200 GROUP BY model, shadow) ORDER BY rowid",
                (rid,),
            ).fetchall()
        return [Prediction(rid, m, float(p), bool(s), a, e) for m, p, s, a, e in rows]

    def _logged_feedback(self, rid: str) -> bool:
        assert self.request_log is not None
        with contextlib.closing(sqlite3.connect(str(self.request_log.path))) as db:
            return db.execute("SELECT 1 FROM feedback WHERE id = ?", (rid,)).fetchone() is not None


# --- helpers -----------------------------------------------------------------------------------------------------


def _binary_header(headers: dict[str, str]) -> int | None:
    """The JSON length of a binary-extension body, and the content-type check (415 for anything but JSON)."""
    raw = headers.get("inference-header-content-length")
    ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if raw is not None:
        try:
            return int(raw)
        except ValueError:
            raise V2Error(400, f"Inference-Header-Content-Length must be an integer, got {raw!r}") from None
    if ctype and ctype != "application/json":
        raise V2Error(415, f"unsupported content type {ctype!r}; send application/json (or the binary extension)")
    return None


async def _read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes:
    """The whole request body; 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise V2Error(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks, size = [body], len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise V2Error(400, "client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise V2Error(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_json(receive: Receive, headers: dict[str, str], limit: int) -> dict[str, Any]:
    ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype and ctype != "application/json":
        raise V2Error(415, f"unsupported content type {ctype!r}; send application/json")
    doc = loads_json(await _read_body(receive, headers, limit))
    if not isinstance(doc, dict):
        raise V2Error(400, "the body must be a JSON object")
    return doc


async def _respond(
    send: Send, status: int, body: bytes, ctype: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _context_value(exp: Experiment, headers: dict[str, str], parameters: dict[str, Any]) -> str | None:
    context = exp.config.context
    if context is None:
        return None
    value = headers.get(context.header) if context.header else None
    if value is None and context.parameter:
        value = parameters.get(context.parameter)
    return None if value is None else str(value)


def _anonymous(headers: dict[str, str], scope: dict[str, Any]) -> str:
    """Who made an admin change when no admin token is configured: the client address (and a claimed user)."""
    client = scope.get("client") or ("unknown", 0)
    user = headers.get("x-finmlops-user")
    return f"{user} (unauthenticated, {client[0]})" if user else f"unauthenticated {client[0]}"
