"""The model card says which label the graph's probability is of: the run's ``label`` params, else 1 day, no band."""

from __future__ import annotations

from typing import Any

import mlflow
import pytest
from pydantic import ValidationError

from finmlops.settings import Settings
from finmlops.tracking import TrainedNetwork, log_training_run
from finmlops.tracking.packaging import ModelCard


def _card(settings: Settings, trained: Any, params: dict[str, Any]) -> dict[str, Any]:
    windows = trained.windows
    run_id = log_training_run(
        settings, variant="baseline", params=params, feature_set="basic", feature_names=list(windows.feature_names),
        data_hash="d" * 64,
        trained=TrainedNetwork(trained.network, trained.scaler, windows.X[:32], "2021-01-15", "2022-12-30"),
    )  # fmt: skip
    uri = mlflow.MlflowClient().get_run(run_id).data.tags["finmlops.model_uri"]
    return mlflow.models.get_model_info(uri).metadata["finmlops"]


def test_card_records_the_label(settings: Settings, trained: Any) -> None:
    card = _card(settings, trained, {"train": {"epochs": 1}, "label": {"horizon": 5, "threshold": 0.002}})
    assert (card["horizon"], card["threshold"]) == (5, 0.002)
    assert (ModelCard.model_validate(card).horizon, ModelCard.model_validate(card).threshold) == (5, 0.002)
    legacy = _card(settings, trained, {"train": {"epochs": 1}})  # a tuning run, or a run logged before the option
    assert (legacy["horizon"], legacy["threshold"]) == (1, 0.0)
    with pytest.raises(ValidationError, match="horizon"):
        ModelCard(variant="b", feature_set="basic", feature_names=["x"], seq_len=1, horizon=0)
