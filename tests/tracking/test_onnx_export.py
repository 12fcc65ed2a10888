"""ONNX export: scaling and sigmoid folded in, parity with torch on real windows, dynamic batch, loud failure."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from finmlops.tracking import INPUT_NAME, OUTPUT_NAME, ParityError, export_onnx, onnx_probabilities


def expected_probabilities(trained: Any, x: np.ndarray) -> np.ndarray:
    """sigmoid(network(scaler.transform(x))): the training-time path, computed outside the export code."""
    with torch.no_grad():
        logits = trained.network(torch.from_numpy(trained.scaler.transform(x)))
    return torch.sigmoid(logits).numpy().reshape(-1, 1)


@pytest.mark.parametrize(
    ("variant", "overrides"),
    [
        ("baseline", {"hidden_size": 8}),
        ("advanced", {"hidden_size": 8, "seq_len": 10}),
        ("transformer", {"hidden_size": 8, "n_heads": 2, "ff_size": 16, "seq_len": 10}),
    ],
)
def test_graph_takes_unscaled_windows_and_matches_torch(
    real_windows: Any, new_trained: Callable[..., Any], tmp_path: Path, variant: str, overrides: dict[str, Any]
) -> None:
    trained = new_trained(variant, real_windows, **overrides)
    exported = export_onnx(trained.network, trained.scaler, real_windows.X[:300], tmp_path / "m.onnx")
    assert exported.max_abs_diff <= 1e-5 and exported.n_checked == 300
    assert (exported.seq_len, exported.n_features) == real_windows.X.shape[1:]
    # Dynamic batch: sizes other than the traced one, on windows the parity check never saw.
    for batch in (1, 7, 513):
        x = real_windows.X[-batch:]
        got = onnx_probabilities(exported.path, x)
        assert got.shape == (batch, 1) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected_probabilities(trained, x), atol=1e-5)


def test_graph_contract(trained: Any, tmp_path: Path) -> None:
    path = export_onnx(trained.network, trained.scaler, trained.windows.X[:50], tmp_path / "m.onnx").path
    graph = onnx.load(str(path)).graph
    (inp,), (out,) = graph.input, graph.output
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert inp.name == INPUT_NAME and dims == ["batch", 10, trained.windows.X.shape[2]]
    assert out.name == OUTPUT_NAME and [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == [
        "batch",
        1,
    ]
    assert inp.type.tensor_type.elem_type == out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    probs = onnx_probabilities(path, trained.windows.X)
    assert ((probs > 0) & (probs < 1)).all()


def test_scaling_is_in_the_graph(trained: Any, tmp_path: Path) -> None:
    """Feeding already-scaled windows must give different answers: the graph scales by itself."""
    path = export_onnx(trained.network, trained.scaler, trained.windows.X[:50], tmp_path / "m.onnx").path
    x = trained.windows.X[:200]
    assert np.abs(onnx_probabilities(path, x) - onnx_probabilities(path, trained.scaler.transform(x))).max() > 1e-3


def test_parity_failure_is_loud_and_keeps_the_old_file(trained: Any, tmp_path: Path) -> None:
    target = tmp_path / "m.onnx"
    target.write_bytes(b"previous model")
    with pytest.raises(ParityError, match=r"max \|dP\(up\)\|"):
        export_onnx(trained.network, trained.scaler, trained.windows.X[:20], target, tolerance=-1.0)
    assert target.read_bytes() == b"previous model"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_bad_inputs_are_named(trained: Any, tmp_path: Path) -> None:
    x = trained.windows.X[:20]
    with pytest.raises(ValueError, match="at least 2 windows"):
        export_onnx(trained.network, trained.scaler, x[:1], tmp_path / "m.onnx")
    trained.scaler.scale_ = trained.scaler.scale_[:-1]
    with pytest.raises(ValueError, match="scales but the windows have"):
        export_onnx(trained.network, trained.scaler, x, tmp_path / "m.onnx")
