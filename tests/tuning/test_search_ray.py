"""``finmlops tune --executor ray``: trials as Ray tasks on the shared journal, MLflow runs nested under one parent."""

from __future__ import annotations

from datetime import date

import mlflow
import optuna
import pytest

from finmlops.data import DataStore, load_snapshot
from finmlops.executor import ExecutorConfig
from finmlops.settings import Settings
from finmlops.tuning.search import default_storage, run_tuning


@pytest.mark.slow
def test_ray_workers_share_the_study_and_nest_their_runs(local_ray: None, settings: Settings) -> None:
    DataStore(settings.data_dir).write(
        load_snapshot(["AAPL", "JPM", "XOM"], date(2016, 1, 1), date(2019, 12, 31)), "snapshot"
    )
    report = run_tuning(
        settings.model_copy(update={"threads": 1}), "lightweight", trials=4, folds=[2019], epochs=1, register=False,
        executor=ExecutorConfig(kind="ray"),
    )  # fmt: skip
    study = optuna.load_study(study_name="lightweight-log_loss", storage=default_storage(settings))
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    finished = [t for t in study.trials if t.state in done]
    # Two workers stop once the study has 4 finished trials; one still running then also finishes.
    assert 4 <= len(finished) <= 5 and report.this_process == len(finished) and report.failed == 0
    client = mlflow.MlflowClient()
    children = client.search_runs(
        [client.get_experiment_by_name("tuning").experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{report.parent_run_id}'",
    )
    trial_runs = [r for r in children if "finmlops.trial" in r.data.tags]
    assert {int(r.data.tags["finmlops.trial"]) for r in trial_runs} == {t.number for t in finished}
    # A trial pruned by the median rule (after 3 startup trials) ends KILLED; every other one FINISHED.
    expected = {t.number: "KILLED" if t.state == optuna.trial.TrialState.PRUNED else "FINISHED" for t in finished}
    assert {int(r.data.tags["finmlops.trial"]): r.info.status for r in trial_runs} == expected
    # Each worker sampled with its own seed: no two trials drew the same learning rate.
    assert len({t.params["lr"] for t in finished}) == len(finished)
