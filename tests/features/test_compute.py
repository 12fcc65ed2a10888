"""Cross-ticker features do not depend on the order the universe's tickers come in (issue 15.5)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from finmlops.cli import app
from finmlops.data import DataStore, load_snapshot
from finmlops.features import compute_features, market_returns, save_features
from finmlops.settings import load_settings

# The default settings' universe, in its (not alphabetical) order; the store lists tickers alphabetically.
TICKERS = list(load_settings().tickers)
START, END = date(2016, 1, 1), date(2023, 12, 31)


@pytest.fixture(scope="module")
def universe() -> dict[str, pd.DataFrame]:
    return load_snapshot(TICKERS, start=START, end=END)


def test_market_return_and_features_are_bitwise_the_same_in_any_ticker_order(universe: dict, tmp_path: Path) -> None:
    reordered = dict(sorted(universe.items()))
    assert list(reordered) != list(universe)
    np.testing.assert_array_equal(market_returns(universe).to_numpy(), market_returns(reordered).to_numpy())
    metas = [
        save_features(compute_features(u, "advanced"), "advanced", tmp_path / name, data_hash="h")
        for name, u in (("given", universe), ("sorted", reordered))
    ]
    assert metas[0]["file_sha256"] == metas[1]["file_sha256"]


def test_the_features_command_and_the_runs_step_write_the_same_file(universe: dict) -> None:
    """`finmlops features` reads the store's tickers; `finmlops run` reads its plan's, in settings order."""
    settings = load_settings()
    store = DataStore(settings.data_dir)
    store.write(universe, "snapshot")
    result = CliRunner().invoke(app, ["features", "--set", "advanced", "--json"])
    assert result.exit_code == 0, result.output
    from_cli = json.loads(result.stdout)["file_sha256"]
    # What the run's features step does (workflow.steps._features) with its plan's ticker order.
    frame = compute_features(store.read(TICKERS, START, END), "advanced")
    from_run = save_features(frame, "advanced", settings.home / "run-features", data_hash=store.dataset_hash)
    assert from_run["file_sha256"] == from_cli
