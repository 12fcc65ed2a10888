"""Benchmark: finmlops at universe scale, the 443-ticker S&P 500 set of ``../shared/data/sp500/ohlcv`` (2.1 M rows).

Run: ``.venv/bin/python bench/universe.py [--sp500-dir DIR] [--only CASE ...] [--json]``. Each case runs in its
own subprocess, so its peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is its own. Rows:

* ``memory-floor``: writing Alpha158's float64 output bytes (2.7 GB) to fresh memory and again: the reference
  that bounds the feature rows (a VM's first touch of memory can cost seconds per GB);
* ``ingest``: ``finmlops.data.ingest`` of every CSV into a fresh store (parse, validate, hash, write, commit);
  goal <= 15 s on 2 cores;
* ``features-<set>[-float32]``: ``compute_features`` over the whole stored universe (the store read is not timed,
  the peak RSS includes it); goal >= 2 M rows/s with peak RSS <= 3 GB;
* ``reference-<set>``: the panel against the one-ticker-at-a-time reference (``compute_features_per_ticker``, the
  code as it was before the panel) on a slice of ``--slice`` tickers, side by side in one process: the ratio, and
  whether the two agree bit for bit;
* ``walk-forward-serial`` / ``walk-forward-ray`` and ``fk-lstm``: placeholders for issue 12 section 6's
  walk-forward serial vs Ray (goal Ray >= 1.7x) and Fischer-Krauss LSTM samples/s rows. A later change adds
  each as a function in ``CASES``; until then they print "not measured".

Figures on a shared 2-core machine are noisy: compare ratios measured in one run, not absolute times across runs.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SP500 = REPO.parent / "shared" / "data" / "sp500" / "ohlcv"

Result = dict[str, Any]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _store_of(args: argparse.Namespace) -> Path:
    """The store ingested by the ``ingest`` case (or a fresh one, ingested here untimed)."""
    store = Path(args.workdir) / "store"
    if not (store / "manifest.json").exists():
        from finmlops.data import DataStore, ingest
        from finmlops.data.csv_source import find_csv_files

        ingest(DataStore(store), "csv", sorted(find_csv_files(Path(args.sp500_dir))), data_dir=Path(args.sp500_dir))
    return store


def case_ingest(args: argparse.Namespace) -> Result:
    from finmlops.data import DataStore, ingest
    from finmlops.data.csv_source import find_csv_files

    folder = Path(args.sp500_dir)
    store = Path(args.workdir) / "store"
    shutil.rmtree(store, ignore_errors=True)
    tickers = sorted(find_csv_files(folder))
    started = time.perf_counter()
    report = ingest(DataStore(store), "csv", tickers, data_dir=folder)
    seconds = time.perf_counter() - started
    rows = sum(t.rows for t in report.tickers)
    return {
        "tickers": len(tickers), "rows": rows, "seconds": seconds, "rows_per_s": rows / seconds,
        "goal": "<= 15 s", "met": seconds <= 15.0, "dataset_hash": report.dataset_hash[:16],
    }  # fmt: skip


def _features_case(feature_set: str, dtype: str) -> Callable[[argparse.Namespace], Result]:
    def run(args: argparse.Namespace) -> Result:
        import numpy as np

        from finmlops.data import DataStore
        from finmlops.features import compute_features

        universe = DataStore(_store_of(args)).read()
        rows = sum(len(f) for f in universe.values())
        before = _peak_rss_mb()
        started = time.perf_counter()
        frame = compute_features(universe, feature_set, dtype=getattr(np, dtype))
        seconds = time.perf_counter() - started
        peak = _peak_rss_mb()
        return {
            "tickers": len(universe), "rows": rows, "features": frame.shape[1], "dtype": dtype,
            "frame_mb": frame.to_numpy().nbytes / 2**20, "seconds": seconds, "rows_per_s": rows / seconds,
            "peak_rss_mb": peak, "rss_before_mb": before, "goal": ">= 2 M rows/s, peak RSS <= 3 GB",
            "met": rows / seconds >= 2e6 and peak <= 3 * 1024,
        }  # fmt: skip

    return run


def _reference_case(feature_set: str) -> Callable[[argparse.Namespace], Result]:
    def run(args: argparse.Namespace) -> Result:
        import numpy as np

        from finmlops.data import DataStore
        from finmlops.features.compute import compute_features, compute_features_per_ticker

        store = DataStore(_store_of(args))
        names = sorted(store.manifest().tickers)
        step = max(1, len(names) // args.slice)
        universe = store.read(names[::step][: args.slice])
        rows = sum(len(f) for f in universe.values())
        started = time.perf_counter()
        panel = compute_features(universe, feature_set)
        panel_s = time.perf_counter() - started
        started = time.perf_counter()
        reference = compute_features_per_ticker(universe, feature_set)
        reference_s = time.perf_counter() - started
        same = panel.index.equals(reference.index) and np.array_equal(
            panel.to_numpy(), reference.to_numpy(), equal_nan=True
        )
        return {
            "tickers": len(universe), "rows": rows, "panel_rows_per_s": rows / panel_s,
            "per_ticker_rows_per_s": rows / reference_s, "ratio": reference_s / panel_s, "bitwise_equal": same,
        }  # fmt: skip

    return run


def case_memory_floor(args: argparse.Namespace) -> Result:
    """The reference for the feature rows: writing the Alpha158 float64 output's bytes (2.13 M x 158 x 8) to
    fresh memory, then again to the same memory. On a VM whose first touch of a page is slow, the first figure
    bounds any feature path's rows/s from above."""
    import numpy as np

    rows, n = 2_133_445, 2_133_445 * 158
    started = time.perf_counter()
    block = np.empty(n)
    block.fill(1.0)
    first = time.perf_counter() - started
    started = time.perf_counter()
    block.fill(2.0)
    again = time.perf_counter() - started
    gb = n * 8 / 1e9
    return {
        "gb": gb, "first_touch_s": first, "rewrite_s": again, "first_touch_gb_per_s": gb / first,
        "floor_rows_per_s": rows / first,
    }  # fmt: skip


def _pending(what: str) -> Callable[[argparse.Namespace], Result]:
    def run(args: argparse.Namespace) -> Result:
        return {"status": f"not measured: {what} (issue 12 section 6, added with that feature)"}

    return run


CASES: dict[str, Callable[[argparse.Namespace], Result]] = {
    "ingest": case_ingest,
    "memory-floor": case_memory_floor,
    "features-advanced": _features_case("advanced", "float64"),
    "features-alpha158": _features_case("alpha158", "float64"),
    "features-alpha158-float32": _features_case("alpha158", "float32"),
    "features-kdh": _features_case("kdh", "float64"),
    "reference-advanced": _reference_case("advanced"),
    "reference-alpha158": _reference_case("alpha158"),
    # Hooks for later rows: replace each placeholder by a function taking the parsed args, returning a dict.
    "walk-forward-serial": _pending("the KDH models' walk-forward, serial executor"),
    "walk-forward-ray": _pending("the same walk-forward on Ray with 2 workers; report the ratio to serial"),
    "fk-lstm": _pending("Fischer-Krauss LSTM samples/s per epoch against bench/train.py's matmul floor"),
}


def _format(name: str, result: Result) -> str:
    if "error" in result or "status" in result:
        return f"{name:28s} {result.get('error') or result['status']}"
    parts = []
    for key in ("tickers", "rows", "features", "dtype", "seconds", "rows_per_s", "panel_rows_per_s",
                "per_ticker_rows_per_s", "ratio", "peak_rss_mb", "frame_mb", "bitwise_equal", "gb", "first_touch_s",
                "rewrite_s", "floor_rows_per_s", "met"):  # fmt: skip
        if key in result:
            value = result[key]
            parts.append(f"{key} {value:,.2f}" if isinstance(value, float) else f"{key} {value}")
    return f"{name:28s} " + ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sp500-dir", default=str(DEFAULT_SP500), help="The S&P 500 CSV folder (../shared).")
    parser.add_argument("--only", nargs="*", choices=list(CASES), help="Run only these cases (in this order).")
    parser.add_argument("--slice", type=int, default=30, help="Tickers in the reference cases' slice.")
    parser.add_argument("--json", action="store_true", help="Print the results as one JSON object.")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        try:
            result = CASES[args.case](args)
        except Exception as exc:  # a case's failure is its row, not the end of the benchmark
            result = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(result))
        return
    if not Path(args.sp500_dir).is_dir():
        sys.exit(f"{args.sp500_dir} not found: the S&P 500 set lives in ../shared/data/sp500/ohlcv (not shipped)")
    results: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="finmlops-universe-") as workdir:
        for name in args.only or list(CASES):
            command = [sys.executable, __file__, "--case", name, "--workdir", workdir, "--sp500-dir", args.sp500_dir]
            done = subprocess.run([*command, "--slice", str(args.slice)], capture_output=True, text=True)
            lines = done.stdout.strip().splitlines()
            try:
                results[name] = json.loads(lines[-1])
            except (IndexError, json.JSONDecodeError):
                results[name] = {"error": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"}
            if not args.json:
                print(_format(name, results[name]), flush=True)
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
