"""Benchmark `finmlops serve` against MLServer 1.7.1 (defaults and tuned) on the same ONNX model, in one run,
over REST and gRPC, with the HTTP+JSON floor and the raw-OHLCV path measured in the same run.

Uses the shared harness in ../shared/bench (serve_bench.sh: c=1 latency over one keep-alive connection, then
wrk -t2 -c32) for REST, and bench/grpc_load.py (a closed-loop grpc.aio client: c=1, then 32 concurrent calls) for
gRPC. Each server runs pinned to CPU 1 (`taskset -c 1`), the clients to CPU 0; the gRPC client reports its own CPU
use, so a client at ~100 % of its core (the limit, not the server) shows. finmlops runs with everything on: requests
go through an experiment (Seldon `default` takeover of the model's endpoint), Prometheus metrics and the SQLite
request log. Rows:
- REST: finmlops, MLServer defaults and tuned, and the harness's HTTP+JSON floor (serve_floor_server.py `_parse`:
  body read, JSON to numpy, a reply, no model);
- gRPC: finmlops and both MLServer settings (raw_input_contents, the tritonclient default), and the gRPC floor
  (bench/grpc_floor_server.py: a grpc.aio server answering a constant);
- raw OHLCV through an experiment (REST, the bundled snapshot's AAPL history) beside tensors to the same model
  (a small carded model of the baseline variant: [batch, 10, 16]).

Usage: python bench/serve.py [--workdir build/serve-bench] [--reps 1] [--duration 20s] [--skip-mlserver]
         [--skip-raw] [--skip-batch] [--pairs 4] [--pair-duration 5s]
         [--fast-path-pairs 0]
Needs: wrk and GNU time (apt), taskset, torch in this venv (builds the model). The MLServer venv
(mlserver==1.7.1, uvloop<0.22) is created under WORKDIR/mlserver-venv on first use.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))  # finmlops_testing (raw model)
HARNESS = Path(os.environ.get("FINMLOPS_BENCH_HARNESS", Path(__file__).resolve().parents[2] / "shared" / "bench"))
ROOT = Path(__file__).resolve().parents[1]
MODEL = "lstm"
SHAPE = "1,10,35"
DAY = 443  # the S&P 500 universe's tickers: one request per trading day


def sh(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    print("+", " ".join(cmd), file=sys.stderr)
    return subprocess.run(cmd, check=True, text=True, **kwargs)  # type: ignore[call-overload]


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    """Poll GET /v2/health/ready until 200; fail if the server process dies first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{base}/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{base} not ready after {timeout_s} s")


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (MLServer runs its model in worker processes)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def measure(
    label: str,
    cmd: list[str],
    base: str,
    args: argparse.Namespace,
    results: Path,
    grpc_target: str | None = None,
    model: str = MODEL,
    **popen: object,
) -> None:
    """Start ``cmd`` pinned to CPU 1, wait until ready, run the REST harness (and, with ``grpc_target``, the gRPC
    client) with clients on CPU 0, stop it."""
    log = open(args.workdir / f"{label}.log", "wb")  # noqa: SIM115  # closed after the server stops
    proc = subprocess.Popen(["taskset", "-c", "1", *cmd], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, **popen)  # type: ignore[call-overload]  # fmt: skip
    try:
        wait_ready(base, proc)
        pids = " ".join(str(p) for p in descendants(proc.pid))
        sh([str(HARNESS / "serve_bench.sh"), base, model, SHAPE, "--label", label, "--reps", str(args.reps),
            "--client-cpus", "0", "--server-pids", pids, "--duration", args.duration, "--quiet-wait", "20",
            "--out", str(results)])  # fmt: skip
        if grpc_target is not None:
            for _ in range(args.reps):
                grpc_row(f"{label}-grpc", grpc_target, proc.pid, args, results)
        if label == "finmlops" and not args.skip_batch:
            day_rows(base, grpc_target, args, results)
    finally:
        stop(proc)
        log.close()


def proc_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total


def grpc_row(label: str, target: str, server_pid: int, args: argparse.Namespace, results: Path) -> None:
    """One gRPC row: bench/grpc_load.py pinned to CPU 0, with the server's CPU use over the whole run."""
    pids = descendants(server_pid)
    hz, t0, w0 = os.sysconf("SC_CLK_TCK"), proc_ticks(pids), time.perf_counter()
    out = sh(["taskset", "-c", "0", sys.executable, str(ROOT / "bench" / "grpc_load.py"), "--target", target,
              "--model", MODEL, "--shape", SHAPE, "--raw", "--label", label,
              "--duration", str(float(args.duration.rstrip("s")))], capture_output=True)  # fmt: skip
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["server_cpu_pct_whole_run"] = round(100 * (proc_ticks(pids) - t0) / hz / (time.perf_counter() - w0), 1)
    row["transport"] = "grpc"
    print(json.dumps(row))
    with results.open("a") as f:
        f.write(json.dumps(row) + "\n")


def day_rows(base: str, grpc_target: str | None, args: argparse.Namespace, results: Path) -> None:
    """One request that scores every ticker of a day (issue 12: a batch of 443, p50 <= 20 ms), c=1: REST JSON,
    REST with the binary tensor extension is left to gRPC raw bytes (grpc_load.py, c=1 only), and the onnxruntime
    floor of the same [443, 10, 35] run, pinned to the server's core, in the same run."""
    import numpy as np  # numpy: only these rows need it

    x = np.random.default_rng(0).normal(size=(DAY, 10, 35)).astype(np.float32)
    body = args.workdir / "day-body.json"
    body.write_text(json.dumps({"inputs": [{"name": "input_data", "shape": list(x.shape), "datatype": "FP32",
                                            "data": x.ravel().tolist()}]}))  # fmt: skip
    c1 = sh(["taskset", "-c", "0", sys.executable, str(HARNESS / "serve_latency_c1.py"), "--url",
             f"{base}/v2/models/{MODEL}/infer", "--body", str(body), "-n", "200", "--warmup", "20"],
            capture_output=True)  # fmt: skip
    row = {k: v for k, v in json.loads(c1.stdout.strip().splitlines()[-1]).items() if k != "response_sample"}
    rows = [{**row, "label": f"day{DAY}-rest-json"}]
    if grpc_target is not None:
        out = sh(["taskset", "-c", "0", sys.executable, str(ROOT / "bench" / "grpc_load.py"), "--target", grpc_target,
                  "--model", MODEL, "--shape", f"{DAY},10,35", "--raw", "--n", "200", "--warmup", "20", "--conc", "1",
                  "--duration", "1", "--warmup-s", "0.5", "--label", f"day{DAY}-grpc-raw"],
                 capture_output=True)  # fmt: skip
        g = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append({k: g[k] for k in ("label", "c1_p50_ms", "c1_p90_ms", "c1_p99_ms", "c1_errors")})
    ort_floor = sh(["taskset", "-c", "1", sys.executable, str(HARNESS / "serve_ort_floor.py"),
                    str(args.workdir / "model.onnx"), "--batches", str(DAY), "--n", "200", "--warmup", "20"],
                   capture_output=True)  # fmt: skip
    f = json.loads(ort_floor.stdout.strip().splitlines()[-1])
    rows.append({"label": f"day{DAY}-ort-floor", **{k: v for k, v in f.items() if k != "label"}})
    with results.open("a") as fh:
        for r in rows:
            r["transport"] = "day"
            print(json.dumps(r))
            fh.write(json.dumps(r) + "\n")


def interleaved(
    servers: dict[str, tuple[list[str], int, str]], args: argparse.Namespace, results: Path, **popen: object
) -> None:
    """Two servers (label -> command without its port, port, model) served at once, both pinned to CPU 1 (each idle
    while the other is measured), then ``--pairs`` rounds of wrk c=32 for ``--pair-duration`` on each, in ABBA
    order; rows ``pair-<label>``. On a machine whose speed drifts from minute to minute (a shared VM), rows measured
    minutes apart compare the drift as much as the servers; a ratio within a pair, seconds apart, does not."""
    body = args.workdir / "body.json"
    sh([sys.executable, str(HARNESS / "serve_make_payload.py"), "--shape", SHAPE, "--out", str(body)])
    procs, logs = {}, []
    try:
        for label, (cmd, port, _) in servers.items():
            logs.append(open(args.workdir / f"pair-{label}.log", "wb"))  # noqa: SIM115  # closed below
            procs[label] = subprocess.Popen(["taskset", "-c", "1", *cmd, "--port", str(port)], stdout=logs[-1],
                                            stderr=subprocess.STDOUT, start_new_session=True, **popen)  # type: ignore[call-overload]  # fmt: skip
            wait_ready(f"http://127.0.0.1:{port}", procs[label])

        def wrk(label: str, seconds: str) -> dict[str, float]:
            _, port, model = servers[label]
            pids = descendants(procs[label].pid)
            hz, t0 = os.sysconf("SC_CLK_TCK"), proc_ticks(pids)
            out = sh(["taskset", "-c", "0", "wrk", "-t2", "-c32", f"-d{seconds}", "--timeout", "5s", "-s",
                      str(HARNESS / "serve_v2_post.lua"), f"http://127.0.0.1:{port}/v2/models/{model}/infer"],
                     capture_output=True, env={**os.environ, "WRK_BODY": str(body)})  # fmt: skip
            row = json.loads(next(ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON "))[8:])
            row["server_cpu_s"] = (proc_ticks(pids) - t0) / hz
            return row

        for label in servers:
            wrk(label, "3s")  # warm-up, discarded
        for pair in range(args.pairs):
            order = list(servers) if pair % 2 == 0 else list(servers)[::-1]
            for label in order:
                row = wrk(label, args.pair_duration)
                errors = sum(int(row.get(k, 0)) for k in ("c32_non2xx", "c32_err_read", "c32_err_timeout"))
                record = {"label": f"pair-{label}", "transport": "pair", "pair": pair, "c32_rps": row["c32_rps"],
                          "cpu_us_per_request": 1e6 * row["server_cpu_s"] / max(row["c32_requests"], 1),
                          "errors": errors}  # fmt: skip
                print(json.dumps(record))
                with results.open("a") as f:
                    f.write(json.dumps(record) + "\n")
    finally:
        for proc in procs.values():
            stop(proc)
        for log in logs:
            log.close()


def mlserver_venv(workdir: Path) -> Path:
    """The MLServer 1.7.1 venv under ``workdir`` (created on first use: MLServer pins need uvloop<0.22)."""
    venv = workdir / "mlserver-venv"
    if not (venv / "bin" / "mlserver").exists():
        sh([sys.executable, "-m", "venv", str(venv)])
        sh([str(venv / "bin" / "pip"), "install", "-q", "mlserver==1.7.1", "uvloop<0.22", "onnxruntime", "numpy"])
    return venv


def finmlops_config(workdir: Path, model: Path, name: str = "serving", **server: object) -> Path:
    """Serve the model as ``lstm`` through an experiment that takes over its endpoint; log and metrics on;
    ``server`` overrides options (written to ``<workdir>/<name>.json``, its request log ``<name>-requests.db``)."""
    log = workdir / ("requests.db" if name == "serving" else f"{name}-requests.db")
    config = {
        "models": [{"name": MODEL, "source": str(model)}],
        "experiments": [{"name": "lstm-ab", "default": MODEL, "candidates": [{"name": MODEL, "weight": 1}]}],
        "server": {"request_log": str(log), "reload_interval_s": 0, **server},
    }
    path = workdir / f"{name}.json"  # YAML is a superset of JSON
    path.write_text(json.dumps(config, indent=2))
    return path


def ratios(results: Path) -> None:
    """Print one table of every row (medians over reps) and the ratios the goals are stated in."""
    rows: dict[str, list[dict[str, float]]] = {}
    for line in results.read_text().splitlines():
        r = json.loads(line)
        rows.setdefault(r["label"], []).append(r)

    def median(label: str, key: str) -> float:
        return round(statistics.median(r[key] for r in rows[label] if r.get(key) is not None), 3)

    print(
        "\n| row | transport | c=1 p50 ms | c=1 p99 ms | c=32 req/s | c=32 p99 ms | errors | server CPU % "
        "| client CPU % |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for label, rs in rows.items():
        if rs[0].get("transport") in ("day", "pair"):
            continue
        grpc = rs[0].get("transport") == "grpc"
        errors = sum(r.get("c1_errors", 0) + r.get("c32_errors", 0) + r.get("c32_non2xx", 0)
                     + r.get("c32_err_timeout", 0) + r.get("c32_err_read", 0) for r in rs)  # fmt: skip
        server = median(label, "server_cpu_pct_whole_run" if grpc else "server_cpu_pct") if (
            "server_cpu_pct" in rs[0] or grpc) else float("nan")  # fmt: skip
        client = median(label, "client_cpu_pct") if grpc else (
            median(label, "wrk_cpu_pct") if "wrk_cpu_pct" in rs[0] else float("nan"))  # fmt: skip
        print(f"| {label} | {'gRPC' if grpc else 'REST'} | {median(label, 'c1_p50_ms'):.3f} | "
              f"{median(label, 'c1_p99_ms'):.3f} | {median(label, 'c32_rps'):.0f} | "
              f"{median(label, 'c32_p99_ms'):.1f} | "
              f"{errors} | {server:.0f} | {client:.0f} |")  # fmt: skip
    print()
    if "finmlops" in rows:
        for other in (label for label in rows if label.startswith("mlserver") and not label.endswith("-grpc")):
            p50 = median(other, "c1_p50_ms") / median("finmlops", "c1_p50_ms")
            rps = median("finmlops", "c32_rps") / median(other, "c32_rps")
            print(f"REST finmlops vs {other}: c=1 p50 {p50:.2f}x lower, c=32 throughput {rps:.2f}x higher")
    if "finmlops" in rows and "floor-http-json" in rows:
        share = median("finmlops", "c32_rps") / median("floor-http-json", "c32_rps")
        print(f"REST c=32: finmlops is {100 * share:.0f}% of the HTTP+JSON floor (goal >= 85%)")

        def per_cpu_s(label: str) -> float:  # steal and other load slow the wall clock, not the process's CPU time
            return median(label, "c32_rps") / (median(label, "server_cpu_pct") / 100)

        ours, floor = per_cpu_s("finmlops"), per_cpu_s("floor-http-json")
        print(f"REST c=32 per server CPU-second: finmlops {ours:.0f}, the floor {floor:.0f} requests "
              f"({100 * ours / floor:.0f}%; {1e6 / ours:.0f} vs {1e6 / floor:.0f} us of CPU a request)")  # fmt: skip
    for a, b, what in (("finmlops", "floor-http-json", "the floor (goal >= 85%)"),
                       ("fast-path-on", "fast-path-off", "the same server without the REST fast path")):  # fmt: skip
        if f"pair-{a}" in rows and f"pair-{b}" in rows:
            pairs = list(zip(rows[f"pair-{a}"], rows[f"pair-{b}"], strict=True))
            by_rps = [100 * x["c32_rps"] / y["c32_rps"] for x, y in pairs]
            by_cpu = [100 * y["cpu_us_per_request"] / x["cpu_us_per_request"] for x, y in pairs]
            print(f"REST c=32, interleaved ({len(pairs)} ABBA pairs, both servers up, seconds apart): {a} serves "
                  f"{statistics.median(by_rps):.0f}% of the throughput of {what} (pairs: "
                  f"{', '.join(f'{v:.0f}' for v in by_rps)}), {statistics.median(by_cpu):.0f}% by CPU per request "
                  f"(pairs: {', '.join(f'{v:.0f}' for v in by_cpu)})")  # fmt: skip
    if "finmlops-grpc" in rows:
        for other in ("mlserver-default-grpc", "mlserver-tuned-grpc"):
            if other in rows:
                rps = median("finmlops-grpc", "c32_rps") / median(other, "c32_rps")
                print(f"gRPC c=32: finmlops {rps:.2f}x {other} (goal >= 3x)")
        if "floor-grpc" in rows:
            share = median("finmlops-grpc", "c32_rps") / median("floor-grpc", "c32_rps")
            print(
                f"gRPC floor (constant answer): c=1 p50 {median('floor-grpc', 'c1_p50_ms'):.3f} ms, c=32 "
                f"{median('floor-grpc', 'c32_rps'):.0f} req/s; finmlops gRPC is {100 * share:.0f}% of it"
            )
        print(f"gRPC c=1 p50: {median('finmlops-grpc', 'c1_p50_ms'):.3f} ms (goal <= 0.3 ms); client CPU at c=32 "
              f"{median('finmlops-grpc', 'client_cpu_pct'):.0f}% of its core")  # fmt: skip
    for label, rs in rows.items():
        if rs[0].get("transport") == "day":
            r = rs[0]
            if "c1_p50_ms" in r:
                print(f"{label}: c=1 p50 {r['c1_p50_ms']:.2f} ms, p99 {r['c1_p99_ms']:.2f} ms (goal p50 <= 20 ms)")
            else:
                print(f"{label}: {json.dumps({k: v for k, v in r.items() if k not in ('label', 'transport')})}")
    if "raw-ohlcv" in rows and "raw-tensor" in rows:
        share = median("raw-ohlcv", "c32_rps") / median("raw-tensor", "c32_rps")
        print(f"raw OHLCV c=32: {100 * share:.0f}% of the tensor path on the same model (goal >= 25%)")


def raw_setup(workdir: Path) -> tuple[Path, Path, Path]:
    """A carded model of the baseline variant ([batch, 10, 16] basic features) served as ``raw`` behind the experiment
    ``raw-ab``, a raw OHLCV body (AAPL's last days of the bundled snapshot) and a tensor body for the same model."""
    import numpy as np  # numpy, finmlops and its test support: only the raw rows need them
    from finmlops_testing.serving import carded_model

    from finmlops.data import load_snapshot
    from finmlops.serving.raw import min_history

    folder = carded_model(workdir / "raw-model", "baseline")
    frame = load_snapshot(["AAPL"]).get("AAPL")
    days = min_history("basic", 10) + 5
    columns = {c: frame[c].to_numpy(np.float64)[-days:] for c in ("open", "high", "low", "close", "volume")}
    raw = {"inputs": [{"name": c, "shape": [1, days], "datatype": "FP64", "data": v.tolist()}
                      for c, v in columns.items()]}  # fmt: skip
    x = np.random.default_rng(0).normal(size=(1, 10, 16))
    tensor = {"inputs": [{"name": "input_data", "shape": [1, 10, 16], "datatype": "FP32", "data": x.ravel().tolist()}]}
    (workdir / "raw-body.json").write_text(json.dumps(raw))
    (workdir / "tensor16-body.json").write_text(json.dumps(tensor))
    return folder, workdir / "raw-body.json", workdir / "tensor16-body.json"


def body_row(label: str, base: str, model: str, body: Path, server_pid: int, args: argparse.Namespace,
             results: Path) -> None:  # fmt: skip
    """A REST row for a prepared body: c=1 with the harness's latency client, c=32 with wrk, clients on CPU 0."""
    url = f"{base}/v2/models/{model}/infer"
    c1 = sh(["taskset", "-c", "0", sys.executable, str(HARNESS / "serve_latency_c1.py"), "--url", url, "--body",
             str(body), "-n", "1000", "--warmup", "100"], capture_output=True)  # fmt: skip
    row = {k: v for k, v in json.loads(c1.stdout.strip().splitlines()[-1]).items() if k != "response_sample"}
    pids = descendants(server_pid)
    hz, t0, w0 = os.sysconf("SC_CLK_TCK"), proc_ticks(pids), time.perf_counter()
    wrk = sh(["taskset", "-c", "0", "wrk", "-t2", "-c32", f"-d{args.duration}", "--timeout", "5s", "-s",
              str(HARNESS / "serve_v2_post.lua"), url], capture_output=True,
             env={**os.environ, "WRK_BODY": str(body)})  # fmt: skip
    line = next(ln for ln in wrk.stdout.splitlines() if ln.startswith("WRKJSON "))
    row.update(json.loads(line.removeprefix("WRKJSON ")))
    row.update(label=label, server_cpu_pct=round(100 * (proc_ticks(pids) - t0) / hz / (time.perf_counter() - w0), 1))
    print(json.dumps(row))
    with results.open("a") as f:
        f.write(json.dumps(row) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=ROOT / "build" / "serve-bench")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--duration", default="20s")
    ap.add_argument("--port", type=int, default=18080)
    ap.add_argument("--grpc-port", type=int, default=18081)
    ap.add_argument("--skip-mlserver", action="store_true")
    ap.add_argument("--skip-raw", action="store_true")
    ap.add_argument("--skip-batch", action="store_true", help="skip the one-request-per-day batch of 443 rows")
    ap.add_argument("--pairs", type=int, default=4, help="interleaved REST rounds of finmlops and the floor (0: none)")
    ap.add_argument("--pair-duration", default="5s")
    ap.add_argument("--fast-path-pairs", type=int, default=0, help="interleaved REST rounds with and without "
                    "server.rest_fast_path (0: none)")  # fmt: skip
    ap.add_argument("--summarize", type=Path, help="only print the table and ratios of an earlier results file")
    args = ap.parse_args()
    if args.summarize:
        ratios(args.summarize)
        return
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found (apt-get install wrk util-linux)")
    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    model = args.workdir / "model.onnx"
    if not model.exists():
        sh([sys.executable, str(HARNESS / "serve_build_model.py"), "--out", str(model)])
    results = args.workdir / f"results-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
    base = f"http://127.0.0.1:{args.port}"

    finmlops = Path(sys.executable).with_name("finmlops")
    env = {**os.environ, "FINMLOPS_HOME": str(args.workdir / "home")}
    (args.workdir / "requests.db").unlink(missing_ok=True)
    grpc_target = f"127.0.0.1:{args.grpc_port}"
    measure("finmlops", [str(finmlops), "serve", "--config", str(finmlops_config(args.workdir, model)),
                         "--port", str(args.port), "--grpc-port", str(args.grpc_port), "--log-level", "warning"],
            base, args, results, grpc_target, env=env)  # fmt: skip
    # The harness's HTTP+JSON floor, same model file, same machine, same run.
    floor = [sys.executable, str(HARNESS / "serve_floor_server.py"), "--model", str(model), "--name", MODEL,
             "--port", str(args.port)]  # fmt: skip
    measure("floor-http-json", floor, base, args, results, model="_parse")

    def serve_cmd(config: Path, grpc_port: int) -> list[str]:
        return [str(finmlops), "serve", "--config", str(config), "--grpc-port", str(grpc_port), "--log-level",
                "warning"]  # fmt: skip

    if args.pairs:
        cmd = serve_cmd(finmlops_config(args.workdir, model), args.grpc_port)
        interleaved({"finmlops": (cmd, args.port, MODEL), "floor-http-json": (floor[:-2], args.port + 10, "_parse")},
                    args, results, env=env)  # fmt: skip
    if args.fast_path_pairs:
        on = serve_cmd(finmlops_config(args.workdir, model, "fast-on", rest_fast_path=True), 0)
        off = serve_cmd(finmlops_config(args.workdir, model, "fast-off", rest_fast_path=False), 0)
        pair_args = argparse.Namespace(**{**vars(args), "pairs": args.fast_path_pairs})
        interleaved({"fast-path-on": (on, args.port, MODEL), "fast-path-off": (off, args.port + 10, MODEL)},
                    pair_args, results, env=env)  # fmt: skip
    # The gRPC floor: a grpc.aio server that answers a constant (bench/grpc_floor_server.py).
    log = open(args.workdir / "floor-grpc.log", "wb")  # noqa: SIM115  # closed after the server stops
    proc = subprocess.Popen(["taskset", "-c", "1", sys.executable, str(ROOT / "bench" / "grpc_floor_server.py"),
                             "--port", str(args.grpc_port)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    try:
        time.sleep(3)
        for _ in range(args.reps):
            grpc_row("floor-grpc", grpc_target, proc.pid, args, results)
    finally:
        stop(proc)
        log.close()

    if not args.skip_raw:
        folder, raw_body, tensor_body = raw_setup(args.workdir)
        config = {
            "models": [{"name": "raw", "source": str(folder)}],
            "experiments": [{"name": "raw-ab", "default": "raw", "candidates": [{"name": "raw", "weight": 1}]}],
            "server": {"request_log": str(args.workdir / "requests-raw.db"), "reload_interval_s": 0},
        }
        (args.workdir / "serving-raw.json").write_text(json.dumps(config))
        log = open(args.workdir / "raw.log", "wb")  # noqa: SIM115  # closed after the server stops
        proc = subprocess.Popen(["taskset", "-c", "1", str(finmlops), "serve", "--config",
                                 str(args.workdir / "serving-raw.json"), "--port", str(args.port), "--grpc-port", "0",
                                 "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)  # fmt: skip
        try:
            wait_ready(base, proc)
            body_row("raw-tensor", base, "raw", tensor_body, proc.pid, args, results)
            body_row("raw-ohlcv", base, "raw", raw_body, proc.pid, args, results)
        finally:
            stop(proc)
            log.close()

    if not args.skip_mlserver:
        venv = mlserver_venv(args.workdir)
        for label, extra in (
            ("mlserver-default", []),
            ("mlserver-tuned", ["--parallel-workers", "0", "--debug", "false"]),
        ):
            repo = args.workdir / label
            shutil.rmtree(repo, ignore_errors=True)
            sh([str(venv / "bin" / "python"), str(HARNESS / "serve_mlserver_runtime" / "make_repo.py"), "--model",
                str(model), "--out", str(repo), "--name", MODEL, "--http-port", str(args.port), "--grpc-port",
                str(args.grpc_port), "--metrics-port", str(args.port + 2), *extra])  # fmt: skip
            measure(label, [str(venv / "bin" / "mlserver"), "start", "."], base, args, results, grpc_target, cwd=repo)

    rest = args.workdir / (results.stem + "-rest.jsonl")  # the harness's table reads the REST rows only
    rest.write_text("".join(ln + "\n" for ln in results.read_text().splitlines() if '"wrk_cpu_pct"' in ln))
    sh([sys.executable, str(HARNESS / "serve_summarize.py"), str(rest)])
    print(f"machine load (1, 5, 15 min) at the end: {os.getloadavg()}")
    ratios(results)
    print(f"raw results: {results}")


if __name__ == "__main__":
    main()
