"""Raw OHLCV against tensor requests on the same model, through an experiment, side by side in one run.

Starts `finmlops serve` on 127.0.0.1 (pinned to CPU 1 where there are two or more) with one LSTM (the shape of
bench/serve.py's anchor, LSTM(n_features -> 96, 2 layers), random weights, seed 0) carded for ``--feature-set``,
served through an experiment that takes over its endpoint, with metrics and the SQLite request log on. The bodies
are those of `finmlops traffic` (``finmlops.serving.traffic``): AAPL's last ``--history`` days of OHLCV and market
return for raw, its last ``seq_len`` feature rows for tensor, computed by ``compute_features`` on those same days,
so both must get the same answer (checked first). Then, ``--reps`` times, tensor and each raw history in turn:
``wrk -t2 -c32`` (pinned to CPU 0) for ``--duration``, after a discarded 2 s warm-up. Prints c=32 throughput and
p50 per body and the server's CPU time per request, the median over reps, and raw / tensor throughput (goal of
issue 13: >= 0.25).

Usage: python bench/raw_path.py [--feature-set advanced] [--seq-len 15] [--history 120,1000] [--reps 3]
       [--duration 8s] [--workdir build/raw-path-bench] [--json]
Needs: wrk (apt), torch in this venv (builds the model). Set PYTHONPATH to measure another checkout's server.
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
import urllib.request
from pathlib import Path

import numpy as np

from finmlops.data import load_snapshot
from finmlops.features import compute_features, feature_names, market_returns
from finmlops.serving.traffic import raw_body, tensor_body
from serve import wait_ready  # bench/serve.py, beside this script (its directory is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
MODEL = "lstm"
TICKER = "AAPL"
WRK_LUA = """-- POST the body in $WRK_BODY; print one JSON line
local f = assert(io.open(os.getenv("WRK_BODY"), "rb"))
wrk.method = "POST"; wrk.body = f:read("*a"); f:close()
wrk.headers["Content-Type"] = "application/json"
function done(s, latency, requests)
  io.write(string.format('WRKJSON {"requests":%d,"secs":%.3f,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,' ..
    '"non2xx":%d,"errors":%d}\\n', s.requests, s.duration / 1e6, s.requests / (s.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, s.errors.status,
    s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout))
end
"""


def build_model(folder: Path, feature_set: str, seq_len: int) -> Path:
    """``folder``/model.onnx (LSTM, seed 0) with the model card that makes the server compute ``feature_set``."""
    import torch  # only the bench builds a model; the server never imports torch
    from torch import nn

    names = feature_names(feature_set)

    class LSTMClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(len(names), 96, num_layers=2, batch_first=True)
            self.head = nn.Linear(96, 1)

        def forward(self, input_data: torch.Tensor) -> torch.Tensor:
            out, _ = self.lstm(input_data)
            return torch.sigmoid(self.head(out[:, -1, :]))

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.onnx.export(LSTMClassifier().eval(), (torch.randn(4, seq_len, len(names)),), str(folder / "model.onnx"),
                      input_names=["input_data"], output_names=["prob_up"], opset_version=17, dynamo=False,
                      dynamic_axes={"input_data": {0: "batch"}, "prob_up": {0: "batch"}})  # fmt: skip
    card = {"variant": "bench", "feature_set": feature_set, "feature_names": names, "seq_len": seq_len}
    (folder / "finmlops-model.json").write_text(json.dumps(card))
    return folder


def bodies(feature_set: str, seq_len: int, histories: list[int]) -> dict[str, bytes]:
    """``tensor`` and ``raw-<T>`` request bodies for AAPL's last day, as `finmlops traffic` builds them."""
    universe = load_snapshot()
    frame = universe[TICKER]
    market = np.nan_to_num(market_returns(universe).reindex(frame.index).to_numpy(), nan=0.0)
    day = frame.index[-1].date()
    out = {}
    for t in histories:
        columns = {c: frame[c].to_numpy(float)[-t:] for c in ("open", "high", "low", "close", "adj_close", "volume")}
        out[f"raw-{t}"] = json.dumps(raw_body({**columns, "market_return": market[-t:]}, TICKER, day, "low")).encode()
    rows = frame.iloc[-histories[0] :]
    given = {TICKER: market_returns(universe).reindex(rows.index).fillna(0.0)}
    window = compute_features({TICKER: rows}, feature_set, market=given)[feature_names(feature_set)].to_numpy()
    out["tensor"] = json.dumps(tensor_body(window[-seq_len:], TICKER, day, "low")).encode()
    return dict(sorted(out.items(), key=lambda kv: kv[0] != "tensor"))


def post(url: str, body: bytes) -> float:
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return float(json.loads(r.read())["outputs"][0]["data"][0])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, body: Path, lua: Path, duration: str, pin: list[str], server: int) -> dict[str, float]:
    """One ``wrk -t2 -c32`` run after a 2 s warm-up; adds the server's CPU milliseconds per request."""
    env = {**os.environ, "WRK_BODY": str(body)}
    subprocess.run([*pin, "wrk", "-t2", "-c32", "-d2s", "-s", str(lua), url], env=env, check=True,
                   capture_output=True)  # fmt: skip
    before = cpu_seconds(server)
    out = subprocess.run([*pin, "wrk", "-t2", "-c32", f"-d{duration}", "--timeout", "10s", "-s", str(lua), url],
                         env=env, check=True, capture_output=True, text=True).stdout  # fmt: skip
    used = cpu_seconds(server) - before
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    result = json.loads(line.removeprefix("WRKJSON "))
    return {**result, "server_cpu_ms": 1e3 * used / max(result["requests"], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--feature-set", default="advanced")
    ap.add_argument("--seq-len", type=int, default=15)
    ap.add_argument("--history", default="120,1000", help="raw days per request, comma-separated")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", default="8s")
    ap.add_argument("--port", type=int, default=18090)
    ap.add_argument("--workdir", type=Path, default=ROOT / "build" / "raw-path-bench")
    ap.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found (apt-get install wrk)")
    work = args.workdir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    histories = [int(h) for h in args.history.split(",")]
    model = build_model(work / "model", args.feature_set, args.seq_len)
    config = {
        "models": [{"name": MODEL, "source": str(model)}],
        "experiments": [{"name": "ab", "default": MODEL, "candidates": [{"name": MODEL, "weight": 1}]}],
        "server": {"request_log": str(work / "requests.db"), "reload_interval_s": 0},
    }
    (work / "serving.json").write_text(json.dumps(config))
    payloads = bodies(args.feature_set, args.seq_len, histories)
    for name, body in payloads.items():
        (work / f"{name}.json").write_bytes(body)
    lua = work / "post.lua"
    lua.write_text(WRK_LUA)
    two_cores = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    server_pin, client_pin = (["taskset", "-c", "1"], ["taskset", "-c", "0"]) if two_cores else ([], [])
    base = f"http://127.0.0.1:{args.port}"
    url = f"{base}/v2/models/{MODEL}/infer"
    finmlops = Path(sys.executable).with_name("finmlops")
    log = open(work / "server.log", "wb")  # noqa: SIM115  # closed after the server stops
    serve = [str(finmlops), "serve", "--config", str(work / "serving.json"), "--port", str(args.port), "--log-level",
             "warning", "--grpc-port", "0"]  # fmt: skip
    home = {**os.environ, "FINMLOPS_HOME": str(work / "home")}
    proc = subprocess.Popen(
        [*server_pin, *serve], stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=home
    )
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in payloads}
    try:
        wait_ready(base, proc)
        answers = {name: post(url, body) for name, body in payloads.items()}
        first_raw = f"raw-{histories[0]}"
        gap = abs(answers[first_raw] - answers["tensor"])
        print(f"answers: {answers}; |{first_raw} - tensor| = {gap:.2e}", file=sys.stderr)
        if gap > 1e-5:
            raise SystemExit(f"raw and tensor bodies of the same day disagree by {gap:.2e}: not the same features")
        for rep in range(args.reps):
            for name in payloads:
                r = wrk(url, work / f"{name}.json", lua, args.duration, client_pin, proc.pid)
                if r["non2xx"] or r["errors"]:
                    raise SystemExit(f"{name}: {r['non2xx']} non-2xx answers and {r['errors']} socket errors")
                runs[name].append(r)
                print(f"rep {rep + 1} {name}: {r['rps']:.0f} req/s, p50 {r['p50_ms']:.2f} ms, server CPU "
                      f"{r['server_cpu_ms']:.3f} ms/request", file=sys.stderr)  # fmt: skip
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
    tensor_rps = statistics.median(r["rps"] for r in runs["tensor"])
    summary = {
        name: {
            "rps": round(statistics.median(r["rps"] for r in rs), 1),
            "p50_ms": round(statistics.median(r["p50_ms"] for r in rs), 3),
            "p99_ms": round(statistics.median(r["p99_ms"] for r in rs), 3),
            "server_cpu_ms": round(statistics.median(r["server_cpu_ms"] for r in rs), 3),
            "vs_tensor": round(statistics.median(r["rps"] for r in rs) / tensor_rps, 3),
            "body_bytes": len(payloads[name]),
        }
        for name, rs in runs.items()
    }
    if args.json:
        print(json.dumps({"feature_set": args.feature_set, "seq_len": args.seq_len, "reps": args.reps, **summary}))
        return
    print(f"{args.feature_set} features, seq_len {args.seq_len}, c=32, median of {args.reps} reps of {args.duration}")
    print("| body | req/s | p50 ms | p99 ms | server CPU ms/request | throughput vs tensor |")
    print("|---|---|---|---|---|---|")
    for name, s in summary.items():
        print(f"| {name} ({s['body_bytes']:,} B) | {s['rps']:,.0f} | {s['p50_ms']} | {s['p99_ms']} | "
              f"{s['server_cpu_ms']} | {s['vs_tensor']} |")  # fmt: skip
    for name in (n for n in summary if n != "tensor"):
        verdict = "meets" if summary[name]["vs_tensor"] >= 0.25 else "misses"
        print(f"{name}: {summary[name]['vs_tensor']:.2f}x the tensor path's throughput ({verdict} the goal of 0.25)")


if __name__ == "__main__":
    main()
