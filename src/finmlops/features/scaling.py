"""Per-feature standardisation fitted on training rows only, exportable as two arrays (e.g. into an ONNX graph)."""

from __future__ import annotations

from typing import Any, Self

import numpy as np


class FeatureScaler:
    """``(x - mean_) / scale_`` per feature (the last axis); ``mean_`` and ``scale_`` are float64 ``[n_features]``.

    Fit it on the training windows of a fold only, so validation and test statistics never leak into training.
    A constant feature gets ``scale_ = 1`` (it maps to 0 instead of dividing by zero).
    """

    def __init__(self) -> None:
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None

    def fit(self, X: np.ndarray) -> Self:
        """Fit on ``X`` ``[..., n_features]`` (e.g. windows ``[n, seq_len, f]`` or rows ``[n, f]``), all finite."""
        flat = np.asarray(X, dtype=np.float64).reshape(-1, np.shape(X)[-1])
        if len(flat) == 0:
            raise ValueError("cannot fit a scaler on zero rows")
        if not np.isfinite(flat).all():
            col = int(np.argmax(~np.isfinite(flat).all(axis=0)))
            raise ValueError(f"cannot fit a scaler on non-finite values (feature column {col})")
        self.mean_ = flat.mean(axis=0)
        std = flat.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Scaled ``X``, same shape, float32."""
        if self.mean_ is None or self.scale_ is None:
            raise RuntimeError("FeatureScaler is not fitted: call fit() on the training windows first")
        if np.shape(X)[-1] != len(self.mean_):
            raise ValueError(f"X has {np.shape(X)[-1]} features, the scaler was fitted on {len(self.mean_)}")
        return ((np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_).astype(np.float32)

    def fit_transform(self, X: np.ndarray) -> np.ndarray:
        return self.fit(X).transform(X)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready ``{"mean": [...], "scale": [...]}``."""
        if self.mean_ is None or self.scale_ is None:
            raise RuntimeError("FeatureScaler is not fitted")
        return {"mean": self.mean_.tolist(), "scale": self.scale_.tolist()}

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> FeatureScaler:
        scaler = cls()
        scaler.mean_ = np.asarray(payload["mean"], dtype=np.float64)
        scaler.scale_ = np.asarray(payload["scale"], dtype=np.float64)
        if scaler.mean_.shape != scaler.scale_.shape or (scaler.scale_ <= 0).any():
            raise ValueError("scaler payload needs equal-length 'mean' and positive 'scale'")
        return scaler
