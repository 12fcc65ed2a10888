"""The model card and the one reader of model artifacts: an ``.onnx`` file, an MLflow model folder (``MLmodel``) or
a ``finmlops export`` folder (Triton or MLServer layout), read without MLflow so that the server stays light."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

INPUT_NAME = "input_data"
OUTPUT_NAME = "prob_up"
CARD_FILE = "finmlops-model.json"  # beside every export
DRIFT_REFERENCE_FILE = "drift_reference.json"


class ModelError(ValueError):
    """A model reference that cannot be resolved, or a model artifact that is missing or corrupt; names the file."""


class ModelCard(BaseModel):
    """What a consumer must know to feed the graph: stored as the MLflow model's metadata and beside every export."""

    model_config = ConfigDict(extra="forbid")

    variant: str
    feature_set: str
    feature_set_version: str | None = Field(
        default=None, description="finmlops.features.registry.feature_set_version: hash of the set's declarations."
    )
    feature_names: list[str] = Field(min_length=1, description="Input feature order (last axis of input_data).")
    seq_len: int = Field(ge=1, description="Trading days per window (middle axis of input_data).")
    data_hash: str | None = None
    train_start: str | None = Field(default=None, description="First decision date the model was trained on.")
    train_end: str | None = Field(default=None, description="Last decision date the model was trained on.")
    walk_forward: dict[str, float] = Field(default_factory=dict, description="Pooled walk-forward metrics.")
    # The label (finmlops.features.LabelSpec) the model was fit on; absent in older cards: the defaults.
    kind: Literal["direction", "cross_sectional", "excess"] = Field(
        default="direction",
        description="Label kind (finmlops.features.LabelSpec): prob_up is P(traded return > threshold) for "
        "direction, P(above the date's cross-sectional median) for cross_sectional, P(above the equal-weight "
        "universe) for excess.",
    )
    horizon: int = Field(
        default=1, ge=1, description="Label horizon: P(up) of the return from t+1 to t+1+horizon (execution prices)."
    )
    threshold: float = Field(default=0.0, ge=0.0, description="Label dead band (fraction) the model was fit with.")
    execution: Literal["close", "open"] = Field(default="close", description="Label's entry and exit price.")
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME


@dataclass(frozen=True)
class ModelArtifact:
    """A model on disk: its ONNX ``graph``, its ``card`` (None for a bare ``.onnx`` file), its drift reference
    profile (None when it has none) and the ``folder`` or file it was read from."""

    graph: Path
    card: ModelCard | None
    drift_reference: dict[str, Any] | None
    source: Path


def _card(raw: Any, where: Path) -> ModelCard:
    try:
        # Cards written by newer versions may carry fields this one does not know: keep the known ones.
        known = {k: v for k, v in dict(raw).items() if k in ModelCard.model_fields}
        return ModelCard.model_validate(known)
    except (TypeError, ValueError, ValidationError) as exc:
        raise ModelError(f"{where}: invalid model card ({type(exc).__name__}: {exc})".replace("\n", " ")) from None


def _json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: unreadable {what} ({type(exc).__name__}: {exc})") from None


def _mlflow_folder(folder: Path) -> ModelArtifact:
    mlmodel = folder / "MLmodel"
    try:
        spec = yaml.safe_load(mlmodel.read_text()) or {}
        artifacts = spec["flavors"]["python_function"]["artifacts"]
        graph = folder / artifacts["onnx_model"]["path"]
        raw_card = (spec.get("metadata") or {})["finmlops"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise ModelError(f"{mlmodel}: not a finmlops ONNX pyfunc model ({type(exc).__name__}: {exc})") from None
    reference = artifacts.get("drift_reference", {}).get("path") if isinstance(artifacts, dict) else None
    drift_path = folder / reference if reference else folder / DRIFT_REFERENCE_FILE
    drift = _json(drift_path, "drift reference") if drift_path.is_file() else None
    return ModelArtifact(graph, _card(raw_card, mlmodel), drift, folder)


def _export_folder(folder: Path) -> ModelArtifact:
    graph = next((p for p in (folder / "model.onnx", folder / "1" / "model.onnx") if p.is_file()), None)
    if graph is None:
        raise ModelError(f"{folder}: no MLmodel, model.onnx or 1/model.onnx inside")
    card = (
        _card(_json(folder / CARD_FILE, "model card"), folder / CARD_FILE) if (folder / CARD_FILE).is_file() else None
    )
    drift_path = folder / DRIFT_REFERENCE_FILE
    drift = _json(drift_path, "drift reference") if drift_path.is_file() else None
    return ModelArtifact(graph, card, drift, folder)


def locate_model(path: Path) -> ModelArtifact:
    """The artifact at ``path``: an ``.onnx`` file (no card), an MLflow model folder (card from ``MLmodel``'s
    metadata) or an export folder (``model.onnx`` or ``1/model.onnx`` beside ``finmlops-model.json``).

    Raises :class:`ModelError` naming the file that is missing or unreadable. The graph itself is checked when a
    session opens it (:func:`finmlops.contract.open_session`)."""
    path = Path(path)
    if path.is_file():
        return ModelArtifact(path, None, None, path)
    if not path.is_dir():
        raise ModelError(f"{path}: no such model file or folder")
    if (path / "MLmodel").is_file():
        return _mlflow_folder(path)
    return _export_folder(path)
