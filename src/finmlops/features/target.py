"""The label and the realised forward return. Both read the future, so neither ever enters the feature matrix."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from finmlops.data.validation import calendar_breaks


def _calendar(universe: Mapping[str, pd.DataFrame]) -> pd.DatetimeIndex:
    """Union of the universe's trading dates, ascending."""
    if not universe:
        raise ValueError("the universe is empty")
    dates = np.unique(np.concatenate([f.index.to_numpy(dtype="datetime64[ns]") for f in universe.values()]))
    return pd.DatetimeIndex(dates, name="date")


def forward_return(universe: Mapping[str, pd.DataFrame], horizon: int = 1) -> pd.Series:
    """Realised simple return ``adj_close[t+h] / adj_close[t] - 1`` indexed by ``(date, ticker)``, sorted.

    ``t+h`` counts trading days of the universe calendar: if the ticker has no row on that day (a gap, or the end
    of the data) the return is NaN rather than silently spanning a longer period. A gap that every ticker shares
    (more than ``MAX_GAP_BUSINESS_DAYS`` business days between consecutive calendar dates, the validator's gap
    rule; ``finmlops.data.validation.calendar_breaks``) is invisible in the calendar, so it is a break: a return
    from before it to after it is NaN too.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1 trading day, got {horizon}")
    calendar = _calendar(universe)
    segment = pd.Series(np.r_[0, np.cumsum(calendar_breaks(calendar))], index=calendar)
    pieces = []
    for ticker, frame in universe.items():
        span = calendar[(calendar >= frame.index[0]) & (calendar <= frame.index[-1])]
        adj = frame["adj_close"].astype(np.float64).reindex(span)
        seg = segment.reindex(span)
        ret = (adj.shift(-horizon) / adj - 1.0).where(seg.shift(-horizon) == seg).reindex(frame.index)
        pieces.append(
            pd.Series(
                ret.to_numpy(),
                index=pd.MultiIndex.from_arrays(
                    [frame.index.rename("date"), pd.Index([str(ticker).upper()] * len(frame), name="ticker")]
                ),
            )
        )
    return pd.concat(pieces).sort_index().rename(f"forward_return_{horizon}d")


def make_target(universe: Mapping[str, pd.DataFrame], horizon: int = 1, threshold: float = 0.0) -> pd.Series:
    """Direction label indexed by ``(date, ticker)``: 1.0 up, 0.0 down, NaN where unknown or in the dead band.

    With ``threshold`` 0 (the default) the label is 1 when ``adj_close[t+h] > adj_close[t]`` and 0 otherwise, an
    unchanged price included; it is NaN only where the future price is unknown (``forward_return`` is NaN). With
    ``threshold`` > 0 (a fraction, e.g. 0.002 for 0.2 %) up means ``forward_return > threshold``, down means
    ``forward_return < -threshold``, and a move with ``|forward_return| <= threshold`` is too small to call: NaN.
    """
    if not threshold >= 0.0:
        raise ValueError(f"threshold must be a non-negative fraction, got {threshold}")
    ret = forward_return(universe, horizon)
    values = ret.to_numpy()
    # threshold 0: down is "not up" (values <= 0), so only an unknown future stays NaN.
    down = values < -threshold if threshold > 0 else values <= 0.0
    target = np.where(values > threshold, 1.0, np.where(down, 0.0, np.nan))
    return pd.Series(target, index=ret.index, name=f"target_{horizon}d")
