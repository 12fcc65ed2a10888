"""Test support for finmlops' own suite: helpers that test modules import, and fixtures that conftest files load.

On ``sys.path`` through ``[tool.pytest.ini_options] pythonpath`` in pyproject.toml, so no test edits ``sys.path``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], *, timeout: float, what: str, interval: float = 0.02) -> T:
    """Poll ``condition`` every ``interval`` seconds until it returns something truthy, and return that.

    Fails the test with ``what`` (the event waited for) when ``timeout`` seconds pass first, so a test waits on the
    event itself and for no longer than it takes, instead of sleeping a guessed time.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
