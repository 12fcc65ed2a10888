"""ONNX packaging: the trained network with its feature scaling and sigmoid folded into one graph.

Contract of the exported graph: input ``input_data`` float32 ``[batch, seq_len, n_features]`` of UNSCALED features in
the training feature order; output ``prob_up`` float32 ``[batch, 1]``, the probability that the next day is up.
The batch axis is dynamic. Export fails unless onnxruntime and torch agree within ``tolerance`` on real windows.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from finmlops.contract import INPUT_NAME, OUTPUT_NAME, OnnxExport, ScalerLike, open_session, score

OPSET = 17
PARITY_TOLERANCE = 1e-5


class ParityError(RuntimeError):
    """onnxruntime and torch disagree on the exported graph by more than the tolerance."""


class ProbabilityModel(nn.Module):
    """``(x - mean) / scale`` -> ``network`` (logits ``[batch]``) -> sigmoid -> ``[batch, 1]`` P(up)."""

    def __init__(self, network: nn.Module, mean: np.ndarray, scale: np.ndarray) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean, dtype=np.float32)))
        self.register_buffer("scale", torch.as_tensor(np.asarray(scale, dtype=np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.network((x - self.mean) / self.scale)
        # unsqueeze (not reshape(-1, 1)) keeps the output's last dim a static 1 in the ONNX graph.
        return torch.sigmoid(logits.reshape(-1)).unsqueeze(-1)


def _check_scaler(scaler: ScalerLike, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    mean = np.asarray(scaler.mean_, dtype=np.float64).reshape(-1)
    scale = np.asarray(scaler.scale_, dtype=np.float64).reshape(-1)
    if mean.shape != (n_features,) or scale.shape != (n_features,):
        raise ValueError(
            f"scaler has {mean.size} means and {scale.size} scales but the windows have {n_features} features"
        )
    bad = np.flatnonzero(~np.isfinite(scale) | (scale <= 0) | ~np.isfinite(mean))
    if bad.size:
        raise ValueError(f"scaler: feature {int(bad[0])} has mean {mean[bad[0]]} and scale {scale[bad[0]]}")
    return mean, scale


def torch_probabilities(model: ProbabilityModel, windows: np.ndarray) -> np.ndarray:
    """P(up) ``[n, 1]`` float32 from the torch graph, in eval mode without gradients."""
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))).numpy()


def onnx_probabilities(path: Path, windows: np.ndarray, threads: int = 1) -> np.ndarray:
    """P(up) ``[n, 1]`` from the ONNX file at ``path`` (:func:`finmlops.contract.score`, float32 values)."""
    return score(open_session(path, threads), windows).reshape(-1, 1).astype(np.float32)


def export_onnx(
    network: nn.Module,
    scaler: ScalerLike,
    windows: np.ndarray,
    path: Path,
    *,
    tolerance: float = PARITY_TOLERANCE,
    max_check: int = 512,
) -> OnnxExport:
    """Export ``network`` (windows -> logits) with ``scaler`` and a sigmoid folded in, to ``path``.

    ``windows``: real UNSCALED windows float32 ``[n, seq_len, n_features]`` (n >= 2); the graph is traced on two of
    them and parity is checked on up to ``max_check`` at once, so the dynamic batch axis is exercised too.
    Raises ``ParityError`` when the max abs difference of P(up) exceeds ``tolerance``; ``path`` is only replaced
    by a graph that passed.
    """
    x = np.asarray(windows, dtype=np.float32)
    if x.ndim != 3 or x.shape[0] < 2:
        raise ValueError(f"export needs at least 2 windows [n, seq_len, n_features], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("export: the parity windows contain non-finite values")
    mean, scale = _check_scaler(scaler, x.shape[2])
    model = ProbabilityModel(network, mean, scale).eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter's deprecation and tracer notes; parity below is the real check.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (torch.from_numpy(x[:2]),), str(tmp), dynamo=False, opset_version=OPSET,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )  # fmt: skip
        onnx.checker.check_model(str(tmp))
        check = x[:max_check]
        diff = float(np.max(np.abs(onnx_probabilities(tmp, check) - torch_probabilities(model, check))))
        if not diff <= tolerance:
            raise ParityError(
                f"ONNX export of {type(network).__name__} disagrees with torch: max |dP(up)| = {diff:.3g} "
                f"> {tolerance:g} on {len(check)} windows"
            )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return OnnxExport(path, x.shape[1], x.shape[2], diff, len(check))
