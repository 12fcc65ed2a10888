"""The CLI's choice Enums equal the stages' own tuples: Typer checks the values, the stage defines them.

Some Enums are written out in finmlops.cli.common because importing their stage would load torch, MLflow or scipy
at every command's start; this test fails when a stage adds or renames a value and the CLI does not follow.
"""

from __future__ import annotations

from typing import get_args

import pytest

from finmlops.cli import common as cli


def _stage_values() -> dict[str, tuple[str, ...]]:
    from finmlops.data.ingest import SOURCES
    from finmlops.evaluation.backtest import ALL_STRATEGIES
    from finmlops.features.registry import FEATURE_SETS
    from finmlops.features.target import Execution
    from finmlops.models.variants import PRESETS
    from finmlops.monitoring.drift import CURRENT_SOURCES
    from finmlops.serving.traffic import ModelInput
    from finmlops.tracking.backend import EXPERIMENTS
    from finmlops.tracking.packaging import EXPORT_FORMATS

    return {
        "Source": SOURCES, "FeatureSet": FEATURE_SETS, "Variant": tuple(PRESETS),
        "ExecutionChoice": get_args(Execution), "ModelInputChoice": get_args(ModelInput), "Strategy": ALL_STRATEGIES,
        "ExportFormat": EXPORT_FORMATS, "Experiment": EXPERIMENTS, "CurrentSource": CURRENT_SOURCES,
    }  # fmt: skip


@pytest.mark.parametrize("name", list(_stage_values()))
def test_choice_enum_equals_its_stage_tuple(name: str) -> None:
    assert tuple(m.value for m in getattr(cli, name)) == tuple(_stage_values()[name])


def test_torch_and_optuna_choices_equal_their_stage() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("optuna")
    from finmlops.training.config import Device
    from finmlops.tuning.search import METRICS

    assert tuple(m.value for m in cli.Device) == get_args(Device)
    assert tuple(m.value for m in cli.Metric) == tuple(METRICS)
