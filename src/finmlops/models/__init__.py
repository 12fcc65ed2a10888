"""finmlops.models: deep variant presets and networks (output logits), and the honest baselines.

The networks import torch, so they load on first use: ``from finmlops.models import build_network``.
"""

from __future__ import annotations

from typing import Any

from finmlops.models.base import Predictor, WindowsLike, check_windows
from finmlops.models.baselines import (
    ALL_BASELINES,
    BASELINES,
    LightGBMBaseline,
    LogisticBaseline,
    MajorityBaseline,
    MomentumBaseline,
    RandomBaseline,
    ReversalBaseline,
    make_baseline,
)
from finmlops.models.estimators import ESTIMATORS, EnsembleModel, make_estimator
from finmlops.models.variants import PAPER_VARIANTS, PRESETS, VARIANTS, VariantConfig, get_variant

_LAZY = {"build_network", "forward_flops", "DNNNet", "LSTMNet", "MultiScaleLSTMNet", "TransformerNet"}

__all__ = [
    "ALL_BASELINES",
    "BASELINES",
    "ESTIMATORS",
    "PAPER_VARIANTS",
    "PRESETS",
    "VARIANTS",
    "DNNNet",
    "EnsembleModel",
    "LSTMNet",
    "LightGBMBaseline",
    "LogisticBaseline",
    "MajorityBaseline",
    "MomentumBaseline",
    "MultiScaleLSTMNet",
    "Predictor",
    "RandomBaseline",
    "ReversalBaseline",
    "TransformerNet",
    "VariantConfig",
    "WindowsLike",
    "build_network",
    "check_windows",
    "forward_flops",
    "get_variant",
    "make_baseline",
    "make_estimator",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from finmlops.models import networks  # deferred: torch

        return getattr(networks, name)
    raise AttributeError(f"module 'finmlops.models' has no attribute {name!r}")
