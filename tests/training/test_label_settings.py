"""The label's horizon and dead band come from Settings and reach the target, the purge/embargo and the records."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pytest

import finmlops.features as features_module
from finmlops.data import DataStore, load_snapshot
from finmlops.features import make_target
from finmlops.settings import load_settings
from finmlops.training import walk_forward_predictions
from finmlops.training.pipeline import run_training
from finmlops.workflow.champions import final_fit


@pytest.fixture(scope="module")
def universe() -> dict[str, pd.DataFrame]:
    return load_snapshot(["AAPL", "JPM"], start=date(2017, 1, 1), end=date(2019, 12, 31))


def _spy(monkeypatch: pytest.MonkeyPatch, name: str, calls: list[dict[str, Any]], stop: bool = False) -> None:
    """Record the keyword arguments of ``finmlops.features.<name>``; call through, or raise after recording."""
    real: Callable[..., Any] = getattr(features_module, name)

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        if stop:
            raise RuntimeError(f"stopped after {name}")
        return real(*args, **kwargs)

    monkeypatch.setattr(features_module, name, spy)


def test_run_training_uses_the_settings_label_and_records_it(
    universe: dict[str, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(horizon=5, threshold=0.001, threads=1)
    DataStore(settings.data_dir).write(universe, "snapshot")
    targets: list[dict[str, Any]] = []
    splits: list[dict[str, Any]] = []
    _spy(monkeypatch, "make_target", targets)
    _spy(monkeypatch, "chronological_split", splits)
    result = run_training(settings, "lightweight", epochs=1, device="cpu", verbosity="silent")
    assert targets == [{"horizon": 5, "threshold": 0.001}]
    assert splits[0]["horizon"] == 5 and splits[0]["seq_len"] == 10
    # The purge grows with the horizon: seq_len + horizon = 15 trading days between the last training date and
    # the first validation date (11 with the default horizon of 1).
    calendar = pd.DatetimeIndex(sorted(set().union(*(f.index for f in universe.values()))))
    gap = calendar.get_loc(pd.Timestamp(result["split"]["val"]["first"])) - calendar.get_loc(
        pd.Timestamp(result["split"]["train"]["last"])
    )
    assert gap > 15
    label = {"horizon": 5, "threshold": 0.001}
    saved = json.loads((settings.results_dir / "train_lightweight.json").read_text())
    assert saved["label"] == label and saved["config"]["label"] == label
    assert json.loads((settings.models_dir / "lightweight" / "config.json").read_text())["label"] == label


def test_walk_forward_sizes_the_embargo_by_the_horizon(
    universe: dict[str, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    folds: list[dict[str, Any]] = []
    _spy(monkeypatch, "walk_forward_folds", folds)
    preds = walk_forward_predictions(
        universe, variants=[], baselines=["majority"], test_years=[2019], threads=1, device="cpu", progress=False,
        horizon=4, threshold=0.002,
    )  # fmt: skip
    assert folds[0]["horizon"] == 4
    index = pd.MultiIndex.from_arrays([pd.DatetimeIndex(preds["date"]), preds["ticker"]])
    assert np.array_equal(preds["y_true"], make_target(universe, 4, 0.002).reindex(index).to_numpy())
    # The y_true of the default label would differ: the option is not silently ignored.
    assert not np.array_equal(preds["y_true"], make_target(universe).reindex(index).to_numpy())


def test_final_fit_passes_the_label_to_target_and_folds(
    universe: dict[str, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    targets: list[dict[str, Any]] = []
    folds: list[dict[str, Any]] = []
    _spy(monkeypatch, "make_target", targets)
    _spy(monkeypatch, "walk_forward_folds", folds, stop=True)
    with pytest.raises(RuntimeError, match="stopped after walk_forward_folds"):
        final_fit(
            universe, "lightweight", gap_seq_len=10, last_test_year=2019, epochs=1, seed=0, threads=1,
            horizon=3, threshold=0.01,
        )  # fmt: skip
    assert targets == [{"horizon": 3, "threshold": 0.01}]
    assert folds[0]["horizon"] == 3 and folds[0]["seq_len"] == 10
