"""A closed-loop ``grpc.aio`` load client for any V2 gRPC server (``inference.GRPCInferenceService/ModelInfer``).

c=1: ``--n`` sequential calls after ``--warmup`` (p50/p90/p99 latency). c=N: ``--conc`` coroutines on one channel,
each sending its next call as soon as the previous one is answered, for ``--duration`` seconds after a discarded
warm-up (throughput, p50/p99, errors). The request is serialised once and sent as bytes, and answers are counted
unparsed (one is parsed and checked first), so that the client spends its CPU on gRPC itself. It reports its own
CPU use (``client_cpu_pct``, % of one core): near 100 % means the client, not the server, may be the limit.

Usage: python bench/grpc_load.py --target 127.0.0.1:18081 --model lstm --shape 1,10,35 [--raw] [--metadata k=v]
         [--n 2000 --warmup 200] [--conc 32 --duration 20 --warmup-s 3] [--label finmlops-grpc]
Prints one JSON line (c=1 and c=N figures). Run it pinned to the client core: ``taskset -c 0 python ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import grpc
import numpy as np
from grpc import aio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from finmlops.serving.protos import grpc_predict_v2_pb2 as pb  # the stubs of this checkout

METHOD = "/inference.GRPCInferenceService/ModelInfer"


def request_bytes(model: str, shape: list[int], raw: bool, input_name: str, seed: int = 0) -> bytes:
    """A serialised ModelInferRequest of one FP32 tensor (raw_input_contents, or fp32_contents)."""
    x = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    tensor = pb.ModelInferRequest.InferInputTensor(name=input_name, datatype="FP32", shape=shape)
    if not raw:
        tensor.contents.fp32_contents.extend(x.ravel().tolist())
    req = pb.ModelInferRequest(model_name=model, inputs=[tensor])
    if raw:
        req.raw_input_contents.append(x.tobytes())
    return req.SerializeToString()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(args: argparse.Namespace) -> dict[str, object]:
    body = request_bytes(args.model, [int(d) for d in args.shape.split(",")], args.raw, args.input_name)
    metadata = tuple(tuple(kv.split("=", 1)) for kv in args.metadata) or None
    options = [("grpc.max_receive_message_length", 64 << 20)]
    async with aio.insecure_channel(args.target, options=options) as channel:
        call = channel.unary_unary(METHOD)  # bytes in, bytes out: no (de)serialisation in the loop
        first = pb.ModelInferResponse.FromString(await call(body, metadata=metadata, timeout=30))
        if not first.outputs:
            raise SystemExit(f"{args.target}: the answer has no outputs: {first}")
        sample = {"model_name": first.model_name, "outputs": [o.name for o in first.outputs],
                  "raw": len(first.raw_output_contents) > 0}  # fmt: skip

        # c=1
        for _ in range(args.warmup):
            await call(body, metadata=metadata, timeout=30)
        lat, errors = [], 0
        c0, w0 = cpu_seconds(), time.perf_counter()
        for _ in range(args.n):
            t = time.perf_counter()
            try:
                await call(body, metadata=metadata, timeout=30)
            except grpc.RpcError:
                errors += 1
            lat.append((time.perf_counter() - t) * 1000)
        c1_wall = time.perf_counter() - w0
        c1_cpu = cpu_seconds() - c0

        # c=N closed loop
        done: list[float] = []
        failed = [0]
        recording = [False]
        stop_at = [0.0]

        async def worker() -> None:
            while time.perf_counter() < stop_at[0]:
                t = time.perf_counter()
                try:
                    await call(body, metadata=metadata, timeout=30)
                except grpc.RpcError:
                    if recording[0]:
                        failed[0] += 1
                    continue
                if recording[0]:
                    done.append((time.perf_counter() - t) * 1000)

        stop_at[0] = time.perf_counter() + args.warmup_s
        await asyncio.gather(*(worker() for _ in range(args.conc)))
        recording[0] = True
        c0, w0 = cpu_seconds(), time.perf_counter()
        stop_at[0] = w0 + args.duration
        await asyncio.gather(*(worker() for _ in range(args.conc)))
        secs = time.perf_counter() - w0
        cpu = cpu_seconds() - c0
    return {
        "label": args.label,
        "target": args.target,
        "raw": args.raw,
        "c1_n": args.n,
        "c1_errors": errors,
        "c1_p50_ms": round(statistics.median(lat), 4),
        "c1_p90_ms": round(percentile(lat, 90), 4),
        "c1_p99_ms": round(percentile(lat, 99), 4),
        "c1_client_cpu_pct": round(100 * c1_cpu / c1_wall, 1),
        "conc": args.conc,
        "c32_secs": round(secs, 2),
        "c32_requests": len(done),
        "c32_errors": failed[0],
        "c32_rps": round(len(done) / secs, 1),
        "c32_p50_ms": round(statistics.median(done), 3) if done else None,
        "c32_p99_ms": round(percentile(done, 99), 3) if done else None,
        "client_cpu_pct": round(100 * cpu / secs, 1),
        "client_cpus": sorted(os.sched_getaffinity(0)),
        "response_sample": sample,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", required=True, help="host:port of the gRPC server")
    ap.add_argument("--model", required=True)
    ap.add_argument("--shape", default="1,10,35")
    ap.add_argument("--input-name", default="input_data")
    ap.add_argument("--raw", action="store_true", help="send raw_input_contents (else fp32_contents)")
    ap.add_argument("--metadata", action="append", default=[], help="k=v call metadata (repeatable)")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--conc", type=int, default=32)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--warmup-s", type=float, default=3.0)
    ap.add_argument("--label", default="grpc")
    args = ap.parse_args()
    try:  # the client's loop: uvloop when installed, as the servers use
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
