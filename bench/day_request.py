"""One V2 request that scores every ticker of a day (issue 12: a batch of 443, p50 <= 20 ms), on one core and on
both, side by side in one run.

`finmlops serve` runs bench/serve.py's server (the anchor LSTM behind an experiment, metrics and the SQLite request
log on) with ``server.intra_op_threads`` 1, pinned to CPU 1, then 2, on CPUs 0-1. bench/grpc_load.py sends the
``[443, 10, 35]`` float32 batch as ``raw_input_contents``, c=1, from CPU 0 (at c=1 the client waits for each answer,
so it shares the second core only between requests). Beside each row, the harness's onnxruntime floor: the same
model and batch with the same threads and CPUs, no server.

Usage: python bench/day_request.py [--workdir build/serve-bench] [--n 200] [--reps 3]
Needs: taskset, torch in this venv (builds the model), the harness in ../shared/bench.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import DAY, HARNESS, MODEL, ROOT, finmlops_config, sh, stop, wait_ready  # bench/serve.py

SHAPE = f"{DAY},10,35"
GOAL_MS = 20.0
CPUS = {1: "1", 2: "0,1"}  # one thread on the server's usual core; two on both cores


def day_row(threads: int, args: argparse.Namespace, model: Path) -> dict[str, float]:
    """p50/p99 of the day request through `finmlops serve` with ``threads`` intra-op threads, and the ORT floor."""
    config = finmlops_config(args.workdir, model)
    settings = json.loads(config.read_text())
    settings["server"]["intra_op_threads"] = threads
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
    p50s, p99s = [], []
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
    finally:
        stop(proc)
        log.close()
    floor = sh(["taskset", "-c", CPUS[threads], sys.executable, str(HARNESS / "serve_ort_floor.py"), str(model),
                "--batches", str(DAY), "--threads", str(threads), "--n", str(args.n), "--warmup", "20"],
               capture_output=True)  # fmt: skip
    f = json.loads(floor.stdout.strip().splitlines()[-1])
    ort = f["p50_us"] / 1000.0
    return {"threads": threads, "p50_ms": statistics.median(p50s), "p99_ms": statistics.median(p99s),
            "p50_reps": p50s, "ort_p50_ms": ort}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=ROOT / "build" / "serve-bench")
    ap.add_argument("--n", type=int, default=200, help="timed requests per repeat")
    ap.add_argument("--reps", type=int, default=3, help="repeats per row (the median is reported)")
    ap.add_argument("--port", type=int, default=18080)
    ap.add_argument("--grpc-port", type=int, default=18081)
    args = ap.parse_args()
    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    model = args.workdir / "model.onnx"
    if not model.exists():
        sh([sys.executable, str(HARNESS / "serve_build_model.py"), "--out", str(model)])
    rows = [day_row(threads, args, model) for threads in (1, 2)]
    print(
        f"one request for {DAY} tickers, [{SHAPE}] float32 over gRPC raw_input_contents, c=1, median of "
        f"{args.reps} x {args.n} requests; load at the end {tuple(round(x, 2) for x in os.getloadavg())}"
    )
    print("| intra-op threads (server CPUs) | p50 ms | p99 ms | p50 per repeat | onnxruntime alone, p50 ms |")
    print("|---|---|---|---|---|")
    for r in rows:
        reps = ", ".join(f"{x:.1f}" for x in r["p50_reps"])
        print(
            f"| {r['threads']} ({CPUS[r['threads']]}) | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {reps} | "
            f"{r['ort_p50_ms']:.1f} |"
        )
    for r in rows:
        verdict = "met" if r["p50_ms"] <= GOAL_MS else "missed"
        print(
            f"{r['threads']} thread(s): p50 {r['p50_ms']:.1f} ms against the goal of {GOAL_MS:.0f} ms: {verdict} "
            f"({r['p50_ms'] - GOAL_MS:+.1f} ms)"
        )
    print(f"two threads vs one: {rows[0]['p50_ms'] / rows[1]['p50_ms']:.2f}x faster at p50")


if __name__ == "__main__":
    main()
