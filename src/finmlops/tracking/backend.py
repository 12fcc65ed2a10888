"""Where MLflow writes: the tracking URI, one experiment per purpose, and a fast reachability check.

The default backend is ``sqlite:///<workspace>/mlflow.db`` with artifacts under
``<workspace>/mlartifacts/<experiment>``; any ``MLFLOW_TRACKING_URI`` (another database, a tracking server) is
used unchanged.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from finmlops.settings import Settings

EXPERIMENTS: tuple[str, ...] = ("ingestion", "training", "tuning", "evaluation")
PROBE_TIMEOUT_S = 3.0

# A dead server must fail in seconds, not after MLflow's default 7 retries with 120 s timeouts.
_ENV_DEFAULTS = {
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}


class TrackingError(RuntimeError):
    """MLflow could not be reached or refused an operation; the message names the tracking URI."""


def artifact_root(settings: Settings) -> Path:
    """``<workspace>/mlartifacts``: the parent of every experiment's artifact location on a local backend."""
    return (settings.home / "mlartifacts").resolve()


def check_reachable(uri: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise ``TrackingError`` naming ``uri`` unless its backend answers.

    HTTP(S) servers must answer ``GET /health`` within ``timeout_s`` seconds; a sqlite database's folder must exist
    or be creatable. Other schemes (databricks, file, ...) are left to MLflow.
    """
    scheme = urlparse(uri).scheme
    if scheme in {"http", "https"}:
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as response:
                if response.status != 200:
                    raise TrackingError(f"MLflow tracking server {uri} answered /health with HTTP {response.status}")
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingError(f"MLflow tracking server {uri} is unreachable: {reason}") from None
    elif scheme == "sqlite":
        # sqlite:///relative.db or sqlite:////absolute/path.db (SQLAlchemy's form); drop any ?query.
        db = Path(uri.removeprefix("sqlite:///").split("?")[0])
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrackingError(f"MLflow tracking database {uri}: cannot create {db.parent}: {exc}") from None


def configure_tracking(settings: Settings) -> str:
    """Point MLflow (tracking and registry) at ``settings.tracking_uri`` after checking that it answers.

    Returns the URI. Raises ``TrackingError`` naming it within a few seconds when the backend is unreachable.
    """
    for name, value in _ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)
    uri = settings.tracking_uri
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def is_local_backend(uri: str) -> bool:
    """True when artifacts are written by this process (sqlite/file), not proxied by a tracking server."""
    return urlparse(uri).scheme not in {"http", "https", "databricks"}


def ensure_experiment(settings: Settings, name: str) -> str:
    """The id of experiment ``name`` (one of ``EXPERIMENTS``), created on first use.

    On a local backend its artifact location is ``<workspace>/mlartifacts/<name>``; a tracking server keeps its own
    artifact root (``--default-artifact-root``) so that clients on other machines can read the artifacts.
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    client = MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = (artifact_root(settings) / name).as_uri() if is_local_backend(settings.tracking_uri) else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException as exc:
        # Another process created it between our lookup and create.
        found = client.get_experiment_by_name(name)
        if found is None:
            raise TrackingError(f"cannot create experiment {name!r} at {settings.tracking_uri}: {exc}") from exc
        return found.experiment_id
