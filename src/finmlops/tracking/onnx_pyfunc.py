"""MLflow "model from code": a pyfunc that runs the exported ONNX graph with onnxruntime.

This file is copied into every logged model and must stay self-contained (numpy, pandas, onnxruntime, mlflow;
no finmlops, no torch), so the model loads and serves wherever those four are installed.
Input: float32 ``[batch, seq_len, n_features]`` unscaled windows. Output: float32 ``[batch, 1]`` P(up).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel, PythonModelContext

ONNX_ARTIFACT = "onnx_model"


class OnnxProbabilityModel(PythonModel):
    """Loads ``artifacts/model.onnx`` once; ``predict`` returns P(up) ``[batch, 1]`` float32."""

    def load_context(self, context: PythonModelContext) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            context.artifacts[ONNX_ARTIFACT], options, providers=["CPUExecutionProvider"]
        )
        self.input = self.session.get_inputs()[0]

    # np.ndarray is a hint MLflow accepts without deriving a schema from it (the logged signature is explicit, a
    # tensor spec, so MLflow hands us an ndarray); a dict or DataFrame from other callers is still accepted.
    def predict(
        self, context: PythonModelContext | None, model_input: np.ndarray, params: dict | None = None
    ) -> np.ndarray:
        if isinstance(model_input, dict):
            model_input = next(iter(model_input.values()))
        if isinstance(model_input, pd.DataFrame):
            model_input = model_input.to_numpy()
        x = np.asarray(model_input, dtype=np.float32)
        expected = self.input.shape[1:]
        if x.ndim != 3 or list(x.shape[1:]) != list(expected):
            raise ValueError(f"expected windows [batch, {expected[0]}, {expected[1]}], got shape {list(x.shape)}")
        return self.session.run(None, {self.input.name: x})[0]


set_model(OnnxProbabilityModel())
