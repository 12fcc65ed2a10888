"""The papers' books by hand: F&K's long top-k / short bottom-k with costs per half-turn, Qlib's TopkDropout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from finmlops.evaluation.backtest import BacktestConfig, book_path, priced_rows, run_backtest
from finmlops.evaluation.strategies import (
    StrategySkipped,
    TopkDropoutConfig,
    fk_weights,
    topk_dropout_path,
    topk_dropout_step,
)
from finmlops.features.target import LabelSpec


def _rows(scores: list[list[float]], rets: list[list[float]]) -> pd.DataFrame:
    dates = pd.bdate_range("2020-01-01", periods=len(scores))
    out = []
    for d, srow, rrow in zip(dates, scores, rets, strict=True):
        for i, (s, r) in enumerate(zip(srow, rrow, strict=True)):
            out.append({"date": d, "ticker": f"T{i:02d}", "prob_up": s, "ret_next": r, "model": "m", "fold": "f",
                        "y_true": int(r > 0)})  # fmt: skip
    return pd.DataFrame(out)


def test_fk_weights_returns_and_costs_by_hand() -> None:
    # 4 tickers, k=1: long the best, short the worst, each 1 (a dollar long and a dollar short).
    rows = _rows([[0.9, 0.5, 0.4, 0.1], [0.1, 0.5, 0.4, 0.9]], [[0.02, 0.0, 0.0, -0.01], [0.01, 0.0, 0.0, 0.03]])
    w, flat = fk_weights(rows, k=1)
    assert flat == 0
    assert w.iloc[0].tolist() == [1.0, 0.0, 0.0, -1.0]
    assert w.iloc[1].tolist() == [-1.0, 0.0, 0.0, 1.0]
    priced, earned = priced_rows(rows)
    daily = book_path(priced, earned, "fk_long_short", BacktestConfig(cost_bps=5.0, fk_k=1))
    # Day 1: gross = 0.02 - (-0.01) = 0.03; turnover 2 (open long, open short: 2 half-turns) -> 10 bps.
    # Day 2: long and short swap: close 1 long, open 1 short, close 1 short, open 1 long = 4 half-turns -> 20 bps.
    assert daily["gross"].tolist() == pytest.approx([0.03, 0.03 - 0.01])
    assert daily["turnover"].tolist() == pytest.approx([2.0, 4.0])
    assert daily["cost"].tolist() == pytest.approx([0.001, 0.002])
    assert daily["net"].tolist() == pytest.approx([0.029, 0.018])


def test_fk_refuses_a_universe_smaller_than_2k_and_run_backtest_notes_it() -> None:
    rows = _rows([[0.9, 0.5, 0.4, 0.1]] * 3, [[0.01, 0.0, 0.0, -0.01]] * 3)
    with pytest.raises(StrategySkipped, match=r"needs 20 tickers.*at most 4"):
        fk_weights(rows, k=10)
    result = run_backtest(rows, BacktestConfig(strategies=("long_flat", "fk_long_short")), label=LabelSpec())
    assert "fk_long_short" not in result.results["m"]
    assert "needs 20 tickers" in result.skipped["fk_long_short"]
    assert result.results["m"]["long_flat"].before_costs is not None


def test_topk_dropout_step_holds_drops_the_worst_and_buys_the_best_not_held() -> None:
    score = pd.Series({"A": 0.9, "B": 0.8, "C": 0.7, "D": 0.6, "E": 0.5, "F": 0.4})
    # Nothing held: buy the topk best.
    assert topk_dropout_step([], score, topk=3, n_drop=1) == ([], ["A", "B", "C"])
    # Held D, E, F (the 3 worst): today = best n_drop + topk - 3 = 1 not held (A); comb = A, D, E, F; the
    # n_drop=1 worst of comb is F: sell F, buy A. D and E are kept although B and C beat them (the dropout rule).
    assert topk_dropout_step(["D", "E", "F"], score, topk=3, n_drop=1) == (["F"], ["A"])
    # n_drop 2: sell E and F, buy A and B.
    assert topk_dropout_step(["D", "E", "F"], score, topk=3, n_drop=2) == (["E", "F"], ["A", "B"])
    # Held ones better than every candidate are not sold (no selling high to buy low).
    assert topk_dropout_step(["A", "B", "C"], score, topk=3, n_drop=1) == ([], [])


def test_topk_dropout_path_cash_and_costs_by_hand() -> None:
    cfg = TopkDropoutConfig(topk=2, n_drop=1, open_cost=0.001, close_cost=0.002, risk_degree=1.0)
    rows = _rows([[0.9, 0.8, 0.1], [0.9, 0.1, 0.8]], [[0.10, 0.0, 0.0], [0.0, 0.0, 0.0]])
    daily, forced = topk_dropout_path(rows, cfg)
    assert forced == 0
    # Day 1: buy T00 and T01 with 0.5 each, cost 0.001 each; T00 gains 10 %.
    equity1 = 0.5 * 1.1 + 0.5 + (1 - 1.0 * 1.001)
    assert daily["net"].iloc[0] == pytest.approx(equity1 - 1)
    assert daily["cost"].iloc[0] == pytest.approx(0.001)
    assert daily["turnover"].iloc[0] == pytest.approx(1.0)
    # Day 2: T01 falls to the worst of comb {T00, T02, T01}: sold (0.2 % of 0.5), T02 bought with the cash.
    cash = (1 - 1.001) + 0.5 * 0.998
    cost2 = 0.5 * 0.002 + cash * 0.001
    assert daily["cost"].iloc[1] == pytest.approx(cost2 / equity1)
    assert daily["net"].iloc[1] == pytest.approx(-cost2 / equity1)
    assert daily["gross"].iloc[1] == pytest.approx(0.0, abs=1e-12)


def test_topk_dropout_refuses_a_universe_smaller_than_topk() -> None:
    rows = _rows([[0.9, 0.8, 0.1]], [[0.0, 0.0, 0.0]])
    with pytest.raises(StrategySkipped, match="topk=50 needs 50 tickers"):
        topk_dropout_path(rows, TopkDropoutConfig())


def test_turnover_of_topk_dropout_is_about_2_ndrop_over_topk() -> None:
    rng = np.random.default_rng(0)
    n, days = 60, 80
    rows = _rows(rng.random((days, n)).tolist(), (rng.normal(0, 0.01, (days, n))).tolist())
    daily, _ = topk_dropout_path(rows, TopkDropoutConfig(topk=20, n_drop=2))
    assert daily["turnover"].iloc[1:].mean() == pytest.approx(2 * 2 / 20, rel=0.15)
