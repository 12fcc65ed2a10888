"""Every refit of ``finmlops live`` is an MLflow run and a registered version, even though the fit ran in a worker
process: a real sqlite MLflow under tmp, real worker processes (``python -m finmlops.workflow.retrain``)."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import mlflow
import pytest
import yaml

from finmlops.provenance import file_sha256, git_commit
from finmlops.settings import Settings
from finmlops.workflow.daily import Loop, Pending
from finmlops.workflow.live_config import LiveConfig, shipped_live_config
from finmlops.workflow.retrain import read_result


@pytest.mark.slow
def test_bootstrap_and_refit_from_worker_processes_are_tracked_runs_and_registered(tmp_path: Path) -> None:
    config = shipped_live_config("live-tiny")
    loop = Loop(Settings(home=tmp_path), config, log_to=lambda _: None)
    loop._tracking()
    first = date(2022, 1, 3)
    state = loop.bootstrap(first)  # the first champion, fitted by a worker process
    refit = loop._spec("refit-20211231", date(2021, 12, 31))
    loop._launch(refit)  # as the retrain phase does: its own process, the loop goes on
    state.pending = Pending(id=refit.id, day=refit.end, due=0, reason="schedule (test)")
    collected = loop._collect(first, state)
    assert collected.version == 2 and state.challenger == 2 and state.pending is None

    client = mlflow.MlflowClient()
    runs = mlflow.search_runs(experiment_names=["training"], output_format="list")
    assert len(runs) == 2
    name = config.registered_name
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "2"
    code = git_commit(Path(__file__).parent)
    for run in runs:
        tags = run.data.tags
        rid = tags["finmlops.live.refit"]
        result = read_result(loop.paths.retrains / rid)
        assert result is not None and result.pid is not None and result.pid != os.getpid()  # fitted elsewhere
        assert tags["finmlops.live.fit_pid"] == str(result.pid)
        assert tags["finmlops.git_commit"] == tags["finmlops.live.fit_git_commit"] == code
        assert tags["finmlops.data_hash"] == result.data_hash and run.data.params["live.retrain"] == rid
        assert tags["finmlops.live.config"] == "tiny" and tags["finmlops.feature_set"] == result.feature_set
        local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(tmp_path / rid))
        logged = Path(local) / "results" / "live_config.yaml"
        assert LiveConfig.model_validate(yaml.safe_load(logged.read_text())) == config
        assert tags["finmlops.config_sha256"] == file_sha256(logged)
        (version,) = client.search_model_versions(f"run_id = '{run.info.run_id}'")
        assert version.tags["live.retrain"] == rid and version.tags["data_hash"] == result.data_hash
    assert {r.data.tags["finmlops.live.reason"] for r in runs} == {"bootstrap", "schedule (test)"}
    # Registering the same refit again (a resumed loop) reuses its run and version.
    assert loop._register(refit, read_result(Path(refit.out)), "schedule (test)") == 2  # type: ignore[arg-type]
    assert len(mlflow.search_runs(experiment_names=["training"], output_format="list")) == 2
