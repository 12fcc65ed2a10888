"""finmlops.tracking: MLflow tracking, ONNX packaging and export, and the model registry.

Names load on first use (MLflow and torch are heavy): ``from finmlops.tracking import log_training_run``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "backend": (
        "EXPERIMENTS", "TrackingError", "check_reachable", "configure_tracking", "ensure_experiment", "redact",
        "storage_url",
    ),
    "onnx_export": ("ParityError", "ProbabilityModel", "export_onnx", "onnx_probabilities", "torch_probabilities"),
    "packaging": (
        "EXPORT_FORMATS", "INPUT_NAME", "OUTPUT_NAME", "ModelCard", "ModelError", "export_model", "fetch_model",
        "log_onnx_model",
    ),
    "registry": (
        "ALIASES", "AccuracyTest", "PromotionRefused", "accuracy_test", "describe_evidence", "evidence_of",
        "list_models", "promote", "mark_challenger", "register_variant", "registered_name",
    ),
    "runs": (
        "TrainedNetwork", "list_runs", "log_backtest_result", "log_evaluation", "log_evaluation_result",
        "log_ingestion", "log_trained_variant", "log_training_run",
    ),
}  # fmt: skip
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name in _MODULE_OF:
        return getattr(import_module(f"finmlops.tracking.{_MODULE_OF[name]}"), name)
    raise AttributeError(f"module 'finmlops.tracking' has no attribute {name!r}")
