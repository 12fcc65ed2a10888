"""The one onnxruntime session builder and scorer, for the server, batch prediction, drift, explanations and the
export's parity check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from finmlops.contract.card import INPUT_NAME, OUTPUT_NAME, ModelError

SCORE_BATCH = 8192  # windows per onnxruntime call: bounds memory on large batches


def open_session(graph: Path, threads: int = 1) -> ort.InferenceSession:
    """A CPU session on ``graph`` with ``threads`` intra-op threads and no inter-op pool, checked to follow the
    contract (one float32 ``[batch, seq_len, n_features]`` input, one ``[batch, 1]`` output); a file that is missing,
    corrupt or of another shape is a :class:`ModelError` naming it."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/NoSuchFile types
        raise ModelError(f"{graph}: missing or corrupt ONNX model ({type(exc).__name__}: {exc})") from None
    session_shape(session, graph)
    return session


def session_shape(session: ort.InferenceSession, graph: Path | str = "model") -> tuple[int, int]:
    """``(seq_len, n_features)`` of a session that follows the contract, else a :class:`ModelError`."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(f"{graph}: expected one input and one output, got {len(inputs)} and {len(outputs)}")
    shape = inputs[0].shape
    if inputs[0].type != "tensor(float)" or len(shape) != 3 or not all(isinstance(d, int) for d in shape[1:]):
        raise ModelError(f"{graph}: input must be float32 [batch, seq_len, n_features], got {inputs[0].type} {shape}")
    return int(shape[1]), int(shape[2])


def score(session: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    """P(up) ``[n]`` float64 for windows ``x`` ``[n, seq_len, n_features]`` (sent as float32, ``SCORE_BATCH`` at a
    time)."""
    input_name, output_name = session.get_inputs()[0].name, session.get_outputs()[0].name
    parts = [
        session.run([output_name], {input_name: np.ascontiguousarray(x[i : i + SCORE_BATCH], dtype=np.float32)})[0]
        for i in range(0, len(x), SCORE_BATCH)
    ]
    return np.concatenate(parts).reshape(-1).astype(np.float64) if parts else np.empty(0)


__all__ = ["INPUT_NAME", "OUTPUT_NAME", "SCORE_BATCH", "open_session", "score", "session_shape"]
