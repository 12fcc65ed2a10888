"""Saved feature frames (atomic, hash-checked), the `finmlops features` command and the generated docs."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from finmlops.cli import app
from finmlops.data import DataStore, load_snapshot
from finmlops.features import compute_features, feature_names, load_features, save_features
from finmlops.features.docs import render_markdown
from finmlops.settings import load_settings

runner = CliRunner()


def test_save_load_round_trip(small_universe: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    frame = compute_features(small_universe, "basic")
    meta = save_features(frame, "basic", tmp_path, data_hash="abc", seed=1)
    loaded, meta2 = load_features(tmp_path, "basic")
    pd.testing.assert_frame_equal(loaded, frame)
    assert meta2 == json.loads(json.dumps(meta))
    assert meta["feature_names"] == feature_names("basic") and meta["rows"] == len(frame)
    assert meta["provenance"]["data_hash"] == "abc" and meta["start"] == "2010-03-01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["basic.json", "basic.parquet"]


def test_failed_write_keeps_old_files_and_tampering_is_caught(
    small_universe: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    frame = compute_features(small_universe, "basic")
    save_features(frame, "basic", tmp_path, data_hash="old")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    broken = frame.astype(object)
    broken.iloc[0, 0] = object()  # pyarrow cannot serialise this: the write fails halfway
    with pytest.raises(Exception, match="object"):
        save_features(broken, "basic", tmp_path, data_hash="new")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temporaries left either
    with pytest.raises(ValueError, match="do not match feature set"):
        save_features(frame.iloc[:, :3], "basic", tmp_path, data_hash="new")
    (tmp_path / "basic.parquet").write_bytes(before["basic.parquet"][:-10] + b"0123456789")
    with pytest.raises(ValueError, match="does not match file_sha256"):
        load_features(tmp_path, "basic")
    with pytest.raises(FileNotFoundError, match="finmlops features --set advanced"):
        load_features(tmp_path, "advanced")


def test_cli_computes_from_the_store() -> None:
    settings = load_settings()
    store = DataStore(settings.data_dir)
    store.write(load_snapshot(["AAPL", "XOM"], start=date(2022, 1, 1), end=date(2023, 12, 31)), "snapshot")
    result = runner.invoke(app, ["features", "--set", "advanced", "--json"])
    assert result.exit_code == 0, result.output
    meta = json.loads(result.stdout)
    assert meta["data_hash"] == store.dataset_hash and meta["tickers"] == ["AAPL", "XOM"]
    frame, _ = load_features(settings.features_dir, "advanced")
    expected = compute_features(store.read(), "advanced")
    np.testing.assert_array_equal(frame.to_numpy(), expected.to_numpy())


def test_cli_errors_and_listing() -> None:
    missing = runner.invoke(app, ["features", "--set", "basic"])
    assert missing.exit_code == 1 and "finmlops ingest" in missing.output
    assert runner.invoke(app, ["features", "--set", "nope"]).exit_code == 2
    listed = runner.invoke(app, ["features", "--list", "--set", "enhanced", "--json"])
    assert listed.exit_code == 0
    assert [r["name"] for r in json.loads(listed.stdout)] == feature_names("enhanced")
    table = runner.invoke(app, ["features", "--list"])
    assert table.exit_code == 0 and "market_beta_20" in table.output


def test_docs_match_the_registry() -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "features.md"
    assert doc.read_text() == render_markdown(), "regenerate: python -m finmlops.features.docs docs/features.md"
    # The deviations table has a row for each renamed-unit feature, with the registry's own formula text.
    assert "## Where definitions differ from the issue/TA-Lib" in doc.read_text()
    assert "| `obv` | On-Balance Volume" in doc.read_text() and "| `price_volume` | close x volume" in doc.read_text()


def test_ingest_then_features_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The two commands a user runs first, in a fresh workspace: the features record the ingested data's hash."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FINMLOPS_HOME", str(tmp_path / "ws"))
    ingested = runner.invoke(app, ["ingest", "--tickers", "AAPL,MSFT", "--json"])
    assert ingested.exit_code == 0, ingested.output
    report = json.loads(ingested.stdout)
    assert [t["ticker"] for t in report["tickers"]] == ["AAPL", "MSFT"] and report["changed"]
    computed = runner.invoke(app, ["features", "--set", "advanced", "--json"])
    assert computed.exit_code == 0, computed.output
    meta = json.loads(computed.stdout)
    assert meta["data_hash"] == report["dataset_hash"]
    assert meta["provenance"]["data_hash"] == report["dataset_hash"]
    assert meta["tickers"] == ["AAPL", "MSFT"] and meta["feature_names"] == feature_names("advanced")
    assert Path(meta["path"]) == tmp_path / "ws" / "features" / "advanced.parquet"
    saved = json.loads((tmp_path / "ws" / "features" / "advanced.json").read_text())
    assert saved["data_hash"] == report["dataset_hash"]
    frame, _ = load_features(tmp_path / "ws" / "features", "advanced")
    assert len(frame) == meta["rows"] == sum(t["rows"] for t in report["tickers"])
