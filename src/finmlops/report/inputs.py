"""The typed result files a report section renders (``finmlops.evaluation.results``), read the report's way."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from finmlops.evaluation.results import ResultFileError
from finmlops.report.base import ReportError

R = TypeVar("R")


def read_if_written(load: Callable[[Path], R], results_dir: Path) -> R | None:
    """``load(results_dir)`` (``load_evaluation``, ``load_backtest``); None when its file does not exist yet (the
    section says which command fills it), a ``ReportError`` naming the file and field when it is malformed."""
    try:
        return load(results_dir)
    except FileNotFoundError:
        return None
    except ResultFileError as exc:
        raise ReportError(str(exc)) from exc
