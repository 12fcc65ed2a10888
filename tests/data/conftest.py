"""Shared fixtures for the data-layer tests: real snapshot slices and writers for the CSV layouts we accept."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from finmlops.data import load_snapshot

YAHOO_HEADER = ("Date", "Open", "High", "Low", "Close", "Adj Close", "Volume")
FIELDS = ("open", "high", "low", "close", "adj_close", "volume")


@pytest.fixture(scope="session")
def q1_2023() -> dict[str, pd.DataFrame]:
    """Real AAPL and MSFT bars of 2023-01-03 .. 2023-03-31 (62 rows each)."""
    return load_snapshot(["AAPL", "MSFT"], start=date(2023, 1, 1), end=date(2023, 3, 31))


@pytest.fixture()
def aapl(q1_2023: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return q1_2023["AAPL"].copy()


class Csv:
    """Writers for the CSV layouts that ``ingest --source csv`` accepts (conftest is not importable: a fixture)."""

    @staticmethod
    def lines(frame: pd.DataFrame) -> list[str]:
        """Yahoo-format CSV lines (header first); floats written with repr so they parse back exactly."""
        body = [
            ",".join([str(ts.date()), *(repr(float(row[f])) for f in FIELDS[:5]), str(int(row["volume"]))])
            for ts, row in frame.iterrows()
        ]
        return [",".join(YAHOO_HEADER), *body]

    @staticmethod
    def write(path: Path, lines: list[str]) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        return path

    @staticmethod
    def flattened(frame: pd.DataFrame, ticker: str, first: str = "Date", yfinance_rows: bool = False) -> list[str]:
        """The original system's layout: yfinance's column order, ``<Field>_<TICKER>`` headers.

        With ``yfinance_rows`` the header is yfinance's own three-line form (``Price``/``Ticker``/``Date`` rows).
        """
        order = ("Adj Close", "Close", "High", "Low", "Open", "Volume")
        field = dict(zip(YAHOO_HEADER[1:], FIELDS, strict=True))
        if yfinance_rows:
            header = [",".join(["Price", *order]), ",".join(["Ticker", *[ticker] * 6]), "Date" + "," * 6]
        else:
            header = [",".join([first, *(f"{name}_{ticker}" for name in order)])]
        body = [
            ",".join([str(ts.date()), *(repr(float(row[field[n]])) for n in order[:5]), str(int(row["volume"]))])
            for ts, row in frame.iterrows()
        ]
        return header + body


@pytest.fixture()
def store_bytes() -> Callable[[Path], dict[str, bytes]]:
    """Every file of a store folder (temporary files excluded) by name, to compare byte for byte."""

    def read(root: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if not p.name.endswith(".tmp")}

    return read


@pytest.fixture()
def csv() -> type[Csv]:
    return Csv
