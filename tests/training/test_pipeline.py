from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from finmlops.cli import app
from finmlops.data import DataStore, load_snapshot
from finmlops.features import forward_return, make_target
from finmlops.models import BASELINES, get_variant
from finmlops.settings import load_settings
from finmlops.training import (
    PREDICTION_COLUMNS,
    TrainConfig,
    load_model,
    save_model,
    train_variant,
    walk_forward_predictions,
)
from finmlops.training import pipeline as pipeline_module
from finmlops.training.results import TrainResult, TrainRun


@pytest.fixture(scope="module")
def small_universe() -> dict[str, pd.DataFrame]:
    return load_snapshot(["AAPL", "JPM", "XOM"], start=date(2016, 1, 1), end=date(2019, 12, 31))


def test_train_command_writes_result_and_model_and_reruns_identically(small_universe: dict) -> None:
    settings = load_settings()
    DataStore(settings.data_dir).write(small_universe, "snapshot")
    args = ["train", "--variant", "lightweight", "--epochs", "2", "--seed", "3", "--threads", "1", "--json"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    result = TrainRun.model_validate_json(first.stdout)
    again = TrainRun.model_validate_json(CliRunner().invoke(app, args).stdout)
    assert result.metrics == again.metrics and result.history[-1]["val_loss"] == again.history[-1]["val_loss"]
    assert result.mlflow is not None and again.mlflow is not None  # tracked to the workspace's local MLflow
    assert (result.mlflow.model, result.mlflow.version, again.mlflow.version) == ("lightweight-predictor", 1, 2)
    text = (settings.results_dir / "train_lightweight.json").read_text()
    saved = TrainRun.model_validate_json(text)
    # The file is the second run's result read back, without the registration (made after it is written).
    assert saved.model_dump_json() == again.model_copy(update={"mlflow": None}).model_dump_json()
    assert saved.provenance["data_hash"] == DataStore(settings.data_dir).dataset_hash
    assert saved.seed == 3 and saved.config["variant"]["name"] == "lightweight"
    assert set(json.loads(text)["metrics"]) == {"val", "test", "test_majority_accuracy"}  # the file's keys stay
    assert "mlflow" not in json.loads(text)
    # The split is purged: at least seq_len + 1 trading days between the blocks.
    days = pd.bdate_range(saved.split.train.last, saved.split.val.first)
    assert len(days) > 11
    assert {p.name for p in (settings.models_dir / "lightweight").iterdir()} == {
        "model.pt",
        "scaler.json",
        "config.json",
    }


def test_train_command_rejects_unknown_variant_and_missing_store() -> None:
    bad = CliRunner().invoke(app, ["train", "--variant", "gpt"])
    assert bad.exit_code == 2 and "'gpt' is not one of" in bad.output and "'baseline'" in bad.output
    missing = CliRunner().invoke(app, ["train", "--variant", "baseline", "--epochs", "1"])
    assert missing.exit_code == 1 and "finmlops ingest" in missing.output


def test_saved_model_reloads_to_identical_predictions(
    small_universe: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = TrainConfig(epochs=1, threads=1, device="cpu", verbosity="silent")
    model, result = train_variant(small_universe, get_variant("baseline", hidden_size=8), config)
    assert TrainResult.model_validate_json(result.model_dump_json()) == result
    target = save_model(model, tmp_path / "baseline", result.feature_names, {"data_hash": "x"})
    loaded, meta = load_model(target)
    x = np.random.default_rng(0).normal(size=(20, 10, len(result.feature_names))).astype(np.float32)
    windows = type("W", (), {"X": x, "y": np.zeros(20), "dates": np.zeros(20), "tickers": np.array(["A"] * 20)})
    assert np.array_equal(model.predict_proba(windows), loaded.predict_proba(windows))
    assert meta["output"] == "logit" and meta["data_hash"] == "x"

    def broken_save(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    before = (target / "model.pt").read_bytes()
    monkeypatch.setattr(pipeline_module.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_model(model, target, result.feature_names, {})
    assert (target / "model.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["baseline"]  # no temp folders left behind


def test_walk_forward_scores_every_model_on_the_same_rows(small_universe: dict) -> None:
    # A trading day missing from one ticker costs long windows more rows than short ones: the runner must drop
    # them from every model and say so.
    universe = dict(small_universe)
    universe["JPM"] = universe["JPM"].drop(pd.Timestamp("2019-06-04"))
    variants = [get_variant("baseline", hidden_size=8), get_variant("transformer", seq_len=12, hidden_size=16)]
    preds = walk_forward_predictions(
        universe, variants=variants, test_years=[2018, 2019], epochs=1, threads=1, device="cpu",
        progress=False,
    )  # fmt: skip
    assert list(preds.columns) == list(PREDICTION_COLUMNS)
    assert set(preds["model"]) == {"baseline", "transformer", *BASELINES}
    assert set(preds["fold"]) == {"2018", "2019"}
    for (fold, _), group in preds.groupby(["fold", "model"]):
        assert (pd.DatetimeIndex(group["date"]).year == int(fold)).all()
    keys = [list(zip(g["date"], g["ticker"], strict=True)) for _, g in preds.groupby("model")]
    assert all(k == keys[0] for k in keys)
    assert preds["prob_up"].between(0, 1).all() and set(preds["y_true"]) <= {0, 1}
    index = pd.MultiIndex.from_arrays([pd.DatetimeIndex(preds["date"]), preds["ticker"]])
    assert np.array_equal(preds["y_true"], make_target(universe).reindex(index).to_numpy())
    assert np.allclose(preds["ret_next"], forward_return(universe).reindex(index).to_numpy())
    report = preds.attrs["row_report"]
    assert [r["fold"] for r in report] == ["2018", "2019"]
    assert all(r["rows"] * 6 == (preds["fold"] == r["fold"]).sum() for r in report)
    assert report[0]["dropped"]["majority"] == 0 and report[1]["dropped"]["majority"] > 0
    assert "warm-up" in report[1]["reason"]
    assert not ((preds["ticker"] == "JPM") & (preds["date"] == pd.Timestamp("2019-06-05"))).any()
