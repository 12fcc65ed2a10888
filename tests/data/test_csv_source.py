"""The CSV layouts and file names that ``ingest --source csv`` accepts, and its errors for the ones it does not."""

from __future__ import annotations

import re
import warnings
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from finmlops.data import DataSourceError, DataValidationError, load_csv_folder, parse_ohlcv_csv
from finmlops.data.csv_source import find_csv_files, ticker_from_filename


@pytest.mark.parametrize(
    ("name", "ticker"),
    [
        ("AAPL.csv", "AAPL"),
        ("AAPL_raw_2018-01-01_2023-12-31.csv", "AAPL"),
        ("brk-b.csv", "BRK-B"),
        ("AAPL_processed.csv", None),
        ("notes.txt", None),
    ],
)
def test_ticker_from_filename(name: str, ticker: str | None) -> None:
    assert ticker_from_filename(Path(name)) == ticker


@pytest.mark.parametrize(
    ("layout", "kwargs"),
    [
        ("yahoo", {}),
        ("flattened", {"first": "Date"}),
        ("flattened", {"first": "Price"}),
        ("flattened", {"yfinance_rows": True}),
    ],
)
def test_layouts_parse_to_the_same_frame(
    layout: str, kwargs: dict[str, Any], aapl: pd.DataFrame, tmp_path: Path, csv: Any
) -> None:
    lines = csv.lines(aapl) if layout == "yahoo" else csv.flattened(aapl, "AAPL", **kwargs)
    path = csv.write(tmp_path / "AAPL_raw_2023-01-01_2023-03-31.csv", lines)
    raw = parse_ohlcv_csv(path)
    assert raw.ticker == "AAPL"
    pd.testing.assert_frame_equal(raw.frame, aapl)
    # Lines count from the first data row, after yfinance's extra header rows.
    assert raw.rows[0] == (4 if kwargs.get("yfinance_rows") else 2)


def test_yahoo_extras_and_timestamps_are_tolerated(aapl: pd.DataFrame, tmp_path: Path, csv: Any) -> None:
    lines = csv.lines(aapl)
    lines[0] += ",Dividends,Stock Splits"
    lines[1:] = [f"{line.split(',', 1)[0]} 00:00:00-05:00,{line.split(',', 1)[1]},0.0,0.0" for line in lines[1:]]
    pd.testing.assert_frame_equal(parse_ohlcv_csv(csv.write(tmp_path / "AAPL.csv", lines)).frame, aapl)


def test_error_lines_account_for_yfinance_header_rows(aapl: pd.DataFrame, tmp_path: Path, csv: Any) -> None:
    lines = csv.flattened(aapl, "AAPL", yfinance_rows=True)
    lines[9] = lines[9].replace(lines[9].split(",")[0], "not-a-date")
    with pytest.raises(DataValidationError) as info:
        parse_ohlcv_csv(csv.write(tmp_path / "AAPL.csv", lines))
    assert (info.value.row, info.value.rule) == (10, "date_format")


def test_ticker_in_header_must_match_file_name(aapl: pd.DataFrame, tmp_path: Path, csv: Any) -> None:
    path = csv.write(tmp_path / "AAPL.csv", csv.flattened(aapl, "MSFT"))
    with pytest.raises(DataValidationError, match=r"several tickers \['AAPL', 'MSFT'\]") as info:
        parse_ohlcv_csv(path)
    assert (info.value.source, info.value.row, info.value.rule) == (str(path), 1, "schema")


def test_unknown_column_is_named(aapl: pd.DataFrame, tmp_path: Path, csv: Any) -> None:
    lines = csv.lines(aapl)
    lines[0] = lines[0].replace("Close,Adj", "Clsoe,Adj")
    with pytest.raises(DataValidationError, match=r"missing columns \['close'\], unknown columns \['Clsoe'\]"):
        parse_ohlcv_csv(csv.write(tmp_path / "AAPL.csv", lines))


def test_ragged_and_empty_files(tmp_path: Path, csv: Any, aapl: pd.DataFrame) -> None:
    lines = csv.lines(aapl)
    lines[3] += ",1,2"
    with pytest.raises(DataValidationError, match="not a readable CSV") as info:
        parse_ohlcv_csv(csv.write(tmp_path / "ragged" / "AAPL.csv", lines))
    assert info.value.rule == "schema"
    (tmp_path / "AAPL.csv").write_text("")
    with pytest.raises(DataValidationError) as info:
        parse_ohlcv_csv(tmp_path / "AAPL.csv")
    assert info.value.rule == "empty"


def test_folder_mixes_names_and_layouts(q1_2023: dict[str, pd.DataFrame], tmp_path: Path, csv: Any) -> None:
    csv.write(tmp_path / "AAPL.csv", csv.lines(q1_2023["AAPL"]))
    csv.write(tmp_path / "MSFT_raw_2023-01-01_2023-03-31.csv", csv.flattened(q1_2023["MSFT"], "MSFT", first="Price"))
    (tmp_path / "README.md").write_text("not data")
    assert sorted(find_csv_files(tmp_path)) == ["AAPL", "MSFT"]
    universe = load_csv_folder(tmp_path, ["msft", "AAPL"], start=date(2023, 2, 1))
    assert list(universe) == ["MSFT", "AAPL"]
    for ticker, frame in universe.items():
        pd.testing.assert_frame_equal(frame, q1_2023[ticker].loc["2023-02-01":])


def test_folder_errors_list_what_is_there(q1_2023: dict[str, pd.DataFrame], tmp_path: Path, csv: Any) -> None:
    csv.write(tmp_path / "AAPL.csv", csv.lines(q1_2023["AAPL"]))
    with pytest.raises(DataSourceError, match=r"no CSV for \['MSFT'\].*found files for \['AAPL'\]"):
        load_csv_folder(tmp_path, ["AAPL", "MSFT"])
    csv.write(tmp_path / "AAPL_raw_2023-01-01_2023-03-31.csv", csv.lines(q1_2023["AAPL"]))
    with pytest.raises(DataSourceError, match="several files for one ticker"):
        load_csv_folder(tmp_path, ["AAPL"])
    with pytest.raises(DataSourceError, match="does not exist"):
        load_csv_folder(tmp_path / "missing", ["AAPL"])
    (tmp_path / "AAPL.csv").unlink()
    with pytest.raises(DataSourceError, match=r"no AAPL rows between 2024-01-01 and the end \(the data cover"):
        load_csv_folder(tmp_path, ["AAPL"], start=date(2024, 1, 1))


@pytest.mark.parametrize("cell", ["2023-01-05xyz", "2023-01-05 junk", "2023-01-05 00:00:00+05:00:99", "2023-1-5"])
def test_a_date_with_trailing_text_is_refused(cell: str, aapl: pd.DataFrame, tmp_path: Path, csv: Any) -> None:
    """Only the first 10 characters were parsed: ``2010-01-11xyz`` was stored as 2010-01-11."""
    lines = csv.lines(aapl)
    lines[3] = cell + "," + lines[3].split(",", 1)[1]
    path = csv.write(tmp_path / "AAPL.csv", lines)
    expected = f"{path}, row 4: rule 'date_format' failed: field 'Date': '{cell}'"
    with pytest.raises(DataValidationError, match=re.escape(expected)):
        parse_ohlcv_csv(path)


def test_a_volume_beyond_int64_has_its_own_rule(aapl: pd.DataFrame, tmp_path: Path, csv: Any) -> None:
    """1e20 wrapped around to a negative int64 (with a leaked RuntimeWarning) and was reported as volume_negative."""
    lines = csv.lines(aapl)
    lines[5] = lines[5].rsplit(",", 1)[0] + ",1e20"
    path = csv.write(tmp_path / "AAPL.csv", lines)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning from the cast fails the test
        with pytest.raises(DataValidationError, match=r"row 6: rule 'volume_range' failed: volume 1e\+20 is beyond"):
            parse_ohlcv_csv(path)
