"""Issue 11.2 in the manifests: the finmlops server's admin token comes from a Secret, and admin is reachable
neither through the Service nor through any NetworkPolicy (it listens on loopback, on a port of its own)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from finmlops.deploy.checks import load_documents
from finmlops.serving.config import parse_config

TARGETS = ["overlays/dev", "overlays/_serving-finmlops"]


def _objects(rendered: dict[str, str], target: str) -> list[dict[str, Any]]:
    return load_documents(rendered[target])


def _serving_yaml(docs: list[dict[str, Any]]) -> str:
    config_map = next(
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("finmlops-serving")
    )
    return config_map["data"]["serving.yaml"]


def _server(docs: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "finmlops-server")
    return deployment["spec"]["template"]["spec"]["containers"][0]


def _admits(policy: dict[str, Any], port: int) -> bool:
    """Whether any ingress rule of ``policy`` lets TCP traffic reach ``port`` (a rule without ports admits all)."""
    for rule in policy["spec"].get("ingress", []):
        ports = rule.get("ports")
        if not ports or any(p.get("port") in (port, None) for p in ports):
            return True
    return False


@pytest.mark.parametrize("target", TARGETS)
def test_admin_token_comes_from_a_secret_and_the_admin_port_is_loopback(
    rendered: dict[str, str], target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = _objects(rendered, target)
    text = _serving_yaml(docs)
    raw = yaml.safe_load(text)
    assert list(raw["auth"]["admin_tokens"].values()) == ["${FINMLOPS_ADMIN_TOKEN}"]  # no literal token in git
    env = {e["name"]: e for e in _server(docs)["env"]}
    assert env["FINMLOPS_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "finmlops-serving-admin",
        "key": "token",
    }
    monkeypatch.setenv("FINMLOPS_ADMIN_TOKEN", "a-token-from-the-secret-0123")
    config = parse_config(raw, "serving.yaml")  # what the server will read, as it will read it
    assert config.auth.admin_tokens == {"operator": "a-token-from-the-secret-0123"} and not config.auth.insecure_admin
    assert config.server.admin_port is not None and config.server.admin_host == "127.0.0.1"


@pytest.mark.parametrize("target", TARGETS)
def test_nothing_admits_traffic_to_the_admin_port(rendered: dict[str, str], target: str) -> None:
    docs = _objects(rendered, target)
    admin_port = parse_config(
        yaml.safe_load(_serving_yaml(docs).replace("${FINMLOPS_ADMIN_TOKEN}", "x" * 32)), "serving.yaml"
    ).server.admin_port
    server = _server(docs)
    assert admin_port not in {p["containerPort"] for p in server["ports"]}
    service = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "finmlops-server")
    assert {p["port"] for p in service["spec"]["ports"]} == {8080, 8081} and admin_port not in (8080, 8081)
    labels = {"app.kubernetes.io/name": "finmlops-server", "finmlops.io/role": "serving"}
    policies = [
        d
        for d in docs
        if d["kind"] == "NetworkPolicy"
        and d["metadata"]["namespace"] == "financial-inference"
        and d["spec"]["podSelector"].get("matchLabels", {}).items() <= labels.items()
        and "Ingress" in d["spec"]["policyTypes"]
    ]
    assert policies, "no ingress policy selects the server pods"
    assert [p["metadata"]["name"] for p in policies if _admits(p, admin_port)] == []
    own = next(p for p in policies if p["metadata"]["name"] == "finmlops-server-ingress")
    sources = {
        s["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for s in own["spec"]["ingress"][0]["from"]
    }
    assert sources == {"ingress-nginx", "monitoring"} and _admits(own, 8080) and _admits(own, 8081)


def test_the_check_catches_a_policy_that_opens_every_port() -> None:
    policy = {"spec": {"ingress": [{"from": [{"namespaceSelector": {}}]}]}}
    assert _admits(policy, 8081)
    assert not _admits({"spec": {"ingress": [{"ports": [{"protocol": "TCP", "port": 8080}]}]}}, 8081)


@pytest.mark.parametrize("target", TARGETS)
def test_the_server_exposes_grpc_with_a_grpc_health_probe(rendered: dict[str, str], target: str) -> None:
    """The container serves gRPC on the port it declares, kubelet probes it with grpc.health.v1, the Service
    carries it as h2c, and serving.yaml's gRPC port is that port (not the admin one)."""
    docs = _objects(rendered, target)
    server = _server(docs)
    args = server["args"]
    grpc_port = int(args[args.index("--grpc-port") + 1])
    assert {p["name"]: p["containerPort"] for p in server["ports"]}["grpc"] == grpc_port
    assert server["livenessProbe"]["grpc"] == {"port": grpc_port, "service": "inference.GRPCInferenceService"}
    config = parse_config(yaml.safe_load(_serving_yaml(docs).replace("${FINMLOPS_ADMIN_TOKEN}", "x" * 32)))
    assert config.server.grpc_port == grpc_port != config.server.admin_port
    service = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "finmlops-server")
    grpc_svc = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
    assert (grpc_svc["port"], grpc_svc["targetPort"]) == (grpc_port, "grpc")
    assert grpc_svc["appProtocol"] == "kubernetes.io/h2c"
