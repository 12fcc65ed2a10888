"""The field's two reference books: Fischer & Krauss's long top-k / short bottom-k and Qlib's TopkDropout.

Both read one model's prediction rows (``date, ticker, prob_up, ret_next``) and return the daily path of
:func:`finmlops.evaluation.backtest.simulate` (``gross, turnover, cost, net, exposure``, fractions of capital).

``fk_long_short`` (Fischer & Krauss 2018; Krauss, Do & Huck 2017): each day, +1/k on the k highest scores and
-1/k on the k lowest (1 dollar long and 1 dollar short per dollar of capital, so the day's gross return is the mean
return of the longs minus the mean return of the shorts). Costs are per half-turn: a half-turn is one side of a
round trip (one buy or one sell), and a unit of turnover sum_i |w_t,i - w_t-1,i| is one unit of capital traded on
one side, so ``cost_bps`` per unit of turnover IS the cost per half-turn (F&K: 5 bps). A full daily rotation of
both legs is 4 units of turnover (close 1 long, close 1 short, open 1 long, open 1 short), i.e. 4 half-turns,
20 bps a day at 5 bps. Dates with fewer than 2k scored tickers are flat (counted in ``flat_days``).

``topk_dropout`` (Qlib's ``TopkDropoutStrategy``, method_sell "bottom", method_buy "top", hold_thresh 1): holdings
are not rebalanced. On each date: ``last`` = the held tickers by score (descending); ``today`` = the best
``n_drop + topk - len(last)`` tickers not held; ``comb`` = last and today by score; sell the held tickers among the
``n_drop`` worst of ``comb`` (never a held ticker that beats the candidates); buy the first
``len(sell) + topk - len(last)`` of ``today``, each with ``cash * risk_degree / len(buy)``. A sale pays
``close_cost`` of its value, a purchase ``open_cost`` on top of its value (Qlib: 0.15 % and 0.05 %). Held values
then grow with their ``ret_next``; cash earns 0. Not modelled from Qlib's exchange: the minimum cost per order
(``min_cost``), round lots, and price limits (Chinese-market rules). A held ticker with no prediction on a date
(it left the universe, e.g. no next price) is sold at that date's decision, counted in ``forced_sells``: Qlib would
rank it last and sell it if among the n_drop worst, else keep an unpriced position, which this backtest cannot value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

FK_STRATEGY = "fk_long_short"
TOPK_DROPOUT = "topk_dropout"
REFERENCE_STRATEGIES: tuple[str, ...] = (FK_STRATEGY, TOPK_DROPOUT)


class StrategySkipped(ValueError):
    """The universe is too small for the strategy's k (the message says by how much)."""


@dataclass(frozen=True)
class TopkDropoutConfig:
    """Qlib's benchmark settings: ``topk`` 50 held, ``n_drop`` 5 replaced a day, costs as fractions of the value
    traded (open 0.0005, close 0.0015), ``risk_degree`` the share of cash spent (Qlib's default 0.95)."""

    topk: int = 50
    n_drop: int = 5
    open_cost: float = 0.0005
    close_cost: float = 0.0015
    risk_degree: float = 0.95

    def __post_init__(self) -> None:
        if self.topk < 1 or not 1 <= self.n_drop <= self.topk:
            # Qlib's get_last_n(comb, 0) is list(comb)[-0:], the whole list: n_drop 0 would sell everything.
            raise ValueError(f"need topk >= 1 and 1 <= n_drop <= topk, got topk {self.topk}, n_drop {self.n_drop}")
        if not (0 <= self.open_cost < 1 and 0 <= self.close_cost < 1 and 0 < self.risk_degree <= 1):
            raise ValueError("costs must be in [0, 1) and risk_degree in (0, 1]")


def _scores(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.pivot(index="date", columns="ticker", values="prob_up").sort_index().sort_index(axis=1)


def fk_weights(rows: pd.DataFrame, k: int = 10) -> tuple[pd.DataFrame, int]:
    """F&K target weights (date x ticker, +1/k top k, -1/k bottom k, 0 elsewhere) and the number of flat days
    (fewer than 2k scored tickers). Ties broken by ticker order. Raises :class:`StrategySkipped` when no date has
    2k tickers."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    prob = _scores(rows)
    n = prob.notna().sum(axis=1).to_numpy()[:, None]
    if n.max() < 2 * k:
        raise StrategySkipped(
            f"{FK_STRATEGY} with k={k} needs {2 * k} tickers on a date (k long, k short); the universe has at most "
            f"{int(n.max())}: skipped (use a larger universe, e.g. sp500, or a smaller k)"
        )
    rank = prob.rank(axis=1, ascending=False, method="first").to_numpy()
    ok = n >= 2 * k
    w = (((rank <= k).astype(float) - (rank > n - k).astype(float)) / k) * ok
    w = np.nan_to_num(w)
    return pd.DataFrame(w, index=prob.index, columns=prob.columns), int((~ok).sum())


def topk_dropout_step(held: list[str], score: pd.Series, topk: int, n_drop: int) -> tuple[list[str], list[str]]:
    """One decision of Qlib's TopkDropoutStrategy: ``(sell, buy)`` ticker lists from the ``held`` tickers (all with
    a score) and the date's ``score`` (ticker -> score). Sorting is by score descending, ties by ticker name."""
    order = score.sort_index().sort_values(ascending=False, kind="stable")
    last = [t for t in order.index if t in set(held)]
    today = [t for t in order.index if t not in set(held)][: max(n_drop + topk - len(last), 0)]
    comb = [t for t in order.index if t in set(last) | set(today)]
    worst = set(comb[-n_drop:])
    sell = [t for t in last if t in worst]
    buy = today[: max(len(sell) + topk - len(last), 0)]
    return sell, buy


def topk_dropout_path(rows: pd.DataFrame, config: TopkDropoutConfig) -> tuple[pd.DataFrame, int]:
    """Daily path of Qlib's TopkDropout on one model's rows (module docstring) and the count of forced sells.

    ``gross`` is ``net`` plus the day's costs as a fraction of the previous equity; ``turnover`` is the value bought
    and sold over the previous equity; ``exposure`` the value held after trading over the previous equity.
    Raises :class:`StrategySkipped` when no date has ``topk`` scored tickers.
    """
    prob = _scores(rows)
    ret = rows.pivot(index="date", columns="ticker", values="ret_next").reindex_like(prob)
    n_max = int(prob.notna().sum(axis=1).max())
    if n_max < config.topk:
        raise StrategySkipped(
            f"{TOPK_DROPOUT} with topk={config.topk} needs {config.topk} tickers on a date; the universe has at most "
            f"{n_max}: skipped (use a larger universe, e.g. sp500)"
        )
    cash, holdings, forced = 1.0, {}, 0
    out = []
    for date in prob.index:
        score = prob.loc[date].dropna()
        equity0 = cash + sum(holdings.values())
        cost = traded = 0.0
        for t in [t for t in holdings if t not in score.index]:
            value = holdings.pop(t)
            cash += value * (1 - config.close_cost)
            cost += value * config.close_cost
            traded += value
            forced += 1
        sell, buy = topk_dropout_step(list(holdings), score, config.topk, config.n_drop)
        for t in sell:
            value = holdings.pop(t)
            cash += value * (1 - config.close_cost)
            cost += value * config.close_cost
            traded += value
        each = cash * config.risk_degree / len(buy) if buy else 0.0
        for t in buy:
            holdings[t] = each
            cash -= each * (1 + config.open_cost)
            cost += each * config.open_cost
            traded += each
        exposure = sum(holdings.values()) / equity0
        r = ret.loc[date]
        holdings = {t: v * (1 + float(r[t])) for t, v in holdings.items()}
        equity1 = cash + sum(holdings.values())
        net = equity1 / equity0 - 1
        out.append((date, net + cost / equity0, traded / equity0, cost / equity0, net, exposure))
    path = pd.DataFrame(out, columns=["date", "gross", "turnover", "cost", "net", "exposure"]).set_index("date")
    return path, forced
