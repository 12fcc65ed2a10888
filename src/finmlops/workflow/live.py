"""Step 6 of ``finmlops run``: start the V2 server in-process and replay real market days through the A/B test.

The server is exactly what ``finmlops serve`` serves without ``--config`` (every ``*-predictor@champion`` plus the
70/30 baseline/enhanced experiment), run by ``finmlops.serving.server.running_server`` (uvicorn in a thread on a
free local port), with alias hot reload off (the run itself fixes the champions). The previous request log is
archived first, so the A/B and drift steps analyse exactly this run's traffic.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field

from finmlops.features.target import LabelSpec
from finmlops.serving.config import DEFAULT_EXPERIMENT, default_config
from finmlops.serving.traffic import Per, TrafficSummary, replay_days, run_traffic
from finmlops.settings import Settings


def request_log_path(settings: Settings) -> Path:
    """Where ``finmlops serve`` logs requests, and so where ``finmlops abtest analyze`` looks."""
    return settings.home / "serving" / "requests.db"


def archive_request_log(path: Path) -> Path | None:
    """Rename ``path`` (and its SQLite -wal/-shm files) to ``requests.<UTC time>.db``; returns the new name."""
    if not path.exists():
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(f"{path.stem}.{stamp}{path.suffix}")
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(target.with_name(target.name + suffix))
    path.rename(target)
    return target


def serving_config(settings: Settings) -> Any:
    """``finmlops serve``'s default config (champions + the A/B test), hot reload and batching off; fails without
    the test."""
    from finmlops.serving.models import Registry  # deferred: onnxruntime

    registry = Registry(settings.tracking_uri, settings.home / "serving" / "models")
    config = default_config(registry.champions())
    experiments = [e.get("name") for e in config.experiments]
    if DEFAULT_EXPERIMENT not in experiments:
        raise ValueError(
            f"the A/B experiment {DEFAULT_EXPERIMENT} needs champions of baseline-predictor and enhanced-predictor; "
            f"the registry has champions of {', '.join(m.name for m in config.models)}"
        )
    # One row per onnxruntime run: how requests happen to be batched changes float32 scores in their last bits
    # (measured: 0.4% of prob_up by ~6e-8), and the replay must log the same scores every time it runs.
    server = config.server.model_copy(update={"reload_interval_s": 0.0, "max_batch_size": 1})
    return config.model_copy(update={"server": server})


class ReplayResult(TrafficSummary):
    """What ``traffic.json`` holds: the replay's tally plus the ``served`` model sources, the ``request_log`` path,
    the ``archived_log`` (the previous log's new name, None when there was none) and the provenance stamp."""

    served: list[str] = Field(default_factory=list)
    request_log: Path
    archived_log: Path | None = None
    provenance: dict[str, Any] = Field(default_factory=dict)


def serve_and_replay(
    settings: Settings,
    universe: Mapping[str, pd.DataFrame],
    *,
    start: date,
    end: date,
    seed: int,
    label: LabelSpec | None = None,
    per: Per = "ticker",
) -> ReplayResult:
    """Archive the old request log, serve the champions, replay ``universe``'s trading days ``start``..``end``
    through the A/B test (one raw OHLCV request per ticker per day, or with ``per="day"`` one request per day for
    every ticker; feedback two simulated days later), stop the
    server. Returns the traffic summary with the served models and the log path. Raises RuntimeError, with the
    server's error text, when most requests failed."""
    from finmlops.serving.server import build_app, running_server  # deferred: onnxruntime, prometheus_client

    config = serving_config(settings)
    log_path = request_log_path(settings)
    archived = archive_request_log(log_path)
    app = build_app(settings, config=config)
    days = replay_days(dict(universe), start=start, end=end, model_input="raw", label=label, per=per)
    with running_server(app) as url:
        summary = run_traffic(
            days, url=url, experiment=DEFAULT_EXPERIMENT, model_input="raw", feedback_delay=2, seed=seed
        )
    problem = summary.failure()
    if problem is not None:
        raise RuntimeError(f"the replay failed: {problem}")
    return ReplayResult(
        **summary.model_dump(),
        served=[m.source for m in config.models],
        request_log=log_path,
        archived_log=archived,
    )


def _client(settings: Settings) -> Any:
    import mlflow  # deferred: mlflow, scipy

    from finmlops.tracking import configure_tracking  # deferred: mlflow, scipy

    uri = configure_tracking(settings)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def champion_versions(settings: Settings) -> dict[str, int]:
    """``{registered name: version}`` of every ``*-predictor`` holding ``champion`` now: what the server serves."""
    models = _client(settings).search_registered_models(filter_string="name LIKE '%-predictor'")
    return {m.name: int(m.aliases["champion"]) for m in models if "champion" in (m.aliases or {})}


def registered_versions(settings: Settings) -> set[tuple[str, str]]:
    """Every ``(name, version)`` of a ``*-predictor`` in the registry."""
    versions = _client(settings).search_model_versions("name LIKE '%-predictor'")
    return {(v.name, str(v.version)) for v in versions}
