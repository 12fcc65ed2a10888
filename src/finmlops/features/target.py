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
LabelKind = Literal["direction", "cross_sectional", "excess"]
LABEL_KINDS: tuple[str, ...] = ("direction", "cross_sectional", "excess")
LABEL_MEANING: dict[str, str] = {
    "direction": "P(the traded return > threshold)",
    "cross_sectional": "P(the traded return > the date's cross-sectional median of the universe's traded returns "
    "+ threshold)",
    "excess": "P(the traded return - the equal-weight universe's traded return > threshold)",
}
EXECUTION_TIMING: dict[str, str] = {
    "close": "decided on data to the close of t, entered at the close of t+1, held {h} trading day(s) to the close "
    "of t+{exit} (adj_close)",
    "open": "decided on data to the close of t, entered at the open of t+1, held {h} trading day(s) to the open "
    "of t+{exit} (dividend-adjusted opens)",
}


class LabelSpec(BaseModel):
    """What a model predicts and what a position earns: one object for training, evaluation and the backtest.

    The traded return is entered at the ``execution`` price of t+1 and exited ``horizon`` trading days later at the
    same kind of price (:func:`forward_return`). ``kind`` says what is compared with ``threshold``
    (:func:`relative_return`):

    - ``direction``: the traded return itself. 1 above ``threshold``, 0 below ``-threshold`` (at threshold 0: not
      above 0), unlabelled in between.
    - ``cross_sectional``: the traded return minus that date's median over the universe's tickers with a known
      traded return (Fischer & Krauss 2018). 1 above the median (+ threshold), 0 below it (- threshold); a return
      equal to the median is unlabelled, so that half the labelled stocks of a date are 1 and half 0 (exactly,
      unless several stocks tie at the median).
    - ``excess``: the traded return minus the equal-weight mean of the universe's known traded returns that date
      (the return of an equal-weight universe portfolio). 1 above ``threshold``, 0 below ``-threshold`` (at
      threshold 0: not above 0).

    The relative kinds need at least two tickers with a known return on the date, else the label is NaN. The
    model's output is always ``prob_up``: :data:`LABEL_MEANING` says what it is the probability of per kind.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: LabelKind = Field(
        default="direction",
        description="What is labelled: the traded return's sign (direction), beating the date's median "
        "(cross_sectional) or beating the equal-weight universe (excess).",
    )
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

    @property
    def meaning(self) -> str:
        """What ``prob_up`` is the probability of, in words."""
        return LABEL_MEANING[self.kind]


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


def relative_return(universe: Mapping[str, pd.DataFrame], label: LabelSpec | None = None) -> pd.Series:
    """The quantity ``label.kind`` compares with the threshold, indexed by ``(date, ticker)``, sorted (fraction).

    ``direction``: the traded return (:func:`forward_return`); ``cross_sectional``: the traded return minus the
    median of that date's known traded returns; ``excess``: minus their equal-weight mean. NaN where the traded
    return is unknown, and for the relative kinds on a date with fewer than two known returns.
    """
    label = label or LabelSpec()
    ret = forward_return(universe, label)
    if label.kind == "direction":
        return ret
    by_date = ret.groupby(level="date", sort=False)
    centre = by_date.transform("median" if label.kind == "cross_sectional" else "mean")
    known = by_date.transform("count")
    rel = (ret - centre).where(known >= 2)
    return rel.rename(f"{label.kind}_{ret.name}")


def make_target(universe: Mapping[str, pd.DataFrame], label: LabelSpec | None = None) -> pd.Series:
    """The label indexed by ``(date, ticker)``: 1.0, 0.0, or NaN where unknown or in the dead band.

    ``x`` is :func:`relative_return` (the traded return itself for ``direction``). With ``label.threshold`` 0
    (the default) the label is 1 when ``x > 0`` and 0 otherwise, ``x = 0`` included, except for
    ``cross_sectional``, where a return equal to the date's median is NaN (neither half; this keeps the label
    balanced). With a threshold > 0 (a fraction, e.g. 0.002 for 0.2 %) 1 means ``x > threshold``, 0 means
    ``x < -threshold``, and ``|x| <= threshold`` is too small to call: NaN. NaN also where ``x`` is unknown.
    """
    label = label or LabelSpec()
    rel = relative_return(universe, label)
    values = rel.to_numpy()
    threshold = label.threshold
    # threshold 0: down is "not up" (values <= 0), so only an unknown future stays NaN; a cross-sectional tie with
    # the median belongs to neither half.
    tie_is_down = label.kind != "cross_sectional"
    down = values < -threshold if threshold > 0 else (values <= 0.0 if tie_is_down else values < 0.0)
    target = np.where(values > threshold, 1.0, np.where(down, 0.0, np.nan))
    prefix = "target" if label.kind == "direction" else f"target_{label.kind}"
    return pd.Series(target, index=rel.index, name=f"{prefix}_{label.execution}_{label.horizon}d")
