"""The feature registry: every feature is declared once (name, formula text, window, function).

``feature_names``, the ``finmlops features --list`` table and ``docs/features.md`` are all generated from it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from finmlops.data.validation import OHLCV_COLUMNS

# The project's own sets, then the field's standard ones (finmlops.features.alpha158: Qlib's Alpha158, and Krauss,
# Do & Huck's 31 multi-period returns; finmlops.features.fischer_krauss: Fischer & Krauss's 1-day returns).
FEATURE_SETS: tuple[str, ...] = ("basic", "enhanced", "advanced", "alpha158", "kdh", "fk240")


@dataclass
class TickerInputs:
    """One ticker's inputs as float64 arrays of length ``n`` (its own trading days, ascending).

    ``open``/``high``/``low``/``close`` are dividend-adjusted (open, high and low scaled by ``adj_close / close``),
    ``raw_close`` is Yahoo's split-adjusted close, ``volume`` is in split-adjusted shares and ``market_return`` is
    the universe's equal-weight daily return on the same dates. ``memo`` shares intermediates (e.g. one MACD call
    feeds three features).
    """

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    raw_close: np.ndarray
    volume: np.ndarray
    market_return: np.ndarray
    memo_cache: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, market_return: np.ndarray) -> TickerInputs:
        """Build from an OHLCV frame (see docs/architecture.md)."""
        return cls.from_arrays(*(frame[c].to_numpy(np.float64) for c in OHLCV_COLUMNS), market_return)

    @classmethod
    def from_arrays(
        cls,
        open: np.ndarray,
        high: np.ndarray,
        low: np.ndarray,
        close: np.ndarray,
        adj_close: np.ndarray,
        volume: np.ndarray,
        market_return: np.ndarray,
    ) -> TickerInputs:
        """Build from the six OHLCV columns, each ``[n]`` (prices in currency, volume in shares), and the market
        return ``[n]``; prices are dividend-adjusted here, once (``from_frame`` and the server both come here)."""
        close = np.asarray(close, dtype=np.float64)
        adj = np.asarray(adj_close, dtype=np.float64)
        factor = adj / close
        return cls(
            open=np.asarray(open, dtype=np.float64) * factor,
            high=np.asarray(high, dtype=np.float64) * factor,
            low=np.asarray(low, dtype=np.float64) * factor,
            close=adj,
            raw_close=close,
            volume=np.asarray(volume, dtype=np.float64),
            market_return=np.asarray(market_return, dtype=np.float64),
        )

    def memo(self, key: str, fn: Callable[[], Any]) -> Any:
        """``fn()`` computed once per ticker under ``key``."""
        if key not in self.memo_cache:
            self.memo_cache[key] = fn()
        return self.memo_cache[key]


@dataclass(frozen=True)
class Feature:
    """A declared feature.

    ``window``: rows of history one value needs, the current row included; the first ``window - 1`` rows of a
    ticker's series are NaN (warm-up). ``cross_asset``: it reads the universe, not only the ticker. ``memory``:
    0 when a value reads rows t-window+1..t only (up to rounding: TA-Lib's running sums); for an exponential
    smoothing (EMA, Wilder), which never forgets its start, the further rows after which the weight left on
    everything older is below ``MEMORY_TOL`` (``smoothing_memory``), so that ``window + memory`` rows give the
    value of any longer history within that tolerance (``finmlops.features.settled_history``).
    """

    name: str
    formula: str
    window: int
    compute: Callable[[TickerInputs], np.ndarray]
    cross_asset: bool = False
    memory: int = 0


# Weight an exponential smoothing may leave on the history before ``window + memory`` rows (relative to the value).
MEMORY_TOL = 1e-12


def smoothing_memory(alpha: float, tol: float = MEMORY_TOL) -> int:
    """Rows ``k`` after which an exponential smoothing of weight ``alpha`` (EMA: ``2 / (n + 1)``; Wilder:
    ``1 / n``) keeps less than ``tol`` of its state: the smallest ``k`` with ``(1 - alpha) ** k < tol``."""
    return int(np.ceil(np.log(tol) / np.log1p(-alpha)))


REGISTRY: dict[str, Feature] = {}
_SETS: dict[str, list[str]] = {name: [] for name in FEATURE_SETS}


def declare(feature: Feature, sets: tuple[str, ...]) -> None:
    """Register ``feature`` (once) and append it to each of ``sets`` in declaration order."""
    if feature.name in REGISTRY:
        raise ValueError(f"feature {feature.name!r} is declared twice")
    REGISTRY[feature.name] = feature
    include(feature.name, sets)


def include(name: str, sets: tuple[str, ...]) -> None:
    """Append an already declared feature to more sets (so a set's column order is chosen where it is built)."""
    if name not in REGISTRY:
        raise KeyError(f"unknown feature {name!r}")
    for set_name in sets:
        check_set(set_name)
        if name not in _SETS[set_name]:
            _SETS[set_name].append(name)


def check_set(feature_set: str) -> str:
    """``feature_set`` if it is known, else a ValueError listing the known sets."""
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {feature_set!r}; choose one of {', '.join(FEATURE_SETS)}")
    return feature_set


def feature_names(feature_set: str) -> list[str]:
    """The column names of ``feature_set``, in the order ``compute_features`` returns them."""
    _ensure_declared()
    return list(_SETS[check_set(feature_set)])


def features_of(feature_set: str) -> list[Feature]:
    """The ``Feature`` records of ``feature_set``, in column order."""
    return [REGISTRY[name] for name in feature_names(feature_set)]


def feature_set_version(feature_set: str) -> str:
    """The first 12 hex digits of a SHA-256 over the set's ordered (name, formula, window) declarations.

    It changes when a feature of the set is added, removed, reordered, or its formula text or window changes, so a
    model card can say which definitions its columns had. (The formula is the declared text, not the code.)
    """
    declared = [[f.name, f.formula, f.window] for f in features_of(feature_set)]
    return hashlib.sha256(json.dumps(declared).encode()).hexdigest()[:12]


def all_features() -> list[Feature]:
    """Every declared feature, in declaration order."""
    _ensure_declared()
    return list(REGISTRY.values())


def sets_of(name: str) -> list[str]:
    """The feature sets that contain feature ``name``."""
    _ensure_declared()
    return [s for s in FEATURE_SETS if name in _SETS[s]]


def _ensure_declared() -> None:
    # The declarations live in indicators.py and alpha158.py; importing them fills the registry exactly once.
    from finmlops.features import (
        alpha158,  # noqa: F401  # imports indicators first: one registry order
        fischer_krauss,  # noqa: F401  # after alpha158: fk240 reuses its R1
    )
