"""The one interface every model (deep variant or baseline) implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


class WindowsLike(Protocol):
    """What models read from ``finmlops.features.Windows``: ``X`` float32 ``[n, seq_len, n_features]``, ``y``
    float32 ``[n]`` (0/1), ``dates`` ``[n]`` (decision date t) and ``tickers`` ``[n]``."""

    X: np.ndarray
    y: np.ndarray
    dates: np.ndarray
    tickers: np.ndarray


@runtime_checkable
class Predictor(Protocol):
    """``fit`` on training windows (``val`` for early stopping only), then ``predict_proba`` -> ``[n]`` P(up)."""

    name: str

    def fit(self, train: WindowsLike, val: WindowsLike) -> Predictor: ...

    def predict_proba(self, windows: WindowsLike) -> np.ndarray: ...


def check_windows(windows: WindowsLike, what: str) -> None:
    """Raise ``ValueError`` naming ``what`` unless ``windows`` is a non-empty, consistent set of windows."""
    x = np.asarray(windows.X)
    if x.ndim != 3:
        raise ValueError(f"{what}: X must be [n, seq_len, n_features], got shape {x.shape}")
    n = x.shape[0]
    if n == 0:
        raise ValueError(f"{what}: no windows")
    for field in ("y", "dates", "tickers"):
        length = len(getattr(windows, field))
        if length != n:
            raise ValueError(f"{what}: {field} has {length} entries but X has {n} windows")
    if not np.isfinite(x).all():
        row = int(np.argwhere(~np.isfinite(x))[0][0])
        raise ValueError(f"{what}: X has non-finite values, first in window {row} ({windows.tickers[row]})")
