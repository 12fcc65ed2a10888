"""Raw OHLCV inputs: compute a model's features with ``finmlops.features.compute_features`` (the training code).

Tensors ``open``, ``high``, ``low``, ``close``, ``volume`` (and optionally ``adj_close``, default ``close``), each
``[batch, T]``, oldest day first. Each batch row is one ticker's last T trading days. Models whose features read the
market (``market_*`` in the advanced set) also need ``market_return`` ``[batch, T]``: the training universe's
equal-weight daily return on the same days (``finmlops.features.market_returns``). The server cannot rebuild it from
one ticker's history, and a stand-in would be training/serving skew, so without it the request is a 400. The model's
window is the last ``seq_len`` rows of the features, in the card's feature order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from finmlops.features import compute_features
from finmlops.features.registry import features_of
from finmlops.serving.protocol import V2Error

REQUIRED = ("open", "high", "low", "close", "volume")
MARKET = "market_return"
# Synthetic trading days: no feature reads the calendar, only the order of rows.
_END = pd.Timestamp("2000-01-03")


def min_history(feature_set: str, seq_len: int) -> int:
    """Fewest days T that give ``seq_len`` warm rows: the longest feature window plus ``seq_len - 1``."""
    return max(f.window for f in features_of(feature_set)) + seq_len - 1


def raw_windows(inputs: dict[str, np.ndarray], feature_set: str, feature_names: list[str], seq_len: int) -> np.ndarray:
    """``[batch, seq_len, n_features]`` float32 windows from ``[batch, T]`` OHLCV tensors.

    Raises ``V2Error(400)`` naming the tensor, batch row and day of a bad value, or the minimum T.
    """
    missing = [n for n in REQUIRED if n not in inputs]
    if missing:
        raise V2Error(400, f"raw inputs need tensors {', '.join(REQUIRED)}; missing {', '.join(missing)}")
    cross_asset = any(f.cross_asset for f in features_of(feature_set))
    if cross_asset and MARKET not in inputs:
        raise V2Error(
            400,
            f"this model's {feature_set} features read the market: send {MARKET!r} [batch, T], the training "
            "universe's equal-weight daily return on the same days",
        )
    columns = {n: inputs[n] for n in (*REQUIRED, "adj_close", MARKET) if n in inputs}
    shape = inputs["close"].shape
    for name, array in columns.items():
        if array.ndim != 2 or array.shape != shape:
            raise V2Error(
                400,
                f"input {name!r}: every raw tensor must be [batch, T] like 'close' {list(shape)}, "
                f"got {list(array.shape)}",
            )
    batch, days = shape
    if batch == 0:
        raise V2Error(400, "empty batch: 'close' has 0 rows")
    need = min_history(feature_set, seq_len)
    if days < need:
        raise V2Error(
            400,
            f"too short a history: T = {days} days, this model ({feature_set} features, seq_len "
            f"{seq_len}) needs T >= {need}",
        )
    if MARKET in columns and not np.isfinite(columns[MARKET]).all():
        row, day = (int(v) for v in np.argwhere(~np.isfinite(columns[MARKET]))[0])
        raise V2Error(400, f"input {MARKET!r}: row {row}, day {day}: must be finite")
    for name, array in columns.items():
        if name == MARKET:
            continue
        bad = array < 0 if name == "volume" else array <= 0
        if bad.any():
            row, day = (int(v) for v in np.argwhere(bad)[0])
            rule = "non-negative" if name == "volume" else "positive"
            raise V2Error(400, f"input {name!r}: row {row}, day {day}: {array[row, day]} must be {rule}")
    dates = pd.bdate_range(end=_END, periods=days, name="date")
    universe = {
        f"ROW{i:05d}": pd.DataFrame(
            {
                "open": columns["open"][i],
                "high": columns["high"][i],
                "low": columns["low"][i],
                "close": columns["close"][i],
                "adj_close": columns.get("adj_close", columns["close"])[i],
                "volume": columns["volume"][i],
            },
            index=dates,
        )
        for i in range(batch)
    }
    market = {t: pd.Series(columns[MARKET][i], index=dates) for i, t in enumerate(universe)} if cross_asset else None
    try:
        frame = compute_features(universe, feature_set, market=market)
    except ValueError as exc:
        raise V2Error(400, f"raw inputs: {exc}") from None
    values = frame[feature_names].to_numpy(np.float64).reshape(days, batch, len(feature_names))
    windows = np.ascontiguousarray(values[-seq_len:].transpose(1, 0, 2), dtype=np.float32)
    bad = ~np.isfinite(windows)
    if bad.any():
        row, step, j = (int(v) for v in np.argwhere(bad)[0])
        raise V2Error(
            400,
            f"raw inputs: row {row}: feature {feature_names[j]!r} is undefined on day "
            f"{days - seq_len + step} (a constant or zero-range history?)",
        )
    return windows
