"""The shared fixtures (settings, trained, predictions, port, postgres, ...) come from finmlops_testing.workspace."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(torch_one_thread: None) -> None:
    """Every test here trains or scores small torch networks on one thread."""
