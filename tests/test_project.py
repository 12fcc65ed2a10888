"""The install is complete and the README's commands are the ones CI runs."""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    """The set-up commands: the first two fenced bash blocks of README.md, one line each."""
    blocks = re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S)
    return [b.strip() for b in blocks[:2]]


def test_readme_opens_with_two_commands() -> None:
    install_and_run, install_and_test = readme_commands()
    assert "\n" not in install_and_run and "\n" not in install_and_test
    assert install_and_run.split(" && ")[-1].startswith("finmlops ")
    assert "pytest" in install_and_test


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    _, install_and_test = readme_commands()
    assert install_and_test.replace("pip install -e", "pip install -q -e") in ci


def test_ci_reruns_the_readme_test_command_in_a_clone_without_shared() -> None:
    """A user has no ../shared: CI runs README's test command (all of it) in a fresh clone with nothing beside it."""
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = readme_commands()[1].split(" && ")[-1]
    step = ci[ci.index("git clone") :]
    assert '[[ ! -e "$fresh/shared" ]]' in step
    assert f'cd "$fresh/finmlops" && PYTHONPATH="$fresh/finmlops/src" {test_command})' in step


@pytest.mark.parametrize(
    "module",
    ["talib", "pandas", "pyarrow", "torch", "mlflow", "onnxruntime", "lightgbm", "sklearn", "optuna", "yfinance"],
)
def test_dependency_importable(module: str) -> None:
    importlib.import_module(module)


def cuda_distributions() -> list[str]:
    """Installed distributions that bring CUDA (the GPU wheels' ``nvidia-*`` runtime libraries, ``triton``)."""
    names = {dist.metadata["Name"].lower() for dist in importlib.metadata.distributions()}
    return sorted(n for n in names if n.startswith("nvidia-") or n in {"triton", "pytorch-triton"} or "cuda" in n)


def test_torch_is_the_pinned_cpu_build() -> None:
    """The CPU wheel from the PyTorch CPU index (``+cpu``), compiled without CUDA, and no CUDA wheels beside it."""
    import torch

    assert importlib.metadata.version("torch") == "2.13.0+cpu", importlib.metadata.version("torch")
    assert torch.__version__ == "2.13.0+cpu" and torch.version.cuda is None, (torch.__version__, torch.version.cuda)
    assert cuda_distributions() == []


def test_pip_check_is_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
