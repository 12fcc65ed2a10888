"""The logged pyfunc reproduces torch's probabilities without torch, and every export layout is complete."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from finmlops.cli import app
from finmlops.settings import Settings
from finmlops.tracking import ModelError, TrainedNetwork, export_model, log_training_run


def expected(trained: Any, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.sigmoid(trained.network(torch.from_numpy(trained.scaler.transform(x)))).numpy().reshape(-1, 1)


@pytest.fixture
def logged(settings: Settings, trained: Any, predictions: Callable[..., pd.DataFrame]) -> str:
    """A registered baseline-predictor version 1; returns its model URI."""
    run_id = log_training_run(
        settings, variant="baseline", params={}, feature_set="basic",
        feature_names=list(trained.windows.feature_names), data_hash="e" * 64,
        predictions=predictions(trained.windows, "baseline", 0.5, seed=0),
        trained=TrainedNetwork(trained.network, trained.scaler, trained.windows.X[:64]), register=True,
    )  # fmt: skip
    return mlflow.MlflowClient().get_run(run_id).data.tags["finmlops.model_uri"]


def test_pyfunc_predicts_the_torch_probabilities(logged: str, trained: Any) -> None:
    model = mlflow.pyfunc.load_model(logged)
    x = trained.windows.X[-300:]
    got = model.predict(x)
    assert got.shape == (300, 1) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected(trained, x), atol=1e-5)
    info = mlflow.models.get_model_info(logged)
    assert info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 10, x.shape[2])
    local = Path(mlflow.artifacts.download_artifacts(logged))
    requirements = (local / "requirements.txt").read_text()
    assert "onnxruntime==" in requirements and "torch" not in requirements
    assert np.asarray(json.loads((local / "input_example.json").read_text())).shape == (2, 10, x.shape[2])


def test_pyfunc_loads_without_torch(logged: str, trained: Any, tmp_path: Path) -> None:
    local = mlflow.artifacts.download_artifacts(logged, dst_path=str(tmp_path))
    np.save(tmp_path / "x.npy", trained.windows.X[:5])
    code = (
        "import sys, numpy, mlflow.pyfunc; sys.modules['torch'] = None\n"  # any torch import now fails
        f"m = mlflow.pyfunc.load_model({local!r}); print(m.predict(numpy.load({str(tmp_path / 'x.npy')!r})).tolist())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    np.testing.assert_allclose(
        json.loads(out.stdout.strip().splitlines()[-1]), expected(trained, trained.windows.X[:5]), atol=1e-5
    )


def test_export_layouts(logged: str, tmp_path: Path, trained: Any) -> None:
    n_features = trained.windows.X.shape[2]
    triton = export_model("baseline", "triton", tmp_path / "triton")
    assert triton == tmp_path / "triton" / "baseline-predictor"
    config = (triton / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in config and f"dims: [ 10, {n_features} ]" in config
    assert (triton / "1" / "model.onnx").is_file()
    card = json.loads((triton / "finmlops-model.json").read_text())
    assert card["feature_names"] == list(trained.windows.feature_names) and card["data_hash"] == "e" * 64

    mlserver = export_model(logged, "mlserver", tmp_path / "mlserver", name="lstm")
    settings = json.loads((mlserver / "model-settings.json").read_text())
    assert settings["name"] == "lstm" and settings["implementation"] == "mlserver_onnx_runtime.OnnxModel"
    assert {p.name for p in mlserver.iterdir()} >= {"model.onnx", "mlserver_onnx_runtime.py", "model-settings.json"}

    cli = CliRunner().invoke(
        app, ["export", "--model", "baseline-predictor", "--format", "mlflow", "--out", str(tmp_path / "mf")]
    )
    assert cli.exit_code == 0, cli.output
    reloaded = mlflow.pyfunc.load_model(str(tmp_path / "mf" / "baseline-predictor"))
    np.testing.assert_allclose(
        reloaded.predict(trained.windows.X[:9]), expected(trained, trained.windows.X[:9]), atol=1e-5
    )


def test_missing_or_corrupt_models_are_clear_errors(logged: str, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no registered model 'nothing-predictor'"):
        export_model("nothing", "triton", tmp_path / "out")
    with pytest.raises(ModelError, match="no MLmodel file"):
        export_model(str(tmp_path), "triton", tmp_path / "out")
    local = Path(mlflow.artifacts.download_artifacts(logged, dst_path=str(tmp_path / "copy")))
    (onnx_file,) = (local / "artifacts").glob("*.onnx")
    onnx_file.write_bytes(b"not a graph")
    previous = export_model(logged, "triton", tmp_path / "out")  # a good export, which the failed one must keep
    cli = CliRunner().invoke(
        app, ["export", "--model", str(local), "--format", "triton", "--out", str(tmp_path / "out")]
    )
    assert cli.exit_code == 1 and "missing or corrupt ONNX model" in cli.output and "Traceback" not in cli.output
    assert (previous / "1" / "model.onnx").stat().st_size > 100
    cli = CliRunner().invoke(app, ["export", "--model", logged, "--format", "tensorrt", "--out", str(tmp_path)])
    assert cli.exit_code == 2


def test_a_registered_version_whose_artifacts_were_deleted_is_named(
    logged: str, settings: Settings, tmp_path: Path
) -> None:
    """A deleted artifact folder downloads as nothing: the error names the model and its URI, not a temp folder."""
    from finmlops.tracking import fetch_model

    download_uri = mlflow.MlflowClient().get_model_version_download_uri("baseline-predictor", "1")
    location = Path(download_uri.removeprefix("file://"))
    assert location.is_dir() and settings.home.resolve() in location.resolve().parents, location
    shutil.rmtree(location)
    with pytest.raises(ModelError, match=r"'baseline'.*models:/baseline-predictor/1.*no MLmodel") as raised:
        fetch_model("baseline", tmp_path / "download")
    assert str(tmp_path / "download") not in str(raised.value)
    cli = CliRunner().invoke(app, ["export", "--model", "baseline", "--format", "triton", "--out", str(tmp_path / "o")])
    assert cli.exit_code == 1 and "models:/baseline-predictor/1" in cli.output and "Traceback" not in cli.output
