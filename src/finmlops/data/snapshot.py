"""The bundled real snapshot: daily Yahoo OHLCV of ten large caps, 2010-2023 (see ``snapshot/PROVENANCE.md``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from importlib import resources
from pathlib import Path

import pandas as pd

from finmlops.data.csv_source import parse_ohlcv_csv
from finmlops.data.errors import DataSourceError
from finmlops.data.frames import RawFrame, validate_batch

SNAPSHOT_SOURCE = "snapshot"


def _snapshot_dir() -> Path:
    # The package is installed from a directory (not a zip), so the resource is a real folder.
    return Path(str(resources.files("finmlops.data") / "snapshot" / "ohlcv"))


def snapshot_tickers() -> list[str]:
    """Tickers in the bundled snapshot, sorted."""
    return sorted(p.stem for p in _snapshot_dir().glob("*.csv"))


def read_snapshot(tickers: Iterable[str] | None = None) -> list[RawFrame]:
    """Parse the snapshot files of ``tickers`` (all when None); an unknown ticker lists the available ones."""
    available = snapshot_tickers()
    wanted = available if tickers is None else [t.upper() for t in tickers]
    unknown = [t for t in wanted if t not in available]
    if unknown:
        raise DataSourceError(f"the bundled snapshot has no {unknown}; available tickers: {', '.join(available)}")
    folder = _snapshot_dir()
    return [parse_ohlcv_csv(folder / f"{t}.csv", t, source=f"{SNAPSHOT_SOURCE}:ohlcv/{t}.csv") for t in wanted]


def load_snapshot(
    tickers: Iterable[str] | None = None, start: date | None = None, end: date | None = None
) -> dict[str, pd.DataFrame]:
    """The bundled snapshot as a validated universe, restricted to ``start <= date <= end`` (inclusive)."""
    universe, _, _ = validate_batch(read_snapshot(tickers), start, end)
    return universe
