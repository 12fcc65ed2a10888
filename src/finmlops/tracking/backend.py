"""Where MLflow writes: the tracking URI, one experiment per purpose, and a fast reachability check.

The default backend is ``sqlite:///<workspace>/mlflow.db`` with artifacts under
``<workspace>/mlartifacts/<experiment>``; any ``MLFLOW_TRACKING_URI`` (another database, a tracking server) is
used as given, except that ``postgresql://`` gets the psycopg2 driver when psycopg 3 is not installed
(``storage_url``).
"""

from __future__ import annotations

import base64
import logging
import os
import re
import urllib.error
import urllib.request
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import unquote, urlparse

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from finmlops.settings import Settings

EXPERIMENTS: tuple[str, ...] = ("ingestion", "training", "tuning", "evaluation")
PROBE_TIMEOUT_S = 3.0
# SQLAlchemy dialects MLflow stores runs in (mlflow.store.db.db_types); sqlite is probed as a file instead.
DATABASE_DIALECTS = ("postgresql", "mysql", "mssql")

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


def storage_url(url: str) -> str:
    """``url`` for SQLAlchemy: ``postgresql://`` means the psycopg 3 driver to SQLAlchemy 2.1, so it becomes
    ``postgresql+psycopg2://`` when only psycopg2 (``psycopg2-binary``) is installed."""
    if url.startswith("postgresql://") and find_spec("psycopg") is None and find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


# scheme://user:password@ anywhere in a text; the password runs to the last "@" before the host (an unencoded "@"
# in a password must not leave its tail visible).
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#@]*:)[^\s/?#]*@")


def redact(text: str) -> str:
    """``text`` (a URL, or a message that contains URLs) with every URL's password replaced by ``***``."""
    return _USERINFO.sub(r"\1***@", text)


def check_database(uri: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Open and close one connection to the database ``uri`` (``postgresql://``, ``mysql+pymysql://``, ...).

    Postgres and MySQL give up after ``timeout_s`` seconds (whole seconds; MLflow itself would retry for minutes).
    A missing driver or a refused connection becomes a ``TrackingError`` naming the URI, password redacted.
    """
    import sqlalchemy  # deferred: sqlalchemy
    from sqlalchemy.exc import SQLAlchemyError  # deferred: sqlalchemy

    dialect = urlparse(uri).scheme.split("+")[0]
    connect_args = {"connect_timeout": max(1, round(timeout_s))} if dialect in {"postgresql", "mysql"} else {}
    engine = None
    try:
        engine = sqlalchemy.create_engine(storage_url(uri), connect_args=connect_args, poolclass=sqlalchemy.NullPool)
        with engine.connect():
            pass
    except (ImportError, SQLAlchemyError) as exc:
        # str(exc) of a DBAPI error holds the driver's first line and SQLAlchemy's background link: keep the first.
        detail = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0]
        where = redact(uri)
        raise TrackingError(f"MLflow tracking database {where} is unusable: {type(exc).__name__}: {detail}") from None
    finally:
        if engine is not None:
            engine.dispose()


def check_reachable(uri: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise ``TrackingError`` naming ``uri`` unless its backend answers.

    HTTP(S) servers must answer ``GET /health`` within ``timeout_s`` seconds; a database (``DATABASE_DIALECTS``)
    must accept a connection within ``timeout_s``; a sqlite database's folder must exist or be creatable. Other
    schemes (databricks, file, ...) are left to MLflow.
    """
    scheme = urlparse(uri).scheme
    if scheme in {"http", "https"}:
        try:
            with urllib.request.urlopen(_health_request(uri), timeout=timeout_s) as response:
                if response.status != 200:
                    raise TrackingError(
                        f"MLflow tracking server {redact(uri)} answered /health with HTTP {response.status}"
                    )
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingError(f"MLflow tracking server {redact(uri)} is unreachable: {reason}") from None
    elif scheme == "sqlite":
        # sqlite:///relative.db or sqlite:////absolute/path.db (SQLAlchemy's form); drop any ?query.
        db = Path(uri.removeprefix("sqlite:///").split("?")[0])
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrackingError(f"MLflow tracking database {uri}: cannot create {db.parent}: {exc}") from None
    elif scheme.split("+")[0] in DATABASE_DIALECTS:
        check_database(uri, timeout_s)


def _health_request(uri: str) -> urllib.request.Request:
    """``GET <uri>/health``; credentials in the URI (``http://user:password@host``, which MLflow's client sends as
    basic auth) go into an Authorization header, as urllib would otherwise take them for part of the host name."""
    parts = urlparse(uri)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    request = urllib.request.Request(parts._replace(netloc=netloc).geturl().rstrip("/") + "/health")
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(pair).decode())
    return request


def configure_tracking(settings: Settings) -> str:
    """Point MLflow (tracking and registry) at ``settings.tracking_uri`` after checking that it answers.

    Returns the URI MLflow was given (``storage_url`` of it, for clients built elsewhere). Raises ``TrackingError``
    naming it within a few seconds when the backend is unreachable.
    """
    for name, value in _ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)
    # A fresh workspace's database gets MLflow's tables, announced at INFO ("Creating initial MLflow database
    # tables..."): routine, not news, so only warnings from there reach the user.
    for logger in ("mlflow.store.db.utils", "alembic.runtime.migration"):
        logging.getLogger(logger).setLevel(logging.WARNING)
    check_reachable(settings.tracking_uri)
    uri = storage_url(settings.tracking_uri)
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
            raise TrackingError(f"cannot create experiment {name!r} at {redact(settings.tracking_uri)}: {exc}") from exc
        return found.experiment_id
