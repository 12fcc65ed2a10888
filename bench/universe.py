"""Benchmark: finmlops at universe scale, the 443-ticker S&P 500 set of ``../shared/data/sp500/ohlcv`` (2.1 M rows).

Run: ``.venv/bin/python bench/universe.py [--sp500-dir DIR] [--only CASE ...] [--json]``. Each case runs in its
own subprocess, so its peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is its own. Rows:

* ``memory-floor``: writing Alpha158's float64 output bytes (2.7 GB) to fresh memory and again: the reference
  that bounds the feature rows (a VM's first touch of memory can cost seconds per GB);
* ``ingest``: ``finmlops.data.ingest`` of every CSV into a fresh store (parse, validate, hash, write, commit);
  goal <= 15 s on 2 cores;
* ``features-<set>[-float32]``: ``compute_features`` over the whole stored universe (the store read is not timed,
  the peak RSS includes it); goal >= 2 M rows/s with peak RSS <= 3 GB;
* ``windows-60``: ``make_window_index`` over the universe's advanced features (float32), ``seq_len`` 60, for
  prediction (no target): its time, peak RSS and the bytes of its rows against those of the copy-per-window ``X``
  that ``make_windows`` would hold; then 50 batches of 4,096 windows gathered from it (the lean path at 2-3 M rows);
* ``reference-<set>``: the panel against the one-ticker-at-a-time reference (``compute_features_per_ticker``, the
  code as it was before the panel) on a slice of ``--slice`` tickers, side by side in one process: the ratio, and
  whether the two agree bit for bit;
* ``walk-forward-kdh``: the KDH DNN, GBT and a ``--trees`` forest on every ticker, four F&K study periods
  (2017-2020), serial (1 and 2 threads per fit) vs Ray with 2 workers x 1 thread (``bench/ray_walkforward.py``):
  the ratio, goal Ray >= 1.7x serial, and whether the predictions agree bit for bit;
* ``raw-day``: a raw day request's features (443 tickers x 120 days, advanced set) as one panel against the
  per-row loop it replaced, bit for bit;
* ``fk-lstm``: the Fischer & Krauss LSTM's samples/s per epoch on 2017-2020 of the universe against the float32
  matmul floor of ``bench/train.py``, in one process.

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
        started, cpu = time.perf_counter(), time.process_time()
        frame = compute_features(universe, feature_set, dtype=getattr(np, dtype))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        peak = _peak_rss_mb()
        return {
            "tickers": len(universe), "rows": rows, "features": frame.shape[1], "dtype": dtype,
            "frame_mb": frame.to_numpy().nbytes / 2**20, "seconds": seconds, "cpu_s": cpu, "rows_per_s": rows / seconds,
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


def case_windows(args: argparse.Namespace) -> Result:
    """``make_window_index`` at universe scale: T = 60 windows of the 36 advanced features (float32)."""
    import numpy as np

    from finmlops.data import DataStore
    from finmlops.features import compute_features, make_window_index

    universe = DataStore(_store_of(args)).read()
    features = compute_features(universe, "advanced", dtype=np.float32)
    del universe
    before = _peak_rss_mb()
    started = time.perf_counter()
    index = make_window_index(features, None, 60, require_target=False)
    seconds = time.perf_counter() - started
    peak = _peak_rss_mb()
    started = time.perf_counter()
    batch_bytes = 0
    for _, batch in zip(range(50), index.batches(4096), strict=False):
        batch_bytes = max(batch_bytes, batch.nbytes)
    batch_s = time.perf_counter() - started
    n_features = len(index.feature_names)
    return {
        "rows": len(features), "windows": len(index), "features": n_features, "seconds": seconds,
        "rows_per_s": len(features) / seconds, "rows_mb": index.rows.nbytes / 2**20,
        "copy_per_window_mb": len(index) * 60 * n_features * 4 / 2**20, "peak_rss_mb": peak,
        "rss_before_mb": before, "batch_windows_per_s": 50 * 4096 / batch_s, "batch_mb": batch_bytes / 2**20,
    }  # fmt: skip


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


def case_walk_forward(args: argparse.Namespace) -> Result:
    """The KDH models' walk-forward on the whole universe, serial vs Ray with 2 workers (ray_walkforward.py)."""
    from datetime import date

    from finmlops.data import DataStore
    from ray_walkforward import END, START, walkforward_rows

    universe = DataStore(_store_of(args)).read(start=date.fromisoformat(START), end=date.fromisoformat(END))
    r = walkforward_rows(universe, epochs=2, trees=args.trees)
    s = r["seconds"]
    return {
        "tickers": r["workload"]["tickers"], "rows": r["workload"]["rows"], "fits": r["workload"]["fits"],
        "trees": r["workload"]["trees"], "serial_1_thread_s": s["serial_1_thread"],
        "serial_2_threads_s": s["serial_2_threads"], "ray_warm_s": s["ray_2_workers_warm"],
        "ray_start_s": s["ray_start_and_warm_up"], "ratio": r["speedup_vs_serial_1_thread"]["warm"],
        "ratio_vs_2_threads": r["speedup_vs_serial_2_threads"]["warm"],
        "ratio_cold": r["speedup_vs_serial_1_thread"]["cold"], "bitwise_equal": r["predictions_sha256_equal"],
        "load_before": r["load_average_1min"]["before"], "load_after": r["load_average_1min"]["after"],
        "goal": r["goal"], "met": r["met"],
    }  # fmt: skip


def case_fk_lstm(args: argparse.Namespace) -> Result:
    """The Fischer & Krauss LSTM's training speed on one study period's worth of the universe (443 tickers,
    2017-2020, 240 x 1 windows) against the float32 matmul floor of bench/train.py, measured in this process."""
    from datetime import date

    import torch

    from finmlops.data import DataStore
    from train import matmul_gflops, variant_speed

    torch.set_num_threads(2)
    universe = DataStore(_store_of(args)).read(start=date(2017, 1, 1), end=date(2020, 12, 31))
    floor = matmul_gflops()
    r = variant_speed("fk_lstm", universe, epochs=2, threads=2, floor=floor, ref_epochs=0)
    return {
        "tickers": len(universe), "windows": r["windows"], "seconds_per_epoch": r["seconds_per_epoch"],
        "samples_per_s": r["samples_per_second"], "achieved_gflops": r["achieved_gflops"],
        "matmul_floor_gflops": floor, "ratio_to_floor": r["ratio_to_floor"], "peak_rss_mb": _peak_rss_mb(),
    }  # fmt: skip


def case_raw_day(args: argparse.Namespace) -> Result:
    """A raw day request's features: ``finmlops.serving.raw.raw_windows`` on every ticker's last 120 days up to
    2021-04-14 (advanced set, seq_len 10), the batch as one panel, against the loop of one ``feature_matrix`` per
    row that it replaced, side by side in one process, and whether the two agree bit for bit."""
    from datetime import date

    import numpy as np

    from finmlops.data import DataStore
    from finmlops.features import feature_names, features_of, market_returns
    from finmlops.features.compute import feature_matrix, settled_history
    from finmlops.features.registry import TickerInputs
    from finmlops.serving.raw import raw_windows

    history, seq_len, feature_set = 120, 10, "advanced"
    universe = DataStore(_store_of(args)).read(start=date(2020, 6, 1), end=date(2021, 4, 14))
    universe = {t: f for t, f in universe.items() if len(f) >= history}
    market = market_returns(universe)
    columns = ("open", "high", "low", "close", "adj_close", "volume")
    inputs = {c: np.stack([f[c].to_numpy(float)[-history:] for f in universe.values()]) for c in columns}
    inputs["market_return"] = np.stack(
        [np.nan_to_num(market.reindex(f.index).to_numpy(float)[-history:]) for f in universe.values()]
    )
    names, features = feature_names(feature_set), features_of(feature_set)
    start = max(0, history - settled_history(features, seq_len))

    def per_row() -> np.ndarray:
        rows = []
        for i in range(len(universe)):
            one = TickerInputs.from_arrays(*(inputs[c][i, start:] for c in columns), inputs["market_return"][i, start:])
            rows.append(feature_matrix(one, features)[-seq_len:])
        return np.stack(rows).astype(np.float32)

    timings: dict[str, list[float]] = {"panel": [], "per_row": []}
    for _ in range(args.reps):
        for name, run in (("panel", lambda: raw_windows(inputs, feature_set, names, seq_len)), ("per_row", per_row)):
            started = time.perf_counter()
            result = run()
            timings[name].append(time.perf_counter() - started)
            if name == "panel":
                panel = result
    panel_s, per_row_s = min(timings["panel"]), min(timings["per_row"])
    return {
        "tickers": len(universe), "rows": history, "features": len(names), "panel_ms": 1000 * panel_s,
        "per_row_ms": 1000 * per_row_s, "ratio": per_row_s / panel_s,
        "bitwise_equal": bool(np.array_equal(panel, per_row(), equal_nan=True)),
    }  # fmt: skip


CASES: dict[str, Callable[[argparse.Namespace], Result]] = {
    "ingest": case_ingest,
    "memory-floor": case_memory_floor,
    "features-advanced": _features_case("advanced", "float64"),
    "features-alpha158": _features_case("alpha158", "float64"),
    "features-alpha158-float32": _features_case("alpha158", "float32"),
    "features-kdh": _features_case("kdh", "float64"),
    "features-advanced-float32": _features_case("advanced", "float32"),
    "windows-60": case_windows,
    "reference-advanced": _reference_case("advanced"),
    "reference-alpha158": _reference_case("alpha158"),
    "walk-forward-kdh": case_walk_forward,
    "fk-lstm": case_fk_lstm,
    "raw-day": case_raw_day,
}


def _format(name: str, result: Result) -> str:
    if "error" in result or "status" in result:
        return f"{name:28s} {result.get('error') or result['status']}"
    parts = []
    for key in ("tickers", "rows", "windows", "features", "dtype", "seconds", "cpu_s", "rows_per_s",
                "panel_rows_per_s", "per_ticker_rows_per_s", "ratio", "peak_rss_mb", "frame_mb", "rows_mb",
                "copy_per_window_mb", "batch_windows_per_s", "bitwise_equal", "gb", "first_touch_s", "rewrite_s",
                "floor_rows_per_s", "fits", "trees", "serial_1_thread_s", "serial_2_threads_s", "ray_warm_s",
                "ray_start_s", "ratio_vs_2_threads", "ratio_cold", "load_before", "load_after", "seconds_per_epoch",
                "samples_per_s", "achieved_gflops", "matmul_floor_gflops", "ratio_to_floor", "panel_ms", "per_row_ms",
                "met"):  # fmt: skip
        if key in result:
            value = result[key]
            parts.append(f"{key} {value:,.2f}" if isinstance(value, float) else f"{key} {value}")
    return f"{name:28s} " + ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sp500-dir", default=str(DEFAULT_SP500), help="The S&P 500 CSV folder (../shared).")
    parser.add_argument("--only", nargs="*", choices=list(CASES), help="Run only these cases (in this order).")
    parser.add_argument("--slice", type=int, default=30, help="Tickers in the reference cases' slice.")
    parser.add_argument("--reps", type=int, default=5, help="Repeats of the raw-day case (best of).")
    parser.add_argument("--trees", type=int, default=25, help="The walk-forward case's forest size (paper: 1,000).")
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
            command += ["--slice", str(args.slice), "--trees", str(args.trees), "--reps", str(args.reps)]
            done = subprocess.run(command, capture_output=True, text=True)
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
