"""Walk-forward wall time, serial vs Ray with 2 workers, on one fixed workload (issue 12, section 6).

The workload: ``WORKLOAD``'s models (existing variants and baselines; the KDH trio swaps in by name once it exists)
on a slice of the snapshot, yearly folds, every fit on one torch thread. Four timings in one run, side by side:

- serial, 1 thread per fit (the reference the ratio is against: the same fits, the same threads, the same bytes);
- serial, 2 threads per fit (what serial can do with both cores; its predictions may differ in the last bits);
- Ray with 2 workers x 1 thread, warm (Ray started and its workers spawned before timing);
- Ray cold: including ``ray.init`` and the workers' start (each imports torch).

It checks that Ray's predictions.parquet has the serial file's SHA-256, and prints the ratios. The machine is
shared with other agents: the 1-minute load average is printed before and after; read the ratio, not the seconds.

    python bench/ray_walkforward.py [--tickers 6] [--epochs 3] [--json]

``walkforward_rows()`` returns the rows for ``bench/universe.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway local Ray: no token file in the home folder

TICKERS = ("AAPL", "MSFT", "JPM", "XOM", "JNJ", "V", "AMZN", "GOOG", "NVDA", "TSLA")
# name -> kind; swap in the KDH trio (dnn, gbt, rf) here when finmlops.models has them.
WORKLOAD: dict[str, str] = {"lightweight": "variant", "baseline": "variant", "logistic": "baseline",
                            "lightgbm": "baseline"}  # fmt: skip
TEST_YEARS = (2019, 2020, 2021, 2022)


def _run(universe: Any, threads: int, executor: Any, epochs: int) -> tuple[float, Any]:
    from finmlops.training import walk_forward_predictions

    started = time.perf_counter()
    preds = walk_forward_predictions(
        universe, variants=[m for m, k in WORKLOAD.items() if k == "variant"],
        baselines=[m for m, k in WORKLOAD.items() if k == "baseline"], test_years=TEST_YEARS, epochs=epochs,
        threads=threads, progress=False, executor=executor,
    )  # fmt: skip
    return time.perf_counter() - started, preds


def _sha(preds: Any, folder: Path) -> str:
    from finmlops.evaluation.workspace import write_parquet_atomic
    from finmlops.provenance import file_sha256

    return file_sha256(write_parquet_atomic(preds, folder / "predictions.parquet"))


def walkforward_rows(n_tickers: int = 6, epochs: int = 3) -> dict[str, Any]:
    """Time the four configurations above; returns seconds, ratios, SHA-256 agreement and the load."""
    import ray

    from finmlops.data import load_snapshot
    from finmlops.executor import ExecutorConfig, RayConfig, ray_init_kwargs

    universe = load_snapshot(list(TICKERS[:n_tickers]), start=date(2014, 1, 1), end=date(2022, 12, 31))
    load_before = os.getloadavg()[0]
    fits = len(WORKLOAD) * len(TEST_YEARS)
    serial_1, reference = _run(universe, 1, None, epochs)
    serial_2, _ = _run(universe, 2, None, epochs)
    config = ExecutorConfig(kind="ray", ray=RayConfig(num_cpus=2))
    cold_start = time.perf_counter()
    ray.init(**ray_init_kwargs(config.ray))
    try:
        # Warm: spawn both workers (each imports finmlops and torch) before the timed run.
        ray.get([ray.remote(num_cpus=1)(_warm).remote() for _ in range(2)])
        warmed = time.perf_counter() - cold_start
        ray_warm, distributed = _run(universe, 1, config, epochs)
    finally:
        ray.shutdown()
    with tempfile.TemporaryDirectory() as tmp:
        same = _sha(distributed, Path(tmp)) == _sha(reference, Path(tmp))
    return {
        "workload": {"models": list(WORKLOAD), "tickers": n_tickers, "folds": list(TEST_YEARS), "fits": fits,
                     "epochs": epochs},
        "seconds": {"serial_1_thread": serial_1, "serial_2_threads": serial_2, "ray_2_workers_warm": ray_warm,
                    "ray_start_and_warm_up": warmed, "ray_2_workers_cold": warmed + ray_warm},
        "speedup_vs_serial_1_thread": {"warm": serial_1 / ray_warm, "cold": serial_1 / (warmed + ray_warm)},
        "speedup_vs_serial_2_threads": {"warm": serial_2 / ray_warm},
        "predictions_sha256_equal": same,
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0], "cores": os.cpu_count()},
    }  # fmt: skip


def _warm() -> int:
    import finmlops.training  # noqa: F401  # torch and the fit code, as a walk-forward task imports them

    return os.getpid()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickers", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    r = walkforward_rows(args.tickers, args.epochs)
    if args.json:
        print(json.dumps(r, indent=2))
        return
    s, w = r["seconds"], r["workload"]
    print(f"walk-forward: {w['fits']} fits ({', '.join(w['models'])}; {w['tickers']} tickers, folds {w['folds']})")
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
