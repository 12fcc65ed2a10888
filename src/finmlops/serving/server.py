"""Build the serving app from ``serving.yaml`` (or the registry's champions) and run it under uvicorn."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from finmlops.serving.app import ServingApp
from finmlops.serving.config import ServingConfig, default_config, load_config
from finmlops.serving.models import Registry
from finmlops.settings import Settings

STARTUP_TIMEOUT_S = 60.0


def needs_registry(config: ServingConfig) -> bool:
    return any(m.registry_ref is not None for m in config.models)


def build_app(settings: Settings, config_path: Path | None = None, config: ServingConfig | None = None) -> ServingApp:
    """The app for ``config`` (or the file ``config_path``; or, with neither, every ``*-predictor@champion`` in the
    registry plus the default A/B experiment). Raises ``ServingConfigError``/``ModelLoadError`` naming the cause."""
    if config is None and config_path is not None:
        config = load_config(config_path)
    serving_dir = settings.home / "serving"
    registry = None
    if config is None or needs_registry(config):
        cache = (config.server.model_cache if config else None) or serving_dir / "models"
        registry = Registry(settings.tracking_uri, cache)
    if config is None:
        assert registry is not None
        config = default_config(registry.champions())
    log_path = None
    if config.server.request_log_enabled:
        log_path = config.server.request_log or serving_dir / "requests.db"
    return ServingApp(config, registry=registry, request_log=log_path)


def run(app: ServingApp, host: str = "127.0.0.1", port: int = 8080, log_level: str = "info") -> None:
    """Serve ``app`` with uvicorn (uvloop + httptools when installed, no access log: it costs more than a request).

    SIGTERM/SIGINT stop accepting connections, drain in-flight requests, then flush the request log.
    """
    import uvicorn

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=30,
        loop="auto",
        http="auto",
        server_header=False,
        date_header=False,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(app: Any) -> Iterator[str]:
    """Run the ASGI ``app`` under uvicorn on 127.0.0.1 in a daemon thread; yields the base URL.

    The listening socket is bound here and handed to uvicorn, so no other process can take the port in between.
    On exit uvicorn drains in-flight requests and runs the app's shutdown, which flushes the request log.
    """
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="finmlops-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    try:
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the V2 server did not start on 127.0.0.1:{port} within {STARTUP_TIMEOUT_S:.0f} s")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()
