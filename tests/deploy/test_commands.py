"""Every ``finmlops`` command line in the rendered manifests parses against the real CLI, and the finmlops server
serves the folders its init container fills: a flag the CLI lacks (``serve --model-dir``) or a config path that is
not mounted fails here, not in the cluster."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from finmlops.cli import app
from finmlops.deploy.checks import load_documents
from finmlops.serving.config import parse_config

# Argo substitutes these before the container starts; the test gives them values of the right shape.
CREATED = {"Y": "2024", "m": "06", "d": "28"}
PLACEHOLDER = re.compile(r"\{\{\s*([\w.-]+)\s*\}\}")


def parse_cli(argv: list[str]) -> dict[str, Any]:
    """Parse ``finmlops <argv>`` like the CLI would, without running it; returns the command's parameters.

    Raises AssertionError naming the command line and the parser's complaint (unknown option, bad value, missing
    command)."""
    command: Any = typer.main.get_command(app)
    rest = list(argv)
    path = ["finmlops"]
    while getattr(command, "commands", None) is not None:  # a group: descend into the named sub-command
        assert rest and rest[0] in command.commands, f"`{' '.join(path)}` has no command {rest[:1]} in {argv}"
        path.append(rest.pop(0))
        command = command.commands[path[-1]]
    try:
        return command.make_context(" ".join(path), rest).params
    except Exception as exc:  # typer's vendored click raises its own UsageError/BadParameter types
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        raise AssertionError(f"`finmlops {' '.join(argv)}`: {message}") from None


def substitute(arg: str, params: dict[str, str]) -> str:
    """``arg`` with Argo's ``{{...}}`` variables replaced by ``params`` (workflow parameters and friends)."""

    def value(match: re.Match[str]) -> str:
        assert match[1] in params, f"{arg}: no test value for {{{{{match[1]}}}}}"
        return params[match[1]]

    return PLACEHOLDER.sub(value, arg)


def finmlops_calls(doc: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """``(where, argv after "finmlops")`` of every finmlops CLI call a document's containers make."""
    kind, spec = doc["kind"], doc.get("spec") or {}
    where = f"{kind} {doc['metadata'].get('name')}"
    containers: list[tuple[str, dict[str, Any]]] = []
    params: dict[str, str] = {}
    if kind in ("Deployment", "StatefulSet", "Job"):
        pod = spec["template"]["spec"]
        containers = [(c["name"], c) for c in pod.get("initContainers", []) + pod["containers"]]
    elif kind == "WorkflowTemplate":
        params = {f"workflow.parameters.{p['name']}": p["value"] for p in spec["arguments"]["parameters"]}
        params |= {f"workflow.creationTimestamp.{k}": v for k, v in CREATED.items()}
        variants = json.loads(params["workflow.parameters.variants"])
        params["inputs.parameters.variant"] = variants[0]
        containers = [(t["name"], t.get("container") or t.get("script")) for t in spec["templates"]]
    calls = []
    for name, container in containers:
        if not container or not container["image"].rsplit("/", 1)[-1].startswith("finmlops-"):
            continue
        command, args = container.get("command") or ["finmlops"], container.get("args") or []
        if command[0] == "finmlops":  # the images' ENTRYPOINT
            calls.append((f"{where} container {name}", command[1:] + args))
        for argv in _literal_calls(container.get("source", "")):  # a script that runs the CLI in a subprocess
            calls.append((f"{where} script {name}", argv))
    return [(w, [substitute(a, params) for a in argv]) for w, argv in calls]


def _literal_calls(source: str) -> list[list[str]]:
    """The list literals ``["finmlops", ...]`` in Python ``source``; computed items become "1" (an id or number)."""
    if not source:
        return []
    tree = ast.parse(PLACEHOLDER.sub("x", source))
    return [
        [e.value if isinstance(e, ast.Constant) else "1" for e in node.elts[1:]]
        for node in ast.walk(tree)
        if isinstance(node, ast.List) and node.elts and getattr(node.elts[0], "value", None) == "finmlops"
    ]


def test_parser_rejects_what_the_cli_does_not_have() -> None:
    assert parse_cli(["serve", "--config", "/etc/finmlops/serving.yaml", "--port", "8080"])["port"] == 8080
    with pytest.raises(AssertionError, match="No such option: --model-dir"):
        parse_cli(["serve", "--host", "0.0.0.0", "--model-dir", "/models"])
    with pytest.raises(AssertionError, match="--trials"):
        parse_cli(["tune", "--trials", "many"])
    with pytest.raises(AssertionError, match="has no command"):
        parse_cli(["deploy", "publish"])


def test_every_finmlops_command_line_parses(rendered: dict[str, str]) -> None:
    seen, problems = set(), []
    for target, text in rendered.items():
        for doc in load_documents(text):
            for where, argv in finmlops_calls(doc):
                try:
                    parse_cli(argv)
                except AssertionError as exc:
                    problems.append(f"{target}: {where}: {exc}")
                seen.add(argv[0])
    assert problems == []
    # Not vacuous: the serving Deployment, the tuning Job, every workflow step and the promotion script were parsed.
    assert {"serve", "tune", "ingest", "features", "train", "evaluate", "register", "promote"} <= seen


def test_retraining_ingests_new_data(rendered: dict[str, str]) -> None:
    """The scheduled/alerted retrain ingests the workflow's ``source`` up to the day the workflow was created."""
    from finmlops.data import SOURCES

    sources = {}
    for overlay in ("overlays/dev", "overlays/prod"):
        (template,) = [d for d in load_documents(rendered[overlay]) if d["kind"] == "WorkflowTemplate"]
        (call,) = [argv for _, argv in finmlops_calls(template) if argv[0] == "ingest"]
        params = parse_cli(call)
        sources[overlay] = params["source"]
        assert params["end"] == "{Y}-{m}-{d}".format(**CREATED)
    assert sources == {"overlays/dev": "snapshot", "overlays/prod": "yahoo"}
    assert set(sources.values()) <= set(SOURCES)


def test_tuning_job_writes_its_trial_count_to_the_workspace(rendered: dict[str, str]) -> None:
    (job,) = [d for d in load_documents(rendered["jobs/tuning"]) if d["kind"] == "Job"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    home = next(e["value"] for e in container["env"] if e["name"] == "FINMLOPS_HOME")
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == home)
    assert not mount.get("readOnly"), "tune writes results/backtest_trials.json under FINMLOPS_HOME"
    params = parse_cli(container["args"])
    assert params["trials"] >= job["spec"]["parallelism"], "--trials is the study's total, shared by the workers"


# --- the finmlops server serves what its init container downloads -----------------------------------------------------


def _server(rendered: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    docs = load_documents(rendered["overlays/_serving-finmlops"])
    (deployment,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "finmlops-server"]
    return deployment["spec"]["template"]["spec"], {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}


def test_server_config_is_mounted_and_matches_the_seldon_experiment(
    rendered: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINMLOPS_ADMIN_TOKEN", "a-token-from-the-k8s-secret")  # the pod reads it from its Secret
    pod, configmaps = _server(rendered)
    (server,) = pod["containers"]
    config_path = Path(parse_cli(server["args"])["config"])
    mount = next(m for m in server["volumeMounts"] if config_path.parent == Path(m["mountPath"]))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    data = configmaps[volume["configMap"]["name"]]["data"]  # the generated name, with its hash suffix
    config = parse_config(yaml.safe_load(data[config_path.name]), str(config_path))
    models_mount = next(m["mountPath"] for m in server["volumeMounts"] if m["name"] == "models")
    assert all(Path(m.source).parent == Path(models_mount) for m in config.models)
    seldon = next(
        d for d in load_documents(rendered["overlays/_serving-seldon"]) if d["kind"] == "Experiment"
    )  # switching the serving component keeps the A/B test clients see
    (experiment,) = config.experiments
    assert experiment["name"] == seldon["metadata"]["name"]
    assert experiment["default"] == seldon["spec"]["default"]
    assert experiment["candidates"] == seldon["spec"]["candidates"]


def _tiny_onnx(path: Path, seq_len: int, n_features: int) -> None:
    """A graph with the serving contract: float32 [batch, seq_len, n_features] -> sigmoid(mean) [batch, 1]."""
    import onnx
    from onnx import TensorProto, helper

    from finmlops.contract import INPUT_NAME, OUTPUT_NAME

    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", [INPUT_NAME], ["mean"], axes=[2], keepdims=0),
            helper.make_node("ReduceMean", ["mean"], ["pooled"], axes=[1], keepdims=1),
            helper.make_node("Sigmoid", ["pooled"], [OUTPUT_NAME]),
        ],
        "tiny",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", seq_len, n_features])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_init_container_fills_the_folders_serving_yaml_names(
    rendered: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs the init container's script for real against a file-based MLflow store holding finmlops ONNX pyfuncs
    (URIs shaped like S3's: a folder ending in ``/artifacts``), with /models moved under tmp_path; the server then
    starts from the rendered serving.yaml: both models load and the A/B experiment routes between them."""
    monkeypatch.setenv("FINMLOPS_ADMIN_TOKEN", "a-token-from-the-k8s-secret")  # the pod reads it from its Secret
    mlflow = pytest.importorskip("mlflow")
    import numpy as np

    from finmlops.contract import OnnxExport
    from finmlops.serving.app import ServingApp
    from finmlops.tracking.packaging import ModelCard, log_onnx_model

    pod, configmaps = _server(rendered)
    (fetch,) = pod["initContainers"]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("fetch", artifact_location=(tmp_path / "artifacts").as_uri())
    env = dict(os.environ, HOME=str(tmp_path), MLFLOW_TRACKING_URI=uri)
    seq_len, n_features = 4, 3
    _tiny_onnx(tmp_path / "model.onnx", seq_len, n_features)
    exported = OnnxExport(tmp_path / "model.onnx", seq_len, n_features, max_abs_diff=0.0, n_checked=0)
    card = ModelCard(variant="baseline", feature_set="test", feature_names=["a", "b", "c"], seq_len=seq_len)
    windows = np.random.default_rng(0).normal(size=(8, seq_len, n_features)).astype(np.float32)
    # Both global URIs: an earlier test may have pointed MLflow's registry elsewhere.
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        for var in (e["name"] for e in fetch["env"] if e["name"].endswith("_URI")):
            with mlflow.start_run(experiment_id=experiment):
                info = log_onnx_model(exported, card, windows, registered_model_name=var.lower())
            # What `finmlops deploy render` writes into release.yaml, hence into this env var.
            env[var] = client.get_model_version_download_uri(var.lower(), info.registered_model_version)
            assert env[var].endswith("/artifacts")
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    assert fetch["command"] == ["python", "-c"]
    models = tmp_path / "models"
    script = fetch["args"][0].replace('"/models/', f'"{models}/')
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    # A rerun (the pod restarted, the emptyDir kept) replaces the folders instead of failing on them.
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    (server,) = pod["containers"]
    config_path = Path(parse_cli(server["args"])["config"])
    text = next(c["data"][config_path.name] for c in configmaps.values() if config_path.name in c.get("data", {}))
    config = parse_config(yaml.safe_load(text.replace(" /models/", f" {models}/")))
    app = ServingApp(config, registry=None, request_log=None)  # loads (and warm-up runs) every model, or raises
    assert sorted(e.spec.name for e in app.store.entries) == ["baseline-predictor", "enhanced-predictor"]
    assert [e.current.n_features for e in app.store.entries] == [n_features, n_features]
    assert [x.name for x in app.experiments] == ["baseline-vs-enhanced"]
