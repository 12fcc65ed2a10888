"""The whole page: built from results written by the real stage functions on a small store, rendered by headless
Chromium without errors, every number traceable to a result file, missing or bad inputs handled plainly."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from finmlops.cli import app
from finmlops.provenance import write_json_atomic
from finmlops.report.page import ReportError, collect_sections, write_report
from finmlops.settings import Settings


def test_every_section_is_filled_with_the_numbers_of_its_result_file(
    workspace: Settings, tmp_path: Path, result: Any
) -> None:
    path, sections = write_report(workspace, tmp_path / "r.html")
    assert [s.key for s in sections if not s.filled] == []
    html = path.read_text()
    evaluation, backtest = result(workspace, "evaluation.json"), result(workspace, "backtest.json")
    for name, model in evaluation["models"].items():
        acc = model["pooled"]["accuracy"]
        assert f"{acc['value']:.3f} [{acc['ci_low']:.3f}, {acc['ci_high']:.3f}]" in html, name
    for model, by_s in backtest["results"].items():
        for strategy, perf in by_s.items():
            row = re.search(rf"<td>{model}</td><td>{strategy}</td>(.*?)</tr>", html)
            assert row and f"<td>{perf['sharpe']:.2f}</td>" in row.group(1), (model, strategy)
    drift = result(workspace, "drift.json")
    assert f"{drift['n_drifted']} of {len(drift['features'])} features drifted" in html
    for column in drift["features"]:
        assert f"<td>{column['column']}</td><td>{column['psi']:.3f}</td>" in html
    ab = result(workspace, "abtest_ab.json")
    assert f"Decision: <b>{ab['decision']['action'].upper()}</b>" in html
    assert html.count('<span class="fail">FAIL</span>') == 2  # the overall verdict and the failed check
    # Latency percentiles from the request log, computed here independently of the report.
    log = pd.read_sql_query("SELECT model, latency_ms FROM requests", f"sqlite:///{workspace.home}/serving/requests.db")
    p99 = np.percentile(log.loc[log["model"] == "enhanced-predictor", "latency_ms"], 99)
    assert f"<td>{p99:.2f}</td>" in html
    provenance = next(s for s in sections if s.key == "provenance")
    assert evaluation["provenance"]["data_hash"][:16] in provenance.body
    assert "different datasets" in provenance.body  # the importance file was stamped with another data hash


def _chromium() -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return chromium


@pytest.mark.integration
def test_report_renders_in_headless_chromium(workspace: Settings, tmp_path: Path) -> None:
    chromium = _chromium()
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
    shot = Path(os.environ.get("REPORT_SCREENSHOT", tmp_path / "shot.png"))
    height = 9000
    run = subprocess.run(
        [chromium, *flags, f"--screenshot={shot}", f"--window-size=1280,{height}", path.as_uri()],
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
    # The hand-sent requests of 2026 are listed apart, not on the replay's time axis.
    assert "wall-clock day" in dom and not re.search(r'class="tick"[^>]*>2026-', dom)
    pixels = np.asarray(image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (height, 1280)
    assert pixels.std() > 20  # a blank or single-color page has (almost) none
    # Charts really drew lines: many pixels far from the white/grey page background.
    assert (pixels < 150).mean() > 0.01


def test_missing_inputs_name_the_command_that_fills_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINMLOPS_HOME", str(tmp_path))
    out = CliRunner().invoke(app, ["report", "--json"])
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout)
    assert payload["path"] == str(tmp_path / "report.html")
    assert all(not s["filled"] for s in payload["sections"])
    html = (tmp_path / "report.html").read_text()
    for command in ("finmlops evaluate", "finmlops backtest", "finmlops drift", "finmlops abtest analyze"):
        assert f"run <code>{command}" in html
    assert html.count("to fill this section") == len(payload["sections"])


def test_stale_predictions_are_not_drawn_as_confusion_matrices(scratch: Settings) -> None:
    preds = pd.read_parquet(scratch.results_dir / "predictions.parquet")
    preds.assign(prob_up=1 - preds["prob_up"]).to_parquet(scratch.results_dir / "predictions.parquet")
    sections = {s.key: s for s in collect_sections(scratch)}
    assert "changed after evaluation.json" in sections["calibration"].body
    assert "Confusion at" not in sections["calibration"].body


def test_a_corrupt_result_file_fails_naming_it_and_keeps_the_old_report(
    scratch: Settings, monkeypatch: pytest.MonkeyPatch, result: Any
) -> None:
    monkeypatch.setenv("FINMLOPS_HOME", str(scratch.home))
    runner = CliRunner()
    assert runner.invoke(app, ["report"]).exit_code == 0
    before = (scratch.home / "report.html").read_text()
    (scratch.results_dir / "drift.json").write_text('{"features": [')
    out = runner.invoke(app, ["report"])
    assert out.exit_code == 1 and "drift.json: not valid JSON" in out.stderr
    assert (scratch.home / "report.html").read_text() == before
    (scratch.results_dir / "drift.json").unlink()
    evaluation = result(scratch, "evaluation.json")
    del evaluation["models"]["majority"]["pooled"]
    write_json_atomic(scratch.results_dir / "evaluation.json", evaluation)
    with pytest.raises(ReportError, match=r"evaluation.json: does not follow its schema \(models.majority.pooled"):
        collect_sections(scratch)
