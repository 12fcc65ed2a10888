"""Strategies (``results/backtest.json``, issue 12 §4): per model x strategy, including Fischer & Krauss's
``fk_long_short`` and Qlib's ``topk_dropout`` when the backtest ran them, the annualised return, Sharpe ratio, max
drawdown and turnover after and before costs, with the deflated Sharpe ratio over every configuration tried.
Read from the typed backtest; nothing is recomputed."""

from __future__ import annotations

from finmlops.evaluation.results import BacktestResult, BookPerformance, load_backtest
from finmlops.report.base import Section, empty, note, num, table
from finmlops.report.inputs import read_if_written
from finmlops.settings import Settings

TITLE = "Strategies"


def _row(model: str, strategy: str, p: BookPerformance) -> list[str]:
    before = p.before_costs
    return [
        model,
        strategy,
        num(p.annual_return, "+.1%"),
        num(before.annual_return if before else None, "+.1%"),
        num(p.sharpe, ".2f"),
        num(before.sharpe if before else None, ".2f"),
        num(p.max_drawdown, ".1%"),
        num(before.max_drawdown if before else None, ".1%"),
        num(p.turnover_annual, ".0f") + "x",
        num(p.deflated_sharpe, ".3f"),
        p.note or "",
    ]


def render(bt: BacktestResult) -> str:
    header = ["model", "strategy", "ann. return", "before costs", "Sharpe", "before costs", "max DD", "before costs"]
    header += ["turnover/yr", "DSR", "note"]
    rows = [_row(m, s, p) for m, s, p in bt.books()]
    c, trials = bt.config, bt.trials
    body = table(header, rows)
    skipped = "".join(note(f"{s}: {why}") for s, why in bt.skipped.items())
    td = c.topk_dropout
    qlib = (
        f" topk_dropout: topk {td.topk}, n_drop {td.n_drop}, open {td.open_cost:.2%}, close {td.close_cost:.2%} of the "
        "value traded."
        if td is not None
        else ""
    )
    passed = sum(p.deflated_sharpe > 0.95 for _, _, p in bt.books())
    return (
        body
        + skipped
        + note(
            f"After costs: {c.cost_bps:g} + {c.slippage_bps:g} bps per unit of turnover (fk_long_short: per half-turn, "
            f"k = {c.fk_k}).{qlib} Before costs: the same daily path with every cost set to 0. Timing: {bt.timing}. "
            f"Each model x strategy is a trial: the deflated Sharpe ratio (DSR) counts {trials.total} configurations "
            f"tried on these predictions ({trials.this_run} in this run, {trials.tuning} tuning trials); expected best "
            f"daily Sharpe by luck {num(trials.expected_max_sharpe_daily, '.4f')}. {passed} of {len(bt.books())} books "
            "have a DSR above 0.95; a Sharpe ratio below that bar is not evidence of an edge."
        )
    )


def build(settings: Settings) -> Section:
    path = settings.results_dir / "backtest.json"
    bt = read_if_written(load_backtest, settings.results_dir)
    if bt is None:
        return empty("strategies", TITLE, "finmlops backtest", "backtest")
    return Section("strategies", TITLE, render(bt), (str(path),))
