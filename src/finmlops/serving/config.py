"""``serving.yaml``: which models to serve, the experiments, batching, limits, reloads and auth.

A model ``source`` is a registry reference (``models:/<name>@<alias>``, ``models:/<name>/<version>``, or the
short ``<name>@<alias>``) or a local path (an MLflow model folder, an ``finmlops export`` folder of any format, or an
``.onnx`` file). ``experiments`` is passed as is to ``finmlops.serving.experiments.ExperimentSet.from_yaml``.
Tokens may be written as ``${ENV_VAR}`` so that secrets stay out of the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from finmlops.settings import validation_message

DEFAULT_EXPERIMENT = "financial-ab-test-experiment"
_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


class ServingConfigError(ValueError):
    """The serving configuration is invalid; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSource(_Strict):
    """One served model: the V2 model ``name`` clients call, and where its graph comes from."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", description="V2 model name, e.g. baseline-predictor.")
    source: str = Field(min_length=1, description="models:/<name>@<alias>, models:/<name>/<version> or a path.")
    version: str | None = Field(default=None, description="Version label of a local path (default 1).")

    @property
    def registry_ref(self) -> tuple[str, str | None, str | None] | None:
        """``(registered name, alias, version)`` for a registry source, None for a local path."""
        text = self.source.removeprefix("models:/")
        if self.source.startswith("models:/"):
            if "@" in text:
                name, alias = text.split("@", 1)
                return name, alias, None
            name, _, version = text.partition("/")
            return name, None, version or None
        if "@" in text and not Path(text).exists() and "/" not in text:
            name, alias = text.split("@", 1)
            return name, alias, None
        return None


class ServerOptions(_Strict):
    """Batching, limits, reloads and the request log."""

    max_batch_size: int = Field(default=64, ge=1, le=4096, description="Most rows scored in one onnxruntime run.")
    max_wait_ms: float = Field(
        default=1.0, ge=0, le=100, description="Longest a request waits for companions still being read."
    )
    max_batch_time_ms: float = Field(
        default=2.0,
        ge=0,
        le=100,
        description="Batch window: under concurrency, how long a batch waits for more calls after its first one "
        "(MLServer's max_batch_time, Triton's max_queue_delay); a client alone never waits for it; 0 turns it off.",
    )
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, description="Larger request bodies get 413.")
    rest_fast_path: bool = Field(
        default=True,
        description="Answer a plain REST infer in the HTTP protocol, without the ASGI layer (the same answer; "
        "docs/serving.md); false sends every request through uvicorn's ASGI cycle.",
    )
    # HTTP limits (finmlops.serving.limits), near nginx's and Envoy's defaults.
    max_header_bytes: int = Field(
        default=32 * 1024, ge=1024, description="Request line and headers together; more gets 431 (nginx: 4 x 8 KiB)."
    )
    max_header_line_bytes: int = Field(
        default=8 * 1024, ge=256, description="One header line (431) or the request line (414) (nginx: 8 KiB)."
    )
    max_headers: int = Field(default=100, ge=8, description="Request headers; more gets 431 (Envoy: 100).")
    header_timeout_s: float = Field(
        default=15.0, gt=0, description="The headers must arrive within it (from connect); else 408 and close."
    )
    body_timeout_s: float = Field(
        default=60.0, gt=0, description="The body must arrive within it (from the headers); else 408 and close."
    )
    max_connections: int = Field(
        default=1024, ge=1, description="Open connections; a request on one more gets 503 (nginx: 1024 per worker)."
    )
    admin_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Serve /admin/* only on this port (on admin_host); the main port then answers 404 there.",
    )
    admin_host: str = Field(default="127.0.0.1", description="Address of the admin listener (default loopback).")
    grpc_port: int | None = Field(
        default=8081,
        ge=0,
        le=65535,
        description="The gRPC V2 listener (inference.GRPCInferenceService, grpc.health.v1) beside REST, on the same "
        "host; 0 or null turns it off (finmlops serve --grpc-port overrides it).",
    )
    reload_interval_s: float = Field(default=30.0, ge=0, description="Registry alias poll period; 0 disables.")
    intra_op_threads: int = Field(default=1, ge=1, description="onnxruntime intra-op threads per session.")
    request_log: Path | None = Field(default=None, description="SQLite file (default <home>/serving/requests.db).")
    request_log_enabled: bool = True
    request_log_max_rows: int = Field(
        default=100_000, ge=100, description="Rows buffered while the log cannot write (a full disk); more are dropped."
    )
    model_cache: Path | None = Field(default=None, description="Download folder (default <home>/serving/models).")
    drift_window: int = Field(default=500, ge=10, description="Recent requests the online PSI is computed over.")
    feedback_ids: int = Field(
        default=20_000,
        ge=100,
        description="Request ids the feedback ledger keeps in memory; older ones are read "
        "back from the request log. Small keeps garbage-collection pauses (the latency tail) short.",
    )
    max_experiment_arms: int = Field(default=32, ge=1, le=1024, description="Most candidates one experiment has.")
    max_bandit_draws: int = Field(
        default=20_000, ge=10, le=1_000_000, description="Most posterior samples per arm in one bandit refresh."
    )


class AuthOptions(_Strict):
    """Bearer tokens by holder name: the name is what ``admin_log.who`` records."""

    admin_tokens: dict[str, str] = Field(
        default_factory=dict, description="Required on /admin/*; without any, the admin API is off (403)."
    )
    infer_tokens: dict[str, str] = Field(default_factory=dict, description="Required on infer/feedback when set.")
    insecure_admin: bool = Field(
        default=False,
        description="Open the admin API to anyone when admin_tokens is empty: local use only "
        "(`finmlops serve --insecure-admin` sets it).",
    )

    @field_validator("admin_tokens", "infer_tokens")
    @classmethod
    def _expand(cls, value: dict[str, str]) -> dict[str, str]:
        out = {}
        for who, token in value.items():
            match = _ENV_REF.match(str(token))
            if match:
                token = os.environ.get(match.group(1), "")
                if not token:
                    raise ValueError(f"token of {who!r}: environment variable {match.group(1)} is not set")
            if len(token) < 16:
                raise ValueError(f"token of {who!r}: use at least 16 characters")
            out[who] = token
        return out


ADMIN_OFF = (
    "the admin API is off: set auth.admin_tokens in serving.yaml (a bearer token per holder, e.g. "
    "${FINMLOPS_ADMIN_TOKEN}), or for local use only auth.insecure_admin: true (finmlops serve --insecure-admin)"
)


class ServingConfig(_Strict):
    """The whole ``serving.yaml``."""

    models: list[ModelSource] = Field(min_length=1)
    experiments: Any = Field(default_factory=list, description="Experiments (see docs/experiments.md).")
    server: ServerOptions = Field(default_factory=ServerOptions)
    auth: AuthOptions = Field(default_factory=AuthOptions)

    @model_validator(mode="after")
    def _unique(self) -> ServingConfig:
        seen: set[tuple[str, str | None]] = set()
        for m in self.models:
            key = (m.name, m.source)
            if key in seen:
                raise ValueError(f"models: {m.name!r} from {m.source!r} is listed twice")
            seen.add(key)
        return self


def parse_config(raw: Any, where: str = "serving config") -> ServingConfig:
    """Validate a parsed YAML document; ``ServingConfigError`` names ``where`` and the field."""
    if not isinstance(raw, dict):
        raise ServingConfigError(f"{where}: expected a mapping with 'models', got {type(raw).__name__}")
    try:
        return ServingConfig.model_validate(raw)
    except ValidationError as exc:
        raise ServingConfigError(f"{where}: {validation_message(exc)}") from None


def load_config(path: Path) -> ServingConfig:
    """Read and validate ``serving.yaml`` at ``path``."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ServingConfigError(f"{path}: cannot read: {exc}") from None
    return parse_config(raw, str(path))


def default_config(registered: list[str]) -> ServingConfig:
    """Serve ``<name>@champion`` of every registered ``*-predictor`` that has a champion, plus the original A/B test
    (baseline 70 / enhanced 30) when both of its models are served."""
    names = sorted(n for n in registered if n.endswith("-predictor"))
    if not names:
        raise ServingConfigError(
            "no *-predictor model with a champion alias in the registry: register and promote one "
            "(finmlops register / finmlops promote), or pass --config serving.yaml"
        )
    experiments = []
    if {"baseline-predictor", "enhanced-predictor"} <= set(names):
        experiments = [
            {
                "name": DEFAULT_EXPERIMENT,
                "default": "baseline-predictor",
                "candidates": [
                    {"name": "baseline-predictor", "weight": 70},
                    {"name": "enhanced-predictor", "weight": 30},
                ],
            }
        ]
    return ServingConfig(
        models=[ModelSource(name=n, source=f"models:/{n}@champion") for n in names], experiments=experiments
    )
