"""The data plane's errors: one class per kind of refusal, mapped to status codes by each transport.

``status`` is the V2 REST status of the kind (what the REST transport answers, and what metrics and the request log
record for every transport); ``grpc_code`` is the ``grpc.StatusCode`` name a gRPC transport answers with (the
mapping KServe and Triton use). The message names the tensor, parameter, model or field at fault.
"""

from __future__ import annotations

from typing import ClassVar


class ServingError(Exception):
    """A request the server refuses or cannot answer. Subclasses fix ``status`` and ``grpc_code``. ``row``: the
    batch row at fault when one is (a raw batch's ticker with an undefined feature), so that a client can resend
    the other rows; the REST error body carries it as ``"row"``."""

    status: ClassVar[int] = 500
    grpc_code: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str, *, row: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.row = row


class BadRequest(ServingError):
    """The request is malformed or does not fit the model (a tensor, a parameter, a patch field)."""

    status = 400
    grpc_code = "INVALID_ARGUMENT"


class Unauthorized(ServingError):
    """No valid bearer token for an endpoint that needs one."""

    status = 401
    grpc_code = "UNAUTHENTICATED"


class Forbidden(ServingError):
    """The endpoint is switched off by configuration (the admin API without admin tokens)."""

    status = 403
    grpc_code = "PERMISSION_DENIED"


class NotFound(ServingError):
    """No such model, version, experiment, request id or route."""

    status = 404
    grpc_code = "NOT_FOUND"


class MethodNotAllowed(ServingError):
    """A REST method the path does not take (gRPC has no such case; it maps to UNIMPLEMENTED)."""

    status = 405
    grpc_code = "UNIMPLEMENTED"


class Conflict(ServingError):
    """The change conflicts with the server's state (unloading a model an experiment routes to)."""

    status = 409
    grpc_code = "FAILED_PRECONDITION"


class TooLarge(ServingError):
    """The body, or a tensor's history, exceeds a configured or documented limit."""

    status = 413
    grpc_code = "RESOURCE_EXHAUSTED"


class UnsupportedMediaType(ServingError):
    """A REST body in a content type the server does not read (gRPC bodies are always protobuf)."""

    status = 415
    grpc_code = "INVALID_ARGUMENT"


class Unavailable(ServingError):
    """The request is valid but cannot be served now (an experiment routed to a model that is not loaded)."""

    status = 503
    grpc_code = "UNAVAILABLE"


class InternalError(ServingError):
    """A model failed at run time; the server keeps serving."""
