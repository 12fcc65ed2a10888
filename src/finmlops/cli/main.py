"""The ``finmlops`` entry point: a user's or the machine's error becomes one line, never a traceback."""

from __future__ import annotations

import errno
import sys

from rich.markup import escape

from finmlops.cli.common import app, err_console
from finmlops.settings import (
    SettingsError,
)

# Optional packages (top-level module) -> the extra of pyproject's [project.optional-dependencies] that installs them.
EXTRA_OF_MODULE = {
    "torch": "train", "sklearn": "train", "lightgbm": "train", "mlflow": "train", "onnx": "train", "optuna": "train",
    "captum": "train", "psycopg2": "train", "boto3": "train", "yfinance": "yahoo", "onnxruntime": "serve",
    "starlette": "serve", "uvicorn": "serve", "orjson": "serve", "prometheus_client": "serve", "grpc": "serve",
    "grpc_health": "serve", "ray": "distributed",
}  # fmt: skip
_OS_ERROR_HINTS = {
    errno.ENOSPC: "the disk is full; free space and retry (the data store keeps its last complete version)",
    errno.EDQUOT: "the disk quota is exhausted; free space and retry",
    errno.EROFS: "the file system is read-only; set FINMLOPS_HOME to a writable workspace",
    errno.EACCES: "permission denied; set FINMLOPS_HOME to a workspace you can write",
    errno.EPERM: "operation not permitted; set FINMLOPS_HOME to a workspace you can write",
    errno.ENOTDIR: "a part of the path is a file, not a directory; check FINMLOPS_HOME",
}


def error_line(exc: BaseException) -> str | None:
    """One line for an error that is the user's or the machine's, not a bug; None for anything else."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        extra = EXTRA_OF_MODULE.get(exc.name.split(".")[0])
        if extra:
            return (
                f"this command needs {exc.name.split('.')[0]}, which is not installed: pip install 'finmlops[{extra}]'"
            )
    if isinstance(exc, SettingsError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in _OS_ERROR_HINTS:
        where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f) or "a workspace file"
        return f"{where}: {exc.strerror or exc}: {_OS_ERROR_HINTS[exc.errno]}"
    return None


def main() -> None:
    """The ``finmlops`` entry point: a missing extra, a full disk, a read-only or misplaced workspace become one
    error line and exit code 1 instead of a traceback (commands catch their own domain errors)."""
    try:
        app()
    except Exception as exc:  # re-raised below unless it is a known user or machine error
        line = error_line(exc)
        if line is None:
            raise
        err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
        sys.exit(1)
