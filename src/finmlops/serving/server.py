"""Build the serving app from ``serving.yaml`` (or the registry's champions) and run it under uvicorn."""

from __future__ import annotations

import logging
from pathlib import Path

from finmlops.serving.app import ServingApp
from finmlops.serving.config import ServingConfig, default_config, load_config
from finmlops.serving.models import Registry
from finmlops.settings import Settings


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
