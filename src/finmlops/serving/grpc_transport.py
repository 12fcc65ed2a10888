"""The gRPC transport of the finmlops inference server: Open Inference Protocol V2 over gRPC (KServe's
``inference.GRPCInferenceService``, ``protos/grpc_predict_v2.proto``) and the standard ``grpc.health.v1`` service, in
front of the same :class:`~finmlops.serving.dataplane.DataPlane` as REST.

It runs on ``grpc.aio`` in the REST server's event loop (``ServingApp.start_grpc``, at uvicorn's start-up), so that
both transports share one data plane: the same models and micro-batchers (a REST and a gRPC request that arrive
together are scored in one onnxruntime run), experiments, feedback ledger, request log and metrics (labelled
``protocol="grpc"``). What REST reads from headers, gRPC reads from the call's metadata: ``seldon-model`` (route to
``<experiment>.experiment`` or a model), ``x-seldon-route`` (pin an arm), an experiment's sticky or context key,
``authorization: Bearer <token>``. The answering model is in the ``x-seldon-route`` trailing metadata; the response
``id`` is the feedback id (``POST /v2/feedback``). Refusals are the data plane's typed errors with their
``grpc_code`` (400 -> INVALID_ARGUMENT, 401 -> UNAUTHENTICATED, 403 -> PERMISSION_DENIED, 404 -> NOT_FOUND,
409 -> FAILED_PRECONDITION, 413 -> RESOURCE_EXHAUSTED, 503 -> UNAVAILABLE) and the same one-line message.

Tensors come as typed ``contents`` (``fp32_contents``/``fp64_contents``) or as ``raw_input_contents`` (row-major
little-endian bytes, read with ``np.frombuffer``, no copy); a request that sent raw inputs gets its output as
``raw_output_contents`` (as Triton answers), one with typed contents gets ``fp32_contents``. A message larger than
``server.max_body_bytes`` is refused by gRPC itself with RESOURCE_EXHAUSTED; metadata beyond
``server.max_header_bytes`` likewise; at most ``server.max_connections`` calls run at once (RESOURCE_EXHAUSTED
beyond). The repository extension's RPCs (Triton's RepositoryIndex, RepositoryModelLoad, RepositoryModelUnload) need
an admin token, as ``/admin/*`` does; with ``server.admin_port`` set they answer PERMISSION_DENIED here, since the
admin API then listens on its own (loopback) port, over REST. See docs/serving.md.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

import grpc
import numpy as np
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from finmlops import __version__
from finmlops.serving.config import ADMIN_OFF, ServingConfig
from finmlops.serving.dataplane import DataPlane, InferenceEvent
from finmlops.serving.errors import BadRequest, Forbidden, NotFound, ServingError
from finmlops.serving.experiments import SELDON_ROUTE_HEADER, seldon_route_value
from finmlops.serving.protocol import DTYPES, RAW_INPUTS, InferRequest
from finmlops.serving.protos import grpc_predict_v2_pb2 as pb
from finmlops.serving.protos import grpc_predict_v2_pb2_grpc as pb_grpc

log = logging.getLogger("finmlops.serving")
SERVICE = "inference.GRPCInferenceService"
EXTENSIONS = ["model_repository", "experiments", "feedback"]
_CODES = {code.name: code for code in grpc.StatusCode}
_LE = {name: dtype.newbyteorder("<") for name, dtype in DTYPES.items()}
_CONTENTS = {"FP32": "fp32_contents", "FP64": "fp64_contents"}


def grpc_status(error: ServingError) -> grpc.StatusCode:
    """The gRPC status code of a data-plane error (its ``grpc_code``)."""
    return _CODES.get(error.grpc_code, grpc.StatusCode.INTERNAL)


def _parameter(p: Any) -> Any:
    """An ``InferParameter``'s value (bool, int, str or float); None when unset."""
    which = p.WhichOneof("parameter_choice")
    return getattr(p, which) if which else None


def parse_request(msg: pb.ModelInferRequest) -> InferRequest:
    """A ``ModelInferRequest`` as the data plane's ``InferRequest``; ``BadRequest`` naming the tensor at fault.

    Each input is ``[shape]`` of FP32, FP64 (typed contents or raw bytes) or FP16 (raw bytes only); raw OHLCV inputs
    (open, high, ...) given as typed contents are read as float64, as REST does.
    """
    inputs = msg.inputs
    if not inputs:
        raise BadRequest("'inputs' must be a non-empty list of tensors")
    raw = msg.raw_input_contents
    if raw and len(raw) != len(inputs):
        raise BadRequest(
            f"raw_input_contents has {len(raw)} entries for {len(inputs)} inputs: give one per input, in their order"
        )
    tensors: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(inputs):
        name = tensor.name
        if not name:
            raise BadRequest(f"inputs[{i}]: 'name' must be a non-empty string")
        where = f"input {name!r}"
        datatype = tensor.datatype
        dtype = _LE.get(datatype)
        if dtype is None:
            raise BadRequest(f"{where}: datatype {datatype!r} is not supported; send FP32 (or FP64/FP16)")
        shape = tuple(tensor.shape)
        if not shape or min(shape) < 0:
            raise BadRequest(f"{where}: 'shape' must be a non-empty list of non-negative integers, got {list(shape)}")
        count = math.prod(shape)
        if raw:
            if tensor.HasField("contents"):
                raise BadRequest(f"{where}: has both contents and raw_input_contents; send one of them")
            data = raw[i]
            if len(data) != count * dtype.itemsize:
                raise BadRequest(
                    f"{where}: shape {list(shape)} as {datatype} needs {count * dtype.itemsize} bytes of "
                    f"raw_input_contents, got {len(data)}"
                )
            array = np.frombuffer(data, dtype=dtype)
        else:
            field = _CONTENTS.get(datatype)
            if field is None:
                raise BadRequest(f"{where}: {datatype} has no typed contents; send it in raw_input_contents")
            values = getattr(tensor.contents, field)
            if len(values) != count:
                raise BadRequest(f"{where}: shape {list(shape)} needs {count} values, got {len(values)} {field}")
            array = np.array(values, dtype=np.float64 if name in RAW_INPUTS else dtype)
        if not np.isfinite(array).all():
            raise BadRequest(f"{where}: contains NaN or infinite values")
        if name in tensors:
            raise BadRequest(f"{where} is given twice")
        tensors[name] = array.reshape(shape)
    parameters = {k: _parameter(v) for k, v in msg.parameters.items()} if msg.parameters else {}
    requested = [out.name for out in msg.outputs]
    request = InferRequest(msg.id or None, parameters, tensors, requested, protocol="grpc")
    request.model, request.version = msg.model_name, msg.model_version or None
    if len(msg.id) > 128:
        raise BadRequest("'id' must be a string of at most 128 characters")
    return request


def infer_response(event: InferenceEvent, raw: bool) -> pb.ModelInferResponse:
    """The ``ModelInferResponse`` of an answered event: ``[n, 1]`` FP32 as raw bytes (``raw``) or fp32_contents,
    with the experiment and arm that answered as string parameters."""
    y = event.y
    assert y is not None
    response = pb.ModelInferResponse(model_name=event.model, model_version=event.version or "", id=event.id)
    out = response.outputs.add(name=event.output_name, datatype="FP32", shape=y.shape)
    if raw:
        response.raw_output_contents.append(np.ascontiguousarray(y, dtype="<f4").tobytes())
    else:
        out.contents.fp32_contents.extend(y.ravel().tolist())
    for key, value in event.parameters.items():
        response.parameters[key].string_param = value
    return response


def _headers(context: aio.ServicerContext) -> dict[str, str]:
    """The call's text metadata as a dict (gRPC keys are lower-case already; ``-bin`` keys are skipped)."""
    metadata = context.invocation_metadata() or ()
    return {k: v for k, v in metadata if isinstance(v, str)}


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """``inference.GRPCInferenceService`` over the data plane (each method is one RPC of the proto)."""

    def __init__(self, plane: DataPlane, config: ServingConfig) -> None:
        self.plane = plane
        self.config = config
        self._infer_tokens = config.auth.infer_tokens
        self._admin_tokens = config.auth.admin_tokens

    async def _fail(self, context: aio.ServicerContext, error: ServingError) -> Any:
        await context.abort(grpc_status(error), error.message)

    # --- health and metadata --------------------------------------------------------------------------------------

    async def ServerLive(self, request: Any, context: aio.ServicerContext) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: aio.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.plane.ready())

    async def ModelReady(self, request: pb.ModelReadyRequest, context: aio.ServicerContext) -> Any:
        """Ready: served (at ``version``). A configured model that was unloaded is not ready; an unknown one is
        NOT_FOUND, as REST's 404."""
        try:
            self.plane.model(request.name, request.version or None)
        except NotFound as exc:
            if any(e.unloaded is not None for e in self.plane.store.configured(request.name)):
                return pb.ModelReadyResponse(ready=False)
            return await self._fail(context, exc)
        return pb.ModelReadyResponse(ready=True)

    async def ServerMetadata(self, request: Any, context: aio.ServicerContext) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="finmlops", version=__version__, extensions=EXTENSIONS)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: aio.ServicerContext) -> Any:
        try:
            doc = self.plane.model(request.name, request.version or None).metadata()
        except ServingError as exc:
            return await self._fail(context, exc)
        return pb.ModelMetadataResponse(
            name=doc["name"],
            versions=doc["versions"],
            platform=doc["platform"],
            inputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in doc["inputs"]],
            outputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in doc["outputs"]],
        )

    # --- inference ------------------------------------------------------------------------------------------------

    async def ModelInfer(self, request: pb.ModelInferRequest, context: aio.ServicerContext) -> Any:
        t0 = time.perf_counter()
        plane = self.plane
        try:
            headers = _headers(context)
            if self._infer_tokens:
                plane.authorize(headers.get("authorization", ""), self._infer_tokens)
            parsed = parse_request(request)
        except ServingError as exc:
            plane.refused(exc, t0, request.id, protocol="grpc")
            return await self._fail(context, exc)
        parsed.headers, parsed.received = headers, t0
        try:
            event = await plane.infer(parsed)
        except ServingError as exc:
            return await self._fail(context, exc)
        context.set_trailing_metadata(((SELDON_ROUTE_HEADER, seldon_route_value(event.model, event.version)),))
        return infer_response(event, bool(request.raw_input_contents))

    # --- the model repository extension ---------------------------------------------------------------------------

    def _admin_who(self, context: aio.ServicerContext) -> str:
        if self.config.server.admin_port is not None:
            raise Forbidden(
                "the model repository API listens on the admin port only (server.admin_port), over REST: "
                "POST /v2/repository/... there"
            )
        if self._admin_tokens:
            return self.plane.authorize(_headers(context).get("authorization", ""), self._admin_tokens)
        if self.config.auth.insecure_admin:
            return f"unauthenticated {context.peer()}"
        raise Forbidden(ADMIN_OFF)

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: aio.ServicerContext) -> Any:
        try:
            self._admin_who(context)
        except ServingError as exc:
            return await self._fail(context, exc)
        index = self.plane.repository_index(request.ready)
        return pb.RepositoryIndexResponse(models=[pb.RepositoryIndexResponse.ModelIndex(**m.as_dict()) for m in index])

    async def RepositoryModelLoad(self, request: pb.RepositoryModelLoadRequest, context: aio.ServicerContext) -> Any:
        try:
            await self.plane.load_model(request.model_name, self._admin_who(context))
        except ServingError as exc:
            return await self._fail(context, exc)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: aio.ServicerContext
    ) -> Any:
        try:
            await self.plane.unload_model(request.model_name, self._admin_who(context))
        except ServingError as exc:
            return await self._fail(context, exc)
        return pb.RepositoryModelUnloadResponse()


class HealthServicer(health_pb2_grpc.HealthServicer):
    """``grpc.health.v1.Health`` (what Kubernetes' gRPC probes and grpc_health_probe call): SERVING while the data
    plane is ready and the server is not stopping, for the service "" (the server) and ``SERVICE``."""

    SERVICES = ("", SERVICE)

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane
        self.stopping = False

    def _status(self) -> int:
        ready = self.plane.ready() and not self.stopping
        return health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING

    async def Check(self, request: Any, context: aio.ServicerContext) -> Any:
        if request.service not in self.SERVICES:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=self._status())

    async def Watch(self, request: Any, context: aio.ServicerContext) -> Any:
        """The status now, then each change (checked every second) until the client goes away."""
        if request.service not in self.SERVICES:
            yield health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
            return
        last = None
        while True:
            status = self._status()
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(1.0)


class GrpcTransport:
    """The ``grpc.aio`` server of one data plane: ``start`` on the running event loop, ``stop`` drains it."""

    def __init__(self, plane: DataPlane, config: ServingConfig) -> None:
        self.plane = plane
        self.config = config
        self.health = HealthServicer(plane)
        self.server: aio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: a port the OS picks); returns the bound port. ``RuntimeError`` naming the
        address when it cannot be bound (a port already taken, even by another process with SO_REUSEPORT)."""
        options = self.config.server
        server = aio.server(
            options=[
                ("grpc.max_receive_message_length", options.max_body_bytes),
                ("grpc.max_metadata_size", options.max_header_bytes),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=options.max_connections,
        )
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(self.plane, self.config), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError:
            bound = 0
        if not bound:
            raise RuntimeError(f"cannot listen for gRPC on {address}: the address is in use or unavailable")
        await server.start()
        self.server = server
        log.info("gRPC (inference.GRPCInferenceService, grpc.health.v1) on %s:%d", host, bound)
        return bound

    async def stop(self, grace_s: float) -> None:
        """NOT_SERVING for the health checks, refuse new calls, and let in-flight ones finish within ``grace_s``."""
        self.health.stopping = True
        if self.server is not None:
            await self.server.stop(grace_s)
            self.server = None
