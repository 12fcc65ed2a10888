"""``finmlops ingest``: read a source, validate every ticker, then add the new dates to the store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from finmlops.data.csv_source import read_csv_folder
from finmlops.data.errors import DataSourceError
from finmlops.data.frames import RawFrame, validate_batch
from finmlops.data.snapshot import read_snapshot
from finmlops.data.store import DataStore
from finmlops.data.yahoo import fetch_yahoo

SourceName = Literal["snapshot", "yahoo", "csv"]
SOURCES: tuple[str, ...] = ("snapshot", "yahoo", "csv")


class TickerReport(BaseModel):
    """One ticker after an ingest."""

    ticker: str
    added_rows: int
    rows: int
    first_date: date
    last_date: date
    sha256: str
    source: str


class IngestReport(BaseModel):
    """What an ingest did; ``changed`` is False when no new date arrived (the store was not touched)."""

    source: str
    store: str
    changed: bool
    version: int
    dataset_hash: str
    tickers: list[TickerReport]
    warnings: list[str]


def read_source(
    source: SourceName,
    tickers: Sequence[str],
    start: date | None,
    end: date | None,
    data_dir: Path | None = None,
    retries: int = 3,
    backoff_s: float = 1.0,
) -> list[RawFrame]:
    """Parse ``tickers`` from ``source`` (not yet validated); csv needs ``data_dir``, yahoo needs start and end."""
    if source == "snapshot":
        return read_snapshot(tickers)
    if source == "csv":
        if data_dir is None:
            raise DataSourceError("--source csv needs a folder: pass --data-dir or set raw_data_dir")
        return read_csv_folder(data_dir, tickers)
    if source == "yahoo":
        if start is None or end is None:
            raise DataSourceError("--source yahoo needs both a start and an end date")
        return fetch_yahoo(tickers, start, end, retries=retries, backoff_s=backoff_s)
    raise DataSourceError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")


def ingest(
    store: DataStore,
    source: SourceName,
    tickers: Sequence[str],
    start: date | None = None,
    end: date | None = None,
    data_dir: Path | None = None,
    retries: int = 3,
    backoff_s: float = 1.0,
) -> IngestReport:
    """Fetch and validate every ticker of ``source`` first, then write: bad data leave the store untouched."""
    if not tickers:
        raise DataSourceError("no tickers to ingest")
    raws = read_source(source, tickers, start, end, data_dir, retries, backoff_s)
    universe, sources, warnings = validate_batch(raws, start, end)
    result = store.write(universe, sources)
    entries = result.manifest.tickers
    return IngestReport(
        source=source,
        store=str(store.root),
        changed=result.changed,
        version=result.manifest.version,
        dataset_hash=result.manifest.dataset_hash,
        tickers=[
            TickerReport(ticker=t, added_rows=n, **entries[t].model_dump(exclude={"ingested_at"}))
            for t, n in result.added_rows.items()
        ],
        warnings=warnings,
    )
