"""finmlops.training: the deterministic training loop, ``DeepModel`` and the walk-forward runner (imports torch)."""

from __future__ import annotations

from finmlops.training.config import TrainConfig
from finmlops.training.trainer import (
    DeepModel,
    TrainOutcome,
    deterministic,
    pos_weight_for,
    predict_logits,
    resolve_device,
    train_network,
)

__all__ = [
    "DeepModel",
    "TrainConfig",
    "TrainOutcome",
    "deterministic",
    "pos_weight_for",
    "predict_logits",
    "resolve_device",
    "train_network",
]
