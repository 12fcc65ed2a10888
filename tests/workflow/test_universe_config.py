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
from finmlops.workflow.steps import _source_digest, _universe_source


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
