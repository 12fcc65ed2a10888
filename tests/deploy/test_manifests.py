"""The Kustomize targets build, validate against the schemas, and follow the deployment rules."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from finmlops.deploy.checks import (
    check_all,
    check_containers,
    check_experiments,
    check_no_secret_values,
    load_documents,
)
from finmlops.deploy.release import MODEL_NAMES, read_release

KUBERNETES_VERSION = "1.31.0"


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"].get("name") or d["metadata"]["generateName"]: d for d in docs if d["kind"] == kind}


def test_custom_resources_match_the_shared_schemas(rendered: dict[str, str], target: str, validator: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(validator), "--strict", "-"], input=rendered[target], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert " 0 invalid" in run.stdout.splitlines()[-1]


def test_builtin_kinds_are_valid_for_the_pinned_kubernetes(rendered: dict[str, str], target: str) -> None:
    builtin = [
        d
        for d in load_documents(rendered[target])
        if "." not in d["apiVersion"].split("/")[0] or "k8s.io" in d["apiVersion"]
    ]
    for doc in builtin:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_policy_checks_pass(rendered: dict[str, str], target: str) -> None:
    assert check_all(load_documents(rendered[target])) == []


def test_each_serving_choice_has_its_objects(rendered: dict[str, str]) -> None:
    finmlops = load_documents(rendered["overlays/_serving-finmlops"])
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert "finmlops-server" in by_kind(finmlops, kind), kind
    server = by_kind(finmlops, "Deployment")["finmlops-server"]["spec"]["template"]["spec"]["containers"][0]
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert server["startupProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert server["livenessProbe"]["grpc"]["service"] == "inference.GRPCInferenceService"  # grpc.health.v1
    assert set(by_kind(load_documents(rendered["overlays/_serving-kserve"]), "InferenceService")) == set(MODEL_NAMES)
    seldon = load_documents(rendered["overlays/_serving-seldon"])
    assert set(by_kind(seldon, "Model")) == set(MODEL_NAMES)
    experiment = by_kind(seldon, "Experiment")["baseline-vs-enhanced"]["spec"]
    assert {c["name"]: c["weight"] for c in experiment["candidates"]} == {
        "baseline-predictor": 70,
        "enhanced-predictor": 30,
    }
    assert experiment["default"] == "baseline-predictor" and "mirror" not in experiment
    prod = by_kind(load_documents(rendered["overlays/prod"]), "Experiment")["baseline-vs-enhanced"]["spec"]
    assert prod["mirror"] == {"name": "enhanced-predictor-challenger", "percent": 100}


@pytest.mark.parametrize("target", ["overlays/dev", "overlays/prod", "overlays/_serving-kserve"])
def test_release_file_is_wired_into_the_serving_manifests(rendered: dict[str, str], target: str) -> None:
    docs = load_documents(rendered[target])
    release = by_kind(docs, "ConfigMap")["finmlops-release"]["data"]
    uris = {}
    for doc in docs:
        name = doc["metadata"]["name"]
        if doc["kind"] == "Model":
            alias = "challenger" if name.endswith("-challenger") else "champion"
            uris[f"{name.removesuffix('-challenger')}.{alias}.uri"] = doc["spec"]["storageUri"]
        elif doc["kind"] == "InferenceService":
            uris[f"{name}.champion.uri"] = doc["spec"]["predictor"]["model"]["storageUri"]
        elif doc["kind"] == "Deployment":
            pod = doc["spec"]["template"]["spec"]
            assert pod["containers"][0]["image"] == release["serve-image"]
            assert pod["initContainers"][0]["image"] == release["train-image"]
            env = {e["name"]: e["value"] for e in pod["initContainers"][0]["env"]}
            uris["baseline-predictor.champion.uri"] = env["BASELINE_URI"]
            uris["enhanced-predictor.champion.uri"] = env["ENHANCED_URI"]
    assert uris and all(release[key] == uri for key, uri in uris.items())
    steps = [
        s.get("container") or s.get("script")
        for s in by_kind(docs, "WorkflowTemplate")["finmlops-training"]["spec"]["templates"]
    ]
    assert {s["image"] for s in steps if s} == {release["train-image"]}
    assert "set-by-release-wiring" not in rendered[target]


def test_committed_release_files_parse() -> None:
    for overlay in ("dev", "prod"):
        data = read_release(Path(__file__).parents[2] / "deploy" / "k8s" / "overlays" / overlay / "release.yaml")
        assert {f"{m}.champion.uri" for m in MODEL_NAMES} <= set(data)


def test_training_pipeline_order_and_references(rendered: dict[str, str]) -> None:
    docs = load_documents(rendered["overlays/prod"])
    template = by_kind(docs, "WorkflowTemplate")["finmlops-training"]
    tasks = {t["name"]: t for t in template["spec"]["templates"][0]["dag"]["tasks"]}
    assert [tasks[n].get("depends") for n in ("ingest", "features", "train", "evaluate", "register")] == [
        None,
        "ingest",
        "features",
        "train",
        "evaluate",
    ]
    for fan_out in ("train", "register", "promote"):
        assert tasks[fan_out]["withParam"] == "{{workflow.parameters.variants}}", fan_out
    assert tasks["promote"]["continueOn"] == {"failed": True}  # a refused promotion is a verdict, not a crash
    assert "register" in tasks["promote"]["depends"] and "approve" in tasks["promote"]["depends"]
    steps = {t["name"]: t for t in template["spec"]["templates"]}
    assert steps["train"]["container"]["args"] == ["train", "--variant", "{{inputs.parameters.variant}}"]
    assert steps["register"]["container"]["args"] == ["register", "--variant", "{{inputs.parameters.variant}}"]
    assert '"promote", "--model", name' in steps["promote"]["script"]["source"]
    assert all(
        s["container"]["image"].startswith("ghcr.io/finmlops/finmlops-train:")
        for s in steps.values()
        if "container" in s
    )
    claims = set(by_kind(docs, "PersistentVolumeClaim"))
    assert {
        v["persistentVolumeClaim"]["claimName"] for v in template["spec"]["volumes"] if "persistentVolumeClaim" in v
    } <= claims
    assert template["spec"]["serviceAccountName"] in by_kind(docs, "ServiceAccount")
    cron = by_kind(docs, "CronWorkflow")["finmlops-retrain"]["spec"]
    assert cron["workflowSpec"]["workflowTemplateRef"]["name"] == "finmlops-training"
    sensor = by_kind(docs, "Sensor")["finmlops-retrain"]["spec"]
    assert sensor["dependencies"][0]["eventSourceName"] in by_kind(docs, "EventSource")
    created = sensor["triggers"][0]["template"]["k8s"]["source"]["resource"]
    assert created["spec"]["workflowTemplateRef"]["name"] == "finmlops-training"
    assert sensor["template"]["serviceAccountName"] in by_kind(docs, "ServiceAccount")


def test_namespaces_network_policies_and_monitoring(rendered: dict[str, str]) -> None:
    docs = load_documents(rendered["overlays/dev"])
    assert set(by_kind(docs, "Namespace")) == {"financial-mlops-pytorch", "financial-inference"}
    deny = [
        d
        for d in docs
        if d["kind"] == "NetworkPolicy"
        and d["spec"]["podSelector"] == {}
        and "ingress" not in d["spec"]
        and "egress" not in d["spec"]
        and set(d["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    ]
    assert {d["metadata"]["namespace"] for d in deny} == {"financial-mlops-pytorch", "financial-inference"}
    monitor = by_kind(docs, "ServiceMonitor")["finmlops-server"]["spec"]
    service = by_kind(docs, "Service")["finmlops-server"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert "finmlops-alerts" in by_kind(docs, "PrometheusRule")
    for kind in ("HorizontalPodAutoscaler",):
        assert by_kind(docs, kind)["finmlops-server"]["spec"]["scaleTargetRef"]["name"] in by_kind(docs, "Deployment")


def test_argocd_applications_point_at_the_overlays(rendered: dict[str, str]) -> None:
    apps = by_kind(load_documents(rendered["argocd"]), "Application")
    assert {a["spec"]["source"]["path"] for a in apps.values()} == {
        "deploy/k8s/overlays/dev",
        "deploy/k8s/overlays/prod",
    }
    assert len({a["spec"]["destination"]["name"] for a in apps.values()}) == 2  # same namespaces: separate clusters


def test_tuning_job_shares_a_study_without_a_literal_password(rendered: dict[str, str]) -> None:
    job = by_kind(load_documents(rendered["jobs/tuning"]), "Job")["finmlops-tune"]["spec"]
    container = job["template"]["spec"]["containers"][0]
    assert job["parallelism"] > 1 and "$(OPTUNA_STORAGE)" in container["args"]
    storage = next(e for e in container["env"] if e["name"] == "OPTUNA_STORAGE")
    assert storage["valueFrom"]["secretKeyRef"]["name"] == "finmlops-optuna-db"


# The checks must catch what they claim to: each mutation of a passing overlay is reported by name.
@pytest.fixture
def dev_docs(rendered: dict[str, str]) -> list[dict[str, Any]]:
    return copy.deepcopy(load_documents(rendered["overlays/dev"]))


def _server_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return by_kind(docs, "Deployment")["finmlops-server"]["spec"]["template"]["spec"]


def test_checks_catch_missing_resources_probes_and_root(dev_docs: list[dict[str, Any]]) -> None:
    pod = _server_pod(dev_docs)
    del pod["containers"][0]["resources"]["limits"]
    del pod["containers"][0]["readinessProbe"]
    pod["securityContext"]["runAsNonRoot"] = False
    pod["initContainers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    problems = "\n".join(check_containers(dev_docs))
    assert "container server: resources.limits" in problems
    assert "container server: a serving container needs readinessProbe" in problems
    assert "Deployment financial-inference/finmlops-server: pod securityContext must set runAsNonRoot" in problems
    assert "container fetch-models: securityContext.allowPrivilegeEscalation" in problems


def test_checks_catch_secret_values(dev_docs: list[dict[str, Any]]) -> None:
    _server_pod(dev_docs)["containers"][0]["env"].append({"name": "DB_PASSWORD", "value": "hunter2"})
    dev_docs.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3"}, "stringData": {"k": "v"}})
    by_kind(dev_docs, "ConfigMap")["finmlops-release"]["data"]["x"] = "postgresql://optuna:pw@db:5432/optuna"
    problems = "\n".join(check_no_secret_values(dev_docs))
    assert "(DB_PASSWORD) must use valueFrom.secretKeyRef" in problems
    assert "Secret s3: Secrets are created out of band" in problems
    assert "data.x embeds credentials in a URL" in problems


def test_checks_catch_bad_experiments(rendered: dict[str, str]) -> None:
    docs = copy.deepcopy(load_documents(rendered["overlays/prod"]))
    spec = by_kind(docs, "Experiment")["baseline-vs-enhanced"]["spec"]
    spec["candidates"][1]["weight"] = 20
    spec["mirror"]["name"] = "missing-model"
    spec["default"] = "lightweight-predictor"
    problems = "\n".join(check_experiments(docs))
    assert "weights add up to 90, not 100" in problems
    assert "no Model missing-model" in problems
    assert "default lightweight-predictor is not a candidate" in problems


# Container ports of the pods the operators create (not in our manifests): Seldon's mlserver ServerConfig names
# MLServer's metrics port server-metrics and the agent's metrics; KServe's MLServer listens on MLServer's default.
OPERATOR_PORTS = {"server-metrics": 8082, "metrics": 9006}


@pytest.mark.parametrize("target", ["overlays/prod", "overlays/_serving-seldon", "overlays/_serving-kserve"])
def test_operator_serving_pods_are_scraped(rendered: dict[str, str], target: str) -> None:
    """Seldon and KServe pods have a PodMonitor selecting them, on ports Prometheus may reach, with a job name the
    FinmlopsScrapeTargetDown alert matches."""
    docs = load_documents(rendered[target])
    (monitor,) = by_kind(docs, "PodMonitor").values()
    selector = monitor["spec"]["selector"]
    if "Server" in {d["kind"] for d in docs}:
        assert selector["matchLabels"] == {"seldon-server-name": next(iter(by_kind(docs, "Server")))}
    else:
        assert by_kind(docs, "InferenceService")
        assert {"key": "serving.kserve.io/inferenceservice", "operator": "Exists"} in selector["matchExpressions"]
    allowed = {
        p["port"] for p in by_kind(docs, "NetworkPolicy")["allow-prometheus-scrape"]["spec"]["ingress"][0]["ports"]
    }
    (rule,) = [
        r
        for g in by_kind(docs, "PrometheusRule")["finmlops-alerts"]["spec"]["groups"]
        for r in g["rules"]
        if r["alert"] == "FinmlopsScrapeTargetDown"
    ]
    job_pattern = re.search(r'job=~"([^"]+)"', rule["expr"])[1]
    for endpoint in monitor["spec"]["podMetricsEndpoints"]:
        relabel = {r["targetLabel"]: r for r in endpoint.get("relabelings", [])}
        address = relabel.get("__address__", {}).get("replacement")
        port = int(address.rsplit(":", 1)[1]) if address else OPERATOR_PORTS[endpoint["port"]]
        assert port in allowed, f"{endpoint['port']} -> {port} is not open to Prometheus"
        assert re.fullmatch(job_pattern, relabel["job"]["replacement"])
        assert endpoint["path"] == "/metrics"


def test_ray_job_runs_the_walk_forward_on_the_ray_cluster(rendered: dict[str, str]) -> None:
    docs = load_documents(rendered["jobs/ray"])
    cluster = by_kind(docs, "RayCluster")["finmlops-ray"]["spec"]
    job = by_kind(docs, "RayJob")["finmlops-walk-forward"]["spec"]
    assert job["clusterSelector"] == {"ray.io/cluster": "finmlops-ray"} and job["submissionMode"] == "HTTPMode"
    entrypoint = job["entrypoint"]
    assert entrypoint.startswith("finmlops evaluate") and "--executor ray --ray-address auto" in entrypoint
    images = {c["image"] for g in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
              for c in g["template"]["spec"]["containers"]}  # fmt: skip
    assert images == {"ghcr.io/finmlops/finmlops-train:0.1.0"}  # the image with the distributed extra
    broken = copy.deepcopy(docs)
    by_kind(broken, "RayCluster")["finmlops-ray"]["spec"]["workerGroupSpecs"][0]["template"]["spec"].pop(
        "securityContext"
    )
    assert any("worker group cpu" in p and "runAsNonRoot" in p for p in check_all(broken))
