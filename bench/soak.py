"""Soak `finmlops serve`: mixed traffic at concurrency 32 for 60 s while the champion alias moves every 10 s.

Traffic (one seeded random mix over keep-alive connections): tensor infer on the hot-swapped model's endpoint,
raw OHLCV infer through an experiment (the bundled snapshot's last 120 AAPL days, features computed by the
server), feedback on ids served a moment before, and admin reads (GET /admin/experiments/soak, bearer token, on the
admin listener). Every ``--swap-every`` seconds the ``champion`` alias of a real local MLflow registry (sqlite) moves
to the next pre-registered version; the server's reload poll (``--poll`` s) swaps it in.

It prints, per kind, requests, errors, p50 and p99 latency; the server's RSS at the start and the end (and every
swap); and, for each alias move, how long until a tensor answer names the new version. No pass/fail: figures only.

Usage: python bench/soak.py [--duration 60] [--concurrency 32] [--swap-every 10] [--poll 1] [--workdir DIR]
Needs: this venv (onnx, mlflow); nothing from ../shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MODEL = "soak-predictor"
EXPERIMENT = "soak"
TOKEN = "soak-admin-token-0123456789"
SEQ_LEN = 10
KINDS = ("tensor", "raw", "feedback", "admin")
MIX = (0.55, 0.15, 0.2, 0.1)  # share of operations per kind


def tiny_graph(path: Path, n_features: int, bias: float) -> Path:
    """sigmoid(mean of the window + bias): ``[n, SEQ_LEN, n_features] -> [n, 1]`` float32."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input_data"], ["m"], axes=[1, 2], keepdims=0),
            helper.make_node("Unsqueeze", ["m", "axis"], ["m1"]),
            helper.make_node("Add", ["m1", "b"], ["z"]),
            helper.make_node("Sigmoid", ["z"], ["prob_up"]),
        ],
        "soak",
        [helper.make_tensor_value_info("input_data", TensorProto.FLOAT, ["batch", SEQ_LEN, n_features])],
        [helper.make_tensor_value_info("prob_up", TensorProto.FLOAT, ["batch", 1])],
        initializer=[
            helper.make_tensor("b", TensorProto.FLOAT, [1], [bias]),
            helper.make_tensor("axis", TensorProto.INT64, [1], [1]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def register_versions(workdir: Path, uri: str, n: int) -> list[str]:
    """Log ``n`` finmlops ONNX models (feature set basic) as versions of MODEL in the sqlite registry at ``uri``."""
    import mlflow

    from finmlops.contract import OnnxExport
    from finmlops.features import feature_names
    from finmlops.tracking.packaging import ModelCard, log_onnx_model

    names = feature_names("basic")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("soak", (workdir / "artifacts").as_uri()))
    versions = []
    for i in range(n):
        graph = tiny_graph(workdir / f"v{i}.onnx", len(names), bias=0.1 * i)
        card = ModelCard(variant="soak", feature_set="basic", feature_names=names, seq_len=SEQ_LEN, data_hash=f"h{i}")
        example = np.zeros((2, SEQ_LEN, len(names)), np.float32)
        with mlflow.start_run():
            info = log_onnx_model(OnnxExport(graph, SEQ_LEN, len(names), 0.0, 0), card, example, MODEL)
        versions.append(str(info.registered_model_version))
    return versions


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Conn:
    """One keep-alive HTTP/1.1 connection (asyncio streams; responses carry content-length)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """``(status, body)``. A kept-alive connection the server closed meanwhile (its keep-alive timeout, 5 s) is
        reopened and the request sent again once, as HTTP client pools do; a fresh connection is not retried."""
        reused = self.writer is not None
        try:
            return await self._send(method, path, body, headers)
        except (ConnectionError, asyncio.IncompleteReadError):
            if not reused:
                raise
            return await self._send(method, path, body, headers)

    async def _send(self, method: str, path: str, body: bytes, headers: dict[str, str] | None) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body:
            head.append("Content-Type: application/json")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        try:
            status_line = await self.reader.readline()
            if not status_line:
                raise ConnectionError("closed")
            status, length, close = int(status_line.split()[1]), 0, False
            while (line := await self.reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "connection" and "close" in value.lower():
                    close = True
            payload = await self.reader.readexactly(length)
        except (ConnectionError, asyncio.IncompleteReadError):
            self.close()
            raise
        if close:
            self.close()
        return status, payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    error_examples: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    versions_seen: list[tuple[float, str]] = field(default_factory=list)


def bodies() -> tuple[bytes, bytes]:
    """A tensor request for MODEL and a raw OHLCV request (last 120 snapshot days of AAPL)."""
    from finmlops.data import load_snapshot
    from finmlops.features import feature_names
    from finmlops.serving.traffic import raw_body, tensor_body

    frame = load_snapshot(["AAPL"])["AAPL"].tail(120)
    columns = {c: frame[c].to_numpy(dtype=float) for c in frame.columns}
    day = frame.index[-1].date()
    window = np.random.default_rng(0).normal(size=(SEQ_LEN, len(feature_names("basic"))))
    return json.dumps(tensor_body(window, "AAPL", day, "low")).encode(), json.dumps(
        raw_body(columns, "AAPL", day, "low")
    ).encode()


async def worker(i: int, port: int, admin_port: int, stop: float, stats: Stats, tensor: bytes, raw: bytes) -> None:
    rng = random.Random(i)
    conn, admin = Conn(port), Conn(admin_port)
    n = 0
    while time.monotonic() < stop:
        kind = rng.choices(KINDS, MIX)[0]
        if kind == "feedback" and not stats.ids:
            kind = "tensor"
        n += 1
        rid = f"w{i}-{n}"
        t0 = time.perf_counter()
        try:
            if kind == "tensor":
                status, payload = await conn.request(
                    "POST", f"/v2/models/{MODEL}/infer", tensor.replace(b"{", f'{{"id": "{rid}", '.encode(), 1)
                )
            elif kind == "raw":
                status, payload = await conn.request(
                    "POST", f"/v2/models/{MODEL}/infer", raw.replace(b"{", f'{{"id": "{rid}", '.encode(), 1),
                    {"seldon-model": f"{EXPERIMENT}.experiment"},
                )  # fmt: skip
            elif kind == "feedback":
                fid = stats.ids[rng.randrange(len(stats.ids))]
                body = json.dumps({"id": fid, "outcome": rng.randint(0, 1)}).encode()
                status, payload = await conn.request("POST", "/v2/feedback", body)
            else:
                status, payload = await admin.request(
                    "GET", f"/admin/experiments/{EXPERIMENT}", headers={"Authorization": f"Bearer {TOKEN}"}
                )
        except (OSError, asyncio.IncompleteReadError) as exc:
            status, payload = 0, str(exc).encode()
        seconds = time.perf_counter() - t0
        stats.latencies[kind].append(seconds)
        if status != 200:
            stats.errors[kind] += 1
            if len(stats.error_examples) < 5:
                stats.error_examples.append(f"{kind} {status} {payload[:200]!r}")
            continue
        if kind in ("tensor", "raw"):
            stats.ids.append(rid)
            if len(stats.ids) > 5000:
                del stats.ids[:1000]
        if kind == "tensor":
            stats.versions_seen.append((time.monotonic(), json.loads(payload)["model_version"]))
    conn.close()
    admin.close()


async def swapper(uri: str, versions: list[str], every: float, stop: float, pid: int, swaps: list[Any]) -> None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    for version in versions[1:]:
        next_move = time.monotonic() + every
        if next_move >= stop - 1:  # too late for an answer from the new version before the traffic stops
            return
        await asyncio.sleep(next_move - time.monotonic())
        await asyncio.to_thread(client.set_registered_model_alias, MODEL, "champion", version)
        swaps.append((time.monotonic(), version, rss_mib(pid)))


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--swap-every", type=float, default=10.0)
    parser.add_argument("--poll", type=float, default=1.0, help="server.reload_interval_s")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="finmlops-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    n_swaps = max(1, int(args.duration // args.swap_every))
    t_reg = time.perf_counter()
    versions = register_versions(workdir, uri, n_swaps + 1)
    print(f"registered {len(versions)} versions of {MODEL} in {time.perf_counter() - t_reg:.1f} s", file=sys.stderr)
    import mlflow

    mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri).set_registered_model_alias(MODEL, "champion", versions[0])
    port, admin_port = free_port(), free_port()
    config = {
        "models": [{"name": MODEL, "source": f"models:/{MODEL}@champion"}],
        "experiments": [{"name": EXPERIMENT, "candidates": [{"name": "champion", "model": MODEL}]}],
        "server": {"reload_interval_s": args.poll, "admin_port": admin_port},
        "auth": {"admin_tokens": {"soak": "${FINMLOPS_SOAK_TOKEN}"}},
    }  # fmt: skip
    (workdir / "serving.yaml").write_text(json.dumps(config))
    env = {**os.environ, "FINMLOPS_HOME": str(workdir / "home"), "MLFLOW_TRACKING_URI": uri,
           "FINMLOPS_SOAK_TOKEN": TOKEN}  # fmt: skip
    log = (workdir / "server.log").open("wb")
    cmd = [sys.executable, "-c", "from finmlops.cli import main; main()", "serve", "--config",
           str(workdir / "serving.yaml"), "--port", str(port), "--grpc-port", "0"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"server did not start: see {workdir / 'server.log'}") from None
                time.sleep(0.3)
        tensor, raw = bodies()
        rss_start = rss_mib(proc.pid)
        stats, swaps = Stats(), []
        t_start = time.monotonic()
        stop = t_start + args.duration

        async def soak() -> None:
            await asyncio.gather(
                swapper(uri, versions, args.swap_every, stop, proc.pid, swaps),
                *(worker(i, port, admin_port, stop, stats, tensor, raw) for i in range(args.concurrency)),
            )

        asyncio.run(soak())
        elapsed = time.monotonic() - t_start
        rss_end = rss_mib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()
    report(args, stats, swaps, rss_start, rss_end, elapsed, workdir)


def report(args: argparse.Namespace, stats: Stats, swaps: list[Any], rss_start: float, rss_end: float,
           elapsed: float, workdir: Path) -> None:  # fmt: skip
    print(f"soak: {elapsed:.1f} s, concurrency {args.concurrency}, alias move every {args.swap_every:g} s, "
          f"reload poll {args.poll:g} s")  # fmt: skip
    print(f"{'kind':<9} {'requests':>9} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8}")
    total = 0
    for kind in KINDS:
        lat = stats.latencies[kind]
        total += len(lat)
        print(f"{kind:<9} {len(lat):>9} {stats.errors[kind]:>7} {pct(lat, 50):>8.2f} {pct(lat, 99):>8.2f}")
    print(f"{'all':<9} {total:>9} {sum(stats.errors.values()):>7}   ({total / elapsed:.0f} req/s)")
    for example in stats.error_examples:
        print(f"  error: {example}")
    print(f"server RSS: {rss_start:.1f} MiB at the start, {rss_end:.1f} MiB at the end "
          f"(at each move: {', '.join(f'{r:.1f}' for _, _, r in swaps)})")  # fmt: skip
    delays = []
    for moved, version, _ in swaps:
        seen = next((t for t, v in stats.versions_seen if t >= moved and v == version), None)
        delays.append(None if seen is None else seen - moved)
        print(f"alias -> version {version}: first answer after "
              + ("never" if seen is None else f"{seen - moved:.2f} s"))  # fmt: skip
    done = [d for d in delays if d is not None]
    if done:
        print(f"alias move to first answer: mean {np.mean(done):.2f} s, max {max(done):.2f} s over {len(done)} moves")
    reloads = [line for line in (workdir / "server.log").read_text().splitlines() if "alias champion moved" in line]
    for line in reloads:
        print("  server:", line.split("finmlops.serving INFO ", 1)[-1])


if __name__ == "__main__":
    main()
