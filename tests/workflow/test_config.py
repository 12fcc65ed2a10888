"""The run config: shipped files validate, errors name the file and field, the resolved config round-trips, and a
step's code identity is its import closure (no hand list to forget)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from finmlops.workflow.config import RunConfigError, load_run_config, parse_run_config, shipped_config, write_resolved
from finmlops.workflow.engine import code_closure, code_parts
from finmlops.workflow.steps import build_steps


@pytest.mark.parametrize("name", ["default", "quick"])
def test_shipped_configs_validate_and_round_trip(name: str, tmp_path: Path) -> None:
    config = shipped_config(name)
    path = write_resolved(config, tmp_path)
    again = load_run_config(path)
    assert again == config.resolve()
    assert again.to_yaml() == path.read_text()


def test_the_repository_configs_folder_is_the_shipped_one() -> None:
    repo = Path(__file__).resolve().parents[2]
    assert (repo / "configs" / "quick.yaml").read_text() == (
        repo / "src" / "finmlops" / "workflow" / "configs" / "quick.yaml"
    ).read_text()


def test_resolve_names_every_ticker() -> None:
    raw = shipped_config("quick").model_dump(mode="json")
    raw["universe"]["tickers"] = None
    config = parse_run_config(yaml.safe_dump(raw), "mine.yaml")
    with pytest.raises(RunConfigError, match="not resolved"):
        _ = config.tickers
    assert len(config.resolve().tickers) == 10


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": 0}, r"mine.yaml: epochs: Input should be greater than or equal to 1"),
        ({"variants": [{"name": "nope"}]}, r"unknown variant\(s\) \['nope'\]"),
        (
            {"variants": [{"name": "baseline", "params": {"hidden_size": -1}}]},
            r"variants.0.params \(baseline\): hidden_size: Input should be greater than 0",
        ),
        ({"baselines": ["oracle"]}, r"unknown baseline\(s\) \['oracle'\]"),
        ({"test_years": [2023, 2022]}, r"test_years: test_years must be strictly increasing"),
        ({"test_years": [2030]}, r"must lie after the first year of data"),
        ({"label": {"horizon": 0}}, r"label.horizon: Input should be greater than or equal to 1"),
        ({"costs": {"cost_bps": 5, "fee": 1}}, r"costs.fee: Extra inputs are not permitted"),
    ],
)
def test_a_bad_config_names_its_file_and_field(change: dict, message: str) -> None:
    raw = shipped_config("quick").model_dump(mode="json") | change
    with pytest.raises(RunConfigError, match=message) as err:
        parse_run_config(yaml.safe_dump(raw), "mine.yaml")
    assert "errors.pydantic.dev" not in str(err.value)


def test_unreadable_or_non_mapping_configs_are_clear(tmp_path: Path) -> None:
    with pytest.raises(RunConfigError, match="cannot read the run config"):
        load_run_config(tmp_path / "absent.yaml")
    with pytest.raises(RunConfigError, match="not valid YAML"):
        parse_run_config("a: [1,", "bad.yaml")
    with pytest.raises(RunConfigError, match="a run config is a YAML mapping, got list"):
        parse_run_config("- 1\n", "list.yaml")


def test_a_steps_code_is_its_import_closure() -> None:
    steps = {s.name: s for s in build_steps()}
    train = code_closure(steps["train"].action)
    # What training runs, found through the imports of the step and of the modules it imports.
    assert {"finmlops.training.walkforward", "finmlops.evaluation.metrics", "finmlops.models.networks"} <= set(train)
    # And nothing it does not run: the A/B analysis does not depend on the training code.
    assert "finmlops.training.walkforward" not in code_closure(steps["abtest"].action)
    assert "finmlops.report.page" in code_closure(steps["report"].action)
    # A module the step's function uses through its module's top-level imports is in its closure too.
    assert "finmlops.monitoring.abtest" in code_closure(steps["abtest"].action)
    assert "finmlops.monitoring.abtest" not in code_closure(steps["drift"].action)


def test_the_steps_own_helpers_are_part_of_its_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """Editing a helper that a step calls (``_bootstrap`` for train) changes that step's identity only."""
    from finmlops.workflow import steps as steps_module

    by_name = {s.name: s for s in build_steps()}
    train_before, ingest_before = code_parts(by_name["train"].action), code_parts(by_name["ingest"].action)
    code_parts_key = "code finmlops.workflow.steps._train"
    original = steps_module._bootstrap

    def _bootstrap(plan, seed):  # type: ignore[no-untyped-def]  # a changed helper: a different source
        return original(plan, seed + 1)

    monkeypatch.setattr(steps_module, "_bootstrap", _bootstrap)
    assert code_parts(by_name["train"].action)[code_parts_key] != train_before[code_parts_key]
    assert code_parts(by_name["ingest"].action) == ingest_before


def test_the_configs_step_names_are_the_pipelines() -> None:
    from finmlops.workflow.config import STEP_NAMES

    assert tuple(s.name for s in build_steps()) == STEP_NAMES


def test_steps_are_named_once_from_the_pipeline_and_kept_in_its_order() -> None:
    raw = shipped_config("quick").model_dump(mode="json")
    config = parse_run_config(yaml.safe_dump(raw | {"steps": ["train", "ingest", "features"]}), "mine.yaml")
    assert config.steps == ["ingest", "features", "train"]
    for bad in (["ingest", "serve"], ["ingest", "ingest"], []):
        with pytest.raises(RunConfigError, match=r"mine.yaml: steps: .*give each once, from ingest, features"):
            parse_run_config(yaml.safe_dump(raw | {"steps": bad}), "mine.yaml")
