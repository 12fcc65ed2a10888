"""The live-loop component: its CronWorkflow, Flagger Canaries and MetricTemplate match the shared CRD schemas and
the policy checks, the canaries step 10/50/100 like the loop, and its live config is one `finmlops live` reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from finmlops.deploy.checks import check_all, load_documents
from finmlops.workflow.live_config import load_live_config, shipped_live_config

REPO = Path(__file__).resolve().parents[2]
COMPONENT = REPO / "deploy" / "k8s" / "components" / "live-loop"
FILES = ("cronworkflow.yaml", "metrictemplate.yaml", "canary-kserve.yaml", "canary-finmlops.yaml")


def _docs() -> list[dict]:
    return [d for f in FILES for d in load_documents((COMPONENT / f).read_text())]


def test_live_manifests_match_the_shared_schemas(validator: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(validator), "--strict", *(str(COMPONENT / f) for f in FILES)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0 and " 0 invalid" in run.stdout.splitlines()[-1], run.stdout + run.stderr


def test_live_manifests_pass_the_policy_checks() -> None:
    assert check_all(_docs()) == []


def test_the_cron_runs_the_loop_today_and_the_canaries_step_like_it() -> None:
    docs = {d["kind"] + "/" + d["metadata"]["name"]: d for d in _docs()}
    cron = docs["CronWorkflow/finmlops-live"]
    (live,) = [t for t in cron["spec"]["workflowSpec"]["templates"] if t["name"] == "live"]
    assert live["container"]["args"] == ["live", "--today", "--config", "/etc/finmlops/live.yaml"]
    rollout = shipped_live_config("live").rollout
    for name in ("Canary/lightweight-predictor-predictor", "Canary/finmlops-server"):
        analysis = docs[name]["spec"]["analysis"]
        assert analysis["stepWeights"] == [s for s in rollout.steps if s > 0]
        assert analysis["metrics"][0]["thresholdRange"]["min"] == -rollout.margin
    kustomization = yaml.safe_load((COMPONENT / "kustomization.yaml").read_text())
    assert set(kustomization["resources"]) == set(FILES)
    assert load_live_config(COMPONENT / "live.yaml").universe.tickers == shipped_live_config("live").universe.tickers
