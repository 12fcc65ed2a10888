"""`finmlops deploy render|promote` against a real MLflow registry (sqlite in a temp dir), on a temp copy of the
overlays, never the committed ones."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
mlflow = pytest.importorskip("mlflow")

from finmlops.deploy.release import (  # noqa: E402
    GIT_COMMIT_TAG,
    MODEL_NAMES,
    DeployError,
    check_servable,
    promote,
    read_release,
    render,
)

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
NEW_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):  # no hints: MLflow would validate inputs against them
        return model_input


def register(name: str, commit: str) -> str:
    """Log a tiny pyfunc model in a run tagged with ``commit`` and register it; returns the new version."""
    with mlflow.start_run(tags={GIT_COMMIT_TAG: commit}):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=Echo(), pip_requirements=["mlflow"], registered_model_name=name
        )
    return str(info.registered_model_version)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Every model has a champion (version 1); enhanced-predictor also has a challenger (version 2)."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    # An explicit artifact location: the default would be ./mlruns in the current directory.
    client.create_experiment("deploy-tests", artifact_location=(root / "artifacts").as_uri())
    mlflow.set_experiment("deploy-tests")
    for name in MODEL_NAMES:
        client.set_registered_model_alias(name, "champion", register(name, COMMIT))
    client.set_registered_model_alias("enhanced-predictor", "challenger", register("enhanced-predictor", NEW_COMMIT))
    yield client
    mlflow.set_tracking_uri(previous)


@pytest.fixture
def k8s(tmp_path: Path) -> Path:
    """A git checkout holding a copy of deploy/k8s, so `git diff` shows what promote changed."""
    shutil.copytree(K8S, tmp_path / "deploy" / "k8s")
    git = lambda *args: subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "copy")
    return tmp_path / "deploy" / "k8s"


def test_render_writes_every_served_alias_and_the_matching_image(registry: Any, k8s: Path) -> None:
    change = render(k8s, "prod", registry, allow_local_uris=True)
    data = read_release(k8s / "overlays" / "prod" / "release.yaml")
    for name in MODEL_NAMES:
        version = registry.get_model_version_by_alias(name, "champion").version
        assert data[f"{name}.champion.version"] == str(version)
        assert data[f"{name}.champion.uri"] == registry.get_model_version_download_uri(name, version)
    challenger = registry.get_model_version_by_alias("enhanced-predictor", "challenger")
    assert data["enhanced-predictor.challenger.version"] == str(challenger.version) == "2"
    assert data["serve-image"] == f"ghcr.io/finmlops/finmlops-serve:{COMMIT[:12]}"
    assert data["train-image"] == change.train_image == f"ghcr.io/finmlops/finmlops-train:{COMMIT[:12]}"
    assert change.changed and change.diff.startswith("diff --git")
    assert any("which a cluster cannot download" in w for w in change.warnings)  # a sqlite registry stores locally
    again = render(k8s, "prod", registry, allow_local_uris=True)
    assert not again.changed and again.diff == ""


def test_rendered_overlay_builds_with_the_registry_uris(registry: Any, k8s: Path) -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (needed for `kubectl kustomize`)")
    render(k8s, "prod", registry, allow_local_uris=True)
    out = subprocess.run(
        ["kubectl", "kustomize", str(k8s / "overlays" / "prod")], capture_output=True, text=True, check=True
    )
    models = {
        d["metadata"]["name"]: d["spec"]["storageUri"]
        for d in yaml.safe_load_all(out.stdout)
        if d and d["kind"] == "Model"
    }
    version = registry.get_model_version_by_alias("transformer-predictor", "champion").version
    assert models["transformer-predictor"] == registry.get_model_version_download_uri("transformer-predictor", version)
    images = {
        step.get("container", step.get("script", {})).get("image")
        for d in yaml.safe_load_all(out.stdout)
        if d and d["kind"] == "WorkflowTemplate"
        for step in d["spec"]["templates"]
    } - {None}
    assert images == {f"ghcr.io/finmlops/finmlops-train:{COMMIT[:12]}"}  # render pins the training steps too


def test_promote_updates_one_entry_and_prints_the_git_diff(registry: Any, k8s: Path) -> None:
    render(k8s, "prod", registry, allow_local_uris=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "render"], cwd=k8s, check=True
    )
    before = read_release(k8s / "overlays" / "prod" / "release.yaml")
    registry.set_registered_model_alias("enhanced-predictor", "champion", "2")
    try:
        change = promote(k8s, "prod", registry, "enhanced-predictor", "champion", allow_local_uris=True)
    finally:
        registry.set_registered_model_alias("enhanced-predictor", "champion", "1")
    after = read_release(k8s / "overlays" / "prod" / "release.yaml")
    assert {k for k in after if after[k] != before[k]} == {
        "enhanced-predictor.champion.uri",
        "enhanced-predictor.champion.version",
    }
    assert after["enhanced-predictor.champion.uri"] == registry.get_model_version_download_uri(
        "enhanced-predictor", "2"
    )
    assert f"-  enhanced-predictor.champion.uri: {before['enhanced-predictor.champion.uri']}" in change.diff
    assert f"+  enhanced-predictor.champion.uri: {after['enhanced-predictor.champion.uri']}" in change.diff
    assert "+  enhanced-predictor.champion.version: '2'" in change.diff
    assert any(NEW_COMMIT in w for w in change.warnings)  # v2 was trained at another commit than the image


def test_missing_alias_fails_and_leaves_the_file_intact(registry: Any, k8s: Path) -> None:
    path = k8s / "overlays" / "dev" / "release.yaml"
    text = path.read_text()
    path.write_text(text.replace("enhanced-predictor.champion", "enhanced-predictor.canary"))
    broken = path.read_text()
    with pytest.raises(DeployError, match="registry has no enhanced-predictor@canary"):
        render(k8s, "dev", registry)
    assert path.read_text() == broken


def test_promote_refuses_an_alias_the_overlay_does_not_serve(registry: Any, k8s: Path) -> None:
    with pytest.raises(DeployError, match="does not serve enhanced-predictor@challenger"):
        promote(k8s, "dev", registry, "enhanced-predictor", "challenger")


def test_champions_from_different_commits_need_an_explicit_tag(registry: Any, k8s: Path) -> None:
    registry.set_registered_model_alias("enhanced-predictor", "champion", "2")
    try:
        with pytest.raises(DeployError, match="different commits"):
            render(k8s, "dev", registry, allow_local_uris=True)
        change = render(k8s, "dev", registry, image_tag="v1.2.3", allow_local_uris=True)
    finally:
        registry.set_registered_model_alias("enhanced-predictor", "champion", "1")
    assert change.serve_image == "ghcr.io/finmlops/finmlops-serve:v1.2.3"
    assert change.train_image == "ghcr.io/finmlops/finmlops-train:v1.2.3"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.replace("serve-image:", "image:"),
            "data must be a mapping with the keys serve-image and train-image",
        ),
        (
            lambda t: t.replace("train-image:", "image:"),
            "data must be a mapping with the keys serve-image and train-image",
        ),
        (
            lambda t: t.replace("baseline-predictor.champion.version: '0'", "baseline-predictor.champion.version: 0"),
            "data.baseline-predictor.champion.version must be a string",
        ),
        (
            lambda t: t.replace("baseline-predictor.champion.uri", "baseline-predictor.uri"),
            "data.baseline-predictor.uri is not",
        ),
        (lambda t: t.replace("name: finmlops-release", "name: other"), "metadata.name must be finmlops-release"),
    ],
)
def test_bad_release_files_are_rejected_by_field(k8s: Path, edit: Any, message: str) -> None:
    path = k8s / "overlays" / "dev" / "release.yaml"
    path.write_text(edit(path.read_text()))
    with pytest.raises(DeployError, match=message) as info:
        read_release(path)
    assert str(path) in str(info.value)


def test_unknown_overlay_names_the_known_ones(registry: Any, k8s: Path) -> None:
    with pytest.raises(DeployError, match=r"overlays under .*: dev, prod"):
        render(k8s, "staging", registry)


def test_cli_render_and_promote(registry: Any, k8s: Path) -> None:
    from typer.testing import CliRunner

    from finmlops.cli import app

    uri = registry.tracking_uri
    runner = CliRunner()
    refused = runner.invoke(app, ["deploy", "render", "--k8s-dir", str(k8s), "--tracking-uri", uri, "--in-place"])
    assert refused.exit_code == 1 and "lives at file://" in refused.output
    # One line per model (as long as its URI), the advice on short lines: not one 900-character line (issue 15.9).
    lines = refused.output.splitlines()
    assert sum("lives at file://" in line for line in lines) == len(MODEL_NAMES)  # dev serves each champion
    assert max(len(line) for line in lines if "lives at" not in line) <= 100, refused.output
    result = runner.invoke(
        app,
        [
            "deploy",
            "render",
            "--overlay",
            "dev",
            "--k8s-dir",
            str(k8s),
            "--tracking-uri",
            uri,
            "--json",
            "--allow-local-uris",
            "--in-place",
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["changed"] and len(payload["refs"]) == len(MODEL_NAMES)
    result = runner.invoke(
        app,
        [
            "deploy",
            "promote",
            "--model",
            "baseline-predictor",
            "--k8s-dir",
            str(k8s),
            "--tracking-uri",
            uri,
            "--allow-local-uris",
        ],
    )
    assert result.exit_code == 0 and "is already up to date" in result.stdout
    result = runner.invoke(
        app, ["deploy", "promote", "--model", "nope-predictor", "--k8s-dir", str(k8s), "--tracking-uri", uri]
    )
    assert result.exit_code == 1 and "does not serve nope-predictor@champion" in result.output


def test_cli_render_defaults_to_a_preview_in_the_workspace(registry: Any, k8s: Path) -> None:
    """On a laptop (a local registry, file:// artifacts) `deploy render` works: it writes the rendered file under
    <home>/deploy/<overlay>/, warns about each local URI, prints the diff and leaves the tracked file alone."""
    from typer.testing import CliRunner

    from finmlops.cli import app
    from finmlops.settings import load_settings

    tracked = k8s / "overlays" / "dev" / "release.yaml"
    before = tracked.read_text()
    args = ["deploy", "render", "--k8s-dir", str(k8s), "--tracking-uri", registry.tracking_uri]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    preview = load_settings().home / "deploy" / "dev" / "release.yaml"
    assert tracked.read_text() == before and preview.is_file()
    rendered = read_release(preview)
    version = registry.get_model_version_by_alias("baseline-predictor", "champion").version
    assert rendered["baseline-predictor.champion.uri"].startswith("file://")
    assert rendered["baseline-predictor.champion.version"] == str(version)
    assert f"wrote {preview}" in result.stdout and f"+++ b/{preview}" in result.stdout
    assert "baseline-predictor@champion lives at file://" in " ".join(result.output.split())
    custom = k8s.parent / "elsewhere" / "release.yaml"
    assert CliRunner().invoke(app, [*args, "--out", str(custom)]).exit_code == 0 and custom.is_file()
    both = CliRunner().invoke(app, [*args, "--out", str(custom), "--in-place"])
    assert both.exit_code == 2 and "not both" in both.output


def test_render_refuses_uris_a_cluster_cannot_download(registry: Any, k8s: Path) -> None:
    """The sqlite registry stores artifacts under file://: without --allow-local-uris nothing is written, and the
    error names every model, alias and URI at fault."""
    path = k8s / "overlays" / "prod" / "release.yaml"
    before = path.read_text()
    with pytest.raises(DeployError) as info:
        render(k8s, "prod", registry)
    for name in MODEL_NAMES:
        uri = registry.get_model_version_download_uri(
            name, registry.get_model_version_by_alias(name, "champion").version
        )
        assert f"{name}@champion v1 lives at {uri}" in str(info.value)
    assert "--default-artifact-root s3://" in str(info.value) and "--allow-local-uris" in str(info.value)
    with pytest.raises(DeployError, match="enhanced-predictor@challenger v2 lives at file://"):
        promote(k8s, "prod", registry, "enhanced-predictor", "challenger")
    assert path.read_text() == before


@pytest.fixture
def object_store_registry(tmp_path: Path) -> Any:
    """A real registry whose versions point at object storage (s3://) or at MLflow's artifact proxy
    (mlflow-artifacts:/, what `mlflow server --serve-artifacts` gives); no artifact is uploaded."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    for i, name in enumerate(MODEL_NAMES):
        client.create_registered_model(name)
        version = client.create_model_version(name, f"s3://mlflow-artifacts/1/models/m-{i}/artifacts")
        client.set_registered_model_alias(name, "champion", version.version)
    version = client.create_model_version("enhanced-predictor", "mlflow-artifacts:/1/models/m-9/artifacts")
    client.set_registered_model_alias("enhanced-predictor", "challenger", version.version)
    return client


def test_object_store_uris_render_and_proxied_ones_are_refused(object_store_registry: Any, k8s: Path) -> None:
    change = render(k8s, "dev", object_store_registry)
    assert change.changed and all(r.uri.startswith("s3://") for r in change.refs)
    assert not any("cannot download" in w for w in change.warnings)
    with pytest.raises(DeployError, match=r"enhanced-predictor@challenger v2 lives at mlflow-artifacts:/1/models/m-9"):
        render(k8s, "prod", object_store_registry)
    forced = render(k8s, "prod", object_store_registry, allow_local_uris=True)
    assert read_release(forced.path)["enhanced-predictor.challenger.uri"].startswith("mlflow-artifacts:/")


@pytest.mark.parametrize(
    ("uri", "servable"),
    [
        ("s3://bucket/1/models/m-1/artifacts", True),
        ("gs://bucket/m/artifacts", True),
        ("https://store.example.com/m/artifacts", True),
        ("http://minio:9000/bucket/m", False),
        ("mlflow-artifacts:/1/models/m-1/artifacts", False),
        ("file:///tmp/mlruns/1/artifacts", False),
        ("/tmp/mlruns/1/artifacts", False),
        ("models:/baseline-predictor/1", False),
    ],
)
def test_servable_schemes(uri: str, servable: bool) -> None:
    from finmlops.deploy.release import ModelRef

    ref = ModelRef(model="m", alias="champion", version="1", uri=uri, git_commit=None)
    assert (check_servable([ref], allow_local_uris=True) == []) == servable
    if servable:
        assert check_servable([ref]) == []
    else:
        with pytest.raises(DeployError, match=f"m@champion v1 lives at {uri}"):
            check_servable([ref])
