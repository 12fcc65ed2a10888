"""``finmlops tune``: a tiny seeded study on real data, nested MLflow runs, the trial ledger of the deflated Sharpe
ratio, resuming after Ctrl-C in a subprocess, and two workers sharing one study on a real PostgreSQL server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import mlflow
import optuna
import pytest
from finmlops_testing import wait_until

from finmlops.data import DataStore, load_snapshot
from finmlops.evaluation.backtest import BacktestConfig
from finmlops.evaluation.metrics import BootstrapConfig
from finmlops.evaluation.workspace import evaluate_and_write, record_tuning_trials, run_backtest_workspace
from finmlops.settings import Settings
from finmlops.tuning.search import TuneReport, default_storage, redact, run_tuning, storage_url

REPO = Path(__file__).resolve().parents[2]
TINY = ["--variant", "lightweight", "--folds", "2018,2019", "--epochs", "1", "--no-register"]


@pytest.fixture
def store(settings: Settings) -> Settings:
    DataStore(settings.data_dir).write(
        load_snapshot(["AAPL", "JPM", "XOM"], date(2016, 1, 1), date(2019, 12, 31)), "snapshot"
    )
    return settings


def _tune(settings: Settings, trials: int, **kwargs: Any) -> Any:
    return run_tuning(
        settings.model_copy(update={"threads": 1}), "lightweight", trials=trials, folds=[2018, 2019], epochs=1,
        **kwargs,
    )  # fmt: skip


def test_study_logs_nested_runs_records_trials_and_registers_the_best(store: Settings) -> None:
    report = _tune(store, 3)
    assert (report.complete, report.pruned, report.this_process) == (3, 0, 3)
    client = mlflow.MlflowClient()
    children = client.search_runs(
        [client.get_experiment_by_name("tuning").experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{report.parent_run_id}'",
    )
    trials = sorted((r for r in children if "finmlops.trial" in r.data.tags), key=lambda r: r.info.start_time)
    assert [r.data.tags["finmlops.trial_state"] for r in trials] == ["complete"] * 3
    history = client.get_metric_history(trials[0].info.run_id, "fold/log_loss")
    assert [m.step for m in history] == [0, 1]
    assert trials[0].data.metrics["log_loss"] == pytest.approx(sum(m.value for m in history) / 2)
    study = optuna.load_study(study_name="lightweight-log_loss", storage=default_storage(store))
    assert {r.data.params["lr"] for r in trials} == {str(t.params["lr"]) for t in study.trials}
    assert report.best_value == pytest.approx(min(t.value for t in study.trials))

    registered = report.registered
    assert registered is not None
    assert registered.model == "lightweight-predictor" and registered.alias == "challenger"
    version = client.get_model_version("lightweight-predictor", str(registered.version))
    assert client.get_registered_model("lightweight-predictor").aliases["challenger"] == version.version
    assert float(version.tags["wf_accuracy"]) > 0 and int(version.tags["wf_rows"]) > 300
    assert version.tags["finmlops.evidence"] == "selection"  # promote refuses it unless forced
    refit = client.get_run(registered.run_id)
    assert refit.data.tags["mlflow.parentRunId"] == report.parent_run_id
    assert refit.data.params["variant.lr"] == str(study.best_params["lr"])

    ledger = json.loads((store.results_dir / "backtest_trials.json").read_text())
    assert ledger["tuning"] == {"lightweight-log_loss": 3}
    again = _tune(store, 3)  # nothing left to run, nothing new to register
    assert again.this_process == 0 and again.registered == registered
    with pytest.raises(ValueError, match="other settings"):
        run_tuning(store, "lightweight", trials=3, folds=[2019], epochs=1)


def test_tuning_trials_raise_the_deflated_sharpe_trial_count(
    settings: Settings, real_windows: Any, predictions: Any
) -> None:
    # The backtest trades the predictions' ret_next, the label evaluation.json records.
    frame = predictions(real_windows, "baseline", 0.55, seed=3)
    settings.results_dir.mkdir(parents=True)
    boot = BootstrapConfig(n_boot=20, block_len=5)
    evaluate_and_write(frame, settings.results_dir, data_hash=None, config={"label": {"horizon": 1}}, boot=boot)
    config = BacktestConfig(strategies=("long_flat",))
    before = run_backtest_workspace(settings, config).trials
    assert record_tuning_trials(settings.results_dir, "s1", 7) == 7
    assert record_tuning_trials(settings.results_dir, "s1", 9) == 9  # a resumed study replaces its count
    after = run_backtest_workspace(settings, config).trials
    assert after.total == before.total + 9 and after.tuning == 9
    # New predictions (a new evaluation) reset the backtest configurations, not the tuning that chose the model.
    frame.assign(prob_up=1 - frame["prob_up"]).to_parquet(settings.results_dir / "predictions.parquet", index=False)
    assert run_backtest_workspace(settings, config).trials.total == 1 + 9
    with pytest.raises(ValueError, match="n_trials"):
        record_tuning_trials(settings.results_dir, "s1", -1)


def test_redact_hides_passwords() -> None:
    assert redact("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("sqlite:///x.db") == "sqlite:///x.db"


def _default_sigint() -> None:
    # A test run started as a background job (`cmd &` without job control) inherits SIGINT ignored, and Python then
    # installs no KeyboardInterrupt handler: the worker would not see Ctrl-C at all. A user's terminal has it at
    # its default, and so does the worker here.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _cli(settings: Settings, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "FINMLOPS_HOME": str(settings.home), "FINMLOPS_THREADS": "1"}
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "finmlops"), "tune", *args], env=env, cwd=REPO, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_default_sigint,
    )  # fmt: skip


def _finished(study: optuna.Study) -> int:
    return sum(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for t in study.trials)


def test_ctrl_c_keeps_finished_trials_and_a_rerun_resumes(store: Settings) -> None:
    worker = _cli(store, *TINY, "--trials", "50", "--json")
    storage = default_storage(store)

    def two_trials_finished_or_worker_gone() -> bool:
        if worker.poll() is not None:
            return True  # it exited early: the return-code check below shows its stderr
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        study = "lightweight-log_loss"
        return study in names and _finished(optuna.load_study(study_name=study, storage=storage)) >= 2

    wait_until(two_trials_finished_or_worker_gone, timeout=240, what="two finished trials", interval=0.5)
    worker.send_signal(signal.SIGINT)
    _, err = worker.communicate(timeout=120)
    assert worker.returncode == 130, err
    assert "rerun the same command to resume" in err
    study = optuna.load_study(study_name="lightweight-log_loss", storage=storage)
    done = _finished(study)
    assert 2 <= done < 50
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in study.trials)  # the interrupted one is FAIL
    rerun = _cli(store, *TINY, "--trials", str(done + 1), "--json")
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    report = TuneReport.model_validate_json(out)
    assert report.this_process == 1 and report.complete + report.pruned == done + 1
    assert (
        json.loads((store.results_dir / "backtest_trials.json").read_text())["tuning"]["lightweight-log_loss"]
        == done + 1
    )


@pytest.mark.slow
@pytest.mark.integration
def test_two_workers_share_one_study_on_postgresql(store: Settings, postgres: str) -> None:
    args = [*TINY, "--storage", postgres, "--study", "shared", "--trials", "4", "--json"]
    workers = [_cli(store, *args, "--seed", str(seed)) for seed in (1, 2)]
    outputs = [w.communicate(timeout=600) for w in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
    reports = [TuneReport.model_validate_json(out) for out, _ in outputs]
    study = optuna.load_study(study_name="shared", storage=storage_url(postgres))
    assert _finished(study) >= 4
    assert sum(r.this_process for r in reports) == len(study.trials)
    assert all(r.this_process >= 1 for r in reports), "both workers should have run trials"
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == len(study.trials)
    assert all(r.study == "shared" and r.storage == postgres for r in reports)


@pytest.mark.slow
@pytest.mark.integration
def test_workers_starting_together_on_an_empty_database_all_open_the_study(postgres: str) -> None:
    """Six processes race to create Optuna's schema (as a parallel Job's workers do); every one gets the study.

    The loser of the race sees whichever object the winner made first: an IntegrityError for a row of pg_type, a
    DuplicateTable, or a DuplicateObject for Optuna's enum types (the last one failed CI once). Five rounds, each on an
    emptied schema, give every kind a chance to occur.
    """
    import sqlalchemy

    code = (
        "import sys\nfrom finmlops.tuning.search import open_study\n"
        "study = open_study('race', sys.argv[1], {'metric': 'log_loss', 'variant': 'baseline'}, 0)\n"
        "print(study.study_name)\n"
    )
    engine = sqlalchemy.create_engine(storage_url(postgres))
    for _ in range(5):
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", code, postgres], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(6)
        ]
        for worker in workers:
            out, err = worker.communicate(timeout=120)
            assert worker.returncode == 0 and out.strip() == "race", err
    engine.dispose()
