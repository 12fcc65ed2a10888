from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from finmlops.provenance import git_commit, json_safe, stamp, write_json_atomic


def test_git_commit_prefers_the_commit_baked_into_an_image(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert git_commit(tmp_path) is None  # not a checkout
    monkeypatch.setenv("FINMLOPS_GIT_COMMIT", "abc123")
    assert git_commit(tmp_path) == "abc123"


def test_stamp_names_data_config_seed_and_versions() -> None:
    block = stamp(data_hash="d" * 64, config={"variant": "baseline"}, seed=7)
    assert block["data_hash"] == "d" * 64 and block["seed"] == 7 and block["config"] == {"variant": "baseline"}
    assert {"python", "finmlops", "numpy", "pandas"} <= set(block["versions"])


def test_json_safe_and_atomic_write(tmp_path: Path) -> None:
    payload = {"auc": math.nan, "acc": np.float64(0.51), "n": np.int64(3), "ci": (np.float32(0.5), math.inf)}
    assert json_safe(payload) == {"auc": None, "acc": 0.51, "n": 3, "ci": [0.5, None]}
    path = write_json_atomic(tmp_path / "r" / "out.json", payload)
    assert json.loads(path.read_text())["auc"] is None
    assert [p.name for p in path.parent.iterdir()] == ["out.json"]  # no temp file left behind


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = write_json_atomic(tmp_path / "out.json", {"v": 1})
    before = path.read_bytes()
    with pytest.raises(TypeError):
        write_json_atomic(path, {"v": object.__new__(type("Unserialisable", (), {"__str__": None}))})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_git_commit_is_the_one_the_process_first_saw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that takes hours records the commit it started from, not one committed while it ran."""
    import subprocess

    monkeypatch.delenv("FINMLOPS_GIT_COMMIT", raising=False)
    git = lambda *args: subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    (tmp_path / "a.txt").write_text("1")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    first = git_commit(tmp_path)
    (tmp_path / "a.txt").write_text("2")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "second")
    assert first is not None and len(first) == 40 and git_commit(tmp_path) == first
