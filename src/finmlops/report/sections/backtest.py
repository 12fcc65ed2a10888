"""Backtest, net of costs (``results/backtest.json``): the table with the deflated Sharpe ratio and money figures, and
the equity curves of ``results/backtest_paths.parquet``, the daily paths the backtest itself wrote (nothing is
recomputed here). The curves are drawn only when that file is the one ``backtest.json`` names (its SHA-256)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from finmlops.evaluation.results import BacktestResult, BookPerformance, Performance, load_backtest
from finmlops.provenance import file_sha256
from finmlops.report.base import Section, empty, note, num, table
from finmlops.report.charts import Series, colors, date_ticks, day, legend, line_chart
from finmlops.report.inputs import read_if_written
from finmlops.settings import Settings

TITLE = "Backtest, net of costs"
BENCHMARK_LABEL = "buy and hold (equal weight)"


# One book's figures, as the report and `finmlops backtest` both print them.
PERFORMANCE_HEADER = ("ann. return", "vol", "Sharpe", "Sortino", "max DD", "turnover/yr", "hit rate", "exposure", "DSR")


def performance_cells(p: Performance) -> list[str]:
    """``p``'s figures in :data:`PERFORMANCE_HEADER`'s order (a dash where undefined; the benchmark has no DSR)."""
    dsr = p.deflated_sharpe if isinstance(p, BookPerformance) else None
    return [
        num(p.annual_return, "+.1%"),
        num(p.annual_volatility, ".1%"),
        num(p.sharpe, ".2f"),
        num(p.sortino, ".2f"),
        num(p.max_drawdown, ".1%"),
        num(p.turnover_annual, ".0f") + "x",
        num(p.hit_rate, ".3f"),
        num(p.exposure, ".2f"),
        num(dsr, ".3f"),
    ]


def render_table(bt: BacktestResult) -> str:
    business = bt.business
    header = ["model", "strategy", *PERFORMANCE_HEADER, f"end value of {business.capital:,.0f}"]

    def row(model: str, strategy: str, p: Performance, end: float | None) -> list[str]:
        return [model, strategy, *performance_cells(p), num(end, ",.0f")]

    rows = [row("buy_hold", "benchmark", bt.benchmark, business.buy_hold_end_value)]
    for model, by_s in bt.results.items():
        for strategy, p in by_s.items():
            end = business.by_config.get(f"{model}/{strategy}")
            rows.append(row(model, strategy, p, end.end_value if end else None))
    c, trials = bt.config, bt.trials
    return table(header, rows) + note(
        f"Costs {c.cost_bps:g} + {c.slippage_bps:g} bps per unit of turnover; top_k = {c.top_k}. Timing: "
        f"{bt.timing}. DSR: deflated Sharpe ratio over {trials.total} configurations tried on these predictions "
        f"({trials.this_run} in this run); expected best daily Sharpe by luck "
        f"{num(trials.expected_max_sharpe_daily, '.4f')}. No test against buy and hold is made here: read the DSR."
    )


def read_paths(path: Path, bt: BacktestResult) -> pd.DataFrame | str:
    """The saved paths (columns ``model, strategy, date, equity``), or the reason they cannot be drawn: missing,
    not the file ``backtest.json`` names, or not ending at its total returns."""
    if bt.paths is None:
        return "backtest.json names no saved equity paths (written by an older version): rerun `finmlops backtest`."
    if not path.exists():
        return f"{path} is missing: rerun `finmlops backtest` for the equity curves."
    if file_sha256(path) != bt.paths.sha256:
        return f"{path} changed after backtest.json was written: rerun `finmlops backtest` for the equity curves."
    paths = pd.read_parquet(path, columns=["model", "strategy", "date", "equity"])
    books = {("buy_hold", "benchmark"): bt.benchmark.total_return} | {
        (m, s): p.total_return for m, by_s in bt.results.items() for s, p in by_s.items()
    }
    ends = paths.groupby(["model", "strategy"], sort=False)["equity"].last() - 1.0
    for (model, strategy), total in books.items():
        got = ends.get((model, strategy))
        if got is None or not math.isclose(float(got), total, rel_tol=1e-9, abs_tol=1e-12):
            return (
                f"{path}: the path of {model}/{strategy} ends at {num(got, '.6f')}, backtest.json says {total:.6f}: "
                "equity curves not drawn (rerun `finmlops backtest`)."
            )
    return paths


def render_equity(paths: pd.DataFrame, strategies: list[str]) -> str:
    """One chart per strategy: every model's equity and buy-and-hold (dashed, drawn last)."""
    models = [m for m in dict.fromkeys(paths["model"]) if m != "buy_hold"]
    palette = colors(models)
    bench = paths[paths["model"] == "buy_hold"]
    charts = []
    for strategy in strategies:
        lines = []
        for model in models:
            book = paths[(paths["model"] == model) & (paths["strategy"] == strategy)]
            lines.append(Series(model, [day(d) for d in book["date"]], list(book["equity"]), palette[model]))
        # Buy-and-hold last, dashed on top: a model that always says "up" holds exactly the same book.
        lines.append(Series(BENCHMARK_LABEL, [day(d) for d in bench["date"]], list(bench["equity"]), "#222", True))
        charts.append(
            line_chart(
                lines,
                title=f"{strategy}: value of 1 invested, net of costs",
                y_label="equity",
                x_ticks=date_ticks(lines[-1].x),
                hlines=[(1.0, "start")],
            )
        )
    keys = [(BENCHMARK_LABEL, "#222", True), *((m, c, False) for m, c in palette.items())]
    return (
        "".join(charts)
        + legend(keys)
        + note("Curves: the daily paths the backtest saved (backtest_paths.parquet); each ends at the table's total.")
    )


def build(settings: Settings) -> Section:
    path = settings.results_dir / "backtest.json"
    bt = read_if_written(load_backtest, settings.results_dir)
    if bt is None:
        return empty("backtest", TITLE, "finmlops backtest", "backtest")
    paths_path = settings.results_dir / Path(bt.paths.file if bt.paths else "backtest_paths.parquet").name
    paths = read_paths(paths_path, bt)
    charts = note(paths) if isinstance(paths, str) else render_equity(paths, bt.config.strategies)
    sources = (str(path), *((str(paths_path),) if paths_path.exists() else ()))
    return Section("backtest", TITLE, render_table(bt) + charts, sources)
