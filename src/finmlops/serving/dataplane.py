"""The transport-agnostic data plane, as MLServer's ``DataPlane``: what a request means, not how it travelled.

A transport (REST in ``finmlops.serving.app``, gRPC in ``finmlops.serving.grpc_transport``) parses its wire format
into a :class:`~finmlops.serving.protocol.InferRequest` (model, version, tensors, parameters, lower-cased headers or
metadata) and calls :meth:`DataPlane.infer`, which routes it (experiments), builds the model input (a tensor, or
raw OHLCV through the training feature code), scores it on the model's micro-batcher and returns an
:class:`InferenceEvent`. Refusals are typed :class:`~finmlops.serving.errors.ServingError` subclasses that each
transport maps to its status codes. ``explain``, ``feedback`` and ``update_experiment`` work the same way.

Every answered or refused request, feedback outcome and admin change is published as an event to the observers
(metrics, request log, feedback ledger, sliding drift; ``subscribe`` adds more). Events are delivered on the next
turn of the event loop, after the transport has written its response, so observers never delay an answer; their
order is the order of the requests. Bandit refreshes and feedback look-ups run in worker threads, off the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

import numpy as np
import orjson

from finmlops.serving.batching import ArrivalGate
from finmlops.serving.config import ServingConfig, ServingConfigError
from finmlops.serving.errors import (
    BadRequest,
    Conflict,
    InternalError,
    NotFound,
    ServingError,
    Unauthorized,
    Unavailable,
)
from finmlops.serving.experiments import (
    Experiment,
    ExperimentConfigError,
    ExperimentLimits,
    ExperimentSet,
    Route,
    UnknownExperiment,
)
from finmlops.serving.feedback import (
    FeedbackLedger,
    FeedbackResult,
    ModelStats,
    Prediction,
    UnknownRequestId,
    row_ids,
)
from finmlops.serving.metrics import ServerMetrics
from finmlops.serving.models import LoadedModel, ModelLoadError, ModelStore, Registry
from finmlops.serving.protocol import RAW_INPUTS, InferRequest, as_fp32, as_of_parameter
from finmlops.serving.requestlog import AdminRecord, FeedbackRecord, RequestLog, RequestRecord

log = logging.getLogger("finmlops.serving")
EXPLAIN_MAX_STEPS = 64
# A model's drift tracker and the column order that maps its inputs onto the tracker's features, or None.
DriftFactory = Callable[[LoadedModel], tuple[Any, np.ndarray] | None]
Explainer = Callable[..., dict[str, Any]]


# --- events ---------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class InferenceEvent:
    """One answered (``error`` None) or refused request, or one shadow scoring (``shadow``).

    ``x``: the ``[n, seq_len, n_features]`` float32 input scored; ``y``: ``[n, 1]`` float32 P(up), also as the list
    ``probs`` with each row's feedback id in ``row_ids`` (the request id for batch 1, ``<id>/<i>`` otherwise; both
    set on delivery, once for every observer). ``status`` is the
    V2 status (200, or the error's). ``seconds`` runs from ``started`` (``time.perf_counter()``) until the event is
    delivered, i.e. until just after the response was written. ``model`` is "" for a request refused before it was
    routed; ``experiment``/``arm`` are "" outside experiments.
    """

    id: str
    model: str
    started: float
    version: str | None = None
    experiment: str = ""
    arm: str = ""
    as_of: str | None = None
    shadow: bool = False
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    output_name: str = ""
    context: str | None = None
    error: ServingError | None = None
    seconds: float = 0.0
    probs: list[float] = field(default_factory=list)
    row_ids: list[str] = field(default_factory=list)
    protocol: str = "rest"

    @property
    def status(self) -> int:
        return 200 if self.error is None else self.error.status

    @property
    def parameters(self) -> dict[str, str]:
        """The response's ``parameters``: the experiment and arm that answered (empty outside experiments)."""
        return {"experiment": self.experiment, "arm": self.arm} if self.experiment else {}

    def _scored(self) -> None:
        """Fill ``probs`` and ``row_ids`` from ``y``."""
        if self.y is not None:
            self.probs = self.y[:, 0].tolist()
            self.row_ids = row_ids(self.id, len(self.probs))


@dataclass(frozen=True, slots=True)
class ModelIndex:
    """One entry of the model repository index (Triton's and MLServer's ``RepositoryIndex``)."""

    name: str
    version: str
    state: str  # READY or UNAVAILABLE
    reason: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "state": self.state, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class FeedbackEvent:
    """One outcome received: what the ledger did, and the running stats of every model it scored."""

    result: FeedbackResult
    ts: float
    stats: dict[str, ModelStats] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AdminEvent:
    """One applied experiment change: who, which experiment, the merge patch."""

    ts: float
    who: str
    experiment: str
    patch: Mapping[str, Any]


class Observer(Protocol):
    """What subscribes to the data plane. Each method runs on the event loop and must be quick (microseconds)."""

    def on_inference(self, event: InferenceEvent) -> None: ...

    def on_feedback(self, event: FeedbackEvent) -> None: ...

    def on_admin(self, event: AdminEvent) -> None: ...


# --- observers ------------------------------------------------------------------------------------------------------


class MetricsObserver:
    """Request counts, latency and predicted classes (served answers only), feedback accuracy gauges."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics

    def on_inference(self, event: InferenceEvent) -> None:
        if event.shadow:
            return
        self.metrics.observe_request(
            event.model, event.experiment, event.arm, event.status, event.seconds, event.protocol
        )
        if event.y is not None:
            n_up = sum(p > 0.5 for p in event.probs)
            self.metrics.observe_predictions(event.model, n_up, len(event.probs) - n_up)

    def on_feedback(self, event: FeedbackEvent) -> None:
        for model, st in event.stats.items():
            self.metrics.feedback_total.labels(model).inc()
            self.metrics.feedback_accuracy.labels(model).set(st.accuracy)
            self.metrics.baseline_accuracy.labels(model).set(st.baseline_accuracy)

    def on_admin(self, event: AdminEvent) -> None:
        pass


class RequestLogObserver:
    """One ``requests`` row per scored row and model (one per refused request), feedback and admin rows."""

    def __init__(self, request_log: RequestLog) -> None:
        self.log = request_log

    def on_inference(self, event: InferenceEvent) -> None:
        now, ms = time.time(), event.seconds * 1000.0
        experiment, arm = event.experiment or None, event.arm or None
        if event.y is None or event.x is None:
            self.log.append(
                RequestRecord(
                    event.id or _new_id(),
                    event.model,
                    now,
                    experiment,
                    arm,
                    None,
                    0,
                    None,
                    None,
                    ms,
                    event.status,
                    as_of=event.as_of,
                )
            )
            return
        if not event.probs:
            return
        model, version, shadow, context = event.model, event.version, int(event.shadow), event.context
        if len(event.probs) == 1:  # the common request: the same row as below, without the per-row views
            flat = np.ascontiguousarray(event.x).reshape(-1)
            digest, last_features = hashlib.sha1(flat).hexdigest(), flat[-event.x.shape[-1] :].tobytes()
            record = RequestRecord(event.row_ids[0], model, now, experiment, arm, version, shadow, digest,
                                   event.probs[0], ms, 200, context, last_features, event.as_of)  # fmt: skip
            self.log.append(record)
            return
        # Rows as C-contiguous views, hashed and sliced without a copy per row (a day request has hundreds).
        rows = np.ascontiguousarray(event.x).reshape(len(event.probs), -1)
        last = rows[:, -event.x.shape[-1] :].tobytes()  # the last timestep of every row, one copy
        width = len(last) // len(rows)
        self.log.extend(
            RequestRecord(
                row_id,
                model,
                now,
                experiment,
                arm,
                version,
                shadow,
                hashlib.sha1(row).hexdigest(),  # a content id, not security
                p,
                ms,
                200,
                context,
                last[i * width : (i + 1) * width],
                event.as_of,
            )
            for i, (row_id, p, row) in enumerate(zip(event.row_ids, event.probs, rows, strict=True))
        )

    def on_feedback(self, event: FeedbackEvent) -> None:
        if event.result.counted:
            self.log.append(FeedbackRecord(event.result.id, event.ts, event.result.outcome))

    def on_admin(self, event: AdminEvent) -> None:
        self.log.append(
            AdminRecord(event.ts, event.who, event.experiment or None, orjson.dumps(dict(event.patch)).decode())
        )


class LedgerObserver:
    """Registers every scored row (served and shadow) under its id, for ``feedback``."""

    def __init__(self, ledger: FeedbackLedger) -> None:
        self.ledger = ledger

    def on_inference(self, event: InferenceEvent) -> None:
        if event.y is None:
            return
        model, shadow, arm, experiment = event.model, event.shadow, event.arm or None, event.experiment or None
        self.ledger.register_all(
            Prediction(row_id, model, p, shadow, arm, experiment)
            for row_id, p in zip(event.row_ids, event.probs, strict=True)
        )

    def on_feedback(self, event: FeedbackEvent) -> None:
        pass

    def on_admin(self, event: AdminEvent) -> None:
        pass


class DriftObserver:
    """The online PSI: the last timestep of each served row, folded into the model version's sliding tracker when
    ``/metrics`` is scraped (``refresh``), not per request."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._tracked: dict[tuple[str, str], tuple[Any, np.ndarray, deque[bytes]]] = {}

    def track(self, model: LoadedModel, tracker: Any, order: np.ndarray) -> None:
        self._tracked[(model.name, model.version)] = (tracker, order, deque(maxlen=self.window))

    def forget(self, name: str, version: str) -> None:
        self._tracked.pop((name, version), None)

    def on_inference(self, event: InferenceEvent) -> None:
        if event.shadow or event.x is None or event.version is None:
            return
        tracked = self._tracked.get((event.model, event.version))
        if tracked is not None:
            pending = tracked[2]
            for row in event.x:
                pending.append(row[-1].tobytes())

    def refresh(self, store: ModelStore, metrics: ServerMetrics) -> None:
        """Fold the pending rows of every served version into its tracker and set the PSI gauges."""
        for (name, version), (tracker, order, pending) in list(self._tracked.items()):
            current = store.get(name)
            if current is None or current.version != version:
                continue
            while pending:
                tracker.update(np.frombuffer(pending.popleft(), np.float32, current.n_features)[order])
            if tracker.n:
                for feature, value in tracker.psi().items():
                    if np.isfinite(value):
                        metrics.feature_psi.labels(name, feature).set(value)

    def on_feedback(self, event: FeedbackEvent) -> None:
        pass

    def on_admin(self, event: AdminEvent) -> None:
        pass


# --- the data plane -------------------------------------------------------------------------------------------------


class DataPlane:
    """The server's models, experiments, ledger and observers behind ``infer``/``explain``/``feedback``/admin.

    Models load in the constructor (a failure raises ``ModelLoadError``/``ServingConfigError``). ``registry`` is
    needed for ``models:/`` sources; ``request_log`` is the SQLite file of the request log (None: no log).
    ``drift_factory`` builds a model version's drift tracker (None: no PSI gauges).
    """

    def __init__(
        self,
        config: ServingConfig,
        *,
        registry: Registry | None,
        request_log: Path | None,
        drift_factory: DriftFactory | None = None,
    ) -> None:
        self.config = config
        self.options = config.server
        self.gate = ArrivalGate()
        self.store = ModelStore(self.options, registry, self.gate)
        self.store.load_all(config.models)
        limits = ExperimentLimits(self.options.max_experiment_arms, self.options.max_bandit_draws)
        try:
            self.experiments = ExperimentSet.from_yaml({"experiments": config.experiments or []}, limits=limits)
        except ExperimentConfigError as exc:
            raise ServingConfigError(f"experiments: {exc}") from None
        for experiment in self.experiments:
            self._check_models(experiment.name, experiment.models)
        self.metrics = ServerMetrics()
        for experiment in self.experiments:
            self._declare_arms(experiment)
        self.request_log = (
            RequestLog(request_log, max_buffered_rows=self.options.request_log_max_rows) if request_log else None
        )
        self.metrics.watch_request_log(self.request_log)
        self.ledger = FeedbackLedger(
            max_ids=self.options.feedback_ids,
            experiments=self.experiments,
            lookup=self._logged_predictions if request_log else None,
            already_counted=self._logged_feedback if request_log else None,
        )
        self.drift = DriftObserver(self.options.drift_window)
        self._drift_factory = drift_factory
        self.observers: list[Observer] = [MetricsObserver(self.metrics), LedgerObserver(self.ledger), self.drift]
        if self.request_log is not None:
            self.observers.append(RequestLogObserver(self.request_log))
        self._fits: dict[tuple[Experiment, tuple[Any, ...]], tuple[int, ...]] = {}
        self._repository_lock = asyncio.Lock()
        self._uniform: dict[Experiment, bool] = {}
        for entry in self.store.entries:
            self.on_loaded(entry.current, None)

    def subscribe(self, observer: Observer) -> None:
        """Add an observer of every later event."""
        self.observers.append(observer)

    # --- models ---------------------------------------------------------------------------------------------------

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
        self.metrics.signature_routed.labels(experiment.name)  # at 0, so the series exists before any mismatch
        for candidate in experiment.config.candidates:
            model = self.store.resolve(candidate.target)
            if model is not None and not (weighted and candidate.weight <= 0):
                self.metrics.declare_arm(model.name, experiment.name, candidate.name)

    def on_loaded(self, model: LoadedModel, previous: str | None) -> None:
        """A model version starts serving (at start-up, or after its alias moved from ``previous``)."""
        self.metrics.set_model_info(model.name, model.version, model.data_hash, previous)
        if model.batcher is not None:
            model.batcher.observe = self.metrics.batch_size.labels(model.name).observe
        if previous is not None and previous != model.version:
            self.drift.forget(model.name, previous)  # the swapped-out version's PSI window (else one per swap)
        self._fits.clear()  # a new version may take another window shape
        self._uniform.clear()
        if model.drift_reference is None or self._drift_factory is None:
            return
        made = self._drift_factory(model)
        if made is not None:
            self.drift.track(model, *made)

    def ready(self) -> bool:
        return all(e.current is not None for e in self.store.entries)

    def model(self, name: str, version: str | None = None) -> LoadedModel:
        """The served model ``name`` (at ``version``); ``NotFound`` naming what is served otherwise."""
        model = self.store.get(name, version)
        if model is None:
            raise NotFound(
                f"unknown model {name!r}"
                + (f" version {version!r}" if version else "")
                + f"; serving: {', '.join(self.store.names())}"
            )
        return model

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
                self.on_loaded(model, old)
        return swaps

    async def close(self) -> None:
        """Flush the request log (in-flight requests were drained by the transport)."""
        if self.request_log is not None:
            await asyncio.to_thread(self.request_log.close)

    # --- auth -----------------------------------------------------------------------------------------------------

    @staticmethod
    def authorize(authorization: str, tokens: dict[str, str]) -> str:
        """The holder of the bearer token in ``authorization`` (``Bearer <token>``); ``Unauthorized`` otherwise."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token:
            for who, expected in tokens.items():
                if hmac.compare_digest(token.strip().encode(), expected.encode()):
                    return who
        raise Unauthorized("missing or invalid bearer token")

    # --- inference ------------------------------------------------------------------------------------------------

    async def infer(self, request: InferRequest, *, arriving: bool = False) -> InferenceEvent:
        """Route, score and answer ``request``; the returned event carries ``y`` and is also published.

        ``arriving``: the transport entered ``gate`` when it began reading the request (so that batches wait for
        it); infer leaves it once the request is queued or refused. Raises a ``ServingError`` (already published).
        """
        event = InferenceEvent(
            request.id or _new_id(), "", request.received or time.perf_counter(), protocol=request.protocol
        )
        gate = self.gate
        gate.in_flight += 1
        try:
            try:  # the arrival phase: batches may wait for requests in it, so it must always end
                event.as_of = as_of_parameter(request.parameters)
                model, exp, route = self._route(request, event.id)
                event.model, event.version, event.output_name = model.name, model.version, model.output_name
                if exp is not None:
                    assert route is not None
                    event.experiment, event.arm = exp.name, route.arm
                    event.context = _context_value(exp, request.headers, request.parameters)
                for wanted in request.requested_outputs:
                    if wanted != model.output_name:
                        raise BadRequest(f"model {model.name!r} has output {model.output_name!r}, not {wanted!r}")
                raw = model.input_name not in request.inputs
                if not raw:
                    x = self.model_input(model, request.inputs)
                    future = model.batcher.submit(x)  # type: ignore[union-attr]  # set by the store
            finally:
                if arriving:
                    self.gate.leave()
            if raw:
                from finmlops.serving.raw import runs_inline  # deferred: talib

                # Raw OHLCV, out of the arrival gate (no batch waits for it): a row or two on the loop itself (a
                # worker thread's GIL hand-offs cost more than their features), a larger batch in a worker thread
                # so that the loop keeps serving meanwhile.
                if runs_inline(request.inputs):
                    x = self.model_input(model, request.inputs)
                else:
                    x = await asyncio.to_thread(self.model_input, model, request.inputs)
                future = model.batcher.submit(x)  # type: ignore[union-attr]
            event.y = await future
        except ServingError as exc:
            event.error = exc
            self._publish(event)
            raise
        except Exception as exc:  # a model that fails at run time is a 500, and the server keeps serving
            log.exception("inference failed")
            event.error = InternalError(f"inference failed: {type(exc).__name__}: {exc}")
            self._publish(event)
            raise event.error from None
        finally:
            gate.in_flight -= 1
        event.x = x
        self._publish(event)
        if exp is not None and route is not None and route.shadows:
            asyncio.get_running_loop().call_soon(self._shadow, route.shadows, event, request.inputs)
        return event

    def refused(self, error: ServingError, started: float, rid: str = "", protocol: str = "rest") -> None:
        """Publish a request the transport refused before it could call ``infer`` (a bad body, a 413, ...)."""
        self._publish(InferenceEvent(rid or _new_id(), "", started, error=error, protocol=protocol))

    def _publish(self, event: InferenceEvent) -> None:
        asyncio.get_running_loop().call_soon(self._deliver, event)

    def _deliver(self, event: InferenceEvent) -> None:
        event.seconds = time.perf_counter() - event.started
        event._scored()
        for observer in self.observers:
            try:
                observer.on_inference(event)
            except Exception:  # one broken observer must not stop the others or the server
                log.exception("observer %s failed on request %s", type(observer).__name__, event.id)

    def _route(self, request: InferRequest, request_id: str) -> tuple[LoadedModel, Experiment | None, Route | None]:
        """The model that answers: Seldon's ``seldon-model`` header (``<experiment>.experiment`` or a model name),
        else the path's model; an experiment whose ``default`` is that model takes over its endpoint."""
        name, version, headers = request.model, request.version, request.headers
        experiment: Experiment | None = None
        if version is None:
            target = headers.get("seldon-model") or name
            if target.endswith(".experiment"):
                experiment = self.experiments.from_header(target)
                if experiment is None:
                    raise NotFound(
                        f"no experiment {target.removesuffix('.experiment')!r}; configured: "
                        f"{', '.join(self.experiments.names()) or 'none'}"
                    )
            else:
                name = target
                experiment = self.experiments.for_model(name) or (
                    self.experiments.get(name) if name in self.experiments and self.store.get(name) is None else None
                )
        if experiment is not None:
            among = self._fitting_arms(experiment, request.inputs)
            if among:
                self.metrics.count_signature_routed(experiment.name)
            # Seeded by the request id: a replay with the same ids is routed the same, whatever its timing.
            route = experiment.route(headers, request.parameters, request_id, among)
            model = self.store.resolve(route.model)
            if model is None:
                raise Unavailable(f"experiment {experiment.name!r} routed to {route.model!r}, which is not loaded")
            return model, experiment, route
        model = self.store.get(name, version)
        if model is None:
            known = self.store.get(name)
            if known is not None:
                raise NotFound(f"model {name!r} has no version {version!r}; serving version {known.version}")
            raise NotFound(f"unknown model {name!r}; serving: {', '.join(self.store.names())}")
        return model, None, None

    def _fitting_arms(self, experiment: Experiment, inputs: dict[str, np.ndarray]) -> tuple[int, ...]:
        """The arms whose model takes this request's tensors, when only some do (empty: every arm, or none, in
        which case the routed model's own error names the shape it takes). Raw OHLCV fits every arm with a feature
        card. Cached per experiment and tensor signature; the cache is cleared when a model loads or an experiment
        changes. An experiment whose arms all take the same inputs needs no signature (the common case: one
        dictionary look-up per request)."""
        if self._uniform.get(experiment, False):
            return ()
        signature = tuple((n, a.shape[1:]) for n, a in inputs.items() if n not in RAW_INPUTS)
        key = (experiment, signature)
        try:
            return self._fits[key]
        except KeyError:
            pass
        if experiment not in self._uniform:
            models = [self.store.resolve(c.target) for c in experiment.config.candidates]
            kinds = {(m.input_name, m.seq_len, m.n_features, bool(m.feature_names and m.feature_set)) if m else None
                     for m in models}  # fmt: skip
            self._uniform[experiment] = len(kinds) == 1
            if self._uniform[experiment]:
                return ()
        fits = []
        for i, candidate in enumerate(experiment.config.candidates):
            model = self.store.resolve(candidate.target)
            if model is None:
                continue
            if signature:
                ok = any(n == model.input_name and s == (model.seq_len, model.n_features) for n, s in signature)
            else:
                ok = bool(model.feature_names and model.feature_set)
            if ok:
                fits.append(i)
        among = () if len(fits) in (0, len(experiment.config.candidates)) else tuple(fits)
        self._fits[key] = among
        return among

    def model_input(self, model: LoadedModel, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """The ``[batch, seq_len, n_features]`` float32 window tensor, given directly or computed from raw OHLCV."""
        expected = [-1, model.seq_len, model.n_features]
        x = inputs.get(model.input_name)
        if x is not None:
            if x.ndim != 3 or x.shape[1:] != (model.seq_len, model.n_features):
                raise BadRequest(
                    f"input {model.input_name!r}: model {model.name!r} expects shape {expected} "
                    f"(batch, seq_len, n_features), got {list(x.shape)}; or send raw OHLCV tensors",
                )
            if x.shape[0] == 0:
                raise BadRequest(f"input {model.input_name!r}: empty batch (shape {list(x.shape)})")
            return as_fp32(x, model.input_name)
        if RAW_INPUTS.intersection(inputs):
            if not model.feature_names or not model.feature_set:
                raise BadRequest(f"model {model.name!r} has no feature card, so it takes only {model.input_name!r}")
            from finmlops.serving.raw import raw_windows  # deferred: talib

            return raw_windows(inputs, model.feature_set, model.feature_names, model.seq_len)
        raise BadRequest(
            f"model {model.name!r} takes input {model.input_name!r} with shape {expected}, or raw "
            f"tensors open/high/low/close/volume [batch, T]; got {sorted(inputs)}",
        )

    def _shadow(self, names: tuple[str, ...], served: InferenceEvent, inputs: dict[str, np.ndarray]) -> None:
        """Score the request on each shadow model (answers published with ``shadow``, never returned)."""
        x = served.x
        assert x is not None
        for name in names:
            model = self.store.resolve(name)
            if model is None:
                continue
            try:
                xs = x if x.shape[1:] == (model.seq_len, model.n_features) else self.model_input(model, inputs)
            except ServingError as exc:
                log.warning("shadow %s skipped for %s: %s", name, served.id, exc.message)
                continue
            event = InferenceEvent(
                served.id, model.name, time.perf_counter(), model.version, served.experiment, served.arm,
                served.as_of, shadow=True, x=xs, output_name=model.output_name,
            )  # fmt: skip
            future = model.batcher.submit(xs)  # type: ignore[union-attr]
            future.add_done_callback(lambda f, e=event: self._shadow_done(f, e))

    def _shadow_done(self, future: asyncio.Future[np.ndarray], event: InferenceEvent) -> None:
        if future.cancelled() or future.exception() is not None:
            log.warning(
                "shadow %s failed for %s: %s", event.model, event.id, None if future.cancelled() else future.exception()
            )
            return
        event.y = future.result()
        self._deliver(event)

    # --- explain --------------------------------------------------------------------------------------------------

    async def explain(self, request: InferRequest, explainer: Explainer, default_steps: int) -> dict[str, Any]:
        """Integrated Gradients of one window of ``request.model`` by ``explainer(session, card, x, steps=,
        top=)``, in a worker thread. Parameters ``steps`` (an integer 1-64, default ``default_steps``) and ``top``
        (a positive integer, default 10): JSON booleans are refused, not read as 1."""
        model = self.model(request.model, request.version)
        if not model.feature_names:
            raise BadRequest(f"model {model.name!r} has no feature card, so its attributions cannot be named")
        steps, top = request.parameters.get("steps", default_steps), request.parameters.get("top", 10)
        if type(steps) is not int or not 1 <= steps <= EXPLAIN_MAX_STEPS:
            raise BadRequest(f"parameter 'steps' must be an integer from 1 to {EXPLAIN_MAX_STEPS}, got {steps!r}")
        if type(top) is not int or top < 1:
            raise BadRequest(f"parameter 'top' must be a positive integer, got {top!r}")
        x = self.model_input(model, request.inputs)
        if x.shape[0] != 1:
            raise BadRequest(f"explain takes one window (batch 1), got a batch of {x.shape[0]}")
        card = SimpleNamespace(
            variant=model.card.get("variant", model.name), feature_names=model.feature_names, seq_len=model.seq_len
        )
        payload = await asyncio.to_thread(explainer, model.session, card, x, steps=steps, top=top)
        return {"model_name": model.name, "model_version": model.version, **payload}

    # --- feedback -------------------------------------------------------------------------------------------------

    async def feedback(self, rid: Any, outcome: Any) -> FeedbackEvent:
        """Count the realised ``outcome`` (0 down, 1 up) of request ``rid`` once; published to the observers.

        The ledger's work (an SQLite look-up of an evicted id, a bandit refresh) runs in a worker thread.
        """
        if not isinstance(rid, str) or not rid:
            raise BadRequest("feedback needs 'id': the id of a served request (a string)")
        if type(outcome) is not int or outcome not in (0, 1):
            raise BadRequest(f"feedback 'outcome' must be 0 (down) or 1 (up), got {outcome!r}")
        try:
            result = await asyncio.to_thread(self.ledger.record, rid, outcome)
        except UnknownRequestId as exc:
            raise NotFound(str(exc)) from None
        stats: dict[str, ModelStats] = {}
        if result.counted:
            all_stats = self.ledger.stats()
            stats = {s.model: all_stats[s.model] for s in (result.served, *result.shadows) if s is not None}
        event = FeedbackEvent(result, time.time(), stats)
        for observer in self.observers:
            observer.on_feedback(event)
        return event

    # --- admin ----------------------------------------------------------------------------------------------------

    async def update_experiment(self, name: str, patch: Any, who: str) -> Experiment:
        """Apply a JSON merge patch to experiment ``name`` (validated against the server's limits and models) in a
        worker thread, since a bandit's first shares take posterior draws; published as an ``AdminEvent``."""

        def check(new: Experiment) -> None:
            self._check_models(name, new.models)

        try:
            new = await asyncio.to_thread(self.experiments.update, name, patch, who, check)
        except UnknownExperiment as exc:
            raise NotFound(str(exc)) from None
        except (ExperimentConfigError, ServingConfigError) as exc:
            raise BadRequest(str(exc)) from None
        self._declare_arms(new)
        self._fits.clear()
        self._uniform.clear()
        event = AdminEvent(time.time(), who, name, patch)
        for observer in self.observers:
            observer.on_admin(event)
        log.info("experiment %s changed by %s: %s", name, who, patch)
        return new

    def describe_experiment(self, name: str) -> dict[str, Any]:
        try:
            return self.experiments.get(name).describe()
        except UnknownExperiment as exc:
            raise NotFound(str(exc)) from None

    # --- the model repository extension ----------------------------------------------------------------------------

    def repository_index(self, ready_only: bool = False) -> list[ModelIndex]:
        """Every configured model entry (the repository is serving.yaml's ``models``): version, READY or
        UNAVAILABLE (unloaded) and why; ``ready_only`` keeps the READY ones."""
        out = []
        for entry in self.store.entries:
            if entry.unloaded is None:
                out.append(ModelIndex(entry.spec.name, entry.current.version, "READY", ""))
            elif not ready_only:
                out.append(ModelIndex(entry.spec.name, entry.current.version, "UNAVAILABLE", entry.unloaded))
        return out

    async def load_model(self, name: str, who: str) -> list[ModelIndex]:
        """(Re)load every entry of the configured model ``name`` from its source (a registry alias is resolved
        anew), as Triton's load: the new session is built and warmed up in a worker thread, then swapped in; a
        request that already holds the old session finishes on it, so none fails. ``NotFound`` for a name that is
        not configured, ``Unavailable`` when the source cannot be loaded (the old version keeps serving)."""
        entries = self._configured(name)
        async with self._repository_lock:
            for entry in entries:
                try:
                    new = await asyncio.to_thread(self.store.reload_entry, entry)
                except ModelLoadError as exc:
                    raise Unavailable(f"model {name!r} cannot be loaded: {exc}") from None
                previous = None if entry.unloaded is not None else entry.current.version
                entry.current, entry.unloaded = new, None  # the swap: one assignment on the event loop
                self.on_loaded(new, previous)
            self._repository_event(who, "load", name, entries)
        log.info("model %s loaded by %s: version %s", name, who, ", ".join(e.current.version for e in entries))
        return [ModelIndex(name, e.current.version, "READY", "") for e in entries]

    async def unload_model(self, name: str, who: str) -> list[ModelIndex]:
        """Stop serving the configured model ``name``: later requests get 404 (NOT_FOUND), requests already
        queued on it are still answered. ``Conflict`` while an experiment's arm routes to it (change the experiment
        first), since its share of the traffic would otherwise fail."""
        entries = self._configured(name)
        async with self._repository_lock:
            for experiment in self.experiments:
                arms = [c.name for c in experiment.config.candidates if c.target.split("@", 1)[0] == name]
                if arms:
                    raise Conflict(
                        f"model {name!r} is arm {', '.join(map(repr, arms))} of experiment {experiment.name!r}: "
                        "change the experiment (PUT /admin/experiments/...) before unloading it"
                    )
            reason = f"unloaded by {who} at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"
            for entry in entries:
                if entry.unloaded is None:
                    entry.unloaded = reason
                    self.metrics.unset_model_info(entry.spec.name, entry.current.version)
                    self.drift.forget(entry.spec.name, entry.current.version)
            self._fits.clear()
            self._uniform.clear()
            self._repository_event(who, "unload", name, entries)
        log.info("model %s unloaded by %s", name, who)
        return [ModelIndex(name, e.current.version, "UNAVAILABLE", e.unloaded or "") for e in entries]

    def _configured(self, name: str) -> list[Any]:
        entries = self.store.configured(name)
        if not entries:
            configured = sorted({e.spec.name for e in self.store.entries})
            raise NotFound(f"no model {name!r} in the repository; configured: {', '.join(configured)}")
        return entries

    def _repository_event(self, who: str, action: str, name: str, entries: list[Any]) -> None:
        patch = {"repository": action, "model": name, "versions": [e.current.version for e in entries]}
        event = AdminEvent(time.time(), who, "", patch)
        for observer in self.observers:
            observer.on_admin(event)

    # --- metrics --------------------------------------------------------------------------------------------------

    def render_metrics(self) -> bytes:
        """Refresh the state gauges (traffic shares, PSI) and render every series."""
        for experiment in self.experiments:
            for arm, share in experiment.traffic_share().items():
                self.metrics.traffic_share.labels(experiment.name, arm).set(share)
        self.drift.refresh(self.store, self.metrics)
        return self.metrics.render()

    # --- request-log readers for the ledger (ids evicted from memory) ---------------------------------------------

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


_ID_TAILS: list[str] = []  # random id tails, drawn from the OS in bulk (one getrandom call per 512 ids)
os.register_at_fork(after_in_child=_ID_TAILS.clear)  # a forked child must not draw its parent's tails


def _new_id() -> str:
    """A fresh request id: 32 hex digits, the unix time in milliseconds (12) then 80 random bits (20), as UUIDv7
    orders them. Random, so that feedback ids cannot be guessed; time-ordered, so that the request log's index on
    ``id`` grows at its end instead of at random pages (measured: a third less writer CPU per row)."""
    try:
        tail = _ID_TAILS.pop()  # list.pop is atomic: safe from the event loop and worker threads alike
    except IndexError:
        pool = os.urandom(10 * 512).hex()
        _ID_TAILS.extend([pool[i : i + 20] for i in range(0, len(pool), 20)])
        tail = _ID_TAILS.pop()
    return f"{time.time_ns() // 1_000_000:012x}{tail}"


def _context_value(exp: Experiment, headers: Mapping[str, str], parameters: Mapping[str, Any]) -> str | None:
    context = exp.config.context
    if context is None:
        return None
    value = headers.get(context.header) if context.header else None
    if value is None and context.parameter:
        value = parameters.get(context.parameter)
    return None if value is None else str(value)
