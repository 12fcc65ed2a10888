"""Shared fixtures: rendered Kustomize targets (one ``kubectl kustomize`` per target per session) and paths."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
SHARED = REPO.parent / "shared"
VALIDATOR = SHARED / "tools" / "validate_k8s.py"
SCHEMAS = SHARED / "k8s-schemas"

# Every serving choice is rendered, not only the two committed overlays: name -> (components, release overlay).
SERVING_VARIANTS = {
    "serving-finmlops": ["serving-finmlops"],
    "serving-seldon": ["serving-seldon"],
    "serving-kserve": ["serving-kserve"],
}
TARGETS = (
    "overlays/dev",
    "overlays/prod",
    "jobs/tuning",
    "jobs/ray",
    "argocd",
    *(f"overlays/_{v}" for v in SERVING_VARIANTS),
)


def kustomize(path: Path) -> str:
    """``kubectl kustomize path``; skips the test when kubectl is not installed."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (needed for `kubectl kustomize`)")
    run = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, f"kubectl kustomize {path} failed:\n{run.stderr}"
    return run.stdout


def copy_k8s(dest: Path) -> Path:
    """A copy of deploy/k8s under ``dest`` with one extra overlay per serving choice (release from prod)."""
    root = dest / "k8s"
    shutil.copytree(K8S, root)
    for name, components in SERVING_VARIANTS.items():
        overlay = root / "overlays" / f"_{name}"
        overlay.mkdir()
        shutil.copy(root / "overlays" / "prod" / "release.yaml", overlay / "release.yaml")
        wiring = [f"../../components/{c}" for c in [*components, "release-wiring"]]
        overlay.joinpath("kustomization.yaml").write_text(
            yaml.safe_dump({"resources": ["../../base", "release.yaml"], "components": wiring})
        )
    return root


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests that take ``target`` run once per Kustomize target."""
    if "target" in metafunc.fixturenames and not any(
        m.name == "parametrize" for m in metafunc.definition.iter_markers()
    ):
        metafunc.parametrize("target", TARGETS)


@pytest.fixture
def validator() -> Path:
    """The shared CRD schema validator; skips, naming ../shared, when it is not checked out beside the repository
    (CI has it, and .ci/run fails without it)."""
    for needed in (SCHEMAS, VALIDATOR):
        if not needed.exists():
            pytest.skip(f"../shared/{needed.relative_to(SHARED)} not found: {needed} (the CRD schemas live in CI only)")
    return VALIDATOR


@pytest.fixture(scope="session")
def k8s_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_k8s(tmp_path_factory.mktemp("deploy"))


@pytest.fixture(scope="session")
def rendered(k8s_copy: Path) -> dict[str, str]:
    """Target (path under deploy/k8s) -> rendered YAML text."""
    return {target: kustomize(k8s_copy / target) for target in TARGETS}
