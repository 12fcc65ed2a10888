"""MLServer runtime copied beside ``model.onnx`` by ``finmlops export --format mlserver`` (never imported by finmlops).

Serves the finmlops ONNX contract with onnxruntime: V2 input ``input_data`` FP32 ``[batch, seq_len, n_features]`` of
unscaled features, output ``prob_up`` FP32 ``[batch, 1]``. Needs ``mlserver`` and ``onnxruntime``.
"""

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxModel(MLModel):
    async def load(self) -> bool:
        params = self._settings.parameters
        extra = (params.extra if params and params.extra else {}) or {}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(extra.get("intra_op_threads", 1))
        options.inter_op_num_threads = 1
        uri = await get_model_uri(self._settings, wellknown_filenames=["model.onnx"])
        self._session = ort.InferenceSession(uri, options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        y = self._session.run(None, {self._input: x})[0]
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[NumpyCodec.encode_output(self._output, y)],
        )
