"""finmlops.features: leakage-safe features, the target, sliding windows, time splits and scaling.

See docs/features.md (generated from the registry) for every feature's formula and warm-up window.
"""

from finmlops.features.compute import compute_features, feature_matrix, market_returns, settled_history
from finmlops.features.registry import FEATURE_SETS, REGISTRY, Feature, feature_names, features_of
from finmlops.features.scaling import FeatureScaler
from finmlops.features.splits import Fold, chronological_split, min_gap, walk_forward_folds
from finmlops.features.store import load_features, save_features
from finmlops.features.target import (
    LABEL_KINDS,
    LabelSpec,
    forward_return,
    label_from_settings,
    make_target,
    relative_return,
)
from finmlops.features.windows import WindowIndex, Windows, make_window_index, make_windows

__all__ = [
    "FEATURE_SETS",
    "LABEL_KINDS",
    "REGISTRY",
    "Feature",
    "FeatureScaler",
    "Fold",
    "LabelSpec",
    "WindowIndex",
    "Windows",
    "chronological_split",
    "compute_features",
    "feature_matrix",
    "feature_names",
    "features_of",
    "forward_return",
    "label_from_settings",
    "load_features",
    "make_target",
    "make_window_index",
    "make_windows",
    "market_returns",
    "min_gap",
    "relative_return",
    "save_features",
    "settled_history",
    "walk_forward_folds",
]
