"""Open Inference Protocol V2 (REST) bodies: parse requests, encode responses and errors.

JSON bodies follow the spec (``id``, ``parameters``, ``inputs``/``outputs`` with ``name``, ``shape``,
``datatype``, ``data`` flat or nested). The binary tensor extension (Triton/KServe) is also accepted: with an
``Inference-Header-Content-Length: N`` header the first N bytes are the JSON header and each input with
``parameters.binary_data_size`` takes its bytes, in order, from the rest (read with ``np.frombuffer``, no copy).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import orjson

DTYPES: dict[str, np.dtype[Any]] = {
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "FP16": np.dtype(np.float16),
}
# Raw OHLCV inputs: the server computes the features (see finmlops.serving.raw).
RAW_INPUTS = frozenset({"open", "high", "low", "close", "volume", "adj_close", "market_return"})
# What clients (Python's json, JavaScript) write for non-finite floats; none of it is JSON.
_NON_FINITE = re.compile(rb"-?(?:nan|inf(?:inity)?)", re.IGNORECASE)


class V2Error(Exception):
    """A request the server refuses: ``status`` (4xx) and a message that names the problem (+ extra headers)."""

    def __init__(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def error_body(message: str) -> bytes:
    """The V2 error body ``{"error": "..."}``."""
    return orjson.dumps({"error": message})


def loads_json(body: bytes | memoryview) -> Any:
    """Parse a JSON body; 400 naming the problem: a NaN/Infinity token by name, else orjson's position."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raw = bytes(body)
        # orjson stops after the sign of "-Infinity", on the first letter of the others
        start = exc.pos - 1 if 0 < exc.pos <= len(raw) and raw[exc.pos - 1 : exc.pos] == b"-" else exc.pos
        token = _NON_FINITE.match(raw, start)
        if token is not None:
            raise V2Error(
                400,
                f"malformed JSON body: non-finite number {token.group().decode()} at character {start}; "
                "NaN and Infinity are not JSON, send finite numbers only",
            ) from None
        raise V2Error(400, f"malformed JSON body: {exc}") from None


def as_of_parameter(parameters: dict[str, Any]) -> str | None:
    """The request's ``parameters.as_of``: the trading day (``YYYY-MM-DD``) it is for, e.g. a replay's simulated
    day; None when absent. Logged with the request so that analyses bucket by it (``abtest.timeline``)."""
    value = parameters.get("as_of")
    if value is None:
        return None
    try:
        if not isinstance(value, str) or len(value) != 10:
            raise ValueError
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise V2Error(400, f"parameter 'as_of' must be a date as YYYY-MM-DD, got {value!r}") from None


@dataclass(slots=True)
class InferRequest:
    """A parsed request: ``inputs`` maps tensor names to arrays of their declared shape."""

    id: str | None
    parameters: dict[str, Any]
    inputs: dict[str, np.ndarray]
    requested_outputs: list[str] = field(default_factory=list)
    binary_output: bool = False


def _shape(raw: Any, where: str) -> tuple[int, ...]:
    if not isinstance(raw, list) or not raw or not all(type(d) is int and d >= 0 for d in raw):
        raise V2Error(400, f"{where}: 'shape' must be a non-empty list of non-negative integers, got {raw!r}")
    return tuple(raw)


def _tensor(raw: Any, i: int, binary: memoryview | None, offset: int) -> tuple[str, np.ndarray, int]:
    """One ``inputs[i]`` entry -> ``(name, array of its shape, new binary offset)``."""
    if not isinstance(raw, dict):
        raise V2Error(400, f"inputs[{i}]: expected an object with name, shape, datatype and data")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise V2Error(400, f"inputs[{i}]: 'name' must be a non-empty string")
    where = f"input {name!r}"
    shape = _shape(raw.get("shape"), where)
    datatype = raw.get("datatype")
    dtype = DTYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise V2Error(400, f"{where}: datatype {datatype!r} is not supported; send FP32 (or FP64/FP16)")
    count = math.prod(shape)
    params = raw.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        if binary is None or type(size) is not int or size < 0 or offset + size > len(binary):
            raise V2Error(400, f"{where}: binary_data_size {size!r} does not fit the binary part of the body")
        if size != count * dtype.itemsize:
            raise V2Error(
                400, f"{where}: shape {list(shape)} as {datatype} needs {count * dtype.itemsize} bytes, got {size}"
            )
        array = np.frombuffer(binary[offset : offset + size], dtype=dtype.newbyteorder("<"))
        offset += size
    else:
        data = raw.get("data")
        if not isinstance(data, list):
            raise V2Error(400, f"{where}: 'data' must be a list of numbers (flat or nested)")
        try:
            with np.errstate(over="ignore"):  # an overflow becomes inf, refused below with a clear message
                array = np.asarray(data, dtype=np.float64 if name in RAW_INPUTS else dtype)
        except (ValueError, TypeError, OverflowError):
            raise V2Error(400, f"{where}: 'data' must hold only numbers in a regular (not ragged) layout") from None
        array = array.ravel()
    if array.size != count:
        raise V2Error(400, f"{where}: shape {list(shape)} needs {count} values, got {array.size}")
    if not np.isfinite(array).all():
        raise V2Error(400, f"{where}: contains NaN or infinite values")
    return name, array.reshape(shape), offset


def parse_infer(body: bytes, json_length: int | None = None) -> InferRequest:
    """Parse a V2 infer body (JSON, or JSON + binary tensors when ``json_length`` is given)."""
    binary: memoryview | None = None
    head: bytes | memoryview = body
    if json_length is not None:
        if json_length < 0 or json_length > len(body):
            raise V2Error(400, f"Inference-Header-Content-Length {json_length} exceeds the body ({len(body)} bytes)")
        view = memoryview(body)
        head, binary = view[:json_length], view[json_length:]
    doc = loads_json(head)
    if not isinstance(doc, dict):
        raise V2Error(400, "the body must be a JSON object with an 'inputs' list")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise V2Error(400, "'inputs' must be a non-empty list of tensors")
    rid = doc.get("id")
    if rid is not None and (not isinstance(rid, str) or len(rid) > 128):
        raise V2Error(400, "'id' must be a string of at most 128 characters")
    parameters = doc.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise V2Error(400, "'parameters' must be an object")
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for i, raw in enumerate(inputs):
        name, array, offset = _tensor(raw, i, binary, offset)
        if name in tensors:
            raise V2Error(400, f"input {name!r} is given twice")
        tensors[name] = array
    requested, binary_out = _requested_outputs(doc.get("outputs"))
    return InferRequest(
        rid, parameters, tensors, requested, binary_out or bool(parameters.get("binary_data_output", False))
    )


def _requested_outputs(raw: Any) -> tuple[list[str], bool]:
    if raw is None:
        return [], False
    if not isinstance(raw, list):
        raise V2Error(400, "'outputs' must be a list of {name, parameters}")
    names, binary = [], False
    for i, out in enumerate(raw):
        if not isinstance(out, dict) or not isinstance(out.get("name"), str):
            raise V2Error(400, f"outputs[{i}]: expected an object with a string 'name'")
        names.append(out["name"])
        params = out.get("parameters") or {}
        binary = binary or (isinstance(params, dict) and bool(params.get("binary_data", False)))
    return names, binary


def infer_response(
    model_name: str,
    model_version: str,
    rid: str,
    output_name: str,
    y: np.ndarray,
    parameters: dict[str, Any],
    binary: bool,
) -> tuple[bytes, int | None]:
    """The response body and, for binary output, its JSON header length. ``y``: ``[n, 1]`` float32."""
    out: dict[str, Any] = {"name": output_name, "shape": list(y.shape), "datatype": "FP32"}
    if binary:
        raw = np.ascontiguousarray(y, dtype="<f4").tobytes()
        out["parameters"] = {"binary_data_size": len(raw)}
    else:
        out["data"] = np.ascontiguousarray(y.ravel())
    doc = {
        "model_name": model_name,
        "model_version": model_version,
        "id": rid,
        "parameters": parameters,
        "outputs": [out],
    }
    head = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    return (head + raw, len(head)) if binary else (head, None)
