"""The S&P 500 set in ``../shared/data/sp500/ohlcv`` (not shipped): where it is, and a small slice of it.

Tests that need it skip, naming ``../shared``, when it is absent (a user's fresh clone has nothing beside it).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SHARED = REPO.parent / "shared"
SP500_DIR = SHARED / "data" / "sp500" / "ohlcv"
# 25 tickers of the set, chosen to include late starters (IPOs after 1999: ABBV 2013, FB 2012, TSLA 2010, V 2008)
# and full-range ones.
SLICE = (
    "A", "AAL", "AAPL", "ABBV", "AMZN", "BRK-B", "C", "CMCSA", "FB", "GOOGL", "IRM", "JNJ", "JPM", "KSU", "MSFT",
    "NVDA", "PYPL", "SO", "TSLA", "TRMB", "V", "VAR", "WELL", "XOM", "ZTS",
)  # fmt: skip


def sp500_dir() -> Path:
    """The folder; skips the test, naming ../shared, when it is not checked out beside the repository."""
    if not SP500_DIR.is_dir():
        pytest.skip(f"../shared/data/sp500/ohlcv not found: {SP500_DIR} (the S&P 500 set is not shipped)")
    return SP500_DIR


def sp500_slice(target: Path, tickers: tuple[str, ...] = SLICE) -> Path:
    """Copy the CSVs of ``tickers`` into folder ``target`` (created); returns it."""
    source = sp500_dir()
    target.mkdir(parents=True, exist_ok=True)
    for ticker in tickers:
        shutil.copyfile(source / f"{ticker}.csv", target / f"{ticker}.csv")
    return target
