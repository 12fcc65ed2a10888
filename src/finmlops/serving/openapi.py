"""The OpenAPI 3.0 description of the server, published at ``/openapi.json`` and ``/v2/openapi.json``."""

from __future__ import annotations

from typing import Any

from finmlops import __version__

_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype", "data"],
    "properties": {
        "name": {"type": "string", "description": "input_data, or open/high/low/close/volume/adj_close (raw)"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": ["FP32", "FP64", "FP16"]},
        "parameters": {"type": "object"},
        "data": {
            "type": "array",
            "description": "Row-major JSON numbers, flat or nested (no strings, booleans, nulls).",
        },
    },
}
_INFER_REQUEST = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string", "maxLength": 128},
        "parameters": {"type": "object"},
        "inputs": {"type": "array", "minItems": 1, "items": _TENSOR},
        "outputs": {
            "type": "array",
            "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
        },
    },
}
_INFER_RESPONSE = {
    "type": "object",
    "required": ["model_name", "model_version", "id", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "outputs": {"type": "array", "items": _TENSOR},
    },
}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}
_EXPERIMENT = {"name": "experiment", "in": "path", "required": True, "schema": {"type": "string"}}
_SELDON = {
    "name": "seldon-model",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "<experiment>.experiment routes through an experiment (Seldon Core v2).",
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): _json(_ERROR, "error") for c in codes}


def _get(summary: str, params: list[dict[str, Any]], *codes: int) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": params,
            "responses": {"200": _json({"type": "object"}, "OK"), **_errors(*codes)},
        }
    }


def _infer(params: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "post": {
            "summary": "Score windows (input_data [batch, seq_len, n_features]) or raw OHLCV [batch, T].",
            "parameters": [*params, _SELDON],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _INFER_REQUEST}}},
            "responses": {"200": _json(_INFER_RESPONSE, "P(up) per row"), **_errors(400, 401, 404, 413, 415, 503)},
        }
    }


def _explain(params: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "post": {
            "summary": "Extension (not in V2): Integrated Gradients of one window's P(up), per feature and day.",
            "parameters": params,
            "requestBody": {"required": True, "content": {"application/json": {"schema": _INFER_REQUEST}}},
            "responses": {"200": _json({"type": "object"}, "attributions"), **_errors(400, 401, 404, 413, 415)},
        }
    }


def openapi_schema() -> dict[str, Any]:
    """The server's OpenAPI document."""
    patch = {"type": "object", "description": "JSON merge patch of the experiment config (docs/experiments.md)."}
    feedback = {
        "type": "object",
        "required": ["id", "outcome"],
        "properties": {"id": {"type": "string"}, "outcome": {"type": "integer", "enum": [0, 1]}},
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "finmlops inference server",
            "version": __version__,
            "description": "Open Inference Protocol V2 (REST) with experiments and feedback.",
        },
        "paths": {
            "/v2": _get("Server metadata", []),
            "/v2/health/live": _get("Liveness", []),
            "/v2/health/ready": _get("Readiness", [], 503),
            "/v2/models/{name}": _get("Model metadata (inputs, outputs, feature order, seq_len)", [_NAME], 404),
            "/v2/models/{name}/versions/{version}": _get("Model version metadata", [_NAME, _VERSION], 404),
            "/v2/models/{name}/ready": _get("Model readiness", [_NAME], 404),
            "/v2/models/{name}/versions/{version}/ready": _get("Model version readiness", [_NAME, _VERSION], 404),
            "/v2/models/{name}/infer": _infer([_NAME]),
            "/v2/models/{name}/versions/{version}/infer": _infer([_NAME, _VERSION]),
            "/v2/models/{name}/explain": _explain([_NAME]),
            "/v2/models/{name}/versions/{version}/explain": _explain([_NAME, _VERSION]),
            "/v2/feedback": {
                "post": {
                    "summary": "Realised outcome of a served request (counted once per id).",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": feedback}}},
                    "responses": {"200": _json({"type": "object"}, "recorded"), **_errors(400, 401, 404, 415)},
                }
            },
            "/admin/experiments": _get("Every experiment's config and live state", [], 401, 403),
            "/admin/experiments/{experiment}": {
                **_get("One experiment's config and live state", [_EXPERIMENT], 401, 403, 404),
                "put": {
                    "summary": "Change an experiment at run time (logged with who changed what).",
                    "parameters": [_EXPERIMENT],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": patch}}},
                    "responses": {"200": _json({"type": "object"}, "new state"), **_errors(400, 401, 403, 404, 415)},
                },
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (docs/metrics.md)",
                    "responses": {
                        "200": {
                            "description": "text exposition",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
    }
