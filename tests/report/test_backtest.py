"""The backtest section draws the daily paths the backtest saved (backtest_paths.parquet), recomputing nothing, and
only when they are the paths backtest.json names and end at its totals."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest

from finmlops.evaluation.backtest import BacktestConfig, backtest_paths
from finmlops.evaluation.workspace import load_predictions, predictions_label
from finmlops.provenance import file_sha256, write_json_atomic
from finmlops.report.sections import backtest
from finmlops.settings import Settings


def test_saved_paths_end_at_the_backtest_total_returns(workspace: Settings, result: Any) -> None:
    bt = result(workspace, "backtest.json")
    path = workspace.results_dir / bt["paths"]["file"]
    assert bt["paths"]["sha256"] == file_sha256(path)
    paths = pd.read_parquet(path)
    end = paths.groupby(["model", "strategy"])["equity"].last() - 1.0
    assert end["buy_hold", "benchmark"] == pytest.approx(bt["benchmark"]["total_return"], rel=1e-12)
    for model, by_s in bt["results"].items():
        for strategy, perf in by_s.items():
            assert end[model, strategy] == pytest.approx(perf["total_return"], rel=1e-12)
            assert len(paths[(paths["model"] == model) & (paths["strategy"] == strategy)]) == perf["days"]
    assert set(end.index) == {("buy_hold", "benchmark")} | {(m, s) for m, by in bt["results"].items() for s in by}


def test_costs_lower_every_saved_path(workspace: Settings) -> None:
    preds, _ = load_predictions(workspace.results_dir)
    label = predictions_label(workspace.results_dir)
    costly = backtest_paths(preds, BacktestConfig(cost_bps=10.0), label).groupby(["model", "strategy"])["equity"]
    free = backtest_paths(preds, BacktestConfig(cost_bps=0.0), label).groupby(["model", "strategy"])["equity"]
    assert (costly.last() < free.last()).all()


def test_the_section_draws_what_the_file_holds(scratch: Settings, result: Any) -> None:
    # A point in the middle of one path raised to 7.5 and the file re-registered: the chart must show it, which a
    # recomputation from the predictions would not.
    bt = result(scratch, "backtest.json")
    path = scratch.results_dir / bt["paths"]["file"]
    paths = pd.read_parquet(path)
    book = paths.index[(paths["model"] == "majority") & (paths["strategy"] == "long_flat")]
    paths.loc[book[len(book) // 2], "equity"] = 7.5
    paths.to_parquet(path, index=False)
    write_json_atomic(
        scratch.results_dir / "backtest.json", {**bt, "paths": {**bt["paths"], "sha256": file_sha256(path)}}
    )
    body = backtest.build(scratch).body
    long_flat = body.split("long_flat: value of 1 invested", 1)[1].split("</svg>", 1)[0]
    assert '">8</text>' in long_flat  # the y axis reaches the planted 7.5
    assert "long_short: value of 1 invested" in body


def test_paths_that_are_not_the_backtests_are_not_drawn(scratch: Settings, result: Any) -> None:
    bt = result(scratch, "backtest.json")
    path = scratch.results_dir / bt["paths"]["file"]
    paths = pd.read_parquet(path)
    paths.assign(equity=paths["equity"] * 1.01).to_parquet(path, index=False)
    assert "changed after backtest.json was written" in backtest.build(scratch).body
    write_json_atomic(
        scratch.results_dir / "backtest.json", {**bt, "paths": {**bt["paths"], "sha256": file_sha256(path)}}
    )
    body = backtest.build(scratch).body
    assert "backtest.json says" in body and "value of 1 invested" not in body
    write_json_atomic(scratch.results_dir / "backtest.json", {k: v for k, v in bt.items() if k != "paths"})
    body = backtest.build(scratch).body
    assert "names no saved equity paths" in body and "<td>majority</td><td>long_flat</td>" in body
    path.unlink()
    write_json_atomic(scratch.results_dir / "backtest.json", bt)
    assert "is missing" in backtest.build(scratch).body
    assert json.loads((scratch.results_dir / "backtest.json").read_text())["paths"] == bt["paths"]
