"""The Parquet store: round trip, manifest and hashes, incremental writes, conflicts, corruption, atomicity."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from finmlops.data import DataStore, DataStoreError, DataValidationError, content_hash, dataset_hash_of
from finmlops.data.store import combine_hashes

Bytes = Callable[[Path], dict[str, bytes]]


@pytest.fixture()
def store(tmp_path: Path, q1_2023: dict[str, pd.DataFrame]) -> DataStore:
    """A store holding AAPL and MSFT for January 2023 (version 1)."""
    s = DataStore(tmp_path / "data")
    s.write({t: f.loc[:"2023-01-31"] for t, f in q1_2023.items()}, "test")
    return s


def test_round_trip_and_manifest(store: DataStore, q1_2023: dict[str, pd.DataFrame]) -> None:
    january = {t: f.loc[:"2023-01-31"] for t, f in q1_2023.items()}
    got = store.read()
    assert list(got) == ["AAPL", "MSFT"]
    for ticker, frame in got.items():
        pd.testing.assert_frame_equal(frame, january[ticker])
    manifest = store.manifest()
    assert manifest.version == 1
    entry = manifest.tickers["AAPL"]
    assert (entry.first_date, entry.last_date, entry.rows, entry.source) == (
        date(2023, 1, 3),
        date(2023, 1, 31),
        20,
        "test",
    )
    assert entry.sha256 == content_hash(january["AAPL"])
    assert store.dataset_hash == manifest.dataset_hash == dataset_hash_of(january)
    assert manifest.dataset_hash == combine_hashes({t: content_hash(f) for t, f in january.items()})
    on_disk = json.loads(store.manifest_path.read_text())
    assert on_disk["dataset_hash"] == manifest.dataset_hash and on_disk["tickers"]["MSFT"]["rows"] == 20
    sliced = store.read(["msft"], start=date(2023, 1, 10), end=date(2023, 1, 12))
    assert list(sliced["MSFT"].index.strftime("%Y-%m-%d")) == ["2023-01-10", "2023-01-11", "2023-01-12"]


def test_content_hash_sees_every_value_and_date(aapl: pd.DataFrame) -> None:
    base = content_hash(aapl)
    assert content_hash(aapl.copy()) == base
    for column in aapl.columns:
        changed = aapl.copy()
        changed.iloc[7, changed.columns.get_loc(column)] += 1
        assert content_hash(changed) != base, column
    shifted = aapl.copy()
    shifted.index = shifted.index + pd.Timedelta(days=1)
    assert content_hash(shifted) != base
    assert content_hash(aapl.iloc[:-1]) != base
    # The dataset hash depends on which ticker holds which data.
    assert dataset_hash_of({"A": aapl, "B": aapl.iloc[:-1]}) != dataset_hash_of({"A": aapl.iloc[:-1], "B": aapl})


def test_reingest_adds_only_new_dates(store: DataStore, q1_2023: dict[str, pd.DataFrame], store_bytes: Bytes) -> None:
    before = store_bytes(store.root)
    result = store.write({t: f.loc["2023-01-15":"2023-02-28"] for t, f in q1_2023.items()}, "second")
    assert result.changed and result.added_rows == {"AAPL": 19, "MSFT": 19}
    manifest = store.manifest()
    assert manifest.version == 2
    assert manifest.tickers["AAPL"].last_date == date(2023, 2, 28) and manifest.tickers["AAPL"].source == "second"
    pd.testing.assert_frame_equal(store.read(["AAPL"])["AAPL"], q1_2023["AAPL"].loc[:"2023-02-28"])
    assert store_bytes(store.root) != before
    # Nothing new: no file is touched, not even the manifest (same bytes, same version, same hash).
    after = store_bytes(store.root)
    again = store.write({"AAPL": q1_2023["AAPL"].loc["2023-02-01":"2023-02-28"]}, "third")
    assert not again.changed and again.added_rows == {"AAPL": 0} and again.manifest.version == 2
    assert store_bytes(store.root) == after


def test_new_ticker_and_backfill(store: DataStore, q1_2023: dict[str, pd.DataFrame]) -> None:
    jpm = q1_2023["AAPL"].loc["2023-02-01":] * 1  # any valid frame under a new name
    store.write({"JPM": jpm}, "x")
    assert list(store.manifest().tickers) == ["AAPL", "JPM", "MSFT"]
    early = DataStore(store.root.parent / "early")
    early.write({"AAPL": q1_2023["AAPL"].loc["2023-02-01":]}, "x")
    result = early.write({"AAPL": q1_2023["AAPL"].loc[:"2023-02-10"]}, "x")
    assert result.added_rows == {"AAPL": 20}
    pd.testing.assert_frame_equal(early.read()["AAPL"], q1_2023["AAPL"])


def test_conflicting_history_is_refused(store: DataStore, q1_2023: dict[str, pd.DataFrame], store_bytes: Bytes) -> None:
    before = store_bytes(store.root)
    revised = q1_2023["AAPL"].loc["2023-01-20":].copy()
    revised.loc["2023-01-24", "adj_close"] *= 1.001
    with pytest.raises(DataStoreError, match=r"AAPL: adj_close on 2023-01-24 is .* never overwrites"):
        store.write({"AAPL": revised, "MSFT": q1_2023["MSFT"]}, "y")
    assert store_bytes(store.root) == before
    # Float noise below the tolerance (Yahoo serves float32) is the same bar, not a conflict.
    noisy = q1_2023["AAPL"].loc["2023-01-20":].copy()
    noisy["close"] *= 1 + 1e-8
    assert store.write({"AAPL": noisy}, "y").added_rows == {"AAPL": 42}


def test_invalid_frame_is_refused_before_writing(
    store: DataStore, q1_2023: dict[str, pd.DataFrame], store_bytes: Bytes
) -> None:
    before = store_bytes(store.root)
    bad = q1_2023["MSFT"].copy()
    bad.iloc[-1, bad.columns.get_loc("volume")] = -1
    with pytest.raises(DataValidationError) as info:
        store.write({"AAPL": q1_2023["AAPL"], "MSFT": bad}, "z")
    assert (info.value.source, info.value.row, info.value.rule) == ("z (MSFT)", "2023-03-31", "volume_negative")
    assert store_bytes(store.root) == before


def test_empty_store_and_unknown_ticker(tmp_path: Path, store: DataStore) -> None:
    with pytest.raises(DataStoreError, match=r"no market data in .* run `finmlops ingest` first"):
        DataStore(tmp_path / "nothing").read()
    with pytest.raises(DataStoreError, match=r"no data for \['TSLA'\]; the store holds AAPL, MSFT"):
        store.read(["TSLA"])


def test_corrupted_file_is_named(store: DataStore) -> None:
    path = store.path_for("MSFT")
    table = pq.read_table(path)
    close = table.column("close").to_numpy().copy()
    close[3] *= 1.01
    pq.write_table(table.set_column(table.schema.get_field_index("close"), "close", pa.array(close)), path)
    with pytest.raises(
        DataStoreError, match=r"MSFT\.[0-9a-f]{16}\.parquet: content hash .* does not match the manifest"
    ):
        store.read()
    store.read(["AAPL"])  # the intact file still reads
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataStoreError, match=r"MSFT\.[0-9a-f]{16}\.parquet: cannot read MSFT"):
        store.read(["MSFT"])
    store.manifest_path.write_text("{not json")
    with pytest.raises(DataStoreError, match=r"manifest\.json: unreadable manifest"):
        store.manifest()


# ---- interrupted writes leave the store byte-for-byte as it was ------------------------------------------------------


def _update(q1_2023: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return {**q1_2023, "JPM": q1_2023["AAPL"] * 1}


def test_torn_parquet_write(
    store: DataStore, q1_2023: dict[str, pd.DataFrame], store_bytes: Bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = store_bytes(store.root)
    real_write = pq.write_table
    calls: list[Path] = []

    def torn(table: pa.Table, where: Path, **kwargs: object) -> None:
        calls.append(Path(where))
        if len(calls) < 2:
            return real_write(table, where, **kwargs)
        Path(where).write_bytes(b"PAR1" + b"\0" * 64)  # part of a file, then the disk fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", torn)
    with pytest.raises(OSError, match="No space left"):
        store.write(_update(q1_2023), "torn")
    # The files are written on several threads, so the third may be written too before the failure stops the commit.
    assert len(calls) >= 2 and all(c.parent == store.root for c in calls)
    assert store_bytes(store.root) == before
    assert not list(store.root.glob(".*.tmp"))
    assert store.manifest().version == 1 and len(store.read()["AAPL"]) == 20


@pytest.mark.parametrize("fail_on", ["second_replace", "manifest"])
def test_failure_after_some_files_were_written_leaves_the_old_version(
    fail_on: str,
    store: DataStore,
    q1_2023: dict[str, pd.DataFrame],
    store_bytes: Bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = store_bytes(store.root)
    real_replace = os.replace
    replaced: list[str] = []

    def flaky(src: str | Path, dst: str | Path) -> None:
        name = Path(dst).name
        if (fail_on == "second_replace" and len(replaced) == 1) or (fail_on == "manifest" and name == "manifest.json"):
            replaced.append(f"failed {name}")
            raise OSError(5, "I/O error")
        replaced.append(name)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(OSError, match="I/O error"):
        store.write(_update(q1_2023), "flaky")
    monkeypatch.undo()
    # At least one new file had been written before the failure (the files are written on threads, in any order).
    assert replaced[0].startswith(("AAPL.", "JPM."))
    assert store_bytes(store.root) == before
    assert not list(store.root.glob("JPM*")) and not list(store.root.glob(".*.tmp"))
    assert store.manifest().version == 1 and len(store.read()["MSFT"]) == 20


KILLED_WRITER = """
import io, sys, time
from datetime import date
from pathlib import Path
import pyarrow.parquet as pq
from finmlops.data import DataStore, load_snapshot

real_write = pq.write_table

def stalled(table, where, **kwargs):
    buf = io.BytesIO()
    real_write(table, buf, **kwargs)
    Path(where).write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    print("half written", flush=True)
    time.sleep(60)

pq.write_table = stalled
DataStore(sys.argv[1]).write(load_snapshot(["AAPL", "MSFT"], date(2023, 1, 1), date(2023, 3, 31)), "killed")
"""


def test_writer_killed_mid_write(
    store: DataStore, q1_2023: dict[str, pd.DataFrame], store_bytes: Bytes, tmp_path: Path
) -> None:
    before = store_bytes(store.root)
    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER)
    proc = subprocess.Popen([sys.executable, str(script), str(store.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("half written")  # two threads may print
        leftovers = list(store.root.glob(".*.tmp"))
        # The files are written on threads: one or both tickers' temporaries may be there, at least one half full.
        assert 1 <= len(leftovers) <= 2 and any(p.stat().st_size > 0 for p in leftovers)
    finally:
        proc.kill()  # SIGKILL: no finally blocks, no cleanup
        proc.wait(timeout=30)
    assert store_bytes(store.root) == before
    assert store.manifest().version == 1 and len(store.read()["AAPL"]) == 20
    # The next write clears the dead writer's temporary file.
    assert store.write(q1_2023, "after").added_rows == {"AAPL": 42, "MSFT": 42}
    assert not list(store.root.glob(".*.tmp"))


CONCURRENT_WRITER = """
import sys, time
from pathlib import Path
from finmlops.data import DataStore, load_snapshot
root, ticker, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
frame = load_snapshot([ticker])[ticker]
print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
DataStore(root).write({ticker: frame}, "writer " + ticker)
"""


def test_writers_started_together_keep_every_ticker(tmp_path: Path) -> None:
    """Four processes each add a ticker at the same moment; without the lock, read-modify-write of the manifest
    loses tickers (3 of 4 lost when the lock was taken out)."""
    tickers = ["AAPL", "AMZN", "GOOG", "MSFT"]
    root, go, script = tmp_path / "data", tmp_path / "go", tmp_path / "writer.py"
    script.write_text(CONCURRENT_WRITER)
    procs = [
        subprocess.Popen([sys.executable, str(script), str(root), t, str(go)], stdout=subprocess.PIPE, text=True)
        for t in tickers
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    go.touch()
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    store = DataStore(root)
    assert store.manifest().version == 4
    assert sorted(store.manifest().tickers) == tickers
    assert sorted(store.read()) == tickers  # every file matches its manifest hash


def test_a_held_lock_makes_writers_and_readers_wait_then_fail_with_its_path(
    store: DataStore, q1_2023: dict[str, pd.DataFrame], store_bytes: Bytes
) -> None:
    before = store_bytes(store.root)
    impatient = DataStore(store.root, lock_timeout=0.3)
    with store.lock(exclusive=True):
        with pytest.raises(DataStoreError, match=r"\.lock: another process is reading or writing"):
            impatient.write(q1_2023, "blocked")
        with pytest.raises(DataStoreError, match=r"\.lock: another process is writing"):
            impatient.read()
    assert store_bytes(store.root) == before
    with store.lock(exclusive=False):  # readers share
        assert len(impatient.read()["AAPL"]) == 20
        with pytest.raises(DataStoreError, match="reading or writing"):
            impatient.write(q1_2023, "blocked")
    assert impatient.write(q1_2023, "free").added_rows == {"AAPL": 42, "MSFT": 42}


def test_a_read_only_store_is_read_without_a_lock(store: DataStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store on a read-only volume (a serving pod's mount) has no lock file and cannot create one."""
    import errno

    real_open = os.open

    def read_only_open(path: str | Path, flags: int, *args: int) -> int:
        if flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args)

    (store.root / ".lock").unlink()
    monkeypatch.setattr(os, "open", read_only_open)
    assert len(store.read()["MSFT"]) == 20
    with pytest.raises(OSError, match="Read-only"):
        store.write({"AAPL": store.read()["AAPL"].iloc[:1]}, "x")


def test_read_versioned_pairs_the_data_with_its_hash(store: DataStore, q1_2023: dict[str, pd.DataFrame]) -> None:
    universe, data_hash = store.read_versioned()
    assert data_hash == store.dataset_hash == dataset_hash_of(universe)
    store.write(q1_2023, "later")
    universe, data_hash = store.read_versioned(tickers=["AAPL"])
    assert data_hash == store.dataset_hash and len(universe["AAPL"]) == 62
