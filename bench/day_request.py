"""One V2 request that scores every ticker of a day (issue 12: a batch of 443, p50 <= 20 ms), on one core and on
both, side by side in one run.

`finmlops serve` runs bench/serve.py's server (the anchor LSTM behind an experiment, metrics and the SQLite request
log on) with ``server.intra_op_threads`` 1, pinned to CPU 1, then 2, on CPUs 0-1. bench/grpc_load.py sends the
``[443, 10, 35]`` float32 batch as ``raw_input_contents``, c=1, from CPU 0 (at c=1 the client waits for each answer,
so it shares the second core only between requests). Beside each row, the harness's onnxruntime floor: the same
model and batch with the same threads and CPUs, no server.

The same server also serves the A/B replay's own day request (`finmlops traffic --per day`): raw OHLCV, every
S&P 500 ticker's last 120 days up to 2021-04-14 and the market return, as REST binary tensors
(``traffic.DayItem.encode``), to a carded model of the ``baseline`` (basic features) and of the ``enhanced``
variant (a tiny ONNX of each variant's width: the row measures the raw path, the features and the data plane, not a
network). It needs the S&P 500 set (``--sp500-dir``, ../shared); without it those rows are skipped and say so.

Usage: python bench/day_request.py [--workdir build/serve-bench] [--n 200] [--reps 3] [--sp500-dir DIR]
Needs: taskset, torch in this venv (builds the model), the harness in ../shared/bench.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import DAY, HARNESS, MODEL, ROOT, finmlops_config, sh, stop, wait_ready  # bench/serve.py

SHAPE = f"{DAY},10,35"
GOAL_MS = 20.0
CPUS = {1: "1", 2: "0,1"}  # one thread on the server's usual core; two on both cores
RAW_VARIANTS = ("baseline", "enhanced")
RAW_DAY = date(2021, 4, 14)
DEFAULT_SP500 = ROOT.parent / "shared" / "data" / "sp500" / "ohlcv"


def raw_day_body(args: argparse.Namespace) -> tuple[bytes, int, int] | None:
    """The replay's day request for ``RAW_DAY``: (body, header length, rows), or None without the S&P 500 set."""
    if not Path(args.sp500_dir).is_dir():
        return None
    import numpy as np  # numpy and finmlops: only the raw rows need them

    from finmlops.data import DataStore, ingest
    from finmlops.data.csv_source import find_csv_files
    from finmlops.features import market_returns
    from finmlops.serving.traffic import DEFAULT_HISTORY, MARKET_COLUMN, RAW_COLUMNS, DayItem

    store = DataStore(args.workdir / "sp500-store")
    if not (args.workdir / "sp500-store" / "manifest.json").exists():
        ingest(store, "csv", sorted(find_csv_files(Path(args.sp500_dir))), data_dir=Path(args.sp500_dir))
    universe = {t: f for t, f in store.read(start=date(2020, 6, 1), end=RAW_DAY).items() if len(f) >= DEFAULT_HISTORY}
    market = market_returns(universe)
    tensors = {c: np.stack([f[c].to_numpy(np.float64)[-DEFAULT_HISTORY:] for f in universe.values()])
               for c in RAW_COLUMNS}  # fmt: skip
    tensors[MARKET_COLUMN] = np.stack(
        [np.nan_to_num(market.reindex(f.index).to_numpy(np.float64)[-DEFAULT_HISTORY:]) for f in universe.values()]
    )
    item = DayItem(RAW_DAY, tuple(universe), tensors, "normal", (None,) * len(universe))
    body, head = item.encode("bench-day")
    return body, head, len(universe)


def raw_row(base: str, model: str, body: tuple[bytes, int, int], args: argparse.Namespace) -> dict[str, Any]:
    """c=1 latency of the raw day request to ``model`` over one keep-alive connection (this process on CPU 0)."""
    import http.client

    payload, head, rows = body
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(head)}
    p50s, p99s = [], []
    for _ in range(args.reps):
        lat = []
        for i in range(20 + args.n // 2):  # 20 warm-up requests, then half as many as the tensor rows (slower)
            t = time.perf_counter()
            conn.request("POST", f"/v2/models/{model}/infer", payload, headers)
            response = conn.getresponse()
            answer = response.read()
            if response.status != 200:
                raise SystemExit(f"raw day request to {model}: {response.status} {answer[:300]!r}")
            if i >= 20:
                lat.append((time.perf_counter() - t) * 1000)
        lat.sort()
        p50s.append(statistics.median(lat))
        p99s.append(lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))])
    conn.close()
    return {"p50_ms": statistics.median(p50s), "p99_ms": statistics.median(p99s), "p50_reps": p50s, "rows": rows}


def day_row(threads: int, args: argparse.Namespace, model: Path, raw: tuple[bytes, int, int] | None) -> dict[str, Any]:
    """p50/p99 of the day request through `finmlops serve` with ``threads`` intra-op threads, the ORT floor, and
    the raw day request to each of ``RAW_VARIANTS`` (when ``raw``)."""
    from finmlops_testing.serving import carded_model  # tests/support (bench/serve.py puts it on the path)

    config = finmlops_config(args.workdir, model)
    settings = json.loads(config.read_text())
    settings["server"]["intra_op_threads"] = threads
    for variant in RAW_VARIANTS if raw else ():
        folder = carded_model(args.workdir / f"raw-{variant}", variant)
        settings["models"].append({"name": f"raw-{variant}", "source": str(folder)})
        settings["experiments"].append(
            {
                "name": f"raw-{variant}-ab",
                "default": f"raw-{variant}",
                "candidates": [{"name": f"raw-{variant}", "weight": 1}],
            }
        )
    config.write_text(json.dumps(settings, indent=2))
    (args.workdir / "requests.db").unlink(missing_ok=True)
    finmlops = Path(sys.executable).with_name("finmlops")
    base = f"http://127.0.0.1:{args.port}"
    log = open(args.workdir / f"day-{threads}.log", "wb")  # noqa: SIM115  # closed after the server stops
    proc = subprocess.Popen(
        ["taskset", "-c", CPUS[threads], str(finmlops), "serve", "--config", str(config), "--port", str(args.port),
         "--grpc-port", str(args.grpc_port), "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "FINMLOPS_HOME": str(args.workdir / "home")},
    )  # fmt: skip
    p50s, p99s, raws = [], [], {}
    try:
        wait_ready(base, proc)
        for rep in range(args.reps):
            out = sh(["taskset", "-c", "0", sys.executable, str(ROOT / "bench" / "grpc_load.py"), "--target",
                      f"127.0.0.1:{args.grpc_port}", "--model", MODEL, "--shape", SHAPE, "--raw", "--n", str(args.n),
                      "--warmup", "20", "--conc", "1", "--duration", "1", "--warmup-s", "0.5",
                      "--label", f"day-{threads}-{rep}"], capture_output=True)  # fmt: skip
            row = json.loads(out.stdout.strip().splitlines()[-1])
            if row["c1_errors"]:
                raise SystemExit(f"{row['c1_errors']} failed day requests with {threads} threads")
            p50s.append(row["c1_p50_ms"])
            p99s.append(row["c1_p99_ms"])
        os.sched_setaffinity(0, {0})  # this process is the raw rows' client, after the tensor rows
        for variant in RAW_VARIANTS if raw else ():
            raws[variant] = raw_row(base, f"raw-{variant}", raw, args)
    finally:
        stop(proc)
        log.close()
    floor = sh(["taskset", "-c", CPUS[threads], sys.executable, str(HARNESS / "serve_ort_floor.py"), str(model),
                "--batches", str(DAY), "--threads", str(threads), "--n", str(args.n), "--warmup", "20"],
               capture_output=True)  # fmt: skip
    f = json.loads(floor.stdout.strip().splitlines()[-1])
    ort = f["p50_us"] / 1000.0
    return {"threads": threads, "p50_ms": statistics.median(p50s), "p99_ms": statistics.median(p99s),
            "p50_reps": p50s, "ort_p50_ms": ort, "raw": raws}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=ROOT / "build" / "serve-bench")
    ap.add_argument("--n", type=int, default=200, help="timed requests per repeat")
    ap.add_argument("--reps", type=int, default=3, help="repeats per row (the median is reported)")
    ap.add_argument("--port", type=int, default=18080)
    ap.add_argument("--grpc-port", type=int, default=18081)
    ap.add_argument("--sp500-dir", default=str(DEFAULT_SP500), help="The S&P 500 CSV folder, for the raw rows.")
    args = ap.parse_args()
    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    model = args.workdir / "model.onnx"
    if not model.exists():
        sh([sys.executable, str(HARNESS / "serve_build_model.py"), "--out", str(model)])
    raw = raw_day_body(args)
    rows = [day_row(threads, args, model, raw) for threads in (1, 2)]
    print(
        f"one request for {DAY} tickers, [{SHAPE}] float32 over gRPC raw_input_contents, c=1, median of "
        f"{args.reps} x {args.n} requests; load at the end {tuple(round(x, 2) for x in os.getloadavg())}"
    )
    print("| request | intra-op threads (server CPUs) | p50 ms | p99 ms | p50 per repeat | onnxruntime alone, p50 ms |")
    print("|---|---|---|---|---|---|")
    verdicts = []
    for r in rows:
        cpus = f"{r['threads']} ({CPUS[r['threads']]})"
        named = [(f"tensor [{SHAPE}], gRPC", r, f"{r['ort_p50_ms']:.1f}")]
        named += [
            (f"raw OHLCV [{v['rows']}, 120], {name} features, REST binary", v, "-") for name, v in r["raw"].items()
        ]
        for label, m, ort in named:
            reps = ", ".join(f"{x:.1f}" for x in m["p50_reps"])
            print(f"| {label} | {cpus} | {m['p50_ms']:.1f} | {m['p99_ms']:.1f} | {reps} | {ort} |")
            verdict = "met" if m["p50_ms"] <= GOAL_MS else "missed"
            verdicts.append(f"{label}, {cpus}: p50 {m['p50_ms']:.1f} ms against the goal of {GOAL_MS:.0f} ms: "
                            f"{verdict} ({m['p50_ms'] - GOAL_MS:+.1f} ms)")  # fmt: skip
    if raw is None:
        print(f"raw rows skipped: {args.sp500_dir} not found (the S&P 500 set lives in ../shared, not shipped)")
    print("\n".join(verdicts))
    print(f"tensor, two threads vs one: {rows[0]['p50_ms'] / rows[1]['p50_ms']:.2f}x faster at p50")


if __name__ == "__main__":
    main()
