"""bench/soak.py runs end to end (3 s, alias moves at 1 and 2 s): a smoke test of the harness, no thresholds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"


@pytest.mark.slow
def test_soak_runs_and_prints_every_figure(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    args = ["--duration", "3", "--swap-every", "1", "--poll", "0.2", "--concurrency", "4", "--workdir", str(tmp_path)]
    done = subprocess.run([sys.executable, str(SOAK), *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for kind in ("tensor", "raw", "feedback", "admin"):
        assert any(line.split()[:1] == [kind] for line in out.splitlines()), out
    assert "server RSS:" in out and "alias -> version 2: first answer after" in out
