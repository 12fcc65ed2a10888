"""A writer killed with SIGKILL at any instant of a commit leaves the store at the old or the new version.

Writers are forked from one "zygote" process that has imported finmlops once (a fresh interpreter per kill would
cost seconds). Kills land at every named step of a commit (``finmlops.data.store.commit_hook``), before every
rename or delete the writer makes (``os.replace``/``os.rename``/``os.unlink``, which also works on code without the
hook), and at >= 50 random instants. After each kill the store must read as exactly the old or the new version,
``finmlops data info --verify`` must pass, and the next write must succeed and leave no unreferenced file.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import finmlops.data.store as store_module
from finmlops.cli import app
from finmlops.data import DataStore, dataset_hash_of, load_snapshot

TICKERS = ["AAPL", "JPM", "MSFT"]
FIRST_END = date(2023, 1, 31)

ZYGOTE = """
import json, os, signal, sys, time
from datetime import date
import finmlops.data.store as store_module
from finmlops.data import DataStore, load_snapshot

universe = load_snapshot(TICKERS, date(2023, 1, 1), date(2023, 12, 31))

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def count_mutations(kill_before):
    seen = [0]
    def wrap(real):
        def wrapped(*args, **kwargs):
            seen[0] += 1
            if seen[0] == kill_before:
                die()
            return real(*args, **kwargs)
        return wrapped
    os.replace, os.rename, os.unlink = wrap(os.replace), wrap(os.rename), wrap(os.unlink)
    return seen

for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        seen = count_mutations(job.get("kill_before_mutation") or 0)
        if job.get("kill_at_step"):
            store_module.commit_hook = lambda step: step == job["kill_at_step"] and die()
        started = time.perf_counter()
        DataStore(job["root"]).write({t: f.loc[: job["end"]] for t, f in universe.items()}, "killed")
        print(json.dumps({"mutations": seen[0], "seconds": time.perf_counter() - started}), flush=True)
        if job.get("kill_after_write"):
            die()
        os._exit(0)
    print(pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"killed": os.WIFSIGNALED(status)}), flush=True)
""".replace("TICKERS", repr(TICKERS))


class Zygote:
    """A process that forks one writer per job; the test kills writers by pid."""

    def __init__(self, script: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def start(self, root: Path, end: date, **kill: object) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"root": str(root), "end": end.isoformat(), **kill}) + "\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def finish(self) -> tuple[dict[str, float] | None, bool]:
        """(the writer's report when it finished its write, whether it died of a signal)."""
        assert self.proc.stdout is not None
        report = None
        while True:
            line = json.loads(self.proc.stdout.readline())
            if "killed" in line:
                return report, line["killed"]
            report = line

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zygote]:
    script = tmp_path_factory.mktemp("zygote") / "zygote.py"
    script.write_text(ZYGOTE)
    z = Zygote(script)
    yield z
    z.close()


@pytest.fixture(scope="module")
def year() -> dict[str, pd.DataFrame]:
    return load_snapshot(TICKERS, date(2023, 1, 1), date(2023, 12, 31))


@dataclass
class Workspace:
    """A workspace whose store a writer is killed in; ``versions`` maps each committed dataset hash to its end."""

    home: Path
    year: dict[str, pd.DataFrame]
    layout: str = "v2"

    @property
    def store(self) -> DataStore:
        return DataStore(self.home / "data")

    def universe(self, end: date) -> dict[str, pd.DataFrame]:
        return {t: f.loc[:end] for t, f in self.year.items()}

    def check(self, old_end: date, new_end: date) -> date:
        """The store reads as exactly the version up to ``old_end`` or up to ``new_end``; returns which."""
        store = self.store
        manifest = store.manifest()
        universe = store.read()
        assert dataset_hash_of(universe) == manifest.dataset_hash
        hashes = {dataset_hash_of(self.universe(end)): end for end in (old_end, new_end)}
        assert manifest.dataset_hash in hashes, "the store is neither the old nor the new version"
        end = hashes[manifest.dataset_hash]
        for ticker, frame in self.universe(end).items():
            pd.testing.assert_frame_equal(universe[ticker], frame)
        verify = CliRunner().invoke(app, ["data", "info", "--verify", "--json"], env={"FINMLOPS_HOME": str(self.home)})
        assert verify.exit_code == 0, verify.output
        assert json.loads(verify.stdout)["dataset_hash"] == manifest.dataset_hash
        return end

    def ingest_after(self, end: date) -> None:
        """The next write succeeds, reaches ``end`` and leaves only the files its manifest names."""
        result = self.store.write(self.universe(end), "after")
        assert result.manifest.dataset_hash == dataset_hash_of(self.universe(end))
        assert self.store.read().keys() == set(TICKERS)
        named = {self.store.path_for(t).name for t in TICKERS}
        assert {p.name for p in self.store.root.iterdir()} == named | {"manifest.json", ".lock"}


def _legacy_store(root: Path, universe: dict[str, pd.DataFrame]) -> None:
    """A store as finmlops wrote it before content-named files: ``<TICKER>.parquet``, format v1, no ``file``."""
    DataStore(root).write(universe, "legacy")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["format"] = "finmlops-store-v1"
    for ticker, entry in manifest["tickers"].items():
        (root / entry.pop("file")).rename(root / f"{ticker}.parquet")
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))


@pytest.fixture(params=["v2", "legacy-v1"])
def workspace(
    request: pytest.FixtureRequest, tmp_path: Path, year: dict[str, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> Workspace:
    monkeypatch.chdir(tmp_path)  # no finmlops.yaml of the caller's
    ws = Workspace(tmp_path / "ws", year, request.param)
    if ws.layout == "v2":
        ws.store.write(ws.universe(FIRST_END), "first")
    else:
        _legacy_store(ws.store.root, ws.universe(FIRST_END))
    return ws


def _twin(ws: Workspace, name: str) -> DataStore:
    """A store beside ``ws``'s in the same starting state (same layout, data up to ``FIRST_END``)."""
    twin = DataStore(ws.home.parent / name)
    if ws.layout == "v2":
        twin.write(ws.universe(FIRST_END), "first")
    else:
        _legacy_store(twin.root, ws.universe(FIRST_END))
    return twin


def _steps(ws: Workspace, end: date, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The named steps of a commit from ``ws``'s store to ``end``, recorded on a twin."""
    twin = _twin(ws, "steps")
    steps: list[str] = []
    monkeypatch.setattr(store_module, "commit_hook", steps.append)
    twin.write(ws.universe(end), "steps")
    return steps


def _kill_each(zygote: Zygote, ws: Workspace, kills: list[dict[str, object]]) -> set[str]:
    """One writer per kill, each adding the next business day; returns the outcomes seen, e.g. ``killed, old``."""
    old_end, outcomes = FIRST_END, set()
    for kill, new_end in zip(kills, pd.bdate_range("2023-02-01", "2023-12-31").date, strict=False):
        zygote.start(ws.store.root, new_end, **kill)
        _, killed = zygote.finish()
        landed = ws.check(old_end, new_end)
        outcomes.add(f"{'killed' if killed else 'finished'}, {'new' if landed == new_end else 'old'}")
        ws.ingest_after(new_end)
        old_end = new_end
    return outcomes


def test_kill_at_every_step_of_a_commit(zygote: Zygote, workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    steps = _steps(workspace, date(2023, 2, 1), monkeypatch)
    monkeypatch.setattr(store_module, "commit_hook", None)
    assert steps == ["gc", "file:AAPL", "file:JPM", "file:MSFT", "sync", "manifest", "committed", "cleanup"]
    outcomes = _kill_each(zygote, workspace, [{"kill_at_step": s} for s in steps] + [{"kill_after_write": True}])
    assert outcomes == {"killed, old", "killed, new"}  # kills before the manifest's rename keep the old version


def test_kill_before_every_rename_and_delete(zygote: Zygote, workspace: Workspace) -> None:
    """Independent of the hook's step names: the writer dies just before each ``os.replace``/``os.rename``/
    ``os.unlink`` it makes. Before content-named files this failed: a kill between two ``<TICKER>.parquet``
    replacements left new files beside the old manifest, and ``--verify`` and every later ingest failed."""
    zygote.start(_twin(workspace, "count").root, date(2023, 2, 1))
    mutations = int(zygote.finish()[0]["mutations"])  # type: ignore[index]
    assert mutations >= 7  # 3 files and the manifest renamed, at least 3 old files deleted
    kills = [{"kill_before_mutation": k} for k in range(1, mutations + 2)]
    assert _kill_each(zygote, workspace, kills) >= {"killed, old"}


def test_fifty_kills_at_random_instants(zygote: Zygote, tmp_path: Path, year: dict[str, pd.DataFrame]) -> None:
    ws = Workspace(tmp_path / "ws", year)
    ws.store.write(ws.universe(FIRST_END), "first")
    # Kill instants span a whole writer's life as the parent sees it (fork, read, validate, merge, commit, exit).
    timing = DataStore(tmp_path / "timing")
    timing.write(ws.universe(FIRST_END), "first")
    lives = []
    for end in pd.bdate_range("2023-02-01", "2023-02-03").date:
        started = time.perf_counter()
        zygote.start(timing.root, end)
        zygote.finish()
        lives.append(time.perf_counter() - started)
    life = sorted(lives)[1]
    rng = random.Random(20231)
    ends = iter(pd.bdate_range("2023-02-01", "2023-12-31").date)
    old_end, landed = FIRST_END, {"old": 0, "new": 0}
    for _ in range(50):
        new_end = next(ends)
        pid = zygote.start(ws.store.root, new_end)
        time.sleep(rng.uniform(0.0, life))
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        zygote.finish()
        landed["new" if ws.check(old_end, new_end) == new_end else "old"] += 1
        ws.ingest_after(new_end)
        old_end = new_end
    # Both sides of the commit were hit (else the delays missed the write and this test proved nothing).
    assert landed["old"] >= 3 and landed["new"] >= 3, landed


def test_a_legacy_store_reads_and_moves_to_content_named_files(tmp_path: Path, year: dict[str, pd.DataFrame]) -> None:
    root = tmp_path / "data"
    january = {t: f.loc[:FIRST_END] for t, f in year.items()}
    _legacy_store(root, january)
    store = DataStore(root)
    assert store.manifest().format == "finmlops-store-v1" and store.manifest().tickers["AAPL"].file is None
    assert dataset_hash_of(store.read()) == dataset_hash_of(january)
    # The first write moves only the changed ticker; the others keep their v1 files, now named in the manifest.
    result = store.write({"AAPL": year["AAPL"].loc[:"2023-02-28"]}, "later")
    files = {t: e.file for t, e in result.manifest.tickers.items()}
    assert result.manifest.format == "finmlops-store-v2"
    assert (
        files["MSFT"] == "MSFT.parquet"
        and files["AAPL"] == f"AAPL.{result.manifest.tickers['AAPL'].sha256[:16]}.parquet"
    )
    assert sorted(p.name for p in root.glob("*.parquet")) == sorted(files.values())
    assert len(store.read()["AAPL"]) == len(year["AAPL"].loc[:"2023-02-28"])


def test_leftovers_of_a_dead_writer_go_at_the_next_write(tmp_path: Path, year: dict[str, pd.DataFrame]) -> None:
    store = DataStore(tmp_path / "data")
    store.write({t: f.loc[:FIRST_END] for t, f in year.items()}, "first")
    before = {p.name: p.read_bytes() for p in store.root.iterdir()}
    # What a writer killed before its manifest rename leaves: a half temporary file and a finished new file.
    (store.root / ".AAPL.0123456789abcdef.parquet.999.tmp").write_bytes(b"PAR1")
    pq.write_table(pa.table({"x": [1]}), store.root / "AAPL.0123456789abcdef.parquet")
    assert dataset_hash_of(store.read()) == store.manifest().dataset_hash  # reads never see them
    nothing_new = store.write({"AAPL": year["AAPL"].loc[:FIRST_END]}, "again")
    assert not nothing_new.changed and {p.name: p.read_bytes() for p in store.root.iterdir()} == before
    store.write({t: f.loc[:"2023-02-28"] for t, f in year.items()}, "second")
    names = {p.name for p in store.root.iterdir()}
    assert names == {e.file for e in store.manifest().tickers.values()} | {"manifest.json", ".lock"}
    assert not names & (set(before) - {"manifest.json", ".lock"})  # the first version's files went too
