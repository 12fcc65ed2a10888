"""The gRPC floor: a ``grpc.aio`` server of ``inference.GRPCInferenceService`` whose ModelInfer answers a constant
``[1, 1]`` FP32 (no parsing beyond gRPC's own, no model, no data plane), on uvloop like `finmlops serve`.
What any Python gRPC V2 server costs per call on this machine, measured beside the real ones by bench/serve.py.

Usage: python bench/grpc_floor_server.py --port 18081 [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from grpc import aio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from finmlops.serving.protos import grpc_predict_v2_pb2 as pb  # the stubs of this checkout
from finmlops.serving.protos import grpc_predict_v2_pb2_grpc as pb_grpc

ANSWER = pb.ModelInferResponse(
    model_name="_floor",
    outputs=[pb.ModelInferResponse.InferOutputTensor(name="output", datatype="FP32", shape=[1, 1])],
    raw_output_contents=[b"\0\0\0?"],
)


class Floor(pb_grpc.GRPCInferenceServiceServicer):
    async def ModelInfer(self, request: Any, context: Any) -> Any:
        return ANSWER

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=True)


async def serve(host: str, port: int) -> None:
    server = aio.server(options=[("grpc.so_reuseport", 0)])
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(Floor(), server)
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18081)
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
