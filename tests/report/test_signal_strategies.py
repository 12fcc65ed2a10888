"""The signal (IC, Rank IC) and strategies sections print what evaluation.json and backtest.json hold, through the
typed readers, with honest wording: a CI that includes 0 is not an edge."""

from __future__ import annotations

from html import unescape

from finmlops.evaluation.results import load_backtest, load_evaluation
from finmlops.report.sections import signal, strategies
from finmlops.report.sections.signal import edge, interval
from finmlops.settings import Settings


def test_signal_section_prints_every_model_ic_with_its_ci_and_verdict(workspace: Settings) -> None:
    ev = load_evaluation(workspace.results_dir)
    section = signal.build(workspace)
    assert section.filled and section.sources == (str(workspace.results_dir / "evaluation.json"),)
    html = unescape(section.body)
    for m in ev.models.values():
        assert m.signal is not None
        assert interval(m.signal.ic) in html and interval(m.signal.rank_ic) in html
        assert interval(m.signal.icir, ".3f") in html and interval(m.signal.rank_icir, ".3f") in html
        assert m.signal.accuracy_vs_half.sentence in html
    # Baselines on four tickers have no IC edge: every defined IC interval that contains 0 says so.
    words = [edge(m.signal.ic) for m in ev.models.values() if m.signal is not None]
    assert all(w in html for w in words)
    assert "A CI that includes 0 is not an edge" in html
    assert "accuracy against 0.5 is not the majority-class test" in html  # the workspace's label is direction


def test_edge_wording_follows_the_interval() -> None:
    from finmlops.evaluation.results import Estimate

    assert edge(Estimate(value=0.01, ci_low=-0.002, ci_high=0.02)) == "CI includes 0: no edge shown"
    assert edge(Estimate(value=0.01, ci_low=0.002, ci_high=0.02)) == "CI above 0"
    assert edge(Estimate(value=-0.01, ci_low=-0.02, ci_high=-0.002)).startswith("CI below 0")
    assert edge(Estimate(value=float("nan"), ci_low=float("nan"), ci_high=float("nan"))) == "undefined"


def test_strategies_section_prints_every_book_after_and_before_costs(workspace: Settings) -> None:
    bt = load_backtest(workspace.results_dir)
    section = strategies.build(workspace)
    assert section.filled
    html = unescape(section.body)
    for _model, _strategy, p in bt.books():
        assert p.before_costs is not None
        assert f"{p.annual_return:+.1%}" in html and f"{p.before_costs.annual_return:+.1%}" in html
        assert f"{p.sharpe:.2f}" in html and f"{p.max_drawdown:.1%}" in html
        # 5 + 1 bps per unit of turnover: a book that trades earns less after costs than before.
        if p.turnover_annual > 0:
            assert p.total_return < p.before_costs.total_return
    assert f"counts {bt.trials.total} configurations" in html
    assert "not evidence of an edge" in html


def test_strategies_section_shows_the_papers_books_when_present(workspace: Settings) -> None:
    bt = load_backtest(workspace.results_dir)
    model = next(iter(bt.results))
    book = bt.results[model]["long_flat"]
    bt.results[model]["fk_long_short"] = book.model_copy(update={"note": "3 flat days (fewer than 20 tickers)"})
    bt.results[model]["topk_dropout"] = book.model_copy()
    html = unescape(strategies.render(bt))
    assert "fk_long_short" in html and "topk_dropout" in html and "3 flat days" in html


def test_both_sections_name_the_command_when_their_file_is_missing(scratch: Settings) -> None:
    (scratch.results_dir / "evaluation.json").unlink()
    (scratch.results_dir / "backtest.json").unlink()
    assert signal.build(scratch).missing == "finmlops evaluate"
    assert strategies.build(scratch).missing == "finmlops backtest"
