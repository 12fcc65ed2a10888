"""The data path's two fixed costs on the full bundled snapshot, each beside a named reference in the same run.

- ``ingest`` of the snapshot into a fresh store (validation, versioned parquet, manifest) vs reading the same CSV
  files with ``pandas.read_csv`` (the floor: parsing the inputs, nothing written).
- ``make_windows`` of the advanced set, seq_len 30, vs ``numpy.lib.stride_tricks.sliding_window_view`` + a copy
  of the same per-ticker frames (the floor: no dates, labels or gap checks).

    python bench/datapath.py [--repeat 5]

Prints the median seconds of ``--repeat`` runs and the ratio to the reference. These figures used to be timed
assertions in tests/features/test_windows.py and tests/data/test_snapshot.py (< 1 s and < 2 s).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from finmlops.data import DataStore, ingest, load_snapshot
from finmlops.features import compute_features, make_target, make_windows
from finmlops.settings import DEFAULT_TICKERS

SNAPSHOT_CSV = Path(__file__).resolve().parents[1] / "src" / "finmlops" / "data" / "snapshot" / "ohlcv"


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    """Median wall seconds of ``repeat`` calls of ``fn``, after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def ingest_once() -> None:
    with tempfile.TemporaryDirectory() as home:
        ingest(DataStore(Path(home)), "snapshot", list(DEFAULT_TICKERS))


def read_csvs() -> None:
    for path in sorted(SNAPSHOT_CSV.glob("*.csv")):
        pd.read_csv(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    universe = load_snapshot()
    features = compute_features(universe, "advanced")
    target = make_target(universe)
    frames = [features.xs(t, level="ticker").to_numpy(np.float32) for t in features.index.unique("ticker")]

    def windows() -> None:
        make_windows(features, target, 30)

    def strided() -> None:
        for frame in frames:
            np.lib.stride_tricks.sliding_window_view(frame, 30, axis=0).copy()

    n = len(make_windows(features, target, 30))
    rows = [
        ("ingest snapshot", median_seconds(ingest_once, args.repeat), "pandas.read_csv", read_csvs),
        (f"make_windows ({n} x 30 x 36)", median_seconds(windows, args.repeat), "sliding_window_view", strided),
    ]
    print(f"median of {args.repeat} runs; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'step':<34} {'seconds':>8}   {'reference':<20} {'seconds':>8} {'ratio':>6}")
    for name, seconds, ref_name, ref in rows:
        ref_seconds = median_seconds(ref, args.repeat)
        print(f"{name:<34} {seconds:8.3f}   {ref_name:<20} {ref_seconds:8.3f} {seconds / ref_seconds:6.1f}x")


if __name__ == "__main__":
    main()
