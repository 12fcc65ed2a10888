"""End to end through the CLI: ``finmlops ingest`` and ``finmlops data info`` in a temporary workspace."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from finmlops.cli import app
from finmlops.data import dataset_hash_of, load_snapshot


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FINMLOPS_HOME", str(tmp_path / "ws"))
    return tmp_path / "ws"


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def run_json(*args: str) -> dict[str, Any]:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


def test_ingest_then_info(home: Path) -> None:
    report = run_json("ingest")
    assert report["changed"] and report["version"] == 1 and report["store"] == str(home / "data")
    by_ticker = {t["ticker"]: t for t in report["tickers"]}
    assert sorted(by_ticker) == sorted(load_snapshot())
    assert (by_ticker["AAPL"]["first_date"], by_ticker["AAPL"]["last_date"]) == ("2018-01-02", "2023-12-29")
    expected = dataset_hash_of(load_snapshot(start=date(2018, 1, 1), end=date(2023, 12, 31)))
    assert report["dataset_hash"] == expected

    info = run_json("data", "info", "--verify")
    assert info["dataset_hash"] == expected and info["version"] == 1 and info["verified"]
    assert info["tickers"]["AAPL"]["rows"] == by_ticker["AAPL"]["rows"] == 1509
    assert info["tickers"]["AAPL"]["sha256"] == by_ticker["AAPL"]["sha256"]

    before = files(home / "data")
    again = run_json("ingest")
    assert not again["changed"] and again["version"] == 1 and {t["added_rows"] for t in again["tickers"]} == {0}
    assert files(home / "data") == before

    earlier = run_json("ingest", "--tickers", "aapl", "--start", "2017-01-01")
    assert earlier["version"] == 2 and earlier["tickers"][0]["added_rows"] == 251
    assert earlier["dataset_hash"] != expected

    table = run("data", "info")
    assert table.exit_code == 0 and earlier["dataset_hash"] in table.stdout and "AAPL" in table.stdout


def test_csv_source_bad_file_leaves_store_intact(
    home: Path, tmp_path: Path, q1_2023: dict[str, pd.DataFrame], csv: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run("ingest", "--tickers", "AAPL,MSFT", "--start", "2022-01-01").exit_code == 0
    before = files(home / "data")
    folder = tmp_path / "raw"
    csv.write(folder / "AAPL_raw_2023-01-01_2023-03-31.csv", csv.flattened(q1_2023["AAPL"], "AAPL"))
    lines = csv.lines(q1_2023["MSFT"])
    cells = lines[8].split(",")
    cells[2] = "1.0"  # high below open and close
    lines[8] = ",".join(cells)
    bad = csv.write(folder / "MSFT.csv", lines)

    result = run("ingest", "--source", "csv", "--data-dir", str(folder), "--tickers", "AAPL,MSFT")
    assert result.exit_code == 1
    assert f"{bad}, row 9: rule 'high_bound' failed" in result.stderr
    assert files(home / "data") == before

    # Fixed file, folder from the original system's RAW_DATA_DIR variable, dates from INGESTION_*: new dates only.
    csv.write(bad, csv.lines(q1_2023["MSFT"]))
    monkeypatch.setenv("RAW_DATA_DIR", str(folder))
    monkeypatch.setenv("INGESTION_START_DATE", "2023-01-01")
    monkeypatch.setenv("INGESTION_END_DATE", "2023-12-31")
    report = run_json("ingest", "--source", "csv", "--tickers", "AAPL,MSFT")
    assert [t["added_rows"] for t in report["tickers"]] == [0, 0]  # the snapshot already holds Q1 2023, equal
    assert not report["changed"]


def test_yahoo_offline_fails_cleanly(home: Path) -> None:
    assert run("ingest", "--tickers", "AAPL", "--start", "2023-01-01").exit_code == 0
    before = files(home / "data")
    result = run("ingest", "--source", "yahoo", "--tickers", "FINMLOPS-NO-SUCH-TICKER", "--retries", "1")
    assert result.exit_code == 1
    assert "FINMLOPS-NO-SUCH-TICKER: yfinance returned an empty frame" in result.stderr
    assert "nothing was written" in result.stderr
    assert files(home / "data") == before


def test_usage_and_empty_store_errors(home: Path) -> None:
    result = run("data", "info")
    assert result.exit_code == 1 and "run `finmlops ingest` first" in result.stderr
    assert run("ingest", "--source", "ftp").exit_code == 2
    assert run("ingest", "--start", "2020-02-30").exit_code == 2
    unknown = run("ingest", "--tickers", "AAPL,IBM")
    assert unknown.exit_code == 1 and "available tickers: AAPL" in unknown.stderr
    assert not (home / "data").exists()
