"""Typed result of ``finmlops train``: what ``results/train_<variant>.json`` holds.

:func:`finmlops.training.pipeline.fit_variant` builds a :class:`TrainResult`, ``run_training`` a :class:`TrainRun`
(the same with seed, data hash, run config, device, model folder and provenance); the file is written with
``model_dump_json`` and read back with ``model_validate``. Metrics are fractions (0.52, not 52 %); an undefined
figure (the AUC of one class) is NaN in memory and ``null`` in the file.
"""

from __future__ import annotations

from typing import Any

from finmlops.features.target import LabelSpec
from finmlops.provenance import Real, Result


class ClassificationMetrics(Result):
    """Scores of P(up) against 0/1 labels on ``n`` windows: accuracy at 0.5, ROC AUC, log loss (nats), Brier
    score, the realised up-rate and the share of "up" predictions (0 or 1 for a constant model)."""

    n: int
    accuracy: Real
    auc: Real
    log_loss: Real
    brier: Real
    up_rate: Real
    predicted_up_share: Real


class Span(Result):
    """The first and last date (ISO) of a block of windows and its number of distinct dates."""

    first: str
    last: str
    dates: int


class Split(Result):
    """The date spans of the training, validation and test blocks (purge gaps between them)."""

    train: Span
    val: Span
    test: Span


class WindowCounts(Result):
    """Windows (rows) in each block."""

    train: int
    val: int
    test: int


class TrainMetrics(Result):
    """Metrics on the validation and test blocks, and the majority class's (of training) accuracy on test."""

    val: ClassificationMetrics
    test: ClassificationMetrics
    test_majority_accuracy: Real


class Registration(Result):
    """The MLflow run that logged the training and the registered version it made ``alias`` (the challenger);
    ``champion`` is the champion's version at the time, None without one."""

    run_id: str
    model: str
    version: int
    alias: str
    champion: int | None = None


class TrainResult(Result):
    """One fitted variant: its label, split, window counts, feature names, metrics, the restored best epoch
    (1-based), whether it stopped early, the fit's wall time in seconds and the per-epoch history (train/val loss,
    val accuracy and AUC, ...)."""

    variant: str
    label: LabelSpec
    split: Split
    windows: WindowCounts
    feature_names: list[str]
    metrics: TrainMetrics
    best_epoch: int
    stopped_early: bool
    train_seconds: float
    history: list[dict[str, Real]]


class TrainRun(TrainResult):
    """``finmlops train``'s result: the fit with its seed, data hash, run config (variant, train config, label,
    tickers), device, model folder and provenance stamp; ``mlflow`` once the run is tracked (not in the file)."""

    seed: int
    data_hash: str
    config: dict[str, Any]
    device: str
    model_dir: str
    provenance: dict[str, Any]
    mlflow: Registration | None = None
