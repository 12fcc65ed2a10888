"""promtool for the alert-rule tests: found on PATH (skipping the test without it) and run over unit-test series."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return path


def assert_rules_fire(rules: Path, series: list[dict[str, str]], tests: list[dict[str, Any]], tmp_path: Path) -> None:
    """``promtool test rules`` over ``series`` (1-minute samples) with ``tests`` as its ``alert_rule_test``: every
    expected alert fires at its time with its labels, and no other does."""
    spec = tmp_path / "rules_test.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(rules)],
                "evaluation_interval": "1m",
                "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": tests}],
            }
        )
    )
    run = subprocess.run([promtool(), "test", "rules", str(spec)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
