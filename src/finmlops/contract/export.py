"""What an ONNX export produces and reads, torch-free so that the packaging code that consumes it stays light."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np


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
