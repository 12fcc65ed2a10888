"""Policy checks on rendered manifests (the output of ``kubectl kustomize``) that schemas cannot express.

Each check takes the list of documents and returns problems, one line each, naming the document and field; an
empty list means the manifests pass.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import yaml

Doc = dict[str, Any]
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|API_KEY|PRIVATE_KEY", re.IGNORECASE)
CREDENTIAL_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)


def load_documents(text: str) -> list[Doc]:
    """The non-empty YAML documents of a multi-document stream (e.g. ``kubectl kustomize`` output)."""
    return [d for d in yaml.safe_load_all(text) if d]


def name_of(doc: Doc) -> str:
    """``Kind namespace/name`` of a document, for messages."""
    meta = doc.get("metadata") or {}
    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{doc.get('kind')} {ns}{meta.get('name') or meta.get('generateName')}"


def pods(doc: Doc) -> Iterator[tuple[str, Doc, list[tuple[Doc, bool]]]]:
    """Every pod a document defines: (where, pod security context, [(container, long_running)]).

    Long-running containers serve traffic and need probes; batch containers (workflow steps, Jobs, init
    containers) finish instead and are bounded by deadlines.
    """
    kind, spec = doc.get("kind"), doc.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        pod = (spec.get("template") or {}).get("spec") or {}
        serving = kind != "Job"
        containers = [(c, serving) for c in pod.get("containers", [])]
        yield name_of(doc), pod.get("securityContext") or {}, containers + _batch(pod.get("initContainers"))
    elif kind == "CronJob":
        pod = spec["jobTemplate"]["spec"]["template"]["spec"]
        yield name_of(doc), pod.get("securityContext") or {}, _batch(pod.get("containers"))
    elif kind in ("WorkflowTemplate", "Workflow"):
        steps = [t.get("container") or t.get("script") for t in spec.get("templates", [])]
        yield name_of(doc), spec.get("securityContext") or {}, _batch([s for s in steps if s])
    elif kind in ("EventSource", "Sensor"):
        template = spec.get("template") or {}
        # Argo Events' container template has no probe fields: the controller owns the pod's lifecycle.
        yield name_of(doc), template.get("securityContext") or {}, _batch([template.get("container") or {}])
    elif kind == "Server":
        pod = spec.get("podSpec") or {}
        containers = [(c, c.get("name") == "mlserver") for c in pod.get("containers", [])]
        yield name_of(doc), pod.get("securityContext") or {}, containers
    elif kind in ("RayCluster", "RayJob"):
        # A RayJob may bring its own cluster (rayClusterSpec) or run on a RayCluster (clusterSelector: no pods).
        cluster = spec if kind == "RayCluster" else spec.get("rayClusterSpec") or {}
        groups = [("head", cluster.get("headGroupSpec"))] if cluster.get("headGroupSpec") else []
        groups += [(f"worker group {g.get('groupName')}", g) for g in cluster.get("workerGroupSpecs") or []]
        for group, spec_ in groups:
            pod = (spec_.get("template") or {}).get("spec") or {}
            # KubeRay adds its own readiness and liveness probes to Ray containers: checked as batch here.
            yield f"{name_of(doc)} {group}", pod.get("securityContext") or {}, _batch(pod.get("containers"))
    elif kind == "InferenceService":
        predictor = spec.get("predictor") or {}
        yield name_of(doc), predictor.get("securityContext") or {}, [(predictor.get("model") or {}, True)]


def _batch(containers: list[Doc] | None) -> list[tuple[Doc, bool]]:
    return [(c, False) for c in containers or []]


def check_containers(docs: list[Doc]) -> list[str]:
    """Resources (requests and limits), a restricted security context, non-root pods and serving probes."""
    problems = []
    for doc in docs:
        for where, pod_sc, containers in pods(doc):
            if pod_sc.get("runAsNonRoot") is not True or pod_sc.get("runAsUser") == 0:
                problems.append(f"{where}: pod securityContext must set runAsNonRoot: true (and not runAsUser 0)")
            for container, long_running in containers:
                label = f"{where} container {container.get('name', '<template>')}"
                resources = container.get("resources") or {}
                for part in ("requests", "limits"):
                    if not {"cpu", "memory"} <= set(resources.get(part) or {}):
                        problems.append(f"{label}: resources.{part} must set cpu and memory")
                sc = container.get("securityContext") or {}
                if sc.get("allowPrivilegeEscalation") is not False:
                    problems.append(f"{label}: securityContext.allowPrivilegeEscalation must be false")
                if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                    problems.append(f"{label}: securityContext.capabilities.drop must include ALL")
                if sc.get("runAsUser") == 0 or sc.get("runAsNonRoot") is False:
                    problems.append(f"{label}: must not run as root")
                if long_running and not (container.get("readinessProbe") and container.get("livenessProbe")):
                    problems.append(f"{label}: a serving container needs readinessProbe and livenessProbe")
    return problems


def check_no_secret_values(docs: list[Doc]) -> list[str]:
    """No Secret objects, no literal env values under secret-like names, no URLs with embedded credentials."""
    problems = [
        f"{name_of(d)}: Secrets are created out of band, never committed" for d in docs if d.get("kind") == "Secret"
    ]
    for doc in docs:
        for path, key, value in _walk(doc, ""):
            if key == "env" and isinstance(value, list):
                for i, env in enumerate(value):
                    if SECRET_NAME.search(str(env.get("name", ""))) and "value" in env:
                        problems.append(f"{name_of(doc)}: {path}[{i}] ({env['name']}) must use valueFrom.secretKeyRef")
            elif isinstance(value, str) and CREDENTIAL_URL.search(value):
                problems.append(f"{name_of(doc)}: {path} embeds credentials in a URL")
    return problems


def _walk(node: Any, path: str) -> Iterator[tuple[str, str, Any]]:
    """Every value under ``node`` once, as (JSON path, its key or "" in a list, value)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        child = f"{path}.{key}" if isinstance(node, dict) else f"{path}[{key}]"
        yield child, str(key) if isinstance(node, dict) else "", value
        yield from _walk(value, child)


def check_experiments(docs: list[Doc]) -> list[str]:
    """Seldon Experiments: weights add up to 100, the default is a candidate, every model referenced exists."""
    models = {
        ((d.get("metadata") or {}).get("namespace"), d["metadata"]["name"]) for d in docs if d.get("kind") == "Model"
    }
    problems = []
    for doc in (d for d in docs if d.get("kind") == "Experiment"):
        spec, ns = doc.get("spec") or {}, (doc.get("metadata") or {}).get("namespace")
        candidates = spec.get("candidates") or []
        total = sum(int(c.get("weight", 0)) for c in candidates)
        if total != 100:
            problems.append(f"{name_of(doc)}: candidate weights add up to {total}, not 100")
        names = [c.get("name") for c in candidates]
        if spec.get("default") and spec["default"] not in names:
            problems.append(f"{name_of(doc)}: default {spec['default']} is not a candidate")
        if spec.get("mirror"):
            names.append(spec["mirror"].get("name"))
        problems += [f"{name_of(doc)}: no Model {n} in namespace {ns}" for n in names if (ns, n) not in models]
    return problems


def check_all(docs: list[Doc]) -> list[str]:
    """Every policy check above."""
    return check_containers(docs) + check_no_secret_values(docs) + check_experiments(docs)
