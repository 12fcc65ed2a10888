"""Stamps that make every artifact traceable: data hash, config, seed, code version and software versions."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import platform
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

from finmlops import __version__

_TRACKED_PACKAGES = ("numpy", "pandas", "ta-lib", "torch", "scikit-learn", "lightgbm", "mlflow", "onnxruntime")


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (hex), read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_commit(cwd: Path | None = None) -> str | None:
    """The git commit of the checkout at ``cwd`` (with ``-dirty`` when the tree had changes), or None outside a
    checkout, as it was the **first** time this process asked: the code a process runs is the code it loaded, so a
    run that takes hours records the commit it started from, not one committed while it ran (``finmlops run``
    asks as it starts).

    Inside an image there is no ``.git``: the build passes the commit as ``FINMLOPS_GIT_COMMIT``.
    """
    if baked := os.environ.get("FINMLOPS_GIT_COMMIT"):
        return baked
    return _checkout_commit(None if cwd is None else Path(cwd).resolve())


@functools.cache
def _checkout_commit(cwd: Path | None) -> str | None:
    try:
        run = lambda *args: subprocess.run(  # noqa: E731
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        commit = run("rev-parse", "HEAD")
        return commit + ("-dirty" if run("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return None


def software_versions() -> dict[str, str]:
    """Versions of Python and of the installed packages that decide a result."""
    versions = {"python": platform.python_version(), "finmlops": __version__}
    for name in _TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def stamp(*, data_hash: str | None, config: dict[str, Any] | None = None, seed: int | None = None) -> dict[str, Any]:
    """The provenance block that every result JSON carries under the key ``provenance``."""
    return {
        "data_hash": data_hash,
        "config": config or {},
        "seed": seed,
        "git_commit": git_commit(Path(__file__).parent),
        "versions": software_versions(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
    }


def _nan_for_null(value: Any) -> Any:
    return float("nan") if value is None else value


Real = Annotated[float, BeforeValidator(_nan_for_null)]
"""A float that may be undefined in a result model: NaN in memory, ``null`` in JSON (read back as NaN); the
reverse of :func:`json_safe`."""


class Result(BaseModel):
    """Base of the typed result models of every stage: keys of a file that a model does not declare are ignored on
    reading (a newer file read by older code)."""

    model_config = ConfigDict(extra="ignore")


def json_safe(value: Any) -> Any:
    """Replace NaN and infinities (not valid JSON) by None, recursively; numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, rename it over ``path``.

    A reader never sees half a file, and a failed write (an exception in the block) leaves the old file intact.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_json_atomic(path: Path, payload: Any) -> Path:
    """Write JSON to ``path`` atomically (see :func:`atomic_path`). NaN and infinities are written as null."""
    return write_text_atomic(path, json.dumps(json_safe(payload), indent=2, default=str, allow_nan=False) + "\n")


class LockTimeout(TimeoutError):
    """Another process held the lock file for longer than the timeout."""


@contextmanager
def file_lock(path: Path, *, exclusive: bool = True, timeout: float = 300.0) -> Iterator[bool]:
    """Hold an advisory ``flock`` on ``path`` (created if missing): exclusive, or shared for readers. Yields True,
    or False when no lock could be taken: a platform without ``fcntl``, or a shared lock on a read-only folder
    (nobody can be writing there). Raises :class:`LockTimeout` naming ``path`` after ``timeout`` seconds."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield False
        return
    try:
        if exclusive:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        else:
            fd = os.open(path, os.O_RDONLY) if path.exists() else os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        if exclusive:
            raise
        yield False
        return
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"{path}: held by another process for over {timeout:g} s") from None
                time.sleep(0.05)
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases the lock
