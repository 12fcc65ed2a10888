"""Every fenced example in README.md and docs/*.md is executed or checked here, by language, or is marked
``<!-- example: not run: <reason> -->`` on the line above its fence and listed in ``NOT_RUN`` (so that none is
forgotten and every reason is reviewed).

- bash / console: ``finmlops`` commands are parsed by the real CLI (command, options, choices, required options);
  a block with ``curl`` runs for real, in bash, against a live server (``localhost:8080`` rewritten to its port).
- yaml: experiment fragments go through the server's config parser; a Kustomize ``images`` fragment must name an
  image of deploy/k8s. json: parses. dockerfile: its lines are in that order in deploy/docker/Dockerfile.mlserver.
  promql: each query is one that monitoring/ evaluates (tests/monitoring/test_prometheus_live.py runs them).
- python: runs in a fresh interpreter (slow).
The README tour's commands are parsed by the CLI too, with their placeholders filled in.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer.main
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:^<!-- example: (?P<mark>.*?) -->\n)?^```(?P<lang>\w*)\n(?P<body>.*?)^```$", re.S | re.M)
DIAGRAMS = {"mermaid"}  # pictures, not examples (docs/architecture.md's layers are checked by their own test)
RUNNERS = {"bash", "console", "yaml", "json", "dockerfile", "promql", "python"}

# (document, first line of the block) -> why it is not run. Must equal the marked blocks: see the test below.
NOT_RUN = {
    ("README.md", 'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[all]" && finmlops run'): "43 min",
    ("README.md", 'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[all,dev]" && python -m pytest'): (
        ".ci/run"
    ),
    ("docs/deploy.md", "mlflow server --host 0.0.0.0 --port 5000 \\"): "PostgreSQL and S3",
    ("docs/deploy.md", "TAG=$(git rev-parse HEAD | cut -c1-12)"): "docker",
    (
        "docs/deploy.md",
        "docker build -f deploy/docker/Dockerfile.mlserver -t ghcr.io/finmlops/finmlops-mlserver:1.7.1-ort1.23.2 deploy/docker",  # noqa: E501
    ): "docker",
    (
        "docs/deploy.md",
        "# S3 credentials for MLflow artifacts, in both namespaces (training logs models, the finmlops server downloads them)",  # noqa: E501
    ): "Kubernetes cluster",
    ("docs/report.md", "finmlops serve --config serving.yaml &"): "Prometheus",
    ("docs/explain.md", "import sys, tempfile, time"): "captum",
    ("docs/serving.md", "import numpy as np"): (
        "needs a running server; tests/serving/test_grpc_clients.py makes these calls"
    ),
}


@dataclass(frozen=True)
class Example:
    """One fenced block: its document (relative to the repository), line of the fence, language, marker, text."""

    doc: str
    line: int
    lang: str
    mark: str | None
    body: str

    @property
    def key(self) -> tuple[str, str]:
        return self.doc, self.body.splitlines()[0]

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}"


def examples() -> list[Example]:
    found = []
    for path in DOCS:
        text = path.read_text()
        for m in BLOCK.finditer(text):
            line = text[: m.start("lang")].count("\n") + 1
            found.append(Example(str(path.relative_to(ROOT)), line, m["lang"], m["mark"], m["body"]))
    return found


def runnable(*langs: str) -> list[Any]:
    return [pytest.param(e, id=str(e)) for e in examples() if e.lang in langs and e.mark is None]


def test_every_block_has_a_language_and_every_unrun_block_is_listed_with_its_reason() -> None:
    blocks = [e for e in examples() if e.lang not in DIAGRAMS]
    assert len(blocks) > 20
    assert [str(e) for e in blocks if e.lang not in RUNNERS] == [], "label each fence with a language this file runs"
    marked = {e.key: e.mark for e in blocks if e.mark is not None}
    assert all(m.startswith("not run") and len(m) > 20 for m in marked.values()), marked
    assert set(marked) == set(NOT_RUN), "a block was marked or unmarked: update NOT_RUN (and review the reason)"
    for key, word in NOT_RUN.items():
        assert word in marked[key], (key, marked[key])


# --- shell ----------------------------------------------------------------------------------------------------


def commands(body: str, console: bool = False) -> list[list[str]]:
    """The block's commands as argument lists: continuations joined, comments, ``&``, redirections and leading
    ``VAR=value`` assignments dropped; in a console block only the ``$ `` lines."""
    text = re.sub(r"\\\n", " ", body)
    lines = [ln[2:] for ln in text.splitlines() if ln.startswith("$ ")] if console else text.splitlines()
    result = []
    for line in lines:
        words = shlex.split(line, comments=True)
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            words = words[1:]
        if words and words[-1] == "&":
            words = words[:-1]
        if ">" in words:
            words = words[: words.index(">")]
        if words:
            result.append(words)
    return result


def synopsis_variants(words: list[str], placeholders: dict[str, str] | None = None) -> list[list[str]]:
    """Every command a synopsis stands for: ``[optional]`` brackets removed, ``a|b`` value alternatives and
    ``--x X|--y Y`` option alternatives expanded (each one is checked), then ``placeholders`` filled in."""
    text = " ".join(words).replace("[", " ").replace("]", " ")
    text = re.sub(r"(--[\w-]+ \S+?)\|(--[\w-]+ \S+)", lambda m: m[0].replace(" ", "\0"), text)
    choices = [w.split("|") for w in text.split()]
    fill = placeholders or {}
    return [
        [fill.get(part, part) for word in combo for part in word.split("\0")] for combo in itertools.product(*choices)
    ]


def parse_cli(args: list[str]) -> None:
    """Parse ``finmlops <args>`` as the CLI would, down to the leaf command, without running it: an unknown
    command or option, a bad choice or a missing required option raises the CLI's ``UsageError``."""
    from finmlops.cli import app

    command: Any = typer.main.get_command(app)
    ctx = command.make_context("finmlops", list(args))
    while hasattr(command, "resolve_command"):  # a group (typer vendors its own click, so no isinstance)
        if not [*ctx._protected_args, *ctx.args] and command.invoke_without_command:
            return  # a group that is a command too (`finmlops models`)
        name, command, rest = command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        assert command is not None and name is not None, args
        ctx = command.make_context(name, rest, parent=ctx)


def check_command(words: list[str], where: str, placeholders: dict[str, str] | None = None) -> None:
    if words[0] == "finmlops":
        for variant in synopsis_variants(words[1:], placeholders):
            try:
                parse_cli(variant)
            except Exception as error:
                if "UsageError" not in {c.__name__ for c in type(error).__mro__}:
                    raise
                raise AssertionError(f"{where}: `finmlops {' '.join(variant)}`: {error}") from None
    elif words[0] == "pytest":
        assert all((ROOT / w.split("::")[0]).exists() for w in words[1:] if not w.startswith("-")), (where, words)
    elif words[0] not in {"curl", "python", "BODY=$(python", "')"}:
        raise AssertionError(f"{where}: `{words[0]}` is not a command this test can check: mark the block not run")


@pytest.mark.parametrize("example", runnable("bash", "console"))
def test_shell_example_commands_parse(example: Example) -> None:
    if "curl " in example.body:
        return  # run for real below
    found = commands(example.body, console=example.lang == "console")
    assert found, example
    for words in found:
        check_command(words, str(example))


TOUR_PLACEHOLDERS = {
    "X": "baseline", "M": "baseline-predictor", "N": "1", "DIR": "/tmp/finmlops-docs",
    "E": "financial-ab-test-experiment", "NAME": "drift", "URL": "http://127.0.0.1:8080", "F": "serving.yaml",
}  # fmt: skip


def test_readme_tour_commands_parse() -> None:
    """Each row of README's tour, placeholders filled in, is a command the CLI accepts (required options too)."""
    tour = (ROOT / "README.md").read_text().split("## A short tour", 1)[1].split("\n## ", 1)[0]
    first_cells = re.findall(r"^\| (`finmlops .*?`) \| ", tour, flags=re.M)
    rows = [code for cell in first_cells for code in re.findall(r"`(finmlops [^`]+)`", cell)]
    assert len(rows) >= 20
    for row in rows:
        check_command(row.replace("\\|", "|").split(), f"README tour `{row}`", TOUR_PLACEHOLDERS)


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The documented A/B deployment (serving.yaml's experiment) with models as wide as the real variants' feature
    sets and their cards, and an admin token; yields ``(base URL, token)``."""
    from finmlops_testing.serving import ab_config, carded_model, serve

    from finmlops.serving.app import ServingApp
    from finmlops.serving.config import parse_config

    folder = tmp_path_factory.mktemp("docs-server")
    config = ab_config(
        carded_model(folder / "baseline", "baseline"), carded_model(folder / "enhanced", "enhanced", 0.5)
    )
    config["auth"] = {"admin_tokens": {"docs": "docs-example-admin-token"}}
    app = ServingApp(parse_config(config), registry=None, request_log=folder / "requests.db")
    with serve(app) as base:
        yield base, "docs-example-admin-token"


@pytest.mark.parametrize("example", [p for p in runnable("bash") if "curl " in p.values[0].body])
def test_curl_example_runs_against_a_real_server(example: Example, docs_server: Any) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    base, token = docs_server
    script = example.body.replace("localhost:8080", base.removeprefix("http://")).replace("http://127.0.0.1:8080", base)
    env = {**os.environ, "TOKEN": token, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", script.rstrip() + " -w '\\n%{http_code}'"], env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    body, status = run.stdout.rsplit("\n", 1)
    assert status == "200", body
    answer = json.loads(body)
    if "outputs" in answer:
        assert 0.0 < answer["outputs"][0]["data"][0] < 1.0, answer


# --- data blocks ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("example", runnable("yaml"))
def test_yaml_example_is_what_its_reader_accepts(example: Example) -> None:
    from finmlops.serving.config import parse_config

    data = yaml.safe_load(example.body if not example.body.startswith("  - ") else "experiments:\n" + example.body)
    if "images" in data:
        names = {i["name"] for i in data["images"]}
        kustomizations = "".join(p.read_text() for p in (ROOT / "deploy" / "k8s").rglob("kustomization.yaml"))
        assert all(f"name: {n}" in kustomizations or f"newName: {n}" in kustomizations for n in names), names
        return
    models = {c["name"] for e in data["experiments"] for c in e["candidates"]}
    for e in data["experiments"]:
        models |= set(e.get("shadows", [])) | ({e["mirror"]["name"]} if "mirror" in e else set())
    parse_config({"models": [{"name": m, "source": f"/nowhere/{m}.onnx"} for m in sorted(models)], **data})


@pytest.mark.parametrize("example", runnable("json"))
def test_json_example_parses(example: Example) -> None:
    json.loads(example.body)


@pytest.mark.parametrize("example", runnable("dockerfile"))
def test_dockerfile_example_is_the_shipped_file(example: Example) -> None:
    shipped = [ln for ln in (ROOT / "deploy" / "docker" / "Dockerfile.mlserver").read_text().splitlines()]
    lines = [ln for ln in example.body.splitlines() if ln.strip()]
    positions = [shipped.index(ln) for ln in lines]
    assert positions == sorted(positions), "the example's lines are out of the shipped file's order"


@pytest.mark.parametrize("example", runnable("promql"))
def test_promql_example_reads_series_the_server_exports(example: Example, docs_server: Any) -> None:
    """Every series a query reads is in a live scrape of the server (after one answered request and its feedback);
    the query syntax itself is checked where Prometheus runs (tests/monitoring/test_prometheus_live.py)."""
    from finmlops_testing.serving import Client, v2_body

    client = Client(docs_server[0])
    x = np.zeros((1, 10, 16), np.float32)
    assert client.request("POST", "/v2/models/baseline-predictor/versions/1/infer", v2_body(x, id="promql-1"))[0] == 200
    assert client.request("POST", "/v2/feedback", {"id": "promql-1", "outcome": 1})[0] == 200
    scrape = client.request("GET", "/metrics")[1]
    for series in set(re.findall(r"\bfinmlops_\w+", example.body)):
        assert re.search(rf"^{series}[{{ ]", scrape, flags=re.M), f"{series} is not in the server's /metrics"


@pytest.mark.slow
@pytest.mark.parametrize("example", runnable("python"))
def test_python_example_runs(example: Example, tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-c", example.body], cwd=tmp_path, capture_output=True, text=True,
                         timeout=1800)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
