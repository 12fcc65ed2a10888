"""Distribution-shift statistics: PSI on reference quantile bins, the two-sample Kolmogorov-Smirnov test, the
normalised Wasserstein distance, the reference profile a logged model carries (``drift_reference.json``) and
``SlidingDrift``, the per-request PSI the server keeps. Batch (``finmlops drift``) and online PSI use the same bins
and the same :func:`psi`."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

N_BINS = 10
# An empty bin's proportion is replaced by this before the log ratio, so one empty bin adds a finite, bounded term.
PSI_EPSILON = 1e-4
# Evidently's std floor for the normalised Wasserstein distance (a constant reference would divide by zero).
WASSERSTEIN_STD_FLOOR = 1e-3
PROFILE_VERSION = 1


def quantile_edges(values: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """Interior bin edges ``[<= n_bins - 1]``: the reference's 1/n_bins ... (n_bins-1)/n_bins quantiles, duplicates
    dropped (a feature with many equal values gets fewer bins). Bin i holds values in ``(edge[i-1], edge[i]]``."""
    return np.unique(np.quantile(values, np.arange(1, n_bins) / n_bins))


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts ``[len(edges) + 1]`` of finite ``values`` per bin; NaN values are left out."""
    finite = values[np.isfinite(values)]
    return np.bincount(np.searchsorted(edges, finite, side="left"), minlength=len(edges) + 1)


def psi(reference: np.ndarray, current: np.ndarray, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of two bin distributions ``[n_bins]`` (proportions or counts, each normalised
    here): sum((c - r) * ln(c / r)), with empty bins' proportions raised to ``epsilon``. NaN if either is empty."""
    r, c = np.asarray(reference, dtype=np.float64), np.asarray(current, dtype=np.float64)
    if r.sum() <= 0 or c.sum() <= 0:
        return float("nan")
    r, c = np.maximum(r / r.sum(), epsilon), np.maximum(c / c.sum(), epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


def ks_test(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """``(statistic, p-value)`` of the two-sample Kolmogorov-Smirnov test (scipy's ``ks_2samp``, two-sided)."""
    result = stats.ks_2samp(reference, current)
    return float(result.statistic), float(result.pvalue)


def wasserstein_norm(reference: np.ndarray, current: np.ndarray) -> float:
    """Wasserstein-1 distance of the two samples divided by the reference's std (floored at 1e-3, as Evidently)."""
    return float(stats.wasserstein_distance(reference, current) / max(float(np.std(reference)), WASSERSTEIN_STD_FLOOR))


def finite_values(values: Any, label: str) -> np.ndarray:
    """``values`` flattened to float64 without NaN/inf; ``ValueError`` naming ``label`` when nothing is left."""
    array = np.asarray(values, dtype=np.float64).ravel()
    array = array[np.isfinite(array)]
    if array.size == 0:
        raise ValueError(f"{label}: no finite values")
    return array


def reference_profile(features_2d: np.ndarray, names: Sequence[str], n_bins: int = N_BINS) -> dict[str, Any]:
    """The drift reference of a training set ``[n_rows, n_features]`` (columns in ``names`` order): per feature
    its quantile bin edges, the reference proportion per bin, mean, std and row count. Small and JSON-able; this
    is ``drift_reference.json`` beside a logged model. NaN rows (feature warm-up) are left out per feature."""
    x = np.asarray(features_2d, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ValueError(f"reference features must be [n_rows, {len(names)}], got shape {x.shape}")
    features: dict[str, Any] = {}
    for j, name in enumerate(names):
        values = finite_values(x[:, j], f"reference feature {name!r}")
        edges = quantile_edges(values, n_bins)
        counts = bin_counts(values, edges)
        features[name] = {
            "edges": edges.tolist(),
            "proportions": (counts / counts.sum()).tolist(),
            "mean": float(values.mean()),
            "std": float(values.std()),
            "n": int(values.size),
        }
    return {"version": PROFILE_VERSION, "n_bins": n_bins, "epsilon": PSI_EPSILON, "features": features}


def check_profile(profile: Mapping[str, Any], source: str = "drift reference") -> None:
    """Raise ``ValueError`` naming ``source`` and the feature when ``profile`` is not a usable reference profile."""
    if profile.get("version") != PROFILE_VERSION or not isinstance(profile.get("features"), Mapping):
        raise ValueError(f"{source}: not a version-{PROFILE_VERSION} drift reference profile")
    for name, entry in profile["features"].items():
        try:
            edges, proportions = np.asarray(entry["edges"], float), np.asarray(entry["proportions"], float)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}: feature {name!r}: {exc}") from None
        if len(proportions) != len(edges) + 1 or np.any(np.diff(edges) <= 0) or not np.isclose(proportions.sum(), 1):
            raise ValueError(f"{source}: feature {name!r}: edges must ascend and proportions (one more) sum to 1")


class SlidingDrift:
    """PSI of each feature over the last ``window`` requests against a reference profile, updated per request.

    ``update`` costs O(n_features * n_bins) vectorised comparisons (the bin of a value is the number of edges
    below it, i.e. ``np.searchsorted(edges, value, side="left")``), a ring buffer of bin indices and running
    counts per bin. ``psi()`` applies the batch :func:`psi` to the counts. Thread-safe.
    """

    def __init__(self, profile: Mapping[str, Any], window: int = 1000) -> None:
        check_profile(profile)
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.names: list[str] = list(profile["features"])
        self.window = window
        entries = [profile["features"][n] for n in self.names]
        self._n_bins = np.array([len(e["proportions"]) for e in entries])
        width = int(self._n_bins.max())
        # Padding edges with +inf keeps a value out of bins a feature does not have.
        self._edges = np.full((len(entries), width - 1), np.inf)
        for i, e in enumerate(entries):
            self._edges[i, : len(e["edges"])] = e["edges"]
        self._reference = [np.asarray(e["proportions"], dtype=np.float64) for e in entries]
        self._epsilon = float(profile.get("epsilon", PSI_EPSILON))
        self._ring = np.full((window, len(entries)), -1, dtype=np.int64)
        self._counts = np.zeros((len(entries), width), dtype=np.int64)
        # Flat cell index of (feature, bin) = feature * width + bin; the ring stores it, -1 for an empty slot/NaN.
        self._offsets = np.arange(len(entries)) * width
        self._next = 0
        self._seen = 0
        self._lock = threading.Lock()

    @property
    def n(self) -> int:
        """Rows in the window now."""
        return min(self._seen, self.window)

    def update(self, features: np.ndarray) -> None:
        """Add one feature vector ``[n_features]`` (profile order, unscaled); the oldest leaves a full window."""
        x = np.asarray(features, dtype=np.float64).reshape(-1)
        if x.size != len(self.names):
            raise ValueError(f"expected {len(self.names)} features, got {x.size}")
        cells = self._offsets + (x[:, None] > self._edges).sum(axis=1)
        finite = np.isfinite(x)
        if not finite.all():
            cells = np.where(finite, cells, -1)
        flat = self._counts.reshape(-1)  # a view: each feature's cell appears once, so fancy += is exact
        with self._lock:
            old = self._ring[self._next]
            flat[old[old >= 0]] -= 1
            flat[cells[cells >= 0]] += 1
            self._ring[self._next] = cells
            self._next = (self._next + 1) % self.window
            self._seen += 1

    def psi(self) -> dict[str, float]:
        """PSI per feature over the current window (NaN for a feature with no finite value yet)."""
        with self._lock:
            counts = self._counts.copy()
        return {
            name: psi(self._reference[i], counts[i, : self._n_bins[i]], self._epsilon)
            for i, name in enumerate(self.names)
        }
