"""The ONNX model contract shared by export, packaging and serving; torch-free so that readers stay light.

Input ``input_data``: float32 ``[batch, seq_len, n_features]`` of UNSCALED features in the training feature order.
Output ``prob_up``: float32 ``[batch, 1]``, the probability that ``adj_close`` rises from t to t+1. Batch is dynamic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

INPUT_NAME = "input_data"
OUTPUT_NAME = "prob_up"


class ScalerLike(Protocol):
    """What the export reads from ``finmlops.features.FeatureScaler``: per-feature ``mean_`` and ``scale_``."""

    mean_: np.ndarray
    scale_: np.ndarray


@dataclass(frozen=True)
class OnnxExport:
    """An exported graph: its file, window shape and the parity measured on ``n_checked`` real windows."""

    path: Path
    seq_len: int
    n_features: int
    max_abs_diff: float
    n_checked: int
