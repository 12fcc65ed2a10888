"""`finmlops evaluate` twice on the same store: byte-identical predictions, so the backtest trial ledger holds."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from typer.testing import CliRunner

from finmlops.cli import app
from finmlops.data import DataStore, load_snapshot
from finmlops.settings import load_settings

EVALUATE = ["evaluate", "--variant", "lightweight", "--epochs", "1", "--folds", "2019", "--n-boot", "100"]
EVALUATE += ["--no-track", "--json"]


def test_identical_reruns_keep_predictions_sha_and_trial_count() -> None:
    settings = load_settings()
    universe = load_snapshot(["AAPL", "XOM"], start=date(2016, 1, 1), end=date(2019, 12, 31))
    DataStore(settings.data_dir).write(universe, "snapshot")
    runner = CliRunner()

    def evaluate() -> dict:
        out = runner.invoke(app, EVALUATE)
        assert out.exit_code == 0, out.output
        return json.loads(out.stdout)

    def backtest(*extra: str) -> int:
        out = runner.invoke(app, ["backtest", "--json", *extra])
        assert out.exit_code == 0, out.output
        return json.loads(out.stdout)["trials"]["total"]

    first = evaluate()
    # Fit times are reported in the evaluation, one per (fold, model), and not stored with the predictions.
    assert len(first["walk_forward"]["fit_seconds"]) == 5
    path: Path = settings.results_dir / "predictions.parquet"
    assert b"PANDAS_ATTRS" not in pq.read_metadata(path).metadata
    assert pd.read_parquet(path).attrs == {}
    # Every baseline is marked as one in the table, not only the two the paired tests use.
    table = (settings.results_dir / "evaluation.md").read_text()
    for name in ("majority", "momentum", "logistic", "lightgbm"):
        assert f"| {name} (baseline) |" in table
    assert "| lightweight |" in table
    assert backtest() == 15  # 5 models x 3 strategies
    assert backtest("--cost-bps", "20") == 30
    second = evaluate()
    assert second["predictions"]["sha256"] == first["predictions"]["sha256"]
    # The same predictions: the 30 configurations already tried still count.
    assert backtest() == 30
