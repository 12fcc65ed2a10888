"""Benchmark `finmlops serve` against MLServer 1.7.1 (defaults and tuned) on the same ONNX model, in one run.

Uses the shared harness in ../shared/bench (serve_bench.sh: c=1 latency over one keep-alive connection, then
wrk -t2 -c32). Each server runs pinned to CPU 1 (`taskset -c 1`), the clients to CPU 0. finmlops runs with
everything on: requests go through an experiment (Seldon `default` takeover of the model's endpoint), Prometheus
metrics and the SQLite request log.

Usage: python bench/serve.py [--workdir build/serve-bench] [--reps 1] [--duration 20s] [--skip-mlserver]
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

HARNESS = Path(os.environ.get("FINMLOPS_BENCH_HARNESS", Path(__file__).resolve().parents[2] / "shared" / "bench"))
ROOT = Path(__file__).resolve().parents[1]
MODEL = "lstm"
SHAPE = "1,10,35"


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


def measure(label: str, cmd: list[str], base: str, args: argparse.Namespace, results: Path, **popen: object) -> None:
    """Start ``cmd`` pinned to CPU 1, wait until ready, run the harness with clients on CPU 0, stop it."""
    log = open(args.workdir / f"{label}.log", "wb")  # noqa: SIM115  # closed after the server stops
    proc = subprocess.Popen(["taskset", "-c", "1", *cmd], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, **popen)  # type: ignore[call-overload]  # fmt: skip
    try:
        wait_ready(base, proc)
        pids = " ".join(str(p) for p in descendants(proc.pid))
        sh([str(HARNESS / "serve_bench.sh"), base, MODEL, SHAPE, "--label", label, "--reps", str(args.reps),
            "--client-cpus", "0", "--server-pids", pids, "--duration", args.duration, "--quiet-wait", "20",
            "--out", str(results)])  # fmt: skip
    finally:
        stop(proc)
        log.close()


def mlserver_venv(workdir: Path) -> Path:
    """The MLServer 1.7.1 venv under ``workdir`` (created on first use: MLServer pins need uvloop<0.22)."""
    venv = workdir / "mlserver-venv"
    if not (venv / "bin" / "mlserver").exists():
        sh([sys.executable, "-m", "venv", str(venv)])
        sh([str(venv / "bin" / "pip"), "install", "-q", "mlserver==1.7.1", "uvloop<0.22", "onnxruntime", "numpy"])
    return venv


def finmlops_config(workdir: Path, model: Path) -> Path:
    """Serve the model as ``lstm`` through an experiment that takes over its endpoint; log and metrics on."""
    config = {
        "models": [{"name": MODEL, "source": str(model)}],
        "experiments": [{"name": "lstm-ab", "default": MODEL, "candidates": [{"name": MODEL, "weight": 1}]}],
        "server": {"request_log": str(workdir / "requests.db"), "reload_interval_s": 0},
    }
    path = workdir / "serving.json"  # YAML is a superset of JSON
    path.write_text(json.dumps(config, indent=2))
    return path


def ratios(results: Path) -> None:
    """Print finmlops' c=1 p50 and c=32 throughput against each MLServer setting (medians over reps)."""
    rows: dict[str, list[dict[str, float]]] = {}
    for line in results.read_text().splitlines():
        r = json.loads(line)
        rows.setdefault(r["label"], []).append(r)

    def median(label: str, key: str) -> float:
        return round(statistics.median(r[key] for r in rows[label]), 3)

    if "finmlops" not in rows:
        return
    for other in (label for label in rows if label != "finmlops"):
        p50 = median(other, "c1_p50_ms") / median("finmlops", "c1_p50_ms")
        rps = median("finmlops", "c32_rps") / median(other, "c32_rps")
        print(f"finmlops vs {other}: c=1 p50 {p50:.2f}x lower, c=32 throughput {rps:.2f}x higher")
    print(f"finmlops goals (c=1 p50 <= 0.45 ms, p99 <= 1 ms, c=32 >= 7000 req/s): p50 {median('finmlops', 'c1_p50_ms')}"
          f" ms, p99 {median('finmlops', 'c1_p99_ms')} ms, {median('finmlops', 'c32_rps'):.0f} req/s")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=ROOT / "build" / "serve-bench")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--duration", default="20s")
    ap.add_argument("--port", type=int, default=18080)
    ap.add_argument("--skip-mlserver", action="store_true")
    args = ap.parse_args()
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
    measure("finmlops", [str(finmlops), "serve", "--config", str(finmlops_config(args.workdir, model)),
                         "--port", str(args.port), "--log-level", "warning"], base, args, results, env=env)  # fmt: skip

    if not args.skip_mlserver:
        venv = mlserver_venv(args.workdir)
        for label, extra in (
            ("mlserver-default", []),
            ("mlserver-tuned", ["--parallel-workers", "0", "--debug", "false"]),
        ):
            repo = args.workdir / label
            shutil.rmtree(repo, ignore_errors=True)
            sh([str(venv / "bin" / "python"), str(HARNESS / "serve_mlserver_runtime" / "make_repo.py"), "--model",
                str(model), "--out", str(repo), "--name", MODEL, "--http-port", str(args.port), *extra])  # fmt: skip
            measure(label, [str(venv / "bin" / "mlserver"), "start", "."], base, args, results, cwd=repo)

    sh([sys.executable, str(HARNESS / "serve_summarize.py"), str(results)])
    ratios(results)
    print(f"raw results: {results}")


if __name__ == "__main__":
    main()
