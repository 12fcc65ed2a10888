"""The report tests' workspace: results written by the real stage functions on a small store (evaluate, backtest,
drift, A/B from a real request log); importance and audit, which train deep models for minutes, are small files in
their schema."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from finmlops.data import DataStore, ingest
from finmlops.evaluation.backtest import BacktestConfig
from finmlops.evaluation.metrics import BootstrapConfig
from finmlops.evaluation.workspace import run_backtest_workspace, run_evaluation
from finmlops.features import compute_features
from finmlops.monitoring.abtest import run_abtest
from finmlops.monitoring.drift import run_drift
from finmlops.provenance import stamp, write_json_atomic
from finmlops.serving.requestlog import FeedbackRecord, RequestLog, RequestRecord
from finmlops.settings import Settings

TICKERS = ["AAPL", "MSFT", "JPM", "XOM"]
REPLAY_START = "2024-03-04"
HAND_SENT_DAY = "2026-11-30"  # wall-clock day of the requests sent without as_of
N_HAND_SENT = 3
N_UNROUTED = 7


def write_request_log(path: Path, seed: int = 0) -> None:
    """A replayed A/B experiment through the real request-log writer: five trading days (``as_of``) of 120 served
    requests per arm, each labelled a day later; the challenger is right more often (62% against 50%). Then, as a
    user's curl calls would: three requests without ``as_of`` years later, and seven that failed before routing
    (404, empty model name)."""
    rng = np.random.default_rng(seed)
    log = RequestLog(path)
    start = pd.Timestamp(REPLAY_START, tz="UTC")
    for d in range(5):
        as_of = (start + pd.Timedelta(days=d)).strftime("%Y-%m-%d")
        for arm, skill, version in (("baseline-predictor", 0.5, "3"), ("enhanced-predictor", 0.62, "1")):
            for i in range(120):
                ts = start.timestamp() + d * 86400 + i * 60.0
                outcome = int(rng.random() < 0.52)
                prob = 0.5 + (0.1 if (rng.random() < skill) == bool(outcome) else -0.1)
                rid = f"{arm}-{d}-{i}"
                log.append(RequestRecord(
                    id=rid, model=arm, ts=ts, experiment="ab", arm=arm, model_version=version, shadow=0,
                    inputs_digest=None, prob_up=prob, latency_ms=float(rng.lognormal(0.0, 0.5)), status=200,
                    as_of=as_of,
                ))  # fmt: skip
                log.append(FeedbackRecord(id=rid, ts=ts + 86400, outcome=outcome))
    hand = pd.Timestamp(HAND_SENT_DAY, tz="UTC").timestamp() + 3600
    for i in range(N_HAND_SENT):
        rid = f"curl-{i}"
        log.append(RequestRecord(
            id=rid, model="baseline-predictor", ts=hand + i, experiment="ab", arm="baseline-predictor",
            model_version="3", shadow=0, inputs_digest=None, prob_up=0.6, latency_ms=1.0, status=200,
        ))  # fmt: skip
        log.append(FeedbackRecord(id=rid, ts=hand + 86400, outcome=1))
    for i in range(N_UNROUTED):
        log.append(RequestRecord(
            id=f"bad-{i}", model="", ts=hand + 10 + i, experiment=None, arm=None, model_version=None, shadow=0,
            inputs_digest=None, prob_up=None, latency_ms=0.2, status=404,
        ))  # fmt: skip
    log.close()


AUDIT: dict[str, Any] = {
    "passed": False, "bayes_accuracy": 0.6, "ci_level": 0.99833,
    "checks": [
        {"scenario": "random_walk", "model": "majority", "check": "accuracy CI contains 0.5", "passed": True,
         "detail": "0.5010 [0.4800, 0.5200]",
         "metrics": {"accuracy": {"value": 0.501, "ci_low": 0.48, "ci_high": 0.52}}},
        {"scenario": "planted", "model": "persistence", "check": "accuracy not above Bayes 0.600", "passed": True,
         "detail": "acc 0.6150 [0.5890, 0.6410]",
         "metrics": {"accuracy": {"value": 0.615, "ci_low": 0.589, "ci_high": 0.641}}},
        {"scenario": "leak", "model": "probe", "check": "flags target_class", "passed": False,
         "detail": "not flagged"},
    ],
}  # fmt: skip


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """4 tickers, 2 test years, baselines only, through the real evaluate, backtest, drift and A/B functions."""
    home = tmp_path_factory.mktemp("report-home")
    settings = Settings(home=home, tickers=TICKERS, start=date(2019, 1, 1), end=date(2023, 12, 31), seed=1)
    ingest(DataStore(settings.data_dir), "snapshot", settings.tickers, settings.start, settings.end)
    boot = BootstrapConfig(n_boot=100, block_len=10, seed=1)
    run_evaluation(settings, variants=[], epochs=1, seed=1, test_years=[2022, 2023], boot=boot, progress=False)
    run_backtest_workspace(settings, BacktestConfig(top_k=1, cost_bps=5.0, slippage_bps=1.0))
    features = compute_features(DataStore(settings.data_dir).read(), "basic").dropna()
    reference = home / "reference.parquet"
    features[features.index.get_level_values("date") < "2022-01-01"].reset_index().to_parquet(reference)
    run_drift(settings, reference=reference, current="recent", window_days=120)
    write_request_log(home / "serving" / "requests.db")
    run_abtest(settings, "ab")
    importance = {
        "variant": "lightweight", "feature_set": "basic", "seq_len": 10, "test_years": [2022, 2023], "epochs": 1,
        "n_repeats": 2, "seed": 1, "pooled": {"n": 1000, "accuracy": 0.512, "accuracy_se": 0.0158},
        "features": [
            {"feature": "rsi_14", "accuracy_drop": 0.011, "accuracy_drop_se": 0.004, "auc_drop": 0.01,
             "auc_drop_se": 0.005, "folds_positive": 2},
            {"feature": "return_1d", "accuracy_drop": -0.003, "accuracy_drop_se": None, "auc_drop": -0.002,
             "auc_drop_se": None, "folds_positive": 0},
        ],
        "provenance": stamp(data_hash="f" * 64, config={"variant": "lightweight"}, seed=1),
    }  # fmt: skip
    write_json_atomic(settings.results_dir / "importance_lightweight.json", importance)
    write_json_atomic(
        settings.results_dir / "audit.json", {**AUDIT, "provenance": stamp(data_hash=None, config={}, seed=1)}
    )
    return settings


@pytest.fixture
def scratch(workspace: Settings, tmp_path: Path) -> Settings:
    """A copy of the workspace to damage without touching the module's."""
    shutil.copytree(workspace.home, tmp_path / "home")
    return workspace.model_copy(update={"home": tmp_path / "home"})


def read_result(settings: Settings, name: str) -> dict[str, Any]:
    """A result file of the workspace, as JSON (for tests that check the page against it)."""
    return json.loads((settings.results_dir / name).read_text())


@pytest.fixture
def result() -> Any:
    """``read_result``, for tests."""
    return read_result
