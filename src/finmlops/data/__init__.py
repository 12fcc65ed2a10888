"""finmlops.data: validated, versioned daily OHLCV (bundled snapshot, Yahoo Finance or CSV) in a Parquet store."""

from finmlops.data.csv_source import load_csv_folder, parse_ohlcv_csv
from finmlops.data.errors import DataError, DataSourceError, DataStoreError, DataValidationError
from finmlops.data.ingest import SOURCES, IngestReport, TickerReport, ingest
from finmlops.data.snapshot import load_snapshot, snapshot_tickers
from finmlops.data.store import DataStore, Manifest, TickerEntry, WriteResult, content_hash, dataset_hash_of
from finmlops.data.universe import (
    UNIVERSES,
    UniverseSource,
    read_tickers_file,
    universe_source,
    universe_tickers,
)
from finmlops.data.validation import OHLCV_COLUMNS, PRICE_COLUMNS, validate_ohlcv
from finmlops.data.yahoo import fetch_yahoo, normalise_yahoo

__all__ = [
    "OHLCV_COLUMNS",
    "PRICE_COLUMNS",
    "SOURCES",
    "UNIVERSES",
    "DataError",
    "DataSourceError",
    "DataStore",
    "DataStoreError",
    "DataValidationError",
    "IngestReport",
    "Manifest",
    "TickerEntry",
    "TickerReport",
    "UniverseSource",
    "WriteResult",
    "content_hash",
    "dataset_hash_of",
    "fetch_yahoo",
    "ingest",
    "load_csv_folder",
    "load_snapshot",
    "normalise_yahoo",
    "parse_ohlcv_csv",
    "read_tickers_file",
    "snapshot_tickers",
    "universe_source",
    "universe_tickers",
    "validate_ohlcv",
]
