"""Reading a section's typed result file: absent is "not yet", malformed is a ReportError that names the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from finmlops.evaluation.results import load_backtest
from finmlops.report.base import ReportError
from finmlops.report.inputs import read_if_written
from finmlops.report.sections import backtest, strategies


def test_absent_is_none_and_malformed_names_the_file_and_field(tmp_path: Path) -> None:
    assert read_if_written(load_backtest, tmp_path) is None
    (tmp_path / "backtest.json").write_text('{"config": {"strategies": "long_flat"}}')
    with pytest.raises(ReportError, match=r"backtest\.json: does not follow its schema \(config"):
        read_if_written(load_backtest, tmp_path)
    (tmp_path / "backtest.json").write_text("{not json")
    with pytest.raises(ReportError, match=r"backtest\.json: not valid JSON"):
        read_if_written(load_backtest, tmp_path)


def test_sections_of_one_file_agree_on_missing_and_malformed(tmp_path: Path) -> None:
    from finmlops.settings import Settings

    settings = Settings(home=tmp_path)
    assert not backtest.build(settings).filled and not strategies.build(settings).filled
    settings.results_dir.mkdir(parents=True, exist_ok=True)
    (settings.results_dir / "backtest.json").write_text("[]")
    for section in (backtest, strategies):
        with pytest.raises(ReportError, match=r"backtest\.json"):
            section.build(settings)
