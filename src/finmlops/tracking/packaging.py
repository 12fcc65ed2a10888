"""Log the ONNX graph to MLflow as a pyfunc model, and lay a logged model out for a serving runtime.

Export formats: ``mlflow`` (the MLflow model directory), ``triton`` (a Triton model repository:
``<name>/config.pbtxt`` + ``<name>/1/model.onnx``) and ``mlserver`` (``<name>/model-settings.json`` + ``model.onnx``
+ a small onnxruntime runtime). Every format carries ``finmlops-model.json``: feature order, window length, data hash,
and ``drift_reference.json`` (``finmlops.monitoring.drift.reference_profile`` of the logged windows' last timesteps).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import mlflow
import numpy as np
import onnx
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.types.schema import Schema, TensorSpec
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from finmlops.monitoring.drift import reference_profile
from finmlops.tracking.contract import INPUT_NAME, OUTPUT_NAME, OnnxExport

ExportFormat = Literal["mlflow", "triton", "mlserver"]
EXPORT_FORMATS: tuple[str, ...] = ("mlflow", "triton", "mlserver")
MODEL_NAME = "model"  # the logged model's name inside its run
CARD_FILE = "finmlops-model.json"
DRIFT_REFERENCE_FILE = "drift_reference.json"
_PYFUNC_CODE = Path(__file__).with_name("onnx_pyfunc.py")
_MLSERVER_RUNTIME = Path(__file__).with_name("mlserver_onnx_runtime.py")
TRITON_MAX_BATCH = 4096


class ModelError(ValueError):
    """A model reference that cannot be resolved, or a model artifact that is missing or corrupt."""


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
    kind: str = Field(default="direction", description="Label kind: direction of the traded return.")
    horizon: int = Field(
        default=1, ge=1, description="Label horizon: P(up) of the return from t+1 to t+1+horizon (execution prices)."
    )
    threshold: float = Field(default=0.0, ge=0.0, description="Label dead band (fraction) the model was fit with.")
    execution: Literal["close", "open"] = Field(default="close", description="Label's entry and exit price.")
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME


def pip_requirements() -> list[str]:
    """Exact pins of what the pyfunc imports at load and predict time (no torch)."""
    return [f"{name}=={metadata.version(name)}" for name in ("mlflow", "onnxruntime", "numpy", "pandas")]


def signature(card: ModelCard) -> ModelSignature:
    """Tensor signature: float32 ``[-1, seq_len, n_features]`` in, float32 ``[-1, 1]`` out."""
    n = len(card.feature_names)
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, card.seq_len, n))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 1))]),
    )


def log_onnx_model(
    exported: OnnxExport, card: ModelCard, example: np.ndarray, registered_model_name: str | None = None
) -> ModelInfo:
    """Log ``exported`` as the pyfunc ``model`` of the active run; ``example``: >= 2 real windows.

    The last timestep of every ``example`` window (pass the training windows) becomes the model's drift reference,
    ``drift_reference.json`` beside the ONNX file. Optionally registers it as a new version of
    ``registered_model_name``.
    """
    if (exported.seq_len, exported.n_features) != (card.seq_len, len(card.feature_names)):
        raise ModelError(
            f"card says windows of {card.seq_len} x {len(card.feature_names)} features but the graph takes "
            f"{exported.seq_len} x {exported.n_features}"
        )
    x = np.asarray(example, dtype=np.float32)
    if x.ndim != 3 or x.shape[0] < 2:
        raise ModelError(f"input example needs >= 2 windows so the batch axis stays dynamic, got shape {x.shape}")
    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
        # MLflow asks for type hints on predict, but derives a schema from them; the signature here is explicit.
        warnings.filterwarnings("ignore", message=".*type hint", category=UserWarning)
        reference = Path(tmp) / DRIFT_REFERENCE_FILE
        reference.write_text(json.dumps(reference_profile(x[:, -1, :], card.feature_names)))
        return _log_pyfunc(exported, card, x[:2], registered_model_name, reference)


def _log_pyfunc(
    exported: OnnxExport, card: ModelCard, example: np.ndarray, registered_model_name: str | None, reference: Path
) -> ModelInfo:
    return mlflow.pyfunc.log_model(
        name=MODEL_NAME,
        python_model=str(_PYFUNC_CODE),
        artifacts={"onnx_model": str(exported.path), "drift_reference": str(reference)},
        signature=signature(card),
        input_example=example,
        pip_requirements=pip_requirements(),
        metadata={"finmlops": card.model_dump()},
        registered_model_name=registered_model_name,
    )


def onnx_path(model_dir: Path) -> Path:
    """The ONNX file of a local MLflow model directory, checked to load and to match the contract."""
    try:
        flavor = Model.load(str(model_dir)).flavors["python_function"]
        path = model_dir / flavor["artifacts"]["onnx_model"]["path"]
    except (OSError, MlflowException, KeyError, TypeError) as exc:
        raise ModelError(f"{model_dir}: not a finmlops ONNX pyfunc model ({type(exc).__name__}: {exc})") from None
    check_onnx(path)
    return path


def check_onnx(path: Path) -> None:
    """Raise ``ModelError`` naming ``path`` unless it is a valid graph with the ``input_data``/``prob_up`` contract."""
    try:
        graph = onnx.load(str(path))
        onnx.checker.check_model(graph)
    except Exception as exc:  # onnx raises DecodeError, ValidationError, OSError...
        raise ModelError(f"{path}: missing or corrupt ONNX model ({type(exc).__name__}: {exc})") from None
    inputs = [i.name for i in graph.graph.input]
    outputs = [o.name for o in graph.graph.output]
    if inputs != [INPUT_NAME] or outputs != [OUTPUT_NAME]:
        raise ModelError(f"{path}: expects input {[INPUT_NAME]} and output {[OUTPUT_NAME]}, has {inputs} -> {outputs}")


def drift_reference(model_dir: Path) -> dict[str, Any] | None:
    """The drift reference profile of a logged model folder or an export, or None when it has none (older models)."""
    path = model_dir / DRIFT_REFERENCE_FILE
    # Not an MLflow folder, or logged before drift references: look beside the card instead.
    with contextlib.suppress(OSError, MlflowException, KeyError, TypeError):
        path = model_dir / Model.load(str(model_dir)).flavors["python_function"]["artifacts"]["drift_reference"]["path"]
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: unreadable drift reference ({exc})") from None


def read_card(model_dir: Path) -> ModelCard:
    """The ``ModelCard`` stored in the MLflow model's metadata."""
    try:
        raw = (Model.load(str(model_dir)).metadata or {})["finmlops"]
        return ModelCard.model_validate(raw)
    except (OSError, MlflowException, KeyError, ValidationError) as exc:
        raise ModelError(f"{model_dir}: no valid finmlops metadata in MLmodel ({type(exc).__name__}: {exc})") from None


def registry_uri(ref: str) -> str:
    """``name@alias`` -> ``models:/name@alias``, ``name/3`` -> ``models:/name/3``; URIs, existing paths and other
    names unchanged."""
    if ":/" in ref or Path(ref).exists():
        return ref
    _, slash, version = ref.partition("/")
    if "@" in ref or (slash and version.isdigit()):
        return f"models:/{ref}"
    return ref


def model_uri(ref: str) -> str:
    """An MLflow URI for ``ref``: a URI is kept, ``name@alias`` and ``name/version`` become ``models:/`` URIs; a
    registered name (or a variant, meaning ``<variant>-predictor``) becomes its ``champion`` version when one is
    set, else its latest version."""
    ref = registry_uri(ref)
    if ":/" in ref:
        return ref
    client = mlflow.MlflowClient()
    name = ref if ref.endswith("-predictor") else f"{ref}-predictor"
    try:
        return f"models:/{name}@champion" if "champion" in client.get_registered_model(name).aliases else _latest(name)
    except MlflowException as exc:
        raise ModelError(f"no registered model {name!r} for {ref!r} and no such path ({exc.error_code})") from None


def _latest(name: str) -> str:
    versions = mlflow.MlflowClient().search_model_versions(f"name = '{name}'")
    if not versions:
        raise ModelError(f"registered model {name!r} has no versions")
    return f"models:/{name}/{max(int(v.version) for v in versions)}"


def fetch_model(ref: str, dst: Path) -> Path:
    """A local MLflow model directory for ``ref`` (a path, an MLflow URI, a registered name or a variant).

    Remote models are downloaded under ``dst``. Raises ``ModelError`` when it cannot be found or read, or when the
    download holds no ``MLmodel`` (MLflow returns an empty folder for a version whose artifacts were deleted).
    """
    local = Path(ref)
    if local.exists():
        if not (local / "MLmodel").is_file():
            raise ModelError(f"{local}: not an MLflow model directory (no MLmodel file)")
        return local
    uri = model_uri(ref)
    try:
        downloaded = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))
    except (MlflowException, OSError) as exc:
        raise ModelError(f"cannot download model {ref!r} ({uri}): {exc}") from None
    if not (downloaded / "MLmodel").is_file():
        raise ModelError(
            f"model {ref!r} ({uri}) downloaded with no MLmodel file: its artifacts are missing from the artifact "
            "store (deleted?); register a fresh version or restore them"
        )
    return downloaded


def triton_config(name: str, card: ModelCard) -> str:
    """A Triton ``config.pbtxt`` for the ONNX Runtime backend; dims exclude the (dynamic) batch axis."""
    return (
        f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {TRITON_MAX_BATCH}\n'
        f'input [\n  {{\n    name: "{card.input_name}"\n    data_type: TYPE_FP32\n'
        f"    dims: [ {card.seq_len}, {len(card.feature_names)} ]\n  }}\n]\n"
        f'output [\n  {{\n    name: "{card.output_name}"\n    data_type: TYPE_FP32\n    dims: [ 1 ]\n  }}\n]\n'
        "dynamic_batching { }\ninstance_group [ { kind: KIND_CPU, count: 1 } ]\n"
    )


def mlserver_settings(name: str) -> dict[str, Any]:
    """``model-settings.json`` for the bundled onnxruntime MLServer runtime (MLServer puts the folder on sys.path)."""
    return {
        "name": name,
        "implementation": "mlserver_onnx_runtime.OnnxModel",
        "parameters": {"uri": "./model.onnx", "extra": {"intra_op_threads": 1}},
    }


def export_model(ref: str, fmt: ExportFormat, out: Path, name: str | None = None) -> Path:
    """Lay the model ``ref`` out in ``out`` for ``fmt``; returns the model folder (``out/<name>``).

    ``name`` defaults to the card's ``<variant>-predictor``. The folder is built beside its target and renamed into
    place, so a failed export leaves an existing one intact.
    """
    if fmt not in EXPORT_FORMATS:
        raise ModelError(f"unknown export format {fmt!r}; known: {', '.join(EXPORT_FORMATS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as tmp:
        model_dir = fetch_model(ref, Path(tmp) / "download")
        card, graph = read_card(model_dir), onnx_path(model_dir)
        name = name or f"{card.variant}-predictor"
        stage = Path(tmp) / name
        if fmt == "mlflow":
            shutil.copytree(model_dir, stage)
        elif fmt == "triton":
            (stage / "1").mkdir(parents=True)
            shutil.copy2(graph, stage / "1" / "model.onnx")
            (stage / "config.pbtxt").write_text(triton_config(name, card))
        else:
            stage.mkdir()
            shutil.copy2(graph, stage / "model.onnx")
            shutil.copy2(_MLSERVER_RUNTIME, stage / "mlserver_onnx_runtime.py")
            (stage / "model-settings.json").write_text(json.dumps(mlserver_settings(name), indent=2) + "\n")
        (stage / CARD_FILE).write_text(json.dumps({"source": ref, **card.model_dump()}, indent=2) + "\n")
        reference = drift_reference(model_dir)
        if fmt != "mlflow" and reference is not None:
            (stage / DRIFT_REFERENCE_FILE).write_text(json.dumps(reference))
        target, previous = out / name, Path(tmp) / "previous"
        if target.exists():
            target.rename(previous)
        try:
            stage.rename(target)
        except OSError:
            if previous.exists():
                previous.rename(target)
            raise
    return target
