"""Vectorised backtests of the predictions, net of costs, with the deflated Sharpe ratio.

What is traded is what is labelled. A prediction for decision date t uses data up to the close of t, and its label
(``finmlops.features.LabelSpec``) is about the return of a position entered at the execution price of t+1 (the
close, a market-on-close order, or the open) and exited ``horizon`` trading days later at the same kind of price.
That traded return is the predictions frame's ``ret_next`` (``finmlops.features.forward_return``), and the backtest
earns exactly it: no second notion of "the return" exists. Rows whose exit price is not in the data have no label
and so no prediction row.

Rebalancing. With horizon 1 the book is rebalanced on every decision date. With horizon h > 1 a position is held
h days, so the book is rebalanced on every h-th decision date (the first, the (h+1)-th, ...) and each period earns
the h-day traded return; returns and volatility are annualised with 252 / h periods a year. Overlapping positions
are not modelled.

Portfolio. On each date the N_t tickers with a prediction share the capital equally. ``long_flat``: weight 1/N_t
when ``prob_up > 0.5``, else 0. ``long_short``: +1/N_t or -1/N_t. ``top_k``: +1/(2k) on the k highest
``prob_up``, -1/(2k) on the k lowest (gross 1, net 0). ``buy_hold``, the benchmark: 1/N_t on every ticker.

Costs. Turnover on rebalancing date t is sum_i |w_t,i - w_{t-1,i}| of target weights (weight drift within a period
is ignored; entering from cash counts). Costs of ``(cost_bps + slippage_bps) / 1e4`` per unit of turnover are
subtracted from that period's return. No borrow fees, financing, taxes or market impact beyond the slippage;
risk-free rate 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from finmlops.evaluation.results import (
    Assumptions,
    Backtest,
    BacktestSettings,
    BookMoney,
    BookPerformance,
    Business,
    Performance,
    TopkDropoutSettings,
    Trials,
)
from finmlops.evaluation.strategies import (
    FK_STRATEGY,
    REFERENCE_STRATEGIES,
    TOPK_DROPOUT,
    StrategySkipped,
    TopkDropoutConfig,
    fk_weights,
    topk_dropout_path,
)
from finmlops.features.target import Execution, LabelSpec
from finmlops.stats.sharpe import deflated_sharpe, expected_max_sharpe

NOT_MODELLED: tuple[str, ...] = (
    "borrow fees for shorts",
    "financing",
    "taxes",
    "market impact beyond the slippage",
    "weight drift within the day",
)
STRATEGIES: tuple[str, ...] = ("long_flat", "long_short", "top_k")
# Opt-in (``--strategy``): the papers' books, see finmlops.evaluation.strategies.
ALL_STRATEGIES: tuple[str, ...] = (*STRATEGIES, *REFERENCE_STRATEGIES)
BENCHMARK = "buy_hold"
PERIODS_PER_YEAR = 252


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


def performance(daily: pd.DataFrame, periods: float = PERIODS_PER_YEAR) -> Performance:
    """Summary of a :func:`simulate` path; returns and volatility annualised with ``periods`` periods a year.

    A period is a trading day with horizon 1, and ``horizon`` trading days otherwise: ``days``, ``sharpe_daily``,
    ``turnover_daily`` and ``hit_rate`` are then per period (the names are kept for horizon 1, the default).

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
    return Performance(
        days=n,
        total_return=float(equity[-1] - 1.0),
        annual_return=float(equity[-1] ** (periods / n) - 1.0) if equity[-1] > 0 else -1.0,
        annual_volatility=std * math.sqrt(periods),
        sharpe=sharpe_daily * math.sqrt(periods),
        sharpe_daily=sharpe_daily,
        sortino=float(net.mean() / downside * math.sqrt(periods)) if downside > 0 else float("nan"),
        max_drawdown=float((equity / peak - 1.0).min()),
        turnover_daily=float(daily["turnover"].mean()),
        turnover_annual=float(daily["turnover"].mean() * periods),
        costs_total=float(daily["cost"].sum()),
        # Costs in units of starting capital: each day's cost fraction times the equity it was charged on.
        costs_paid=float((np.concatenate([[1.0], equity[:-1]]) * daily["cost"].to_numpy()).sum()),
        hit_rate=float((net[active] > 0).mean()) if active.any() else float("nan"),
        exposure=float(daily["exposure"].mean()),
        skew=float(stats.skew(net)) if n > 2 else float("nan"),
        kurtosis=float(stats.kurtosis(net, fisher=False)) if n > 3 else float("nan"),
    )


@dataclass(frozen=True)
class BacktestConfig:
    """One backtest run: ``strategies`` for every model, costs in basis points of turnover, capital.

    ``execution``: None trades at the predictions' label's execution price; "close" or "open" must equal it (the
    label decides what is traded: to trade at the open, evaluate with an open-execution label)."""

    strategies: tuple[str, ...] = STRATEGIES
    cost_bps: float = 5.0
    slippage_bps: float = 0.0
    execution: Execution | None = None
    top_k: int = 2
    capital: float = 100_000.0
    fk_k: int = 10
    topk_dropout: TopkDropoutConfig = field(default_factory=TopkDropoutConfig)


def book_path(rows: pd.DataFrame, earned: pd.DataFrame, strategy: str, config: BacktestConfig) -> pd.DataFrame:
    """The daily :func:`simulate` path of one ``strategy`` for one model's priced rows (:func:`priced_rows`).

    ``fk_long_short`` pays ``cost_bps + slippage_bps`` per half-turn (per unit of turnover); ``topk_dropout`` pays
    its own open/close costs (``config.topk_dropout``). ``attrs["note"]`` says how many days were flat or positions
    force-sold. Raises ``StrategySkipped`` when the universe is smaller than the strategy's k.
    """
    costs = {"cost_bps": config.cost_bps, "slippage_bps": config.slippage_bps}
    if strategy == FK_STRATEGY:
        weights, flat = fk_weights(rows, config.fk_k)
        daily = simulate(weights, earned, **costs)
        daily.attrs["note"] = f"{flat} flat days (fewer than {2 * config.fk_k} tickers)" if flat else ""
        return daily
    if strategy == TOPK_DROPOUT:
        daily, forced = topk_dropout_path(rows, config.topk_dropout)
        daily.attrs["note"] = f"{forced} positions sold because their ticker had no prediction" if forced else ""
        return daily
    return simulate(target_weights(rows, strategy, config.top_k), earned, **costs)


def before_costs(daily: pd.DataFrame) -> pd.DataFrame:
    """The same path with every cost set to 0 (``net`` = ``gross``): the "before transaction costs" figures."""
    return daily.assign(net=daily["gross"], cost=0.0)


def priced_rows(rows: pd.DataFrame, horizon: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One model's prediction ``rows`` (columns ``date, ticker, prob_up, ret_next``) on its rebalancing dates
    (every ``horizon``-th decision date, the first included), and the date x ticker frame of their traded returns
    ``ret_next`` (NaN where a ticker has no prediction)."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    dates = np.unique(rows["date"].to_numpy())[::horizon]
    rows = rows.loc[rows["date"].isin(dates)]
    earned = rows.pivot(index="date", columns="ticker", values="ret_next").sort_index()
    return rows, earned


def check_execution(config: BacktestConfig, label: LabelSpec) -> None:
    """Raise ``ValueError`` when ``config.execution`` asks for a trade other than the label's."""
    if config.execution is not None and config.execution != label.execution:
        raise ValueError(
            f"the predictions are labelled for execution at the {label.execution} ({label.timing}); a backtest at the "
            f"{config.execution} would trade another return than the one the models learnt and were scored on: "
            f"set execution: {config.execution} (FINMLOPS_EXECUTION) and rerun `finmlops evaluate`"
        )


def backtest_paths(preds: pd.DataFrame, config: BacktestConfig, label: LabelSpec) -> pd.DataFrame:
    """The daily path behind :func:`run_backtest`'s figures, one row per decision date t and book, for charts.

    Long frame with the columns ``model``, ``strategy``, ``date`` and :func:`simulate`'s ``gross``, ``turnover``,
    ``cost``, ``net`` and ``exposure`` (fractions), plus ``equity`` (value of 1 invested, net of costs): every model
    x ``config.strategies``, and the equal-weight benchmark once, as model ``buy_hold``, strategy ``benchmark``.
    ``label`` as for :func:`run_backtest`. Each book's last ``equity`` is 1 + its ``total_return``.
    """
    costs = {"cost_bps": config.cost_bps, "slippage_bps": config.slippage_bps}
    parts = []
    for model, rows in preds.groupby("model", sort=True):
        rows, earned = priced_rows(rows, label.horizon)
        books = []
        if not parts:  # every model is scored on the same rows: one benchmark serves all
            books.append((BENCHMARK, "benchmark", simulate(target_weights(rows, BENCHMARK), earned, **costs)))
        for s in config.strategies:
            try:
                books.append((str(model), s, book_path(rows, earned, s, config)))
            except StrategySkipped:  # run_backtest records why
                continue
        for name, strategy, daily in books:
            daily["equity"] = (1.0 + daily["net"]).cumprod()
            parts.append(daily.rename_axis("date").reset_index().assign(model=name, strategy=strategy))
    columns = ["model", "strategy", "date", "gross", "turnover", "cost", "net", "exposure", "equity"]
    return pd.concat(parts, ignore_index=True)[columns]


def run_backtest(
    preds: pd.DataFrame,
    config: BacktestConfig,
    *,
    label: LabelSpec,
    prior_trials: Sequence[float] = (),
    tuning_trials: int = 0,
) -> Backtest:
    """Backtest every model x strategy of a validated predictions frame against equal-weight buy-and-hold.

    ``label`` is the label the predictions were made with: each position earns its traded return, the frame's
    ``ret_next``, and the book is rebalanced every ``label.horizon`` decision dates (module docstring).
    ``prior_trials`` are the per-period Sharpe ratios of configurations tried earlier on the same predictions; with
    this run's they set the trial count and variance of the deflated Sharpe ratio (``tuning_trials``: how many of
    them are hyperparameter trials, recorded in ``trials.tuning``).
    Returns a :class:`~finmlops.evaluation.results.Backtest`: the benchmark, ``results[model][strategy]``, the
    strategies skipped, the trials and the money terms.
    """
    check_execution(config, label)
    periods = PERIODS_PER_YEAR / label.horizon
    results: dict[str, dict[str, BookPerformance]] = {}
    skipped: dict[str, str] = {}
    benchmark: Performance | None = None
    for model, rows in preds.groupby("model", sort=True):
        rows, earned = priced_rows(rows, label.horizon)
        costs = {"cost_bps": config.cost_bps, "slippage_bps": config.slippage_bps}
        if benchmark is None:  # every model is scored on the same rows, so one benchmark serves all
            benchmark = performance(simulate(target_weights(rows, BENCHMARK), earned, **costs), periods)
        results[str(model)] = {}
        for s in config.strategies:
            try:
                daily = book_path(rows, earned, s, config)
            except StrategySkipped as exc:
                skipped[s] = str(exc)
                continue
            results[str(model)][s] = BookPerformance(
                **performance(daily, periods).model_dump(),
                before_costs=performance(before_costs(daily), periods),
                note=daily.attrs.get("note", ""),
            )
    sharpes = [r.sharpe_daily for by_s in results.values() for r in by_s.values()]
    # Every configuration tried counts, even one whose Sharpe is undefined (a book that never trades).
    n_trials = max(len(prior_trials) + len(sharpes), 1)
    finite = [s for s in (*prior_trials, *sharpes) if math.isfinite(s)]
    variance = float(np.var(finite, ddof=1)) if len(finite) > 1 else 0.0
    for by_s in results.values():
        for r in by_s.values():
            r.deflated_sharpe = deflated_sharpe(
                r.sharpe_daily,
                n_obs=r.days,
                skew=r.skew,
                kurtosis=r.kurtosis,
                n_trials=n_trials,
                sharpe_variance=variance,
            )
    assert benchmark is not None
    td = config.topk_dropout
    settings = BacktestSettings(
        strategies=list(config.strategies), cost_bps=config.cost_bps, slippage_bps=config.slippage_bps,
        execution=label.execution, top_k=config.top_k, capital=config.capital, fk_k=config.fk_k,
        topk_dropout=TopkDropoutSettings(
            topk=td.topk, n_drop=td.n_drop, open_cost=td.open_cost, close_cost=td.close_cost,
            risk_degree=td.risk_degree,
        ),
        label=label, periods_per_year=periods,
    )  # fmt: skip
    return Backtest(
        config=settings,
        benchmark=benchmark,
        results=results,
        skipped=skipped,
        trials=Trials(
            this_run=len(sharpes),
            prior=len(prior_trials),
            total=n_trials,
            sharpe_daily_variance=variance,
            expected_max_sharpe_daily=expected_max_sharpe(n_trials, variance),
            tuning=tuning_trials,
        ),
        business=business_impact(results, benchmark, config, label),
    )


def business_impact(
    results: dict[str, dict[str, BookPerformance]],
    benchmark: Performance,
    config: BacktestConfig,
    label: LabelSpec,
) -> Business:
    """Money terms for each model x strategy, computed only from the backtest, with the assumptions they rest on.

    The end value of ``config.capital``, its profit against buy-and-hold, the costs paid (each day's cost on that
    day's equity) and whether the deflated Sharpe ratio clears 0.95; ``assumptions`` states the costs, the execution
    timing, the period and what is not modelled, so the figures are not read without them.
    """
    capital = config.capital
    bench_end = capital * (1 + benchmark.total_return)
    rows = {
        f"{model}/{strategy}": BookMoney(
            end_value=capital * (1 + r.total_return),
            excess_vs_buy_hold=capital * (1 + r.total_return) - bench_end,
            costs_paid=capital * r.costs_paid,
            dsr_above_0_95=bool(r.deflated_sharpe > 0.95),
        )
        for model, by_s in results.items()
        for strategy, r in by_s.items()
    }
    assumptions = Assumptions(
        cost_bps_per_unit_turnover=config.cost_bps,
        slippage_bps_per_unit_turnover=config.slippage_bps,
        execution=label.execution,
        timing=label.timing,
        top_k=config.top_k,
        trading_days=benchmark.days * label.horizon,
        risk_free_rate=0.0,
        rebalancing=f"to the target weights every {label.horizon} trading day(s), returns compounded",
        not_modelled=list(NOT_MODELLED),
    )
    return Business(capital=capital, buy_hold_end_value=bench_end, assumptions=assumptions, by_config=rows)
