"""One service function per stage that is tracked: the stage's work, then its MLflow run through an injected
tracker. ``finmlops ingest/evaluate/backtest`` and the steps of ``finmlops run`` both call these, so a stage is
composed with tracking in one place.

A tracker is called as ``tracker(what, function, **kwargs)``: ``what`` names the stage in messages
(``"ingestion"``), ``function`` is the logging function of :mod:`finmlops.tracking` (``"log_ingestion"``) that
receives the settings and ``kwargs``; it returns the MLflow run id, or None when tracking was skipped.
:func:`mlflow_tracker` is the plain one (errors propagate); the CLI passes its own, which turns a tracking failure
into one error line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import finmlops.tracking as tracking  # lazy: MLflow loads only when a logging function is called
from finmlops.data import DataStore, IngestReport, ingest
from finmlops.data.ingest import SourceName
from finmlops.evaluation.backtest import BacktestConfig
from finmlops.evaluation.metrics import BootstrapConfig
from finmlops.evaluation.results import BacktestResult, EvaluationResult
from finmlops.evaluation.workspace import run_backtest_workspace, run_evaluation
from finmlops.executor import ExecutorConfig
from finmlops.settings import Settings

Tracker = Callable[..., str | None]


def log_to_mlflow(settings: Settings, function: str, **kwargs: Any) -> str:
    """Call ``finmlops.tracking.<function>(settings, **kwargs)`` with MLflow's INFO lines (database migrations,
    registrations) silenced; returns the run id."""
    log = getattr(tracking, function)  # imports MLflow, which sets its logger to INFO: quiet it after
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    return str(log(settings, **kwargs))


def mlflow_tracker(settings: Settings) -> Tracker:
    """The tracker that logs to the settings' MLflow with :func:`log_to_mlflow`; errors propagate."""

    def track(what: str, function: str, **kwargs: Any) -> str:
        return log_to_mlflow(settings, function, **kwargs)

    return track


class IngestOutcome(BaseModel):
    """The ingest's report and its MLflow run (None when untracked)."""

    report: IngestReport
    mlflow_run: str | None = None


class EvaluateOutcome(BaseModel):
    """The evaluation (as written to results/evaluation.json) and its MLflow run (None when untracked)."""

    result: EvaluationResult
    mlflow_run: str | None = None


class BacktestOutcome(BaseModel):
    """The backtest (as written to results/backtest.json) and its MLflow run (None when untracked)."""

    result: BacktestResult
    mlflow_run: str | None = None


def ingest_stage(
    settings: Settings,
    source: SourceName,
    tickers: Sequence[str],
    start: date,
    end: date,
    *,
    data_dir: Path | None = None,
    retries: int = 3,
    tracker: Tracker | None = None,
) -> IngestOutcome:
    """Validate ``tickers`` from ``source`` over ``start..end`` into the settings' data store
    (:func:`finmlops.data.ingest`), then log an ingestion run (rows: the stored rows of those tickers)."""
    report = ingest(DataStore(settings.data_dir), source, list(tickers), start, end, data_dir=data_dir, retries=retries)
    run = None
    if tracker is not None:
        run = tracker(
            "ingestion", "log_ingestion", tickers=[t.ticker for t in report.tickers], start=start, end=end,
            source=source, dataset_hash=report.dataset_hash, n_rows=sum(t.rows for t in report.tickers),
            warnings=report.warnings,
        )  # fmt: skip
    return IngestOutcome(report=report, mlflow_run=run)


def evaluate_stage(
    settings: Settings,
    *,
    variants: Sequence[str],
    epochs: int,
    test_years: Sequence[int],
    boot: BootstrapConfig,
    progress: bool = True,
    executor: ExecutorConfig | None = None,
    tracker: Tracker | None = None,
) -> EvaluateOutcome:
    """Walk-forward evaluation of ``variants`` and every baseline (:func:`run_evaluation`, seeded by the
    settings, its fits on ``executor``), then log the evaluation run."""
    result = run_evaluation(
        settings, variants=variants, epochs=epochs, seed=settings.seed, test_years=test_years, boot=boot,
        progress=progress, executor=executor,
    )  # fmt: skip
    return EvaluateOutcome(result=result, mlflow_run=track_evaluation(result, tracker))


def track_evaluation(result: EvaluationResult, tracker: Tracker | None) -> str | None:
    """Log an evaluation result (evaluation.json's document) as ``finmlops evaluate`` does."""
    return None if tracker is None else tracker("evaluation", "log_evaluation_result", result=result)


def backtest_stage(settings: Settings, config: BacktestConfig, *, tracker: Tracker | None = None) -> BacktestOutcome:
    """Backtest the workspace's saved predictions (:func:`run_backtest_workspace`), then log the backtest run."""
    result = run_backtest_workspace(settings, config)
    run = None if tracker is None else tracker("backtest", "log_backtest_result", result=result)
    return BacktestOutcome(result=result, mlflow_run=run)
