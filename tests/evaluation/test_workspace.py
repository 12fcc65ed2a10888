"""Workspace runners and CLI: files written with provenance, reproducible, trial ledger for the DSR."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from finmlops.cli import app
from finmlops.data import DataStore
from finmlops.evaluation import workspace
from finmlops.evaluation.metrics import BootstrapConfig, validate_predictions
from finmlops.evaluation.results import load_evaluation
from finmlops.evaluation.workspace import evaluate_and_write, markdown_table
from finmlops.provenance import file_sha256
from finmlops.settings import load_settings

BOOT = BootstrapConfig(n_boot=100, block_len=5, seed=3)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, preds: pd.DataFrame, make_universe: Callable) -> Path:
    """A workspace with the predictions evaluated and a data store whose prices match their ``ret_next``."""
    monkeypatch.setenv("FINMLOPS_HOME", str(tmp_path))
    DataStore(load_settings().data_dir).write(make_universe(preds), "synthetic")
    evaluate_and_write(preds, tmp_path / "results", data_hash="abc", config={"k": 1}, boot=BOOT)
    return tmp_path


def test_evaluation_files_are_stamped_and_reproducible(home: Path, preds: pd.DataFrame) -> None:
    results = home / "results"
    first = json.loads((results / "evaluation.json").read_text())
    assert first["provenance"]["data_hash"] == "abc" and first["provenance"]["seed"] == 3
    evaluate_and_write(preds, results, data_hash="abc", config={"k": 1}, boot=BOOT)
    again = json.loads((results / "evaluation.json").read_text())
    assert first["models"] == again["models"]
    assert first["predictions"]["sha256"] == again["predictions"]["sha256"]
    table = (results / "evaluation.md").read_text()
    assert "| net |" in table and "majority (baseline)" in table and "| vs momentum |" in table
    # Every paired test is worded with its sign, side and verdict (describe_comparison), never a bare p.
    worded = re.findall(
        r"(?:better than|worse than|not different from) momentum \(accuracy [+-]\d\.\d{3}, two-sided p", table
    )
    assert len(worded) == 2 and "(p=" not in table
    loaded = load_evaluation(results)  # the typed reader: the file's content, NaN read back from null
    assert markdown_table(loaded).count("\n| ") == 3  # one row per model below the header
    assert json.loads(loaded.model_dump_json()) == again


def test_a_failed_scoring_keeps_the_predictions_and_no_evaluation_of_others(
    home: Path, preds: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hours of fits are on disk before the scoring starts; an evaluation of earlier predictions does not stay
    beside new ones that the scoring never finished."""
    results = home / "results"
    newer = preds.assign(prob_up=preds["prob_up"].to_numpy()[::-1])

    def fail(*args: object, **kwargs: object) -> None:
        raise MemoryError("scoring ran out of memory")

    monkeypatch.setattr(workspace, "evaluate_predictions", fail)
    with pytest.raises(MemoryError):
        evaluate_and_write(newer, results, data_hash="abc", config={"k": 1}, boot=BOOT)
    written = pd.read_parquet(results / "predictions.parquet")
    pd.testing.assert_frame_equal(written, validate_predictions(newer), check_like=True)
    assert not (results / "evaluation.json").exists() and not (results / "evaluation.md").exists()
    # The same predictions again: their evaluation is theirs, and a failed rescoring leaves it.
    monkeypatch.undo()
    evaluate_and_write(newer, results, data_hash="abc", config={"k": 1}, boot=BOOT)
    monkeypatch.setattr(workspace, "evaluate_predictions", fail)
    with pytest.raises(MemoryError):
        evaluate_and_write(newer, results, data_hash="abc", config={"k": 1}, boot=BOOT)
    assert load_evaluation(results).predictions.sha256 == file_sha256(results / "predictions.parquet")


def test_backtest_cli_writes_json_and_counts_every_trial(home: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["backtest", "--json", "--top-k", "1"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["trials"] == result["trials"] | {"this_run": 9, "prior": 0, "total": 9}
    assert "entered at the close of t+1, held 1 trading day(s) to the close of t+2" in result["timing"]
    assert result["config"]["label"] == {"kind": "direction", "horizon": 1, "threshold": 0.0, "execution": "close"}
    saved = json.loads((home / "results" / "backtest.json").read_text())
    assert saved["provenance"]["config"]["cost_bps"] == 5.0
    # Other costs are other configurations: the second run's DSR must account for the first run's nine.
    out = runner.invoke(app, ["backtest", "--json", "--top-k", "1", "--cost-bps", "20"])
    assert json.loads(out.stdout)["trials"]["total"] == 18
    # Re-running a configuration already tried does not count it twice.
    out = runner.invoke(app, ["backtest", "--json", "--top-k", "1"])
    assert json.loads(out.stdout)["trials"]["total"] == 18
    table = runner.invoke(app, ["backtest", "--strategy", "long_flat"])
    assert table.exit_code == 0 and "bps per unit turnover" in table.stdout
    # The money figures come with the assumptions they rest on, in the file and on screen.
    assumed = result["business"]["assumptions"]
    assert assumed["cost_bps_per_unit_turnover"] == 5.0 and assumed["slippage_bps_per_unit_turnover"] == 0.0
    assert assumed["timing"] == result["timing"] and "borrow fees for shorts" in assumed["not_modelled"]
    assert assumed["trading_days"] == result["benchmark"]["days"]
    assert "Business impact of 100,000" in table.stdout and "net/long_flat" in table.stdout


def test_backtest_cli_errors_are_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, preds: pd.DataFrame) -> None:
    monkeypatch.setenv("FINMLOPS_HOME", str(tmp_path))
    runner = CliRunner()
    missing = runner.invoke(app, ["backtest"])
    assert missing.exit_code == 1 and "run `finmlops evaluate` first" in missing.stderr
    bad = runner.invoke(app, ["backtest", "--strategy", "yolo"])
    assert bad.exit_code == 2
    # The predictions' label decides the trade: no data store is needed, and another execution is refused.
    evaluate_and_write(preds, tmp_path / "results", data_hash="abc", config={}, boot=BOOT)
    assert runner.invoke(app, ["backtest"]).exit_code == 0
    other = runner.invoke(app, ["backtest", "--execution", "open"])
    assert other.exit_code == 1 and "labelled for execution at the close" in other.stderr
    assert "Traceback" not in other.output


RECORDER = """
import sys, time
from pathlib import Path
from finmlops.evaluation.workspace import record_tuning_trials
results, study, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
for n in range(1, 21):
    record_tuning_trials(results, study, n)
"""


def test_parallel_tuning_workers_keep_every_study_in_the_trial_ledger(tmp_path: Path) -> None:
    """Six processes update the ledger at once (as a parallel tuning Job's workers do); none loses another's count.
    With the lock taken out, studies were lost."""
    import subprocess
    import sys

    script, go = tmp_path / "recorder.py", tmp_path / "go"
    script.write_text(RECORDER)
    studies = [f"study{i}" for i in range(6)]
    procs = [
        subprocess.Popen([sys.executable, str(script), str(tmp_path), s, str(go)], stdout=subprocess.PIPE, text=True)
        for s in studies
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    go.touch()
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    ledger = json.loads((tmp_path / "backtest_trials.json").read_text())
    assert ledger["tuning"] == {s: 20 for s in studies}
