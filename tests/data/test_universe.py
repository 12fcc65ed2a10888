"""Named universes, ticker files, and the S&P 500 set's ingest (a 25-ticker slice of ../shared, fast)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from finmlops_testing.universe import SLICE, sp500_dir, sp500_slice
from typer.testing import CliRunner

from finmlops.cli import app
from finmlops.data import (
    DataSourceError,
    DataStore,
    DataValidationError,
    ingest,
    read_tickers_file,
    universe_source,
    universe_tickers,
)
from finmlops.data.csv_source import _parse_fast, parse_ohlcv_csv, parse_ohlcv_text
from finmlops.data.universe import shipped_list


def test_the_shipped_sp500_list_names_443_tickers_and_its_bias() -> None:
    tickers = universe_tickers("sp500")
    assert len(tickers) == len(set(tickers)) == 443 and "BRK-B" in tickers and "AAPL" in tickers
    header = shipped_list("sp500").read_text()
    assert "SURVIVORSHIP BIAS" in header and "April 2021" in header and "Pooksoft" in header
    assert universe_tickers("snapshot10") == universe_tickers("snapshot") and len(universe_tickers("snapshot")) == 10


def test_the_shipped_list_is_the_folder_s_file_names() -> None:
    folder = sp500_dir()
    assert universe_tickers("sp500") == sorted(p.stem for p in folder.glob("*.csv"))


def test_tickers_file_comments_case_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("# my universe\naapl  # Apple\n\nMSFT\nbrk-b\n")
    assert read_tickers_file(path) == ["AAPL", "MSFT", "BRK-B"]
    path.write_text("AAPL\nMSFT\naapl\n")
    with pytest.raises(DataSourceError, match=r"t\.txt, line 3: AAPL repeats line 1"):
        read_tickers_file(path)
    path.write_text("AAPL\nnot a ticker\n")
    with pytest.raises(DataSourceError, match=r"line 2: 'NOT A TICKER' is not a ticker symbol"):
        read_tickers_file(path)
    path.write_text("# nothing\n")
    with pytest.raises(DataSourceError, match="no tickers"):
        read_tickers_file(path)


def test_sp500_without_its_folder_says_where_to_get_the_data(tmp_path: Path) -> None:
    for folder in (None, tmp_path / "absent"):
        with pytest.raises(DataSourceError, match=r"--source yahoo --universe sp500") as info:
            universe_source("sp500", folder)
        assert "sp500_dir" in str(info.value)
    with pytest.raises(DataSourceError, match=r"lacks 418 of its 443 tickers"):
        universe_source("sp500", sp500_slice(tmp_path / "part"))
    with pytest.raises(DataSourceError, match="neither snapshot10 nor sp500 nor a folder"):
        universe_source(str(tmp_path / "nowhere"))


def test_a_csv_folder_is_a_universe_and_sp500_reads_its_folder(tmp_path: Path) -> None:
    folder = sp500_slice(tmp_path / "slice")
    source = universe_source(str(folder))
    assert (source.source, source.data_dir, source.tickers) == ("csv", folder, sorted(SLICE))
    full = universe_source("sp500", sp500_dir())
    assert (full.source, len(full.tickers)) == ("csv", 443)
    assert universe_source("snapshot10").source == "snapshot"


def test_ingest_of_a_slice_keeps_each_ticker_s_own_history(tmp_path: Path) -> None:
    folder = sp500_slice(tmp_path / "slice")
    report = ingest(DataStore(tmp_path / "store"), "csv", list(SLICE), data_dir=folder)
    by = {t.ticker: t for t in report.tickers}
    assert str(by["FB"].first_date) == "2012-05-18" and str(by["AAPL"].first_date) == "1999-11-01"
    assert str(by["VAR"].last_date) == "2021-04-16"  # ends early; nobody fills it
    for ticker in SLICE:
        lines = (folder / f"{ticker}.csv").read_text().splitlines()
        assert by[ticker].rows == len(lines) - 1  # every row validated and kept
    again = ingest(DataStore(tmp_path / "store"), "csv", list(SLICE), data_dir=folder)
    assert not again.changed and again.dataset_hash == report.dataset_hash


def test_fast_and_text_paths_give_the_same_frames(tmp_path: Path) -> None:
    folder = sp500_dir()
    for ticker in SLICE:
        path = folder / f"{ticker}.csv"
        fast = _parse_fast(path, None, str(path))
        assert fast is not None, f"{ticker}: the plain Yahoo file should take the fast path"
        text = parse_ohlcv_text(path)
        pd.testing.assert_frame_equal(fast.frame, text.frame, check_exact=True)
        assert fast.rows == text.rows and fast.ticker == text.ticker


@pytest.mark.slow
def test_fast_and_text_paths_agree_on_the_whole_folder() -> None:
    for path in sorted(sp500_dir().glob("*.csv")):
        fast, text = _parse_fast(path, None, str(path)), parse_ohlcv_text(path)
        assert fast is not None
        pd.testing.assert_frame_equal(fast.frame, text.frame, check_exact=True)


@pytest.mark.parametrize(
    ("line", "cell", "value", "rule"),
    [(10, 4, "abc", "dtype"), (12, 4, "", "nan"), (7, 0, "2000-13-01", "date_format"), (9, 4, "nan", "dtype")],
)
def test_a_bad_cell_falls_back_to_the_text_path_s_message(
    tmp_path: Path, line: int, cell: int, value: str, rule: str
) -> None:
    path = tmp_path / "AAPL.csv"
    shutil.copyfile(sp500_dir() / "AAPL.csv", path)
    lines = path.read_text().splitlines()
    cells = lines[line - 1].split(",")
    cells[cell] = value
    lines[line - 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    assert _parse_fast(path, None, str(path)) is None
    with pytest.raises(DataValidationError) as info:
        raw = parse_ohlcv_csv(path)
        raw.validated(None, None)
    assert (info.value.row, info.value.rule) == (line, rule)


def test_cli_ingest_takes_a_tickers_file_or_a_universe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = sp500_slice(tmp_path / "slice", ("FB", "AAPL", "ZTS"))
    tickers = tmp_path / "mine.txt"
    tickers.write_text("# three\nfb\nAAPL\nZTS\n")
    monkeypatch.setenv("FINMLOPS_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    done = runner.invoke(
        app, ["ingest", "--source", "csv", "--data-dir", str(folder), "--tickers-file", str(tickers), "--no-track"]
    )
    assert done.exit_code == 0, done.output
    assert sorted(DataStore(tmp_path / "home" / "data").manifest().tickers) == ["AAPL", "FB", "ZTS"]
    both = runner.invoke(app, ["ingest", "--tickers", "AAPL", "--universe", "sp500", "--no-track"])
    assert both.exit_code == 2 and "one of --tickers, --tickers-file and --universe" in both.output
    missing = runner.invoke(app, ["ingest", "--source", "csv", "--data-dir", str(folder), "--universe", "sp500"])
    assert missing.exit_code != 0 and "no CSV for" in missing.output


def test_store_reads_back_bitwise(tmp_path: Path) -> None:
    folder = sp500_slice(tmp_path / "slice", ("TSLA", "KSU"))
    ingest(DataStore(tmp_path / "s"), "csv", ["TSLA", "KSU"], data_dir=folder)
    stored = DataStore(tmp_path / "s").read()
    for ticker in ("TSLA", "KSU"):
        parsed = parse_ohlcv_csv(folder / f"{ticker}.csv").frame
        assert np.array_equal(stored[ticker].to_numpy(), parsed.to_numpy())
