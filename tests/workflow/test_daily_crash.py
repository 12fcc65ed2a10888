"""Kill ``finmlops live`` (SIGKILL, no cleanup) in every phase of a day, run it again, and compare the request log,
the registry and the store with an uninterrupted run of the same days: nothing is lost and nothing is doubled."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from finmlops.workflow.daily import PHASES

START, END = date(2022, 1, 3), date(2022, 1, 12)  # 8 trading days: a refit starts on the 5th, collected on the 6th
# The day of each phase where it does something: the refit starts on index 4, is collected on 5, advances on 6.
DAYS = list(map(date.fromisoformat, ["2022-01-03", "2022-01-04", "2022-01-05", "2022-01-06", "2022-01-07",
                                     "2022-01-10", "2022-01-11", "2022-01-12"]))  # fmt: skip
CRASH_DAY = {"ingest": DAYS[2], "collect": DAYS[5], "score": DAYS[5], "feedback": DAYS[2], "rollout": DAYS[6],
             "drift": DAYS[3], "retrain": DAYS[4]}  # fmt: skip

SCRIPT = """
import os, signal, sys
from datetime import date
from pathlib import Path
import finmlops.workflow.daily as daily
from finmlops.settings import Settings
from finmlops.workflow.live_config import shipped_live_config
target = sys.argv[3] if len(sys.argv) > 3 else None
if target:
    day, phase = target.split(":")
    def kill(d, p):
        if (d.isoformat(), p) == (day, phase):
            os.kill(os.getpid(), signal.SIGKILL)
    daily.phase_hook = kill
daily.run_live(Settings(home=Path(sys.argv[4])), shipped_live_config("live-tiny"),
               start=date.fromisoformat(sys.argv[1]), end=date.fromisoformat(sys.argv[2]))
"""


def _live(home: Path, target: str | None = None) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "FINMLOPS_HOME": str(home)}
    args = [sys.executable, "-c", SCRIPT, START.isoformat(), END.isoformat(), target or "", str(home)]
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=900, check=False)


def _state(home: Path) -> dict[str, Any]:
    """Everything the loop wrote that must not depend on a crash: request log, feedback, registry, store."""
    import mlflow

    live = home / "live" / "tiny"
    db = sqlite3.connect(live / "serving" / "requests.db")
    requests = db.execute(
        "SELECT id, model, model_version, round(prob_up, 6), shadow, status, as_of FROM requests ORDER BY id"
    ).fetchall()
    feedback = db.execute("SELECT id, outcome FROM feedback ORDER BY id").fetchall()
    db.close()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{live / 'mlflow.db'}")
    model = client.get_registered_model("lightweight-predictor")
    events = sorted(
        (k, json.loads(v)["alias"], json.loads(v)["version"], json.loads(v)["action"], json.loads(v)["day"])
        for k, v in model.tags.items()
        if k.startswith("finmlops.alias_event.")
    )
    versions = sorted(int(v.version) for v in client.search_model_versions("name = 'lightweight-predictor'"))
    manifest = json.loads((live / "data" / "manifest.json").read_text())
    journal = {p.name: json.loads(p.read_text())["done"] for p in sorted((live / "journal").glob("2022-*.json"))}
    return {
        "requests": requests, "feedback": feedback, "events": events, "versions": versions,
        "aliases": {k: str(v) for k, v in model.aliases.items()}, "store": (manifest["version"],
        manifest["dataset_hash"]), "journal": journal,
    }  # fmt: skip


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("uninterrupted")
    done = _live(home)
    assert done.returncode == 0, done.stderr[-3000:]
    state = _state(home)
    # The days do what the crash days assume: a refit collected (v2), a canary step, every day done.
    assert state["versions"] == [1, 2] and all(state["journal"].values()) and len(state["journal"]) == 8
    assert any(e[3] == "challenger" for e in state["events"])
    assert len(state["requests"]) == len(set(r[:2] for r in state["requests"]))
    return state


@pytest.mark.slow
@pytest.mark.parametrize("phase", PHASES)
def test_kill_in_every_phase_then_resume(phase: str, reference: dict[str, Any], tmp_path: Path) -> None:
    target = f"{CRASH_DAY[phase].isoformat()}:{phase}"
    crashed = _live(tmp_path, target)
    assert crashed.returncode == -9, f"expected SIGKILL at {target}: {crashed.stderr[-2000:]}"
    path = tmp_path / "live" / "tiny" / "journal" / f"{CRASH_DAY[phase]}.json"
    journal = json.loads(path.read_text()) if path.exists() else {"phases": {}, "done": False}
    assert phase not in journal["phases"] and not journal["done"]  # it died inside the phase
    resumed = _live(tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    state = _state(tmp_path)
    for key in ("requests", "feedback", "events", "versions", "aliases", "store", "journal"):
        assert state[key] == reference[key], f"{key} differs after a kill in {phase}"
