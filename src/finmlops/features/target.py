"""The label and the return it is about. Both read the future, so neither ever enters the feature matrix.

A prediction for decision date t uses data up to the close of t, so the first price it can trade at is that of
t+1. The label is therefore about the return a position earns when entered at the execution price of t+1 (the
close or the open) and exited ``horizon`` trading days later at the same kind of price: the traded return. The
model learns that return's direction, the evaluation's IC is computed on it, and the backtest earns it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from finmlops.data.validation import calendar_breaks
from finmlops.settings import Settings

Execution = Literal["close", "open"]
EXECUTION_TIMING: dict[str, str] = {
    "close": "decided on data to the close of t, entered at the close of t+1, held {h} trading day(s) to the close "
    "of t+{exit} (adj_close)",
    "open": "decided on data to the close of t, entered at the open of t+1, held {h} trading day(s) to the open "
    "of t+{exit} (dividend-adjusted opens)",
}


class LabelSpec(BaseModel):
    """What a model predicts and what a position earns: one object for training, evaluation and the backtest.

    ``kind`` ``direction``: 1 when the traded return exceeds ``threshold``, 0 when it is below ``-threshold``
    (at threshold 0: not above 0), unlabelled in between. The traded return is entered at the ``execution``
    price of t+1 and exited ``horizon`` trading days later at the same kind of price.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["direction"] = Field(default="direction", description="What is labelled: the traded return's sign.")
    horizon: int = Field(default=1, ge=1, description="Holding period in trading days, from t+1 to t+1+horizon.")
    threshold: float = Field(
        default=0.0, ge=0.0, description="Dead band as a fraction (0.002 = 0.2 %): |return| <= threshold unlabelled."
    )
    execution: Execution = Field(default="close", description="Entry and exit price: close or open of the day.")

    @property
    def reach(self) -> int:
        """Trading days after t whose price the label reads: ``horizon + 1`` (entry at t+1, exit at t+1+h)."""
        return self.horizon + 1

    @property
    def timing(self) -> str:
        """The label's trade in words."""
        return EXECUTION_TIMING[self.execution].format(h=self.horizon, exit=self.reach)


def label_from_settings(settings: Settings) -> LabelSpec:
    """The label of ``settings``: its ``horizon``, ``threshold`` and ``execution``; the one place settings become a
    label."""
    return LabelSpec(horizon=settings.horizon, threshold=settings.threshold, execution=settings.execution)


def _calendar(universe: Mapping[str, pd.DataFrame]) -> pd.DatetimeIndex:
    """Union of the universe's trading dates, ascending."""
    if not universe:
        raise ValueError("the universe is empty")
    dates = np.unique(np.concatenate([f.index.to_numpy(dtype="datetime64[ns]") for f in universe.values()]))
    return pd.DatetimeIndex(dates, name="date")


def _price(frame: pd.DataFrame, execution: Execution) -> pd.Series:
    """The execution price series: ``adj_close``, or the open adjusted like it (``open * adj_close / close``, so
    that a dividend does not show up as a loss)."""
    adj = frame["adj_close"].astype(np.float64)
    if execution == "open":
        return frame["open"].astype(np.float64) * adj / frame["close"].astype(np.float64)
    return adj


def forward_return(universe: Mapping[str, pd.DataFrame], label: LabelSpec | None = None) -> pd.Series:
    """The label's traded return ``price[t+1+h] / price[t+1] - 1`` indexed by ``(date t, ticker)``, sorted.

    ``price`` is the ``label.execution`` price (see :func:`_price`), ``h`` the label's horizon. ``t+k`` counts
    trading days of the universe calendar: if the ticker has no row on t+1 or t+1+h (a gap, or the end of the
    data) the return is NaN rather than silently spanning a longer period. A gap that every ticker shares (more than
    ``MAX_GAP_BUSINESS_DAYS`` business days between consecutive calendar dates, the validator's gap rule;
    ``finmlops.data.validation.calendar_breaks``) is invisible in the calendar, so it is a break: a return that
    reads a price after it for a decision before it is NaN too.
    """
    label = label or LabelSpec()
    calendar = _calendar(universe)
    segment = pd.Series(np.r_[0, np.cumsum(calendar_breaks(calendar))], index=calendar)
    pieces = []
    for ticker, frame in universe.items():
        span = calendar[(calendar >= frame.index[0]) & (calendar <= frame.index[-1])]
        price = _price(frame, label.execution).reindex(span)
        seg = segment.reindex(span)
        ret = price.shift(-label.reach) / price.shift(-1) - 1.0
        ret = ret.where(seg.shift(-label.reach) == seg).reindex(frame.index)
        pieces.append(
            pd.Series(
                ret.to_numpy(),
                index=pd.MultiIndex.from_arrays(
                    [frame.index.rename("date"), pd.Index([str(ticker).upper()] * len(frame), name="ticker")]
                ),
            )
        )
    return pd.concat(pieces).sort_index().rename(f"ret_{label.execution}_{label.horizon}d")


def make_target(universe: Mapping[str, pd.DataFrame], label: LabelSpec | None = None) -> pd.Series:
    """Direction label indexed by ``(date, ticker)``: 1.0 up, 0.0 down, NaN where unknown or in the dead band.

    With ``label.threshold`` 0 (the default) the label is 1 when the traded return (:func:`forward_return`) is
    above 0 and 0 otherwise, an unchanged price included; it is NaN only where the return is unknown. With a
    threshold > 0 (a fraction, e.g. 0.002 for 0.2 %) up means ``return > threshold``, down means
    ``return < -threshold``, and a move with ``|return| <= threshold`` is too small to call: NaN.
    """
    label = label or LabelSpec()
    ret = forward_return(universe, label)
    values = ret.to_numpy()
    threshold = label.threshold
    # threshold 0: down is "not up" (values <= 0), so only an unknown future stays NaN.
    down = values < -threshold if threshold > 0 else values <= 0.0
    target = np.where(values > threshold, 1.0, np.where(down, 0.0, np.nan))
    return pd.Series(target, index=ret.index, name=f"target_{label.execution}_{label.horizon}d")
