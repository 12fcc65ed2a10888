"""The versioned market-data store: immutable Parquet files named by content, and one ``manifest.json`` naming them.

Layout (format ``finmlops-store-v2``): ``<root>/<TICKER>.<sha256[:16]>.parquet`` per ticker version and
``<root>/manifest.json``, whose entry per ticker names its file and its content hash. A write never modifies a file
that a manifest names: it writes the changed tickers' new files under new names (temporary file, fsync, rename,
fsync of the folder), then renames ONE new manifest over the old one. That rename is the commit: a reader, or a
writer killed at any instant, sees either the old manifest with its untouched files or the new one with its files.
Files no manifest names (a killed writer's temporary and new files, the files of older versions) are deleted by
the next write, under its exclusive lock, before it commits. A store of format ``finmlops-store-v1``
(``<TICKER>.parquet``, rewritten in place) is read as is; its first write moves it to v2, one ticker at a time as
it changes. Reads verify each file's content hash against the manifest.

A writer holds an exclusive and a reader a shared ``flock`` on ``<root>/.lock``: two writers (two ``finmlops
ingest`` at once, or a CronJob beside a person) cannot lose each other's tickers, and no writer deletes a file that
a reader is about to open. A store on a read-only folder is read without a lock (nobody can write there).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, Field, ValidationError

from finmlops.data.errors import DataStoreError
from finmlops.data.frames import select_dates
from finmlops.data.validation import OHLCV_COLUMNS, PRICE_COLUMNS, validate_ohlcv
from finmlops.provenance import LockTimeout, file_lock

MANIFEST_NAME = "manifest.json"
LOCK_NAME = ".lock"
STORE_FORMAT = "finmlops-store-v2"
LEGACY_FORMAT = "finmlops-store-v1"
_HASH_FORMAT = b"finmlops-ohlcv-v1"
# Yahoo serves float32 prices, so two downloads of the same bar differ by ~1e-7 relative; more is a revision.
CONFLICT_RTOL = 1e-6
# Threads that write a commit's Parquet files at once: Arrow's encoder and fsync run without the GIL.
WRITE_THREADS = max(1, min(4, os.cpu_count() or 1))


def content_hash(frame: pd.DataFrame) -> str:
    """SHA-256 of an OHLCV frame's values: dates as int64 ns, prices as little-endian float64, volume as int64.

    Independent of Parquet and pyarrow versions: it hashes the numbers, not a file's bytes.
    """
    digest = hashlib.sha256(_HASH_FORMAT)
    digest.update(",".join(OHLCV_COLUMNS).encode())
    digest.update(np.int64(len(frame)).tobytes())
    digest.update(frame.index.to_numpy().astype("datetime64[ns]").astype("<i8").tobytes())
    for column in PRICE_COLUMNS:
        digest.update(frame[column].to_numpy(dtype="<f8").tobytes())
    digest.update(frame["volume"].to_numpy(dtype="<i8").tobytes())
    return digest.hexdigest()


def combine_hashes(hashes: Mapping[str, str]) -> str:
    """The dataset hash: SHA-256 over ``"<TICKER>:<hash>\\n"`` lines in ticker order."""
    return hashlib.sha256("".join(f"{t}:{hashes[t]}\n" for t in sorted(hashes)).encode()).hexdigest()


def dataset_hash_of(universe: Mapping[str, pd.DataFrame]) -> str:
    """Hash an in-memory universe exactly as the store hashes its manifest (equal data, equal hash)."""
    return combine_hashes({ticker: content_hash(frame) for ticker, frame in universe.items()})


class TickerEntry(BaseModel):
    """One ticker in the manifest."""

    first_date: date
    last_date: date
    rows: int = Field(ge=1)
    sha256: str
    source: str = Field(description="Where the last added rows came from: snapshot, yahoo or a CSV path.")
    ingested_at: datetime
    file: str | None = Field(
        default=None, description="The Parquet file in the store's folder; None in a v1 store: <TICKER>.parquet."
    )


class Manifest(BaseModel):
    """The store's table of contents; ``version`` grows by one on every write that changes data."""

    format: str = STORE_FORMAT
    version: int = Field(ge=1)
    dataset_hash: str
    updated_at: datetime
    tickers: dict[str, TickerEntry]


class WriteResult(BaseModel):
    """What a write did: rows added per ticker (0 when nothing was new) and the manifest after it."""

    changed: bool
    added_rows: dict[str, int]
    manifest: Manifest


# Test hook: called with the name of each step of a commit just before it runs, so that a test can kill the
# writer at every step (tests/data/test_store_crash.py). None in production.
commit_hook: Callable[[str], None] | None = None


def _step(name: str) -> None:
    if commit_hook is not None:
        commit_hook(name)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` through a synced temporary file in the same folder."""
    tmp = _temp_path(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_parquet_atomic(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` through a synced temporary file in the same folder (no half file under its name)."""
    tmp = _temp_path(path)
    # Columns straight from numpy (pandas' own conversion costs more than the encoding); no pandas metadata, the
    # reader rebuilds the index from the "date" column.
    table = pa.table(
        {"date": pa.array(frame.index.to_numpy(dtype="datetime64[ns]"))}
        | {column: pa.array(frame[column].to_numpy()) for column in OHLCV_COLUMNS}
    )
    try:
        pq.write_table(table, tmp)
        _fsync_path(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is not None:
            raise
        # pyarrow's errors (a full disk) name no file: name the one being written.
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
    finally:
        tmp.unlink(missing_ok=True)


def file_name(ticker: str, sha256: str) -> str:
    """The store's name for one version of a ticker's data: ``<TICKER>.<sha256[:16]>.parquet``."""
    return f"{ticker}.{sha256[:16]}.parquet"


def merge_new_dates(current: pd.DataFrame, incoming: pd.DataFrame, label: str) -> tuple[pd.DataFrame, int]:
    """Add the dates of ``incoming`` that ``current`` lacks; returns (merged frame, rows added).

    Dates both hold must agree (prices within ``CONFLICT_RTOL`` relative, volume exactly); otherwise this raises
    rather than overwrite stored history.
    """
    shared = incoming.index.intersection(current.index)
    if len(shared):
        old, new = current.loc[shared], incoming.loc[shared]
        for column in OHLCV_COLUMNS:
            a, b = old[column].to_numpy(), new[column].to_numpy()
            same = a == b if column == "volume" else np.isclose(a, b, rtol=CONFLICT_RTOL, atol=0.0)
            if not same.all():
                i = int(np.argmin(same))
                raise DataStoreError(
                    f"{label}: {column} on {shared[i].date()} is {b[i]} but the store holds {a[i]}; the store "
                    "never overwrites a stored date. If the provider revised its history (Yahoo re-bases adj_close "
                    "after every dividend), ingest into a fresh workspace (FINMLOPS_HOME)."
                )
    added = incoming.loc[~incoming.index.isin(current.index)]
    if added.empty:
        return current, 0
    return pd.concat([current, added]).sort_index(), len(added)


class DataStore:
    """Parquet files ``<root>/<TICKER>.parquet`` and ``<root>/manifest.json``."""

    def __init__(self, root: Path | str, lock_timeout: float = 300.0) -> None:
        """``lock_timeout``: seconds to wait for another process's lock before a ``DataStoreError``."""
        self.root = Path(root)
        self.lock_timeout = lock_timeout

    @contextlib.contextmanager
    def lock(self, exclusive: bool = True) -> Iterator[None]:
        """Hold the store's lock: exclusive for writers, shared for readers (advisory ``flock``, so it also works
        between containers sharing a volume). A read-only store, or a platform without ``fcntl``, goes unlocked:
        nobody can be writing to it from here."""
        if exclusive:
            self.root.mkdir(parents=True, exist_ok=True)
        holder = "another process is reading or writing" if exclusive else "another process is writing"
        try:
            with file_lock(self.root / LOCK_NAME, exclusive=exclusive, timeout=self.lock_timeout):
                yield
        except LockTimeout:
            raise DataStoreError(
                f"{self.root / LOCK_NAME}: {holder} the store and held its lock for over {self.lock_timeout:g} s; "
                "wait for it to finish and retry"
            ) from None

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_NAME

    def path_of(self, ticker: str, entry: TickerEntry) -> Path:
        """The file that ``entry`` (a manifest's entry for ``ticker``) names."""
        return self.root / (entry.file or f"{ticker}.parquet")

    def path_for(self, ticker: str) -> Path:
        """The file of ``ticker`` in the current manifest."""
        return self.path_of(ticker, self.manifest().tickers[ticker])

    def exists(self) -> bool:
        """True once a first write has completed."""
        return self.manifest_path.is_file()

    def manifest(self) -> Manifest:
        """The manifest; a missing store or unreadable manifest is a ``DataStoreError`` naming the file."""
        if not self.exists():
            raise DataStoreError(f"no market data in {self.root} (no {MANIFEST_NAME}); run `finmlops ingest` first")
        try:
            manifest = Manifest.model_validate(json.loads(self.manifest_path.read_text()))
        except (json.JSONDecodeError, ValidationError, UnicodeDecodeError) as exc:
            raise DataStoreError(f"{self.manifest_path}: unreadable manifest: {exc}") from None
        except OSError as exc:
            raise DataStoreError(f"{self.manifest_path}: cannot read the manifest: {exc.strerror or exc}") from None
        if manifest.format not in (STORE_FORMAT, LEGACY_FORMAT):
            raise DataStoreError(
                f"{self.manifest_path}: store format {manifest.format!r} is not one this finmlops reads "
                f"({STORE_FORMAT}, {LEGACY_FORMAT}); upgrade finmlops"
            )
        return manifest

    @property
    def dataset_hash(self) -> str:
        return self.manifest().dataset_hash

    def read(
        self, tickers: Iterable[str] | None = None, start: date | None = None, end: date | None = None
    ) -> dict[str, pd.DataFrame]:
        """The stored universe (all tickers when None), each file verified against its manifest hash."""
        return self.read_versioned(tickers, start, end)[0]

    def read_versioned(
        self, tickers: Iterable[str] | None = None, start: date | None = None, end: date | None = None
    ) -> tuple[dict[str, pd.DataFrame], str]:
        """:meth:`read` and the dataset hash of the same version, from one manifest under one shared lock (an
        ingest in between cannot pair old data with a new hash)."""
        if not self.exists():
            self.manifest()  # raises the "run finmlops ingest first" error without creating a lock file
        with self.lock(exclusive=False):
            manifest = self.manifest()
            entries = manifest.tickers
            wanted = list(entries) if tickers is None else [t.upper() for t in tickers]
            unknown = [t for t in wanted if t not in entries]
            if unknown:
                raise DataStoreError(f"{self.root}: no data for {unknown}; the store holds {', '.join(entries)}")
            universe = {t: select_dates(self._read_verified(t, entries[t]), start, end) for t in wanted}
            return universe, manifest.dataset_hash

    def _read_verified(self, ticker: str, entry: TickerEntry) -> pd.DataFrame:
        path = self.path_of(ticker, entry)
        try:
            table = pq.read_table(path)
            frame = table.to_pandas().set_index("date")
            frame.index = pd.DatetimeIndex(frame.index.astype("datetime64[ns]"), name="date")
            frame = frame[list(OHLCV_COLUMNS)].astype({c: np.float64 for c in PRICE_COLUMNS} | {"volume": np.int64})
        except (OSError, pa.ArrowException, KeyError, ValueError, TypeError) as exc:
            raise DataStoreError(f"{path}: cannot read {ticker}: {exc}; re-ingest into a fresh store") from None
        actual = content_hash(frame)
        if actual != entry.sha256:
            raise DataStoreError(
                f"{path}: content hash {actual[:16]}… does not match the manifest's {entry.sha256[:16]}…; the file "
                "was modified or corrupted. Re-ingest into a fresh store."
            )
        return frame

    def write(self, universe: Mapping[str, pd.DataFrame], sources: Mapping[str, str] | str) -> WriteResult:
        """Validate ``universe`` and add its new dates; with nothing new, touch nothing (not even the manifest).

        ``sources`` names where each ticker's data came from (one string for all). Raises before writing anything
        when a frame breaks a rule or conflicts with stored dates.
        """
        if not universe:
            raise ValueError("nothing to write: the universe is empty")
        with self.lock(exclusive=True):
            return self._write_locked(universe, sources)

    def _write_locked(self, universe: Mapping[str, pd.DataFrame], sources: Mapping[str, str] | str) -> WriteResult:
        source_of = (lambda t: sources) if isinstance(sources, str) else sources.__getitem__
        old = self.manifest() if self.exists() else None
        entries = dict(old.tickers) if old else {}
        old_files = [self.path_of(t, e).name for t, e in entries.items()]
        _step("gc")
        self._collect_garbage(old_files)  # what an interrupted commit left, before anything else
        changed: dict[str, pd.DataFrame] = {}
        added: dict[str, int] = {}
        for ticker in sorted(universe):
            frame = universe[ticker]
            validate_ohlcv(frame, f"{source_of(ticker)} ({ticker})")
            if ticker in entries:
                merged, n = merge_new_dates(self._read_verified(ticker, entries[ticker]), frame, ticker)
            else:
                merged, n = frame, len(frame)
            added[ticker] = n
            if n:
                changed[ticker] = merged
        if not changed and old is not None:
            return WriteResult(changed=False, added_rows=added, manifest=old)
        now = datetime.now(UTC)
        entries = {t: e if e.file else e.model_copy(update={"file": f"{t}.parquet"}) for t, e in entries.items()}
        for ticker, frame in changed.items():
            sha256 = content_hash(frame)
            entries[ticker] = TickerEntry(
                first_date=frame.index[0].date(),
                last_date=frame.index[-1].date(),
                rows=len(frame),
                sha256=sha256,
                source=source_of(ticker),
                ingested_at=now,
                file=file_name(ticker, sha256),
            )
        entries = dict(sorted(entries.items()))
        manifest = Manifest(
            version=(old.version if old else 0) + 1,
            dataset_hash=combine_hashes({t: e.sha256 for t, e in entries.items()}),
            updated_at=now,
            tickers=entries,
        )
        self._commit(changed, manifest, old_files)
        return WriteResult(changed=True, added_rows=added, manifest=manifest)

    def _collect_garbage(self, keep: Iterable[str]) -> None:
        """Delete what no committed manifest names: temporary files and Parquet files outside ``keep``.

        Only under the exclusive lock: no live writer owns a temporary file, and no reader is opening a file.
        """
        kept = set(keep) | {MANIFEST_NAME, LOCK_NAME}
        for path in self.root.iterdir():
            if path.name in kept or not path.is_file():
                continue
            if (path.name.startswith(".") and path.name.endswith(".tmp")) or path.suffix == ".parquet":
                path.unlink(missing_ok=True)

    def _commit(self, frames: Mapping[str, pd.DataFrame], manifest: Manifest, old_files: Iterable[str]) -> None:
        """Write the new files under new names, then rename one manifest that names them: one atomic step.

        Steps, each announced to ``commit_hook`` (after ``gc`` in :meth:`_write_locked`): ``file:<TICKER>`` per
        changed ticker, ``sync`` (the folder, so the files are durable before a manifest names them),
        ``manifest`` (temporary file, fsync, rename: the commit), ``committed`` (folder fsync), ``cleanup`` (the old
        version's files). A failure or kill before the manifest's rename leaves the old version current, and its
        leftovers are deleted by the next write.
        """
        try:
            # The hook sees the file steps in ticker order, here; the files are written on WRITE_THREADS threads.
            with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
                writes = []
                for ticker, frame in frames.items():
                    _step(f"file:{ticker}")
                    path = self.path_of(ticker, manifest.tickers[ticker])
                    writes.append(pool.submit(_write_parquet_atomic, frame, path))
                for write in writes:
                    write.result()
            _step("sync")
            _fsync_path(self.root)
            _step("manifest")
            write_bytes_atomic(self.manifest_path, (manifest.model_dump_json(indent=2) + "\n").encode())
        except BaseException:
            with contextlib.suppress(OSError):  # the old version is current either way; the next write retries
                self._collect_garbage(old_files)
            raise
        _step("committed")
        _fsync_path(self.root)
        _step("cleanup")
        self._collect_garbage(str(e.file) for e in manifest.tickers.values())
