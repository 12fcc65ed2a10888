"""A run config names its universe: snapshot10, sp500 (a configured CSV folder) or a folder of CSVs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from finmlops_testing.universe import sp500_dir, sp500_slice

from finmlops.data import DataSourceError
from finmlops.settings import Settings
from finmlops.workflow.config import RunConfigError, parse_run_config, shipped_config
from finmlops.workflow.engine import Context
from finmlops.workflow.steps import _source_digest, _universe_source, settings_differences


def _config(source: str, tickers: list[str] | None = None) -> str:
    raw = shipped_config("quick").model_dump(mode="json")
    raw["universe"] = {"source": source, "tickers": tickers, "start": "2017-01-01", "end": "2021-04-21"}
    raw["test_years"] = [2020, 2021]
    return yaml.safe_dump(raw)


def _context(tmp_path: Path, text: str, **settings: object) -> Context:
    plan = parse_run_config(text, "run.yaml").resolve()
    return Context(settings=Settings(home=tmp_path / "home", **settings), plan=plan)  # type: ignore[call-arg]


def test_sp500_resolves_to_the_shipped_list_and_reads_its_folder(tmp_path: Path) -> None:
    text = _config("sp500")
    plan = parse_run_config(text, "run.yaml").resolve()
    assert len(plan.tickers) == 443 and plan.universe.source == "sp500"
    with pytest.raises(DataSourceError, match=r"sp500_dir is not set; .*--source yahoo --universe sp500"):
        _universe_source(_context(tmp_path, text))
    source = _universe_source(_context(tmp_path, text, sp500_dir=sp500_dir()))
    assert (source.source, source.data_dir) == ("csv", sp500_dir())


def test_the_note_that_a_config_declares_other_tickers_gives_their_count_not_all_443() -> None:
    plan = parse_run_config(_config("sp500"), "run.yaml").resolve()
    (tickers,) = [d for d in settings_differences(Settings(), plan) if d.startswith("tickers")]
    first, last = plan.tickers[0], plan.tickers[-1]
    assert tickers.endswith(f"config 443 tickers [{', '.join(plan.tickers[:4])}, …, {last}]"), tickers
    assert len(tickers) < 200 and first in tickers
    few = parse_run_config(_config("sp500", ["AAPL", "MSFT"]), "run.yaml").resolve()
    assert next(d for d in settings_differences(Settings(), few) if d.startswith("tickers")).endswith(
        "config [AAPL, MSFT]"
    )


def test_a_csv_folder_is_a_universe(tmp_path: Path) -> None:
    folder = sp500_slice(tmp_path / "csv", ("AAPL", "FB", "ZTS"))
    text = _config(str(folder))
    plan = parse_run_config(text, "run.yaml").resolve()
    assert plan.tickers == ("AAPL", "FB", "ZTS")
    ctx = _context(tmp_path, text)
    first = _source_digest(ctx)
    (folder / "ZTS.csv").write_text((folder / "ZTS.csv").read_text().replace("2021-04-21", "2021-04-22"))
    assert _source_digest(ctx) != first  # the ingest step reruns when a file changes


def test_snapshot10_is_the_snapshot_and_a_missing_folder_is_one_error(tmp_path: Path) -> None:
    assert len(parse_run_config(_config("snapshot10"), "run.yaml").resolve().tickers) == 10
    with pytest.raises(RunConfigError, match=r"universe.source: .*neither snapshot10 nor sp500 nor a folder"):
        parse_run_config(_config(str(tmp_path / "nowhere")), "run.yaml").resolve()


@pytest.mark.parametrize("name", ["sp500", "sp500-full"])
def test_the_sp500_configs_load_with_the_papers_models(name: str) -> None:
    from finmlops.workflow.config import load_run_config

    plan = load_run_config(Path(__file__).resolve().parents[2] / "configs" / f"{name}.yaml").resolve()
    assert len(plan.tickers) == 443 and plan.label.kind == "cross_sectional"
    assert {"kdh_dnn", "fk_lstm"} <= set(plan.variant_names) and set(plan.registered_names) == {"baseline", "enhanced"}
    assert {"kdh_gbt", "kdh_rf", "kdh_ensemble"} <= set(plan.estimators)
    assert {"fk_long_short", "topk_dropout"} <= set(plan.strategies or ())
    assert plan.folds == ("study_periods" if name == "sp500-full" else "yearly")


def test_a_run_config_rejects_unknown_estimators_and_registers_only_variants() -> None:
    raw = shipped_config("quick").model_dump(mode="json")
    with pytest.raises(RunConfigError, match="unknown estimator"):
        parse_run_config(yaml.safe_dump(raw | {"estimators": ["xgboost"]}), "run.yaml")
    with pytest.raises(RunConfigError, match="register_variants names"):
        parse_run_config(yaml.safe_dump(raw | {"register_variants": ["kdh_gbt"]}), "run.yaml")
    with pytest.raises(RunConfigError, match="folds"):
        parse_run_config(yaml.safe_dump(raw | {"folds": "monthly"}), "run.yaml")


def test_estimator_params_set_a_run_estimators_hyperparameters_and_name_what_is_wrong() -> None:
    raw = shipped_config("quick").model_dump(mode="json") | {"estimators": ["kdh_ensemble"]}
    plan = parse_run_config(yaml.safe_dump(raw | {"estimator_params": {"kdh_rf": {"n_estimators": 100}}}), "r.yaml")
    assert plan.estimator_params == {"kdh_rf": {"n_estimators": 100}}  # the ensemble's member
    wrong = {
        "kdh_gbt": ({"lgbm_alpha158": {"n_estimators": 5}}, r"estimator_params.lgbm_alpha158: .*not an estimator"),
        "kdh_rf": ({"kdh_rf": {"trees": 5}}, r"estimator_params.kdh_rf: kdh_rf has no hyperparameter trees; it takes"),
        "kdh_ensemble": ({"kdh_ensemble": {"n_estimators": 5}}, r"kdh_ensemble has no hyperparameter .*kdh_rf's"),
        "lgbm_alpha158": ({"kdh_rf": {"max_depth": 0}}, r"kdh_rf.max_depth must be an integer >= 1, got 0"),
    }
    for estimator, (params, message) in wrong.items():
        estimators = sorted({estimator, "kdh_ensemble"})
        with pytest.raises(RunConfigError, match=message):
            parse_run_config(yaml.safe_dump(raw | {"estimators": estimators, "estimator_params": params}), "r.yaml")
