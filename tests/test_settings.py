from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from finmlops.settings import DEFAULT_TICKERS, SettingsError, load_settings, parse_iso_date


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FINMLOPS_HOME")
    s = load_settings()
    assert s.tickers == list(DEFAULT_TICKERS)
    assert (s.start, s.end) == (date(2018, 1, 1), date(2023, 12, 31))
    assert s.home == Path(".finmlops")
    assert s.tracking_uri == f"sqlite:///{Path('.finmlops').resolve() / 'mlflow.db'}"


def test_yaml_then_env_then_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "finmlops.yaml"
    cfg.write_text("tickers: [aapl, msft]\nstart: 2015-01-01\nseed: 7\n")
    monkeypatch.setenv("FINMLOPS_CONFIG", str(cfg))
    assert load_settings().tickers == ["AAPL", "MSFT"]
    assert load_settings().seed == 7
    monkeypatch.setenv("FINMLOPS_SEED", "11")
    assert load_settings().seed == 11
    assert load_settings(seed=3).seed == 3
    assert load_settings(seed=None).seed == 11  # an unset CLI flag does not override


def test_original_system_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TICKERS", "AAPL, nvda")
    monkeypatch.setenv("INGESTION_START_DATE", "2019-01-02")
    monkeypatch.setenv("INGESTION_END_DATE", "2020-06-30")
    monkeypatch.setenv("RAW_DATA_DIR", str(tmp_path))
    s = load_settings()
    assert s.tickers == ["AAPL", "NVDA"]
    assert (s.start, s.end) == (date(2019, 1, 2), date(2020, 6, 30))
    assert s.raw_data_dir == tmp_path
    monkeypatch.setenv("FINMLOPS_TICKERS", "JPM")  # the finmlops name wins over the original's
    assert load_settings().tickers == ["JPM"]


def test_workspace_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINMLOPS_HOME", str(tmp_path))
    s = load_settings()
    assert s.data_dir == tmp_path / "data"
    assert s.tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_bad_settings_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "finmlops.yaml"
    cfg.write_text("start: 2020-01-01\nend: 2019-01-01\n")
    monkeypatch.setenv("FINMLOPS_CONFIG", str(cfg))
    with pytest.raises(SettingsError, match="before start"):
        load_settings()
    cfg.write_text("tickerz: [AAPL]\n")
    with pytest.raises(SettingsError, match="tickerz"):
        load_settings()
    cfg.write_text("- just\n- a list\n")
    with pytest.raises(SettingsError, match="expected a mapping"):
        load_settings()


@pytest.mark.parametrize(
    ("text", "problem"),
    [(": [\n", r"not valid YAML at line 1, column 1"), ("a: b: c\n", r"not valid YAML at line 1, column 5")],
)
def test_garbage_yaml_is_one_line_naming_the_file(
    text: str, problem: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "finmlops.yaml"
    cfg.write_text(text)
    monkeypatch.setenv("FINMLOPS_CONFIG", str(cfg))
    with pytest.raises(SettingsError, match=rf"^{cfg}: {problem}: [^\n]+$"):
        load_settings()
    monkeypatch.setenv("FINMLOPS_CONFIG", str(tmp_path))
    with pytest.raises(SettingsError, match=r"the settings file is a directory \(FINMLOPS_CONFIG names a YAML file\)"):
        load_settings()


def test_a_workspace_that_is_a_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for home in (tmp_path / "afile", Path("/dev/null")):
        (tmp_path / "afile").touch()
        monkeypatch.setenv("FINMLOPS_HOME", str(home))
        with pytest.raises(SettingsError, match="not a directory") as info:
            load_settings()
        assert info.value.fields[0][0] == "home"  # the field, not the variable's alias


@pytest.mark.parametrize("text", ["03/01/2023", "2023-3-1", "20230301", "2023-03-01T00:00", " ", "2023-02-30"])
def test_dates_are_iso_only(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``03/01/2023`` was read as 1 March by pydantic's lax date parsing."""
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        parse_iso_date(text)
    monkeypatch.setenv("FINMLOPS_START", text)
    with pytest.raises(SettingsError, match="YYYY-MM-DD") as info:
        load_settings()
    assert "pydantic" not in str(info.value) and "http" not in str(info.value)
    assert parse_iso_date("2023-03-01") == load_settings(start="2023-03-01").start == date(2023, 3, 1)


def test_label_horizon_and_threshold(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert (load_settings().horizon, load_settings().threshold) == (1, 0.0)
    cfg = tmp_path / "finmlops.yaml"
    cfg.write_text("horizon: 5\nthreshold: 0.002\n")
    monkeypatch.setenv("FINMLOPS_CONFIG", str(cfg))
    assert (load_settings().horizon, load_settings().threshold) == (5, 0.002)
    monkeypatch.setenv("FINMLOPS_HORIZON", "3")
    assert load_settings().horizon == 3
    assert load_settings(horizon=2).horizon == 2
    with pytest.raises(SettingsError, match="horizon"):
        load_settings(horizon=0)
    with pytest.raises(SettingsError, match="threshold"):
        load_settings(threshold=-0.01)
