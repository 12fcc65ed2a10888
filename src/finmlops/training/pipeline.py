"""One training run end to end (``finmlops train``): features, a purged chronological split, training, metrics, and
the model artifacts (weights + scaler + config) that later stages export and serve."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from finmlops.data import DataStore
from finmlops.features import FeatureScaler, chronological_split, compute_features, make_target, make_windows
from finmlops.features.target import LabelSpec, label_from_settings
from finmlops.models.networks import build_network
from finmlops.models.variants import VariantConfig, get_variant
from finmlops.provenance import stamp, write_text_atomic
from finmlops.settings import Settings
from finmlops.stats.classification import log_loss, roc_auc
from finmlops.training.config import TrainConfig
from finmlops.training.results import (
    ClassificationMetrics,
    Span,
    Split,
    TrainMetrics,
    TrainResult,
    TrainRun,
    WindowCounts,
)
from finmlops.training.trainer import DeepModel

WEIGHTS_FILE, SCALER_FILE, CONFIG_FILE = "model.pt", "scaler.json", "config.json"


def classification_metrics(y: np.ndarray, p: np.ndarray) -> ClassificationMetrics:
    """Accuracy at 0.5, ROC AUC, log loss and Brier score of P(up) ``p`` ``[n]`` against 0/1 labels ``y`` ``[n]``,
    with ``n``, the realised up-rate and the share of "up" predictions (a constant model shows 0 or 1 here)."""
    return ClassificationMetrics(
        n=len(y),
        accuracy=float(np.mean((p > 0.5) == (y > 0.5))),
        auc=roc_auc(y, p),
        log_loss=log_loss(y, p),
        brier=float(np.mean((p - y) ** 2)),
        up_rate=float(np.mean(y)),
        predicted_up_share=float(np.mean(p > 0.5)),
    )


def _span(dates: np.ndarray) -> Span:
    d = pd.DatetimeIndex(dates)
    return Span(first=str(d.min().date()), last=str(d.max().date()), dates=int(d.nunique()))


@dataclass(frozen=True)
class TrainedVariant:
    """A fitted variant with what tracking logs beside it: the feature frame it read (``(date, ticker)`` x
    features) and its training and test windows (``finmlops.features.Windows``)."""

    model: DeepModel
    result: TrainResult
    features: pd.DataFrame
    train: Any
    test: Any


def train_variant(
    universe: Mapping[str, pd.DataFrame],
    variant: VariantConfig,
    config: TrainConfig,
    *,
    val_frac: float = 0.15,
    test_frac: float = 0.15,
    label: LabelSpec | None = None,
) -> tuple[DeepModel, TrainResult]:
    """Train ``variant`` on ``universe`` with a train | purge | val | purge | test split of the dates.

    The label is ``make_target(universe, label)`` (default ``LabelSpec()``); the gaps are
    ``min_gap(seq_len, label.reach)`` trading days (``finmlops.features.chronological_split``); the scaler is fit
    on the training windows only. Returns the fitted model and its result: the label, split spans, history,
    best epoch and metrics on the validation and test windows (the majority-class accuracy on test for reference).
    """
    trained = fit_variant(universe, variant, config, val_frac=val_frac, test_frac=test_frac, label=label)
    return trained.model, trained.result


def fit_variant(
    universe: Mapping[str, pd.DataFrame],
    variant: VariantConfig,
    config: TrainConfig,
    *,
    val_frac: float = 0.15,
    test_frac: float = 0.15,
    label: LabelSpec | None = None,
) -> TrainedVariant:
    """:func:`train_variant`, keeping the feature frame and the training and test windows."""

    label = label or LabelSpec()
    target = make_target(universe, label)
    features = compute_features(universe, variant.feature_set)
    windows = make_windows(features, target, variant.seq_len)
    windows = windows.subset(np.isfinite(windows.y))
    fold = chronological_split(
        target.index.get_level_values("date"), val_frac, test_frac, seq_len=variant.seq_len, reach=label.reach
    )
    train_mask, val_mask, test_mask = fold.masks(windows.dates)
    train, val, test = (windows.subset(m) for m in (train_mask, val_mask, test_mask))
    for block, part in (("training", train), ("validation", val), ("test", test)):
        if len(part) == 0:
            raise ValueError(f"no {block} windows for variant {variant.name}: the data are too short")
    model = DeepModel(variant, config).fit(train, val)
    assert model.outcome is not None
    majority = float(np.mean(train.y) >= 0.5)
    result = TrainResult(
        variant=variant.name,
        label=label,
        split=Split(train=_span(train.dates), val=_span(val.dates), test=_span(test.dates)),
        windows=WindowCounts(train=len(train), val=len(val), test=len(test)),
        feature_names=list(windows.feature_names),
        metrics=TrainMetrics(
            val=classification_metrics(val.y, model.predict_proba(val)),
            test=classification_metrics(test.y, model.predict_proba(test)),
            test_majority_accuracy=float(np.mean(test.y == majority)),
        ),
        best_epoch=model.outcome.best_epoch,
        stopped_early=model.outcome.stopped_early,
        train_seconds=model.outcome.seconds,
        history=model.outcome.history,
    )
    return TrainedVariant(model, result, features, train, test)


def save_model(model: DeepModel, directory: Path, feature_names: list[str], extra: Mapping[str, Any]) -> Path:
    """Write ``model.pt`` (state_dict), ``scaler.json`` and ``config.json`` to ``directory``, atomically.

    The files are written to a sibling temporary folder that then replaces ``directory``; if anything fails the
    previous model stays intact.
    """
    if model.net is None or model.scaler is None:
        raise RuntimeError(f"model {model.name} is not fitted")
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.with_name(f".{directory.name}.{os.getpid()}.tmp")
    backup = directory.with_name(f".{directory.name}.{os.getpid()}.old")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
        torch.save(model.net.state_dict(), staging / WEIGHTS_FILE)
        (staging / SCALER_FILE).write_text(json.dumps(model.scaler.to_dict()) + "\n")
        config = {
            "variant": model.variant.model_dump(),
            "train_config": model.config.model_dump(),
            "n_features": len(feature_names),
            "feature_names": list(feature_names),
            "output": "logit",
            **extra,
        }
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str) + "\n")
        if directory.exists():
            directory.rename(backup)
        staging.rename(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(backup, ignore_errors=True)
    return directory


def load_model(directory: Path) -> tuple[DeepModel, dict[str, Any]]:
    """The model saved by :func:`save_model` (on CPU), and its config.json content."""

    directory = Path(directory)
    for name in (WEIGHTS_FILE, SCALER_FILE, CONFIG_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory / name}: missing model file (run `finmlops train` first)")
    config = json.loads((directory / CONFIG_FILE).read_text())
    variant = VariantConfig.model_validate(config["variant"])
    train_config = TrainConfig.model_validate({**config["train_config"], "device": "cpu"})
    model = DeepModel(variant, train_config)
    model.scaler = FeatureScaler.from_dict(json.loads((directory / SCALER_FILE).read_text()))
    model.net = build_network(variant, int(config["n_features"]))
    model.net.load_state_dict(torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    model.net.eval()
    return model, config


def run_training(
    settings: Settings,
    variant_name: str,
    *,
    epochs: int | None = None,
    device: str = "auto",
    verbosity: str = "bar",
    class_balanced: bool = False,
    on_trained: Callable[..., Any] | None = None,
) -> TrainRun:
    """``finmlops train``: read the store, train one variant, write ``results/train_<variant>.json`` and the model
    folder ``models/<variant>/``. Returns the :class:`TrainRun` (with a ``provenance`` stamp); same seed and data,
    same metrics. ``on_trained(trained=..., result=...)`` runs after both are written (the CLI logs the run to
    MLflow there).
    """

    variant = get_variant(variant_name)
    store = DataStore(settings.data_dir)
    universe, data_hash = store.read_versioned()
    config = TrainConfig(
        **({"epochs": epochs} if epochs else {}),
        seed=settings.seed,
        threads=settings.threads,
        device=device,  # type: ignore[arg-type]
        verbosity=verbosity,  # type: ignore[arg-type]
        class_balanced=class_balanced,
    )
    trained = fit_variant(universe, variant, config, label=label_from_settings(settings))
    model, fit = trained.model, trained.result
    label = fit.label.model_dump()
    run_config = {
        "variant": variant.model_dump(),
        "train": config.model_dump(),
        "label": label,
        "tickers": sorted(universe),
    }
    result = TrainRun(
        **dict(fit),
        seed=settings.seed,
        data_hash=data_hash,
        config=run_config,
        device=str(model.device),
        model_dir=str(settings.models_dir / variant.name),
        provenance=stamp(data_hash=data_hash, config=run_config, seed=settings.seed),
    )
    extra = {
        "data_hash": data_hash,
        "seed": settings.seed,
        "train_start": fit.split.train.first,
        "train_end": fit.split.train.last,
        "label": label,
        "tickers": sorted(universe),
    }
    save_model(model, settings.models_dir / variant.name, fit.feature_names, extra)
    write_text_atomic(
        settings.results_dir / f"train_{variant.name}.json", result.model_dump_json(indent=2, exclude={"mlflow"}) + "\n"
    )
    if on_trained is not None:
        on_trained(trained=trained, result=result)
    return result
