"""Suite-wide test options: slow tests run only with --runslow or FINMLOPS_SLOW=1 (CI sets it when needed)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

# The workspace fixtures (settings, trained, predictions, port, postgres, ...) of tracking, tuning and prediction.
pytest_plugins = ["finmlops_testing.workspace", "finmlops_testing.ray"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow") or os.environ.get("FINMLOPS_SLOW") == "1":
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow or FINMLOPS_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test reads the developer's finmlops.yaml, environment or workspace by accident."""
    for name in list(os.environ):
        if (name.startswith("FINMLOPS_") and name != "FINMLOPS_SLOW") or name in {
            "TICKERS",
            "INGESTION_START_DATE",
            "INGESTION_END_DATE",
            "RAW_DATA_DIR",
            "MLFLOW_TRACKING_URI",
        }:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FINMLOPS_CONFIG", str(tmp_path_factory.mktemp("cfg") / "finmlops.yaml"))
    monkeypatch.setenv("FINMLOPS_HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")


@dataclass
class SynthWindows:
    """The shape of ``finmlops.features.Windows``, for model and training tests that need no real data."""

    X: np.ndarray
    y: np.ndarray
    dates: np.ndarray
    tickers: np.ndarray


def linear_windows(n: int, seq_len: int, n_features: int, seed: int) -> SynthWindows:
    """y = 1 iff a fixed linear mix of the last day's features is positive (the mix is the same for every seed)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, seq_len, n_features)).astype(np.float32)
    w = np.linspace(-1.0, 1.0, n_features) + 0.3
    y = (x[:, -1, :] @ w > 0).astype(np.float32)
    dates = pd.bdate_range("2015-01-01", periods=n).to_numpy()
    return SynthWindows(x, y, dates, np.array(["AAA"] * n))


@pytest.fixture
def make_windows() -> type[SynthWindows]:
    return SynthWindows


@pytest.fixture
def linear() -> Callable[[int, int, int, int], SynthWindows]:
    return linear_windows
