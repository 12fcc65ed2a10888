"""The HTML report: built from results written by the real stage functions on a small store, rendered by headless
Chromium without errors, every number traceable to a result file, missing or bad inputs handled plainly."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from finmlops.cli import app
from finmlops.data import DataStore, ingest
from finmlops.evaluation.backtest import BacktestConfig
from finmlops.evaluation.metrics import BootstrapConfig
from finmlops.evaluation.workspace import run_backtest_workspace, run_evaluation
from finmlops.features import compute_features
from finmlops.monitoring.abtest import run_abtest
from finmlops.monitoring.drift import run_drift
from finmlops.provenance import stamp, write_json_atomic
from finmlops.report.page import (
    ReportError,
    collect_sections,
    equity_paths,
    nice_ticks,
    write_report,
)
from finmlops.serving.requestlog import FeedbackRecord, RequestLog, RequestRecord
from finmlops.settings import Settings

TICKERS = ["AAPL", "MSFT", "JPM", "XOM"]


def _request_log(path: Path, seed: int = 0) -> None:
    """Five days of an A/B experiment through the real request-log writer: 120 served requests per arm and day,
    each labelled a day later; the challenger is right more often (62% against 50%)."""
    rng = np.random.default_rng(seed)
    log = RequestLog(path)
    start = pd.Timestamp("2024-03-04", tz="UTC").timestamp()
    for day in range(5):
        for arm, skill, version in (("baseline-predictor", 0.5, "3"), ("enhanced-predictor", 0.62, "1")):
            for i in range(120):
                ts = start + day * 86400 + i * 60.0
                outcome = int(rng.random() < 0.52)
                prob = 0.5 + (0.1 if (rng.random() < skill) == bool(outcome) else -0.1)
                rid = f"{arm}-{day}-{i}"
                log.append(RequestRecord(
                    id=rid, model=arm, ts=ts, experiment="ab", arm=arm, model_version=version, shadow=0,
                    inputs_digest=None, prob_up=prob, latency_ms=float(rng.lognormal(0.0, 0.5)), status=200,
                ))  # fmt: skip
                log.append(FeedbackRecord(id=rid, ts=ts + 86400, outcome=outcome))
    log.close()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A workspace whose results come from the real stage functions at a small size (4 tickers, 2 test years,
    baselines only); importance and audit, which train deep models for minutes, are small files in their schema."""
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
    _request_log(home / "serving" / "requests.db")
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
    audit = {
        "passed": False, "bayes_accuracy": 0.6,
        "checks": [
            {"scenario": "random_walk", "model": "majority", "check": "accuracy CI contains 0.5", "passed": True,
             "detail": "0.5010 [0.4800, 0.5200]"},
            {"scenario": "leak", "model": "probe", "check": "flags target_class", "passed": False,
             "detail": "not flagged"},
        ],
        "provenance": stamp(data_hash=None, config={"quick": True}, seed=1),
    }  # fmt: skip
    write_json_atomic(settings.results_dir / "audit.json", audit)
    return settings


def _copy(settings: Settings, dst: Path) -> Settings:
    shutil.copytree(settings.home, dst)
    return settings.model_copy(update={"home": dst})


def _results(settings: Settings, name: str) -> dict:
    return json.loads((settings.results_dir / name).read_text())


def test_every_section_is_filled_with_the_numbers_of_its_result_file(workspace: Settings, tmp_path: Path) -> None:
    path, sections = write_report(workspace, tmp_path / "r.html")
    assert [s.key for s in sections if not s.filled] == []
    html = path.read_text()
    evaluation, backtest = _results(workspace, "evaluation.json"), _results(workspace, "backtest.json")
    for name, model in evaluation["models"].items():
        acc = model["pooled"]["accuracy"]
        assert f"{acc['value']:.3f} [{acc['ci_low']:.3f}, {acc['ci_high']:.3f}]" in html, name
    for model, by_s in backtest["results"].items():
        for strategy, perf in by_s.items():
            row = re.search(rf"<td>{model}</td><td>{strategy}</td>(.*?)</tr>", html)
            assert row and f"<td>{perf['sharpe']:.2f}</td>" in row.group(1), (model, strategy)
    drift = _results(workspace, "drift.json")
    assert f"{drift['n_drifted']} of {len(drift['features'])} features drifted" in html
    for column in drift["features"]:
        assert f"<td>{column['column']}</td><td>{column['psi']:.3f}</td>" in html
    ab = _results(workspace, "abtest_ab.json")
    assert f"Decision: <b>{ab['decision']['action'].upper()}</b>" in html and len(ab["timeline"]) == 6
    assert html.count('<span class="fail">FAIL</span>') == 2  # the overall verdict and the failed check
    # Latency percentiles from the request log, computed here independently of the report.
    log = pd.read_sql_query("SELECT model, latency_ms FROM requests", f"sqlite:///{workspace.home}/serving/requests.db")
    p99 = np.percentile(log.loc[log["model"] == "enhanced-predictor", "latency_ms"], 99)
    assert f"<td>{p99:.2f}</td>" in html
    provenance = next(s for s in sections if s.key == "provenance")
    assert evaluation["provenance"]["data_hash"][:16] in provenance.body
    assert "different datasets" in provenance.body  # the importance file was stamped with another data hash


def test_equity_curves_end_at_the_backtest_total_returns(workspace: Settings) -> None:
    backtest = _results(workspace, "backtest.json")
    preds = pd.read_parquet(workspace.results_dir / "predictions.parquet")
    paths = equity_paths(preds, backtest["config"])
    for model, by_s in backtest["results"].items():
        assert paths[model]["buy_hold"].iloc[-1] - 1 == pytest.approx(backtest["benchmark"]["total_return"], 1e-12)
        for strategy, perf in by_s.items():
            assert paths[model][strategy].iloc[-1] - 1 == pytest.approx(perf["total_return"], rel=1e-12)
    # Costs matter: without them the same books end higher.
    free = equity_paths(preds, {**backtest["config"], "cost_bps": 0.0, "slippage_bps": 0.0})
    assert all(free[m]["long_short"].iloc[-1] > paths[m]["long_short"].iloc[-1] for m in paths)


def test_report_renders_in_headless_chromium(workspace: Settings, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    image = pytest.importorskip("PIL.Image")
    path, _ = write_report(workspace, tmp_path / "report.html")
    html = path.read_text()
    # Self-contained: nothing to fetch, so it reads the same offline.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html) and "<link" not in html
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", "--hide-scrollbars",
    ]  # fmt: skip
    shot = tmp_path / "shot.png"
    run = subprocess.run(
        [chromium, *flags, f"--screenshot={shot}", "--window-size=1280,4000", path.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], console
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    for title in ("Walk-forward evaluation", "Backtest, net of costs", "A/B experiments", "Serving latency"):
        assert f"<h2>{title}</h2>" in dom
    assert dom.count("<svg") >= 12
    pixels = np.asarray(image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (4000, 1280)
    assert pixels.std() > 20  # a blank or single-color page has (almost) none
    # Charts really drew lines: many pixels far from the white/grey page background.
    assert (pixels < 150).mean() > 0.01


def test_missing_inputs_name_the_command_that_fills_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINMLOPS_HOME", str(tmp_path))
    out = CliRunner().invoke(app, ["report", "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["path"] == str(tmp_path / "report.html")
    assert all(not s["filled"] for s in result["sections"])
    html = (tmp_path / "report.html").read_text()
    for command in ("finmlops evaluate", "finmlops backtest", "finmlops drift", "finmlops abtest analyze"):
        assert f"run <code>{command}" in html
    assert html.count("to fill this section") == len(result["sections"])


def test_stale_predictions_are_not_drawn_as_equity_curves(workspace: Settings, tmp_path: Path) -> None:
    settings = _copy(workspace, tmp_path / "home")
    preds = pd.read_parquet(settings.results_dir / "predictions.parquet")
    preds.assign(prob_up=1 - preds["prob_up"]).to_parquet(settings.results_dir / "predictions.parquet")
    sections = {s.key: s for s in collect_sections(settings)}
    assert "changed after backtest.json" in sections["backtest"].body
    assert "value of 1 invested" not in sections["backtest"].body
    assert "changed after evaluation.json" in sections["calibration"].body


def test_a_corrupt_result_file_fails_naming_it_and_keeps_the_old_report(
    workspace: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _copy(workspace, tmp_path / "home")
    monkeypatch.setenv("FINMLOPS_HOME", str(settings.home))
    runner = CliRunner()
    assert runner.invoke(app, ["report"]).exit_code == 0
    before = (settings.home / "report.html").read_text()
    (settings.results_dir / "drift.json").write_text('{"features": [')
    out = runner.invoke(app, ["report"])
    assert out.exit_code == 1 and "drift.json: not valid JSON" in out.stderr
    assert (settings.home / "report.html").read_text() == before
    (settings.results_dir / "drift.json").unlink()
    evaluation = _results(settings, "evaluation.json")
    del evaluation["models"]["majority"]["pooled"]
    write_json_atomic(settings.results_dir / "evaluation.json", evaluation)
    with pytest.raises(ReportError, match=r"evaluation section: .*'pooled'"):
        collect_sections(settings)


def test_nice_ticks_cover_the_range_with_round_steps() -> None:
    assert nice_ticks(0.43, 0.57) == [0.4, 0.45, 0.5, 0.55, 0.6]
    assert nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(2.0, 2.0) == [1.8, 1.9, 2.0, 2.1, 2.2]
    with pytest.raises(ValueError, match="finite"):
        nice_ticks(0.0, float("nan"))
