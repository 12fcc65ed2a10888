"""Fixtures for the tracking, tuning and prediction tests (a pytest plugin that tests/conftest.py loads): real windows
from the bundled snapshot, a small network with a fitted FeatureScaler, a fresh MLflow sqlite workspace per test
(copied from one migrated database, so each test skips the ~5 s migration), a free port and a PostgreSQL cluster."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from finmlops.data import load_snapshot
from finmlops.features import FeatureScaler, compute_features, make_target, make_windows
from finmlops.models import build_network, get_variant
from finmlops.serving.server import free_port
from finmlops.settings import Settings

TICKERS = ["AAPL", "MSFT", "JPM"]


@dataclass
class Trained:
    """A small (randomly initialised) deep variant with its scaler and real unscaled windows."""

    variant: str
    network: torch.nn.Module
    scaler: FeatureScaler
    windows: Any  # finmlops.features.Windows


@pytest.fixture
def torch_one_thread() -> None:
    """One torch thread: the folders that train small networks make it autouse (cores are shared in CI)."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def real_windows() -> Any:
    """Basic-feature windows (seq_len 10) of 3 tickers over 2021-2022, unscaled, labelled."""
    universe = load_snapshot(TICKERS, date(2021, 1, 1), date(2022, 12, 31))
    windows = make_windows(compute_features(universe, "basic"), make_target(universe), seq_len=10)
    assert len(windows.X) > 500
    return windows


def make_trained(variant: str, windows: Any, seed: int = 0, **overrides: Any) -> Trained:
    """``variant`` shrunk by ``overrides``, initialised with ``seed``, scaler fitted on ``windows``."""
    torch.manual_seed(seed)
    config = get_variant(variant, **overrides)
    network = build_network(config, windows.X.shape[2]).eval()
    return Trained(variant, network, FeatureScaler().fit(windows.X), windows)


@pytest.fixture
def trained(real_windows: Any) -> Trained:
    return make_trained("baseline", real_windows, hidden_size=8)


@pytest.fixture
def new_trained() -> Callable[..., Trained]:
    """``make_trained`` as a fixture."""
    return make_trained


@pytest.fixture(scope="session")
def _migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow sqlite database with every migration applied."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def settings(tmp_path: Path, _migrated_db: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A workspace in ``tmp_path`` whose default sqlite tracking database is ready to use."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(_migrated_db, home / "mlflow.db")
    monkeypatch.setenv("FINMLOPS_HOME", str(home))
    return Settings(home=home)


def predictions_frame(windows: Any, model: str, accuracy: float, seed: int) -> pd.DataFrame:
    """A walk-forward predictions frame on the real rows of ``windows`` whose calls are right with probability
    ``accuracy`` (independently per row), with confident-looking probabilities 0.4 / 0.6."""
    rng = np.random.default_rng(seed)
    y = windows.y.astype(int)
    right = rng.random(len(y)) < accuracy
    call = np.where(right, y, 1 - y)
    return pd.DataFrame(
        {
            "date": pd.to_datetime(windows.dates), "ticker": windows.tickers, "fold": 0, "model": model,
            "prob_up": 0.4 + 0.2 * call, "y_true": y, "ret_next": 0.0,
        }
    )  # fmt: skip


@pytest.fixture
def predictions() -> Callable[..., pd.DataFrame]:
    return predictions_frame


@pytest.fixture
def port() -> int:
    return free_port()


PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)


@pytest.fixture
def postgres(tmp_path: Path, pytestconfig: pytest.Config) -> Iterator[str]:
    """A throwaway PostgreSQL cluster started by .ci/postgres.sh; yields its ``postgresql://`` URL, stops it after."""
    if PG_BIN is None or not (PG_BIN / "initdb").exists() or shutil.which("bash") is None:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql; .ci/run installs them)")
    pytest.importorskip("psycopg2", reason="psycopg2-binary is needed for the PostgreSQL backends")
    folder = tmp_path / "pg"
    script = str(pytestconfig.rootpath / ".ci" / "postgres.sh")
    started = subprocess.run(["bash", script, "start", str(folder)], capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    yield started.stdout.strip().splitlines()[-1]
    subprocess.run(["bash", script, "stop", str(folder)], capture_output=True, timeout=60)
