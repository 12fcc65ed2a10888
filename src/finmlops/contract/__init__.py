"""finmlops.contract: the ONNX model contract every consumer shares (model card, the one artifact reader, the one
session builder and scorer, the torch-free Integrated Gradients), on numpy, onnxruntime and pydantic only: neither
torch nor MLflow.

The graph takes ``input_data``, float32 ``[batch, seq_len, n_features]`` of UNSCALED features in the card's feature
order, and gives ``prob_up``, float32 ``[batch, 1]``: the probability of the card's label (``adj_close`` up from t to
t+horizon). Batch is dynamic.
"""

from finmlops.contract.card import (
    CARD_FILE,
    DRIFT_REFERENCE_FILE,
    INPUT_NAME,
    OUTPUT_NAME,
    ModelArtifact,
    ModelCard,
    ModelError,
    locate_model,
)
from finmlops.contract.export import OnnxExport, ScalerLike
from finmlops.contract.session import open_session, score, session_shape

__all__ = [
    "CARD_FILE",
    "DRIFT_REFERENCE_FILE",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "ModelArtifact",
    "ModelCard",
    "ModelError",
    "OnnxExport",
    "ScalerLike",
    "locate_model",
    "open_session",
    "score",
    "session_shape",
]
