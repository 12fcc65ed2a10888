"""The CLI's entry point turns a user's or the machine's mistake into one error line and exit code 1, never a
traceback: a workspace that is a file or read-only, garbage settings, a dead registry, a full disk, a missing
extra, a non-ISO date. Commands run through ``finmlops.cli.main`` (the installed ``finmlops`` script)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from finmlops.cli import main


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str

    @property
    def error_line(self) -> str:
        """The one error line; fails unless stderr is exactly one line starting with ``error:``."""
        lines = self.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), self.stderr
        assert "Traceback" not in self.stderr
        return lines[0]


Cli = Callable[..., Outcome]


@pytest.fixture()
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Iterator[Cli]:
    monkeypatch.chdir(tmp_path)  # no finmlops.yaml of the caller's
    monkeypatch.delenv("FINMLOPS_CONFIG", raising=False)

    def run(*args: str, home: Path | str | None = None) -> Outcome:
        if home is not None:
            monkeypatch.setenv("FINMLOPS_HOME", str(home))
        monkeypatch.setattr(sys, "argv", ["finmlops", *args])
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            main()
        out = capsys.readouterr()
        return Outcome(int(info.value.code or 0), out.out, out.err)

    yield run


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs in the test's own folder (needs root): the whole snapshot does not fit."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or not _mount("-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)):
        pytest.skip("mounting a 512 KiB tmpfs needs root (CAP_SYS_ADMIN)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.fixture()
def read_only(tmp_path: Path) -> Iterator[Callable[[Path], Path]]:
    """Make a folder read-only: a read-only bind mount as root (chmod does not stop root), chmod otherwise."""
    mounted: list[Path] = []

    def make(folder: Path) -> Path:
        if os.geteuid() != 0:
            for path in [folder, *folder.rglob("*")]:
                path.chmod(path.stat().st_mode & ~0o222)
            return folder
        view = folder.with_name(folder.name + "-ro")
        view.mkdir()
        if not (_mount("--bind", str(folder), str(view)) and _mount("-o", "remount,bind,ro", str(view))):
            pytest.skip("a read-only bind mount needs CAP_SYS_ADMIN")
        mounted.append(view)
        return view

    yield make
    for view in mounted:
        subprocess.run(["umount", "-l", str(view)], check=False)


def test_a_workspace_that_is_a_file(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "afile").touch()
    for home in (tmp_path / "afile", "/dev/null"):
        for args in (("ingest", "--no-track", "--tickers", "AAPL"), ("data", "info"), ("run", "--dry-run")):
            outcome = cli(*args, home=home)
            assert outcome.code == 1 and "is not a directory" in outcome.error_line, (home, args)


def test_garbage_settings(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "finmlops.yaml").write_text("tickers: [AAPL\nseed: : :\n")
    outcome = cli("data", "info", home=tmp_path / "ws")
    assert outcome.code == 1 and "finmlops.yaml: not valid YAML at line" in outcome.error_line
    (tmp_path / "finmlops.yaml").unlink()
    monkeypatch.setenv("FINMLOPS_CONFIG", str(tmp_path))
    outcome = cli("ingest", "--no-track")
    assert outcome.code == 1 and "the settings file is a directory" in outcome.error_line


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("ingest", "--start", "03/01/2023"), "--start"),
        (("ingest", "--end", "2023-3-1"), "--end"),
        (("explain", "--variant", "baseline", "--date", "03/01/2023"), "--date"),
        (("traffic", "--experiment", "e", "--start", "2023/01/03"), "--start"),
    ],
)
def test_dates_are_iso_only(cli: Cli, tmp_path: Path, args: tuple[str, ...], option: str) -> None:
    """``--date 03/01/2023`` became 1 March, and bad dates printed pydantic's errors with documentation URLs."""
    outcome = cli(*args, home=tmp_path / "ws")
    line = outcome.error_line
    assert outcome.code == 2 and line.startswith(f"error: {option}: expected a date as YYYY-MM-DD"), line
    assert "http" not in line and "pydantic" not in line


def test_a_bad_date_in_the_environment_names_the_setting(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINMLOPS_START", "03/01/2023")
    outcome = cli("data", "info", home=tmp_path / "ws")
    assert outcome.code == 1 and "setting start (" in outcome.error_line and "FINMLOPS_START" in outcome.error_line


def test_a_full_disk_during_ingest(cli: Cli, small_disk: Path) -> None:
    assert cli("ingest", "--no-track", "--tickers", "AAPL", "--start", "2023-06-01", home=small_disk).code == 0
    before = json.loads(cli("data", "info", "--json").stdout)
    outcome = cli("ingest", "--no-track", "--start", "2010-01-01")
    line = outcome.error_line
    assert outcome.code == 1 and "No space left on device" in line and "the disk is full" in line, line
    assert line.startswith(f"error: {small_disk / 'data'}/") and ".parquet: " in line  # names the file
    after = cli("data", "info", "--verify", "--json")
    assert after.code == 0 and json.loads(after.stdout)["dataset_hash"] == before["dataset_hash"]
    names = {p.name for p in (small_disk / "data").iterdir()}
    assert names == {f"AAPL.{before['tickers']['AAPL']['sha256'][:16]}.parquet", "manifest.json", ".lock"}


def test_a_read_only_workspace(cli: Cli, tmp_path: Path, read_only: Callable[[Path], Path]) -> None:
    home = tmp_path / "ws"
    assert cli("ingest", "--no-track", "--tickers", "AAPL", "--start", "2023-01-01", home=home).code == 0
    view = read_only(home)
    info = cli("data", "info", "--verify", home=view)
    assert info.code == 0 and "every file verified" in info.stdout  # readers take no write lock
    for args in (("ingest", "--no-track", "--tickers", "AAPL", "--start", "2023-01-01"), ("features",),
                 ("run", "--dry-run")):  # fmt: skip
        outcome = cli(*args)
        line = outcome.error_line
        assert outcome.code == 1 and ("read-only" in line or "not writable" in line or "ermission" in line), args


BLOCKER = """
import sys
BLOCKED = set(sys.argv[1].split(","))
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
sys.argv = ["finmlops", *sys.argv[2:]]
from finmlops.cli import main
main()
"""
WITHOUT_EXTRAS = "torch,sklearn,lightgbm,mlflow,onnx,onnxruntime,optuna,captum,starlette,uvicorn,orjson,yfinance"


@pytest.mark.parametrize(
    ("args", "extra"),
    [(("train", "--no-track"), "train"), (("evaluate", "--all", "--no-track"), "train"), (("serve",), "serve"),
     (("models",), "train")],
)  # fmt: skip
def test_a_missing_extra_is_named(tmp_path: Path, args: tuple[str, ...], extra: str) -> None:
    """A bare ``pip install -e .``: the optional packages made unimportable, the command names the extra."""
    env = {**os.environ, "FINMLOPS_HOME": str(tmp_path / "ws")}
    env.pop("FINMLOPS_CONFIG", None)
    run = subprocess.run(
        [sys.executable, "-c", BLOCKER, WITHOUT_EXTRAS, *args],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert lines[-1].endswith(f"is not installed: pip install 'finmlops[{extra}]'"), run.stderr
    assert all(line.startswith(("error:", "tracking skipped")) for line in lines), run.stderr


def test_serve_against_a_dead_registry(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("psycopg2")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://finmlops:s3cret-pw@127.0.0.1:1/mlflow")
    outcome = cli("serve", home=tmp_path / "ws")
    line = outcome.error_line
    assert outcome.code == 1 and "postgresql://finmlops:***@127.0.0.1:1/mlflow" in line and "s3cret" not in line


def test_serve_works_on_a_read_only_workspace(
    read_only: Callable[[Path], Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A read-only workspace (a mounted volume): the server still builds and answers; its request log goes to a
    temporary folder, said in one warning."""
    from finmlops_testing.serving import tiny_onnx

    from finmlops.serving.config import parse_config
    from finmlops.serving.server import build_app
    from finmlops.settings import Settings

    graph = tiny_onnx(tmp_path / "m.onnx", 10, 4)
    home = tmp_path / "home"
    home.mkdir()
    view = read_only(home)
    config = parse_config({"models": [{"name": "m", "source": str(graph)}]})
    with caplog.at_level("WARNING", logger="finmlops.serving"):
        app = build_app(Settings(home=view), config=config)
    log = app.plane.request_log
    assert log is not None and view not in log.path.parents
    assert "is not writable" in caplog.text and str(log.path.parent) in caplog.text
    assert app.plane.ready()
