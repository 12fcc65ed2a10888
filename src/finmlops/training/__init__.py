"""finmlops.training: the deterministic training loop, ``DeepModel`` and the walk-forward runner (imports torch)."""

from __future__ import annotations

from finmlops.training.config import TrainConfig
from finmlops.training.pipeline import classification_metrics, load_model, run_training, save_model, train_variant
from finmlops.training.trainer import (
    DeepModel,
    TrainOutcome,
    deterministic,
    pos_weight_for,
    predict_logits,
    resolve_device,
    train_network,
)
from finmlops.training.walkforward import (
    PREDICTION_COLUMNS,
    cross_val_predict,
    estimator,
    label_folds,
    train_config,
    walk_forward_predictions,
)

__all__ = [
    "PREDICTION_COLUMNS",
    "DeepModel",
    "TrainConfig",
    "TrainOutcome",
    "classification_metrics",
    "cross_val_predict",
    "deterministic",
    "estimator",
    "label_folds",
    "load_model",
    "pos_weight_for",
    "predict_logits",
    "resolve_device",
    "run_training",
    "save_model",
    "train_config",
    "train_network",
    "train_variant",
    "walk_forward_predictions",
]
