"""Vectorised daily backtests of the predictions, net of costs, with the deflated Sharpe ratio.

Timing. A prediction for decision date t uses data up to the close of t, so it can be traded only after that
close: both executions trade on the next day, and the position's return is not the label's ``ret_next`` (t -> t+1),
but the following day's.

* ``execution="close"``: the position is entered at the close of t+1 (a market-on-close order) and held to the
  close of t+2; it earns the adjusted close-to-close return t+1 -> t+2.
* ``execution="open"``: the position is entered at the open of t+1 and held to the open of t+2; it earns the
  open-to-open return of dividend-adjusted opens (``open * adj_close / close``).

Both come from the prices (:func:`execution_returns`); the last dates, whose t+2 price is not in the data yet,
cannot be traded and are dropped.

Portfolio. On each date the N_t tickers with a prediction share the capital equally. ``long_flat``: weight 1/N_t
when ``prob_up > 0.5``, else 0. ``long_short``: +1/N_t or -1/N_t. ``top_k``: +1/(2k) on the k highest
``prob_up``, -1/(2k) on the k lowest (gross 1, net 0). ``buy_hold``, the benchmark: 1/N_t on every ticker.

Costs. Turnover on date t is sum_i |w_t,i - w_{t-1,i}| of target weights (weight drift within a day is ignored;
entering from cash counts). Costs of ``(cost_bps + slippage_bps) / 1e4`` per unit of turnover are subtracted from
that day's return. No borrow fees, financing, taxes or market impact beyond the slippage; risk-free rate 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from finmlops.stats.sharpe import deflated_sharpe, expected_max_sharpe

Execution = Literal["close", "open"]
EXECUTION_TIMING: dict[str, str] = {
    "close": "decided on data to the close of t, entered at the close of t+1, held to the close of t+2 (adj_close)",
    "open": "decided on data to the close of t, entered at the open of t+1, held to the open of t+2 (adjusted opens)",
}
NOT_MODELLED: tuple[str, ...] = (
    "borrow fees for shorts",
    "financing",
    "taxes",
    "market impact beyond the slippage",
    "weight drift within the day",
)
STRATEGIES: tuple[str, ...] = ("long_flat", "long_short", "top_k")
BENCHMARK = "buy_hold"
PERIODS_PER_YEAR = 252


def close_to_close_returns(universe: Mapping[str, pd.DataFrame]) -> pd.Series:
    """Return from the adjusted close of t+1 to the adjusted close of t+2, indexed by ``(date t, ticker)``.

    t+1 and t+2 are the ticker's next two trading days. NaN where t+2 is not in the data.
    """
    parts = []
    for ticker, frame in universe.items():
        ret = frame["adj_close"].shift(-2) / frame["adj_close"].shift(-1) - 1.0
        parts.append(pd.DataFrame({"date": frame.index, "ticker": ticker, "ret": ret.to_numpy()}))
    return pd.concat(parts, ignore_index=True).set_index(["date", "ticker"])["ret"]


def open_to_open_returns(universe: Mapping[str, pd.DataFrame]) -> pd.Series:
    """Return from the adjusted open of t+1 to the adjusted open of t+2, indexed by ``(date t, ticker)``.

    The adjusted open is ``open * adj_close / close`` so that dividends do not show up as losses. NaN where t+2
    is not in the data.
    """
    parts = []
    for ticker, frame in universe.items():
        adj_open = frame["open"] * frame["adj_close"] / frame["close"]
        ret = adj_open.shift(-2) / adj_open.shift(-1) - 1.0
        parts.append(pd.DataFrame({"date": frame.index, "ticker": ticker, "ret": ret.to_numpy()}))
    return pd.concat(parts, ignore_index=True).set_index(["date", "ticker"])["ret"]


def execution_returns(universe: Mapping[str, pd.DataFrame], execution: Execution) -> pd.Series:
    """The return a position decided on date t earns with ``execution`` (see the module docstring), indexed by
    ``(date t, ticker)``."""
    if execution == "close":
        return close_to_close_returns(universe)
    if execution == "open":
        return open_to_open_returns(universe)
    raise ValueError(f"unknown execution {execution!r}; use close or open")


def target_weights(rows: pd.DataFrame, strategy: str, top_k: int = 2) -> pd.DataFrame:
    """Target weights, a date x ticker frame (0 where a ticker has no prediction), from one model's rows.

    ``rows`` has columns ``date, ticker, prob_up``. See the module docstring for each strategy's rule.
    """
    prob = rows.pivot(index="date", columns="ticker", values="prob_up").sort_index()
    present = prob.notna()
    n = present.sum(axis=1).to_numpy()[:, None].astype(float)
    if strategy == BENCHMARK:
        w = present / n
    elif strategy == "long_flat":
        w = (prob > 0.5) / n
    elif strategy == "long_short":
        w = (np.where(prob > 0.5, 1.0, -1.0) * present) / n
    elif strategy == "top_k":
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        # Ties broken by ticker order (columns are sorted), so the result does not depend on row order.
        rank = prob.rank(axis=1, ascending=False, method="first")
        k = np.minimum(top_k, np.floor(n / 2))  # a ticker is never both long and short
        w = ((rank <= k).astype(float) - (rank > n - k).astype(float)) / np.where(k > 0, 2 * k, np.inf)
    else:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {', '.join((*STRATEGIES, BENCHMARK))}")
    return pd.DataFrame(w, index=prob.index, columns=prob.columns).fillna(0.0).astype(float)


def simulate(weights: pd.DataFrame, returns: pd.DataFrame, *, cost_bps: float, slippage_bps: float) -> pd.DataFrame:
    """Daily portfolio path: ``gross``, ``turnover``, ``cost``, ``net`` returns (fractions) and gross ``exposure``.

    ``weights`` and ``returns`` are aligned date x ticker frames; a held ticker must have a return.
    """
    if cost_bps < 0 or slippage_bps < 0:
        raise ValueError(f"costs must be >= 0 bps, got cost {cost_bps}, slippage {slippage_bps}")
    returns = returns.reindex(index=weights.index, columns=weights.columns)
    held = weights.ne(0.0)
    if (held & returns.isna()).any().any():
        date, ticker = held.where(returns.isna()).stack().loc[lambda s: s.astype(bool)].index[0]
        raise ValueError(f"no return for held position {ticker} on {pd.Timestamp(date):%Y-%m-%d}")
    gross = (weights * returns.fillna(0.0)).sum(axis=1)
    turnover = weights.diff().abs().sum(axis=1)
    turnover.iloc[0] = weights.iloc[0].abs().sum()
    cost = turnover * (cost_bps + slippage_bps) / 1e4
    return pd.DataFrame(
        {"gross": gross, "turnover": turnover, "cost": cost, "net": gross - cost, "exposure": weights.abs().sum(axis=1)}
    )


def performance(daily: pd.DataFrame, periods: int = PERIODS_PER_YEAR) -> dict[str, float]:
    """Summary of a :func:`simulate` path; returns and volatility annualised with ``periods`` days a year.

    ``sharpe`` and ``sortino`` are annualised, risk-free rate 0; ``sharpe_daily`` is the per-day ratio the
    deflated Sharpe ratio uses. ``max_drawdown`` is negative (peak-to-trough of the equity curve starting at 1).
    ``hit_rate`` counts days with positive net return among days with exposure.
    """
    net = daily["net"].to_numpy(dtype=float)
    n = len(net)
    equity = np.cumprod(1.0 + net)
    peak = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
    std = float(np.std(net, ddof=1)) if n > 1 else float("nan")
    downside = float(np.sqrt(np.mean(np.minimum(net, 0.0) ** 2)))
    active = daily["exposure"].to_numpy() > 0
    sharpe_daily = float(net.mean() / std) if std > 0 else float("nan")
    return {
        "days": n,
        "total_return": float(equity[-1] - 1.0),
        "annual_return": float(equity[-1] ** (periods / n) - 1.0) if equity[-1] > 0 else -1.0,
        "annual_volatility": std * math.sqrt(periods),
        "sharpe": sharpe_daily * math.sqrt(periods),
        "sharpe_daily": sharpe_daily,
        "sortino": float(net.mean() / downside * math.sqrt(periods)) if downside > 0 else float("nan"),
        "max_drawdown": float((equity / peak - 1.0).min()),
        "turnover_daily": float(daily["turnover"].mean()),
        "turnover_annual": float(daily["turnover"].mean() * periods),
        "costs_total": float(daily["cost"].sum()),
        # Costs in units of starting capital: each day's cost fraction times the equity it was charged on.
        "costs_paid": float((np.concatenate([[1.0], equity[:-1]]) * daily["cost"].to_numpy()).sum()),
        "hit_rate": float((net[active] > 0).mean()) if active.any() else float("nan"),
        "exposure": float(daily["exposure"].mean()),
        "skew": float(stats.skew(net)) if n > 2 else float("nan"),
        "kurtosis": float(stats.kurtosis(net, fisher=False)) if n > 3 else float("nan"),
    }


@dataclass(frozen=True)
class BacktestConfig:
    """One backtest run: ``strategies`` for every model, costs in basis points of turnover, timing, capital."""

    strategies: tuple[str, ...] = STRATEGIES
    cost_bps: float = 5.0
    slippage_bps: float = 0.0
    execution: Execution = "close"
    top_k: int = 2
    capital: float = 100_000.0


def priced_rows(rows: pd.DataFrame, returns: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One model's prediction ``rows`` (columns ``date, ticker, prob_up``) on the dates where every predicted ticker
    has a return in ``returns`` (from :func:`execution_returns`), and the date x ticker frame of those returns.

    The last dates of the data, whose exit price is unknown, drop out, for every strategy alike."""
    ret = returns.reindex(pd.MultiIndex.from_frame(rows[["date", "ticker"]])).to_numpy()
    earned = rows.assign(ret=ret).pivot(index="date", columns="ticker", values="ret").sort_index()
    prob = rows.pivot(index="date", columns="ticker", values="prob_up").sort_index()
    usable = ~(prob.notna() & earned.isna()).any(axis=1)
    return rows.loc[rows["date"].isin(usable.index[usable])], earned.loc[usable]


def backtest_paths(preds: pd.DataFrame, config: BacktestConfig, returns: pd.Series) -> pd.DataFrame:
    """The daily path behind :func:`run_backtest`'s figures, one row per decision date t and book, for charts.

    Long frame with the columns ``model``, ``strategy``, ``date`` and :func:`simulate`'s ``gross``, ``turnover``,
    ``cost``, ``net`` and ``exposure`` (fractions), plus ``equity`` (value of 1 invested, net of costs): every model
    x ``config.strategies``, and the equal-weight benchmark once, as model ``buy_hold``, strategy ``benchmark``.
    ``returns`` as for :func:`run_backtest`. Each book's last ``equity`` is 1 + its ``total_return``.
    """
    costs = {"cost_bps": config.cost_bps, "slippage_bps": config.slippage_bps}
    parts = []
    for model, rows in preds.groupby("model", sort=True):
        rows, earned = priced_rows(rows, returns)
        books = [(str(model), s, target_weights(rows, s, config.top_k)) for s in config.strategies]
        if not parts:  # every model is scored on the same rows: one benchmark serves all
            books.insert(0, (BENCHMARK, "benchmark", target_weights(rows, BENCHMARK)))
        for name, strategy, weights in books:
            daily = simulate(weights, earned, **costs)
            daily["equity"] = (1.0 + daily["net"]).cumprod()
            parts.append(daily.rename_axis("date").reset_index().assign(model=name, strategy=strategy))
    columns = ["model", "strategy", "date", "gross", "turnover", "cost", "net", "exposure", "equity"]
    return pd.concat(parts, ignore_index=True)[columns]


def run_backtest(
    preds: pd.DataFrame,
    config: BacktestConfig,
    *,
    returns: pd.Series | None = None,
    prior_trials: Sequence[float] = (),
) -> dict[str, Any]:
    """Backtest every model x strategy of a validated predictions frame against equal-weight buy-and-hold.

    ``returns`` is ``execution_returns(universe, config.execution)``, the prices' answer to what each decision
    earns. Dates on which a predicted ticker has no such return (the last dates of the data, whose t+2 price is
    unknown) are dropped for every configuration alike. ``prior_trials`` are the per-period Sharpe ratios of
    configurations tried earlier on the same predictions; with this run's they set the trial count and variance of
    the deflated Sharpe ratio.
    Returns ``{"config", "benchmark", "results": {model: {strategy: performance + dsr}}, "trials", "business"}``.
    """
    if returns is None:
        raise ValueError(f"execution {config.execution!r} needs prices: pass execution_returns(universe, execution)")
    results: dict[str, dict[str, Any]] = {}
    benchmark: dict[str, Any] | None = None
    for model, rows in preds.groupby("model", sort=True):
        rows, earned = priced_rows(rows, returns)
        costs = {"cost_bps": config.cost_bps, "slippage_bps": config.slippage_bps}
        if benchmark is None:  # every model is scored on the same rows, so one benchmark serves all
            benchmark = performance(simulate(target_weights(rows, BENCHMARK), earned, **costs))
        results[str(model)] = {
            s: performance(simulate(target_weights(rows, s, config.top_k), earned, **costs)) for s in config.strategies
        }
    sharpes = [r["sharpe_daily"] for by_s in results.values() for r in by_s.values()]
    # Every configuration tried counts, even one whose Sharpe is undefined (a book that never trades).
    n_trials = max(len(prior_trials) + len(sharpes), 1)
    finite = [s for s in (*prior_trials, *sharpes) if math.isfinite(s)]
    variance = float(np.var(finite, ddof=1)) if len(finite) > 1 else 0.0
    for by_s in results.values():
        for r in by_s.values():
            r["deflated_sharpe"] = deflated_sharpe(
                r["sharpe_daily"],
                n_obs=r["days"],
                skew=r["skew"],
                kurtosis=r["kurtosis"],
                n_trials=n_trials,
                sharpe_variance=variance,
            )
    assert benchmark is not None
    return {
        "config": {**config.__dict__, "strategies": list(config.strategies)},
        "benchmark": benchmark,
        "results": results,
        "trials": {
            "this_run": len(sharpes),
            "prior": len(prior_trials),
            "total": n_trials,
            "sharpe_daily_variance": variance,
            "expected_max_sharpe_daily": expected_max_sharpe(n_trials, variance),
        },
        "business": business_impact(results, benchmark, config),
    }


def business_impact(
    results: Mapping[str, Mapping[str, Mapping[str, float]]], benchmark: Mapping[str, float], config: BacktestConfig
) -> dict[str, Any]:
    """Money terms for each model x strategy, computed only from the backtest, with the assumptions they rest on.

    The end value of ``config.capital``, its profit against buy-and-hold, the costs paid (each day's cost on that
    day's equity) and whether the deflated Sharpe ratio clears 0.95; ``assumptions`` states the costs, the execution
    timing, the period and what is not modelled, so the figures are not read without them.
    """
    capital = config.capital
    bench_end = capital * (1 + benchmark["total_return"])
    rows = {
        f"{model}/{strategy}": {
            "end_value": capital * (1 + r["total_return"]),
            "excess_vs_buy_hold": capital * (1 + r["total_return"]) - bench_end,
            "costs_paid": capital * r["costs_paid"],
            "dsr_above_0_95": bool(r.get("deflated_sharpe", float("nan")) > 0.95),
        }
        for model, by_s in results.items()
        for strategy, r in by_s.items()
    }
    assumptions = {
        "cost_bps_per_unit_turnover": config.cost_bps,
        "slippage_bps_per_unit_turnover": config.slippage_bps,
        "execution": config.execution,
        "timing": EXECUTION_TIMING[config.execution],
        "top_k": config.top_k,
        "trading_days": benchmark["days"],
        "risk_free_rate": 0.0,
        "rebalancing": "to the target weights every trading day, returns compounded",
        "not_modelled": list(NOT_MODELLED),
    }
    return {"capital": capital, "buy_hold_end_value": bench_end, "assumptions": assumptions, "by_config": rows}
