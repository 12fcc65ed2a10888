"""The serving request log: SQLite (WAL) at ``<workspace>/serving/requests.db``, written off the hot path.

``RequestLog.append`` only puts a tuple on a queue (about a microsecond); a background thread writes the buffered
rows in one transaction every ``flush_interval_s`` seconds, or sooner once ``batch_rows`` are waiting (small
transactions keep each GIL hold short, so the event loop's tail latency stays low).
Tables (the shared contract): ``requests`` (append-only: one row per scored request and model, in arrival order by
rowid; a client that reuses an id adds a row, never replaces one), ``feedback`` (one outcome per id) and
``admin_log`` (who changed which experiment, and how). Readers that need one row per id take the latest (highest
rowid) status-200 row, as the feedback lookup does.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

log = logging.getLogger("finmlops.serving")

REQUESTS_TABLE = """
CREATE TABLE IF NOT EXISTS requests (
    id TEXT NOT NULL, model TEXT NOT NULL, ts REAL NOT NULL, experiment TEXT, arm TEXT, model_version TEXT,
    shadow INTEGER NOT NULL DEFAULT 0, inputs_digest TEXT, prob_up REAL, latency_ms REAL, status INTEGER NOT NULL,
    context TEXT, last_features BLOB, as_of TEXT
);
"""
SCHEMA = (
    REQUESTS_TABLE
    + """
CREATE INDEX IF NOT EXISTS requests_by_id ON requests (id, model);
CREATE TABLE IF NOT EXISTS feedback (id TEXT PRIMARY KEY, ts REAL NOT NULL, outcome INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS admin_log (ts REAL NOT NULL, who TEXT NOT NULL, experiment TEXT, change TEXT);
"""
)
REQUEST_COLUMNS: tuple[str, ...] = (
    "id",
    "model",
    "ts",
    "experiment",
    "arm",
    "model_version",
    "shadow",
    "inputs_digest",
    "prob_up",
    "latency_ms",
    "status",
    "context",
    "last_features",
    "as_of",
)
# Logs written before the log was append-only: PRIMARY KEY (id, model), no as_of column.
_LEGACY_PK = "PRIMARY KEY (id, model)"


class RequestRecord(NamedTuple):
    """One row of ``requests``: ``ts`` in unix seconds, ``latency_ms`` in milliseconds, ``prob_up`` in [0, 1]
    (None for a failed request), ``last_features`` the float32 bytes of the last timestep's features, ``as_of`` the
    trading day (``YYYY-MM-DD``) the request was for when the client said so (a replay's simulated day)."""

    id: str
    model: str
    ts: float
    experiment: str | None
    arm: str | None
    model_version: str | None
    shadow: int
    inputs_digest: str | None
    prob_up: float | None
    latency_ms: float
    status: int
    context: str | None = None
    last_features: bytes | None = None
    as_of: str | None = None


class FeedbackRecord(NamedTuple):
    """One row of ``feedback``: the realised outcome (1 = up, 0 = down) of request ``id``."""

    id: str
    ts: float
    outcome: int


class AdminRecord(NamedTuple):
    """One row of ``admin_log``: ``change`` is the JSON text of the patch that was applied."""

    ts: float
    who: str
    experiment: str | None
    change: str


_VALUES = ", ".join("?" * len(REQUEST_COLUMNS))
_INSERT = {
    RequestRecord: f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) VALUES ({_VALUES})",
    FeedbackRecord: "INSERT OR IGNORE INTO feedback VALUES (?, ?, ?)",
    AdminRecord: "INSERT INTO admin_log VALUES (?, ?, ?, ?)",
}


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the request database in WAL mode with the contract's tables."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    _migrate(db)
    db.executescript(SCHEMA)
    return db


def _migrate(db: sqlite3.Connection) -> None:
    """Bring an older ``requests`` table to the append-only schema: rebuild one keyed by (id, model) (its rows kept,
    oldest first) and add the ``as_of`` column where it is missing."""
    with db:
        db.execute("BEGIN IMMEDIATE")  # one transaction (DDL included), and one process migrating at a time
        row = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'requests'").fetchone()
        columns = [c[1] for c in db.execute("PRAGMA table_info(requests)")]
        if row is None:
            return
        if _LEGACY_PK in row[0]:
            old = [c for c in REQUEST_COLUMNS if c in columns]
            db.execute("ALTER TABLE requests RENAME TO requests_keyed")
            db.execute(REQUESTS_TABLE)
            names = ", ".join(old)
            db.execute(f"INSERT INTO requests ({names}) SELECT {names} FROM requests_keyed ORDER BY ts, rowid")
            db.execute("DROP TABLE requests_keyed")
        elif "as_of" not in columns:
            db.execute("ALTER TABLE requests ADD COLUMN as_of TEXT")


class RequestLog:
    """Buffered writer of ``RequestRecord``/``FeedbackRecord``/``AdminRecord`` rows to the SQLite file ``path``.

    ``append`` is safe from any thread and never touches the disk. ``flush`` writes what is buffered now;
    ``close`` stops the writer thread after a final flush. A failed write (a full disk) keeps the rows for the next
    try, up to ``max_buffered_rows``; beyond that new rows are dropped and counted (``dropped_rows``), so memory stays
    bounded. The first failure is one error line on the log (stderr), and so is the recovery; ``write_errors``
    counts failed flushes. ``close`` never raises: rows it cannot write are reported and given up.
    """

    def __init__(
        self, path: Path, *, flush_interval_s: float = 0.2, batch_rows: int = 1000, max_buffered_rows: int = 100_000
    ) -> None:
        self.path = Path(path)
        self._db = connect(self.path)
        self._buffer: deque[Any] = deque()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._interval = flush_interval_s
        self._batch_rows = batch_rows
        self.max_buffered_rows = max_buffered_rows
        self.write_errors = 0
        self.dropped_rows = 0
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="finmlops-requestlog", daemon=True)
        self._thread.start()

    def append(self, record: RequestRecord | FeedbackRecord | AdminRecord) -> None:
        """Buffer one record (deque.append is atomic, so no lock on the hot path); drop it if the buffer is full."""
        if len(self._buffer) >= self.max_buffered_rows:
            self.dropped_rows += 1  # the writer is failing: keep the oldest rows, bounded, and count the rest
            return
        self._buffer.append(record)
        if len(self._buffer) >= self._batch_rows:
            self._wake.set()

    def extend(self, records: Iterable[RequestRecord | FeedbackRecord | AdminRecord]) -> None:
        """:meth:`append` each of ``records`` (the rows of one batch), dropping those beyond the buffer's bound."""
        room = self.max_buffered_rows - len(self._buffer)
        batch = list(records)
        if len(batch) > room:
            self.dropped_rows += len(batch) - max(room, 0)
            batch = batch[: max(room, 0)]
        self._buffer.extend(batch)  # atomic, as append
        if len(self._buffer) >= self._batch_rows:
            self._wake.set()

    @property
    def buffered(self) -> int:
        """Rows waiting to be written."""
        return len(self._buffer)

    def flush(self) -> int:
        """Write every buffered record in one transaction; returns how many were written. A failure keeps the rows
        buffered, counts the error and raises ``sqlite3.Error`` (or the ``OSError`` of the disk)."""
        with self._write_lock:
            rows = [self._buffer.popleft() for _ in range(len(self._buffer))]
            if not rows:
                return 0
            try:
                with self._db:
                    for kind, statement in _INSERT.items():
                        batch = [r for r in rows if type(r) is kind]  # NamedTuples bind as they are
                        if batch:
                            self._db.executemany(statement, batch)
            except (sqlite3.Error, OSError) as exc:
                self.write_errors += 1
                self._buffer.extendleft(reversed(rows))  # keep them, oldest first, for the next flush
                # Rows appended while this flush ran may push the buffer over its bound: drop the newest beyond it.
                while len(self._buffer) > self.max_buffered_rows:
                    self._buffer.pop()
                    self.dropped_rows += 1
                if not self._failing:
                    self._failing = True
                    log.error(
                        "request log %s: cannot write (%s); keeping up to %d rows in memory, dropping the rest until "
                        "it can (finmlops_request_log_write_errors_total, finmlops_request_log_dropped_rows_total)",
                        self.path, exc, self.max_buffered_rows,
                    )  # fmt: skip
                raise
            if self._failing:
                self._failing = False
                log.warning("request log %s: writing again (%d rows dropped meanwhile)", self.path, self.dropped_rows)
            return len(rows)

    def close(self) -> None:
        """Flush what is left and stop the writer thread; on a failing disk, report what is lost instead of raising."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=10)
        try:
            self.flush()
        except (sqlite3.Error, OSError):
            log.warning("request log %s closed with %d rows unwritten (disk full?)", self.path, len(self._buffer))
        with contextlib.suppress(sqlite3.Error):
            self._db.close()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self.flush()
            except (sqlite3.Error, OSError):
                # the disk is busy or full: retry later (not at every batch: each retry rewrites the whole buffer)
                time.sleep(max(self._interval, 1.0))


def _read(path: Path, query: str | Callable[[sqlite3.Connection], str]) -> pd.DataFrame:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no request log (start `finmlops serve` first)")
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        if callable(query):
            query = query(db)
        return pd.read_sql_query(query, db)


def read_requests(path: Path) -> pd.DataFrame:
    """Every row of ``requests``, oldest first (arrival order among equal ``ts``): the contract's columns
    (``last_features`` as bytes or None; ``as_of`` None in a log written before that column existed)."""

    def query(db: sqlite3.Connection) -> str:
        present = {c[1] for c in db.execute("PRAGMA table_info(requests)")}
        columns = ", ".join(c if c in present else f"NULL AS {c}" for c in REQUEST_COLUMNS)
        return f"SELECT {columns} FROM requests ORDER BY ts, rowid"

    return _read(path, query)


def read_feedback(path: Path) -> pd.DataFrame:
    """Every row of ``feedback`` (``id``, ``ts``, ``outcome``), oldest first."""
    return _read(path, "SELECT id, ts, outcome FROM feedback ORDER BY ts, id")


def read_admin_log(path: Path) -> pd.DataFrame:
    """Every row of ``admin_log`` (``ts``, ``who``, ``experiment``, ``change`` as JSON text), oldest first."""
    return _read(path, "SELECT ts, who, experiment, change FROM admin_log ORDER BY ts")
