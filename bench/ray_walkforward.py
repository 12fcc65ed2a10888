"""Walk-forward wall time, serial vs Ray with 2 workers, for the KDH models on the S&P 500 universe (issue 12, 6).

The workload: Krauss, Do & Huck's DNN, gradient-boosted trees and random forest (``--trees`` trees; the paper grows
1,000) on every ticker of the S&P 500 set, the cross-sectional label, Fischer & Krauss's study periods (750 training
days, the last 20% for early stopping, 250 trading days) whose trading starts in ``--test-years``: equal-sized
folds, so the fits split evenly over the workers. Four timings in one run, side by side:

- serial, 1 thread per fit (the reference the ratio is against: the same fits, the same threads, the same bytes);
- serial, 2 threads per fit (what serial can do with both cores; the forest and the trees use both);
- Ray with 2 workers x 1 thread, warm (Ray started and its workers spawned before timing);
- Ray cold: including ``ray.init`` and the workers' start (each imports torch).

It checks that Ray's predictions.parquet has the serial file's SHA-256, and prints the ratios and the 1-minute
load average before and after: on a shared machine read the ratio, not the seconds.

    python bench/ray_walkforward.py [--sp500-dir DIR] [--trees 25] [--epochs 2] [--json]

``walkforward_rows(universe, ...)`` returns the rows for ``bench/universe.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway local Ray: no token file in the home folder

DEFAULT_SP500 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sp500" / "ohlcv"
VARIANTS = ("kdh_dnn",)
ESTIMATORS = ("kdh_gbt", "kdh_rf")
TEST_YEARS = (2017, 2018, 2019, 2020)
START = "2013-01-01"  # 240 days of warm-up and 750 of training before the first 2017 trading day
END = "2021-04-21"
STUDY_PERIODS = (750, 250)


def _run(universe: Any, threads: int, executor: Any, epochs: int, trees: int, test_years: Sequence[int]) -> Any:
    from finmlops.features import LabelSpec
    from finmlops.training import walk_forward_predictions

    started = time.perf_counter()
    preds = walk_forward_predictions(
        universe, variants=list(VARIANTS), baselines=[], estimators=list(ESTIMATORS),
        estimator_params={"kdh_rf": {"n_estimators": trees}}, test_years=test_years, epochs=epochs,
        threads=threads, progress=False, executor=executor, label=LabelSpec(kind="cross_sectional"),
        study_periods=STUDY_PERIODS, val_frac=0.2,
    )  # fmt: skip
    return time.perf_counter() - started, preds


def _sha(preds: Any, folder: Path) -> str:
    from finmlops.evaluation.workspace import write_parquet_atomic
    from finmlops.provenance import file_sha256

    return file_sha256(write_parquet_atomic(preds, folder / "predictions.parquet"))


def load_universe(sp500_dir: Path, start: str = START, end: str = END) -> Mapping[str, Any]:
    """Every ticker of the S&P 500 CSV folder, ``start`` to ``end``, through a fresh validated store."""
    from finmlops.data import DataStore, ingest
    from finmlops.data.csv_source import find_csv_files

    with tempfile.TemporaryDirectory(prefix="finmlops-ray-bench-") as tmp:
        store = DataStore(Path(tmp) / "store")
        ingest(store, "csv", sorted(find_csv_files(sp500_dir)), data_dir=sp500_dir)
        return store.read(start=date.fromisoformat(start), end=date.fromisoformat(end))


def walkforward_rows(
    universe: Mapping[str, Any], *, epochs: int = 2, trees: int = 25, test_years: Sequence[int] = TEST_YEARS
) -> dict[str, Any]:
    """Time the four configurations above on ``universe``; returns seconds, ratios, SHA-256 agreement and the
    load."""
    import ray

    from finmlops.executor import ExecutorConfig, RayConfig, ray_init_kwargs

    load_before = os.getloadavg()[0]
    rows = sum(len(f) for f in universe.values())
    serial_1, reference = _run(universe, 1, None, epochs, trees, test_years)
    serial_2, _ = _run(universe, 2, None, epochs, trees, test_years)
    config = ExecutorConfig(kind="ray", ray=RayConfig(num_cpus=2))
    cold_start = time.perf_counter()
    ray.init(**ray_init_kwargs(config.ray))
    try:
        # Warm: spawn both workers (each imports finmlops and torch) before the timed run.
        ray.get([ray.remote(num_cpus=1)(_warm).remote() for _ in range(2)])
        warmed = time.perf_counter() - cold_start
        ray_warm, distributed = _run(universe, 1, config, epochs, trees, test_years)
    finally:
        ray.shutdown()
    with tempfile.TemporaryDirectory() as tmp:
        same = _sha(distributed, Path(tmp)) == _sha(reference, Path(tmp))
    folds = sorted(set(reference["fold"]))
    return {
        "workload": {"models": [*VARIANTS, *ESTIMATORS], "tickers": len(universe), "rows": rows, "folds": folds,
                     "fits": len(folds) * (len(VARIANTS) + len(ESTIMATORS)), "epochs": epochs, "trees": trees,
                     "predictions": len(reference)},
        "seconds": {"serial_1_thread": serial_1, "serial_2_threads": serial_2, "ray_2_workers_warm": ray_warm,
                    "ray_start_and_warm_up": warmed, "ray_2_workers_cold": warmed + ray_warm},
        "speedup_vs_serial_1_thread": {"warm": serial_1 / ray_warm, "cold": serial_1 / (warmed + ray_warm)},
        "speedup_vs_serial_2_threads": {"warm": serial_2 / ray_warm, "cold": serial_2 / (warmed + ray_warm)},
        "goal": "Ray >= 1.7x serial", "met": serial_1 / ray_warm >= 1.7,
        "predictions_sha256_equal": same,
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0], "cores": os.cpu_count()},
    }  # fmt: skip


def _warm() -> int:
    import finmlops.training  # noqa: F401  # torch and the fit code, as a walk-forward task imports them

    return os.getpid()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sp500-dir", type=Path, default=DEFAULT_SP500, help="The S&P 500 CSV folder (../shared).")
    parser.add_argument("--tickers", type=int, default=None, help="The first N tickers only (a quick check).")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--trees", type=int, default=25)
    parser.add_argument("--test-years", type=int, nargs="+", default=list(TEST_YEARS))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    universe = load_universe(args.sp500_dir)
    if args.tickers:
        universe = dict(list(universe.items())[: args.tickers])
    r = walkforward_rows(universe, epochs=args.epochs, trees=args.trees, test_years=args.test_years)
    if args.json:
        print(json.dumps(r, indent=2))
        return
    s, w = r["seconds"], r["workload"]
    print(f"walk-forward: {w['fits']} fits ({', '.join(w['models'])}, {w['trees']}-tree forest, {w['epochs']} epochs; "
          f"{w['tickers']} tickers, {w['rows']:,} rows, study periods {w['folds']})")  # fmt: skip
    print(f"  serial, 1 thread per fit (reference): {s['serial_1_thread']:.1f} s")
    print(f"  serial, 2 threads per fit:            {s['serial_2_threads']:.1f} s")
    print(f"  Ray, 2 workers x 1 thread, warm:      {s['ray_2_workers_warm']:.1f} s "
          f"-> {r['speedup_vs_serial_1_thread']['warm']:.2f}x serial-1-thread, "
          f"{r['speedup_vs_serial_2_threads']['warm']:.2f}x serial-2-threads")  # fmt: skip
    print(f"  Ray cold (+ init and workers' start {s['ray_start_and_warm_up']:.1f} s): "
          f"{s['ray_2_workers_cold']:.1f} s -> {r['speedup_vs_serial_1_thread']['cold']:.2f}x")  # fmt: skip
    print(f"  predictions.parquet SHA-256 Ray == serial: {r['predictions_sha256_equal']}")
    load = r["load_average_1min"]
    print(f"  load average (1 min) {load['before']:.1f} before, {load['after']:.1f} after, on {load['cores']} cores")


if __name__ == "__main__":
    main()
