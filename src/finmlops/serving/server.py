"""Build the serving app from ``serving.yaml`` (or the registry's champions) and run it under uvicorn."""

from __future__ import annotations

import logging
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from finmlops.serving.app import ServingApp
from finmlops.serving.config import ServingConfig, default_config, load_config
from finmlops.serving.limits import guarded_protocol
from finmlops.serving.models import Registry
from finmlops.serving.protocol import error_body
from finmlops.settings import Settings

STARTUP_TIMEOUT_S = 60.0
log = logging.getLogger("finmlops.serving")


def needs_registry(config: ServingConfig) -> bool:
    return any(m.registry_ref is not None for m in config.models)


def build_app(
    settings: Settings,
    config_path: Path | None = None,
    config: ServingConfig | None = None,
    *,
    insecure_admin: bool = False,
    admin_port: int | None = None,
    grpc_port: int | None = None,
) -> ServingApp:
    """The app for ``config`` (or the file ``config_path``; or, with neither, every ``*-predictor@champion`` in the
    registry plus the default A/B experiment). ``insecure_admin``, ``admin_port`` and ``grpc_port`` (0: no gRPC)
    override the file's ``auth.insecure_admin``, ``server.admin_port`` and ``server.grpc_port``. Raises
    ``ServingConfigError``/``ModelLoadError`` naming the cause."""
    if config is None and config_path is not None:
        config = load_config(config_path)
    serving_dir = writable_serving_dir(settings.home)
    registry = None
    if config is None or needs_registry(config):
        cache = (config.server.model_cache if config else None) or serving_dir / "models"
        registry = Registry(settings.tracking_uri, cache)
    if config is None:
        assert registry is not None
        config = default_config(registry.champions())
    if insecure_admin:
        config = config.model_copy(update={"auth": config.auth.model_copy(update={"insecure_admin": True})})
    if admin_port is not None:
        config = config.model_copy(update={"server": config.server.model_copy(update={"admin_port": admin_port})})
    if grpc_port is not None:
        config = config.model_copy(update={"server": config.server.model_copy(update={"grpc_port": grpc_port})})
    log_path = None
    if config.server.request_log_enabled:
        log_path = config.server.request_log or serving_dir / "requests.db"
    return ServingApp(config, registry=registry, request_log=log_path)


def writable_serving_dir(home: Path) -> Path:
    """``<home>/serving`` for the request log and the model cache; on a read-only workspace (a mounted volume, a
    shared checkout) a temporary folder instead, said in one warning, so that serving still works."""
    folder = Path(home) / "serving"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            return folder
    except OSError as exc:
        fallback = Path(tempfile.mkdtemp(prefix="finmlops-serving-"))
        log.warning(
            "%s is not writable (%s); the request log and model cache go to %s, which is not kept",
            folder, exc.strerror or exc, fallback,
        )  # fmt: skip
        return fallback


class ListenerError(RuntimeError):
    """A listening socket cannot be opened; the message names the address."""


class Listeners:
    """ASGI wrapper that splits the API by listening port when ``admin_port`` is set: ``/admin/*`` and the model
    repository API ``/v2/repository/*`` only on the admin port (with the health checks), everything else only on
    the main port; the other side answers 404, as if the route did not exist. Without ``admin_port`` every route is
    on the one port."""

    def __init__(self, app: Any, admin_port: int | None) -> None:
        self.app = app
        self.admin_port = admin_port

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.admin_port is not None:
            path = scope["path"]
            on_admin_port = (scope.get("server") or ("", None))[1] == self.admin_port
            is_admin = path == "/admin" or path.startswith(("/admin/", "/v2/repository/"))
            if is_admin and not on_admin_port:
                return await _not_found(
                    send, f"no route {path}: the admin API listens on its own port (server.admin_port)"
                )
            if on_admin_port and not is_admin and not path.startswith("/v2/health/"):
                return await _not_found(send, f"no route {path} on the admin port: it serves /admin/* only")
        await self.app(scope, receive, send)


async def _not_found(send: Any, message: str) -> None:
    body = error_body(message)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 404, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def uvicorn_config(app: ServingApp, log_level: str = "info") -> Any:
    """The uvicorn configuration of ``app``: its HTTP limits (finmlops.serving.limits), the connection cap (a
    request on one connection more gets 503), the admin listener split, no access log (it costs more than a
    request), uvloop when installed. SIGTERM/SIGINT stop accepting connections, drain in-flight requests, then
    flush the request log."""
    import uvicorn  # deferred: uvicorn

    options = app.options
    return uvicorn.Config(
        Listeners(app, options.admin_port) if options.admin_port is not None else app,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=30,
        loop="auto",
        http=guarded_protocol(options, app.answer_infer, app.plane.gate)
        if options.rest_fast_path
        else guarded_protocol(options),
        # No X-Forwarded-* rewriting: a loopback client could otherwise claim any address in the admin audit log,
        # and the infer fast path (finmlops.serving.limits) reads the peer as it is.
        proxy_headers=False,
        # uvicorn counts the connection being served itself, so N allowed connections is a limit of N + 1
        limit_concurrency=options.max_connections + 1,
        server_header=False,
        date_header=False,
    )


def listen(host: str, port: int) -> socket.socket:
    """A bound TCP socket on ``host:port`` (IPv6 when ``host`` has a colon); ``ListenerError`` names a busy one."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ListenerError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def sockets_for(app: ServingApp, host: str, port: int) -> list[socket.socket]:
    """The main listener and, when ``server.admin_port`` is set, the admin one on ``server.admin_host``."""
    sockets = [listen(host, port)]
    if app.options.admin_port is not None:
        try:
            sockets.append(listen(app.options.admin_host, app.options.admin_port))
        except ListenerError:
            sockets[0].close()
            raise
    return sockets


def run(app: ServingApp, host: str = "127.0.0.1", port: int = 8080, log_level: str = "info") -> None:
    """Serve ``app`` with uvicorn on ``host:port`` (and its admin listener), and gRPC on ``host:server.grpc_port``
    unless it is 0 or null; ``ListenerError`` if a port is busy."""
    import uvicorn  # deferred: uvicorn

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    grpc_port = app.options.grpc_port
    if grpc_port:
        if grpc_port in (port, app.options.admin_port):
            raise ListenerError(f"the gRPC port {grpc_port} is also the REST or admin port: pick another --grpc-port")
        listen(host, grpc_port).close()  # a busy gRPC port is one line naming it, before anything starts
        app.grpc_listen = (host, grpc_port)
    sockets = sockets_for(app, host, port)
    try:
        uvicorn.Server(uvicorn_config(app, log_level)).run(sockets=sockets)
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(app: Any, grpc: bool = False) -> Iterator[str]:
    """Run the ASGI ``app`` under uvicorn on 127.0.0.1 in a daemon thread; yields the base URL.

    A ``ServingApp`` runs with its limits and, when ``server.admin_port`` is set, its admin listener on that port;
    with ``grpc``, also its gRPC transport on a port the OS picks (``app.grpc_port`` once started).
    The listening sockets are bound here and handed to uvicorn, so no other process can take a port in between.
    On exit uvicorn drains in-flight requests and runs the app's shutdown, which flushes the request log.
    """
    import uvicorn  # deferred: uvicorn

    if isinstance(app, ServingApp):
        if grpc:
            app.grpc_listen = ("127.0.0.1", 0)
        sockets = sockets_for(app, "127.0.0.1", 0)
        config = uvicorn_config(app, "warning")
    else:
        sockets = [listen("127.0.0.1", 0)]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    port = int(sockets[0].getsockname()[1])
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, name="finmlops-server", daemon=True)
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
        for sock in sockets:
            sock.close()
