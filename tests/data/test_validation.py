"""Every validation rule, on CSV files (errors name file, line and rule) and on in-memory frames (name the date)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finmlops.data import DataValidationError, parse_ohlcv_csv, validate_ohlcv
from finmlops.data.validation import BOUND_REL_TOL

# (rule, 1-based CSV line, column, new cell). Columns: 0 Date, 1 Open, 2 High, 3 Low, 4 Close, 5 Adj Close, 6 Volume.
CELL_EDITS = [
    ("nan", 6, 4, ""),
    ("dtype", 6, 1, "12.5x"),
    ("dtype", 8, 6, "100.5"),  # a fractional share volume
    ("date_format", 10, 0, "2023-13-45"),
    ("positive_price", 4, 5, "-1.0"),
    ("high_bound", 9, 2, "1.0"),
    ("low_bound", 9, 3, "10000.0"),
    ("volume_negative", 12, 6, "-5"),
]


def _check_csv_error(path: Path, rule: str, line: int) -> None:
    with pytest.raises(DataValidationError) as info:
        raw = parse_ohlcv_csv(path)
        validate_ohlcv(raw.frame, raw.source, raw.rows)
    err = info.value
    assert (err.source, err.row, err.rule) == (str(path), line, rule)
    assert str(path) in str(err) and f"row {line}" in str(err) and rule in str(err)


@pytest.mark.parametrize(("rule", "line", "column", "cell"), CELL_EDITS)
def test_each_cell_rule_names_file_line_and_rule(
    rule: str, line: int, column: int, cell: str, aapl: pd.DataFrame, tmp_path: Path, csv: Any
) -> None:
    lines = csv.lines(aapl)
    cells = lines[line - 1].split(",")
    cells[column] = cell
    lines[line - 1] = ",".join(cells)
    _check_csv_error(csv.write(tmp_path / "AAPL.csv", lines), rule, line)


def test_duplicate_and_unordered_dates_name_the_line(aapl: pd.DataFrame, tmp_path: Path, csv: Any) -> None:
    lines = csv.lines(aapl)
    _check_csv_error(csv.write(tmp_path / "dup" / "AAPL.csv", [*lines[:6], lines[5], *lines[6:]]), "duplicate_date", 7)
    swapped = [*lines[:5], lines[6], lines[5], *lines[7:]]
    _check_csv_error(csv.write(tmp_path / "order" / "AAPL.csv", swapped), "date_order", 7)


def test_clean_file_passes_and_keeps_values(aapl: pd.DataFrame, tmp_path: Path, csv: Any) -> None:
    raw = parse_ohlcv_csv(csv.write(tmp_path / "AAPL.csv", csv.lines(aapl)))
    assert validate_ohlcv(raw.frame, raw.source, raw.rows) == []
    pd.testing.assert_frame_equal(raw.frame, aapl)
    assert raw.rows == list(range(2, len(aapl) + 2))


def test_schema_errors_name_the_header(aapl: pd.DataFrame, tmp_path: Path, csv: Any) -> None:
    lines = csv.lines(aapl)
    lines[0] = lines[0].replace(",Adj Close", "")
    lines[1:] = [line.rsplit(",", 2)[0] + "," + line.rsplit(",", 1)[1] for line in lines[1:]]
    path = csv.write(tmp_path / "AAPL.csv", lines)
    with pytest.raises(DataValidationError, match=r"missing columns \['adj_close'\]") as info:
        parse_ohlcv_csv(path)
    assert (info.value.row, info.value.rule) == (1, "schema")


def test_header_only_is_empty(tmp_path: Path, csv: Any) -> None:
    raw = parse_ohlcv_csv(csv.write(tmp_path / "AAPL.csv", ["Date,Open,High,Low,Close,Adj Close,Volume"]))
    with pytest.raises(DataValidationError) as info:
        validate_ohlcv(raw.frame, raw.source, raw.rows)
    assert info.value.rule == "empty"


def test_in_memory_rows_are_named_by_date(aapl: pd.DataFrame) -> None:
    aapl.iloc[4, aapl.columns.get_loc("low")] = aapl["high"].iloc[4] * 2
    with pytest.raises(DataValidationError) as info:
        validate_ohlcv(aapl, "feed:AAPL")
    assert (info.value.source, info.value.row, info.value.rule) == ("feed:AAPL", "2023-01-09", "low_bound")


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda f: f.rename_axis("Date"), "index must be named 'date'"),
        (lambda f: f.tz_localize("America/New_York"), "tz-naive"),
        (lambda f: f.reset_index(), "DatetimeIndex"),
        (lambda f: f.astype({"volume": "float64"}), "volume must be int64"),
        (lambda f: f[["open", "high", "low", "close", "volume", "adj_close"]], "columns must be"),
        (lambda f: f.assign(extra=1.0), r"unexpected \['extra'\]"),
    ],
)
def test_frame_schema_and_dtypes(aapl: pd.DataFrame, mutate, expected: str) -> None:
    with pytest.raises(DataValidationError, match=expected) as info:
        validate_ohlcv(mutate(aapl), "mem")
    assert info.value.rule in {"schema", "dtype"}


def test_bounds_allow_float_noise_only(aapl: pd.DataFrame) -> None:
    top = np.maximum(aapl["open"], aapl["close"]).iloc[3]
    aapl.iloc[3, aapl.columns.get_loc("high")] = top * (1 - BOUND_REL_TOL / 10)
    assert validate_ohlcv(aapl, "mem") == []
    aapl.iloc[3, aapl.columns.get_loc("high")] = top * (1 - 1e-6)
    with pytest.raises(DataValidationError, match="high_bound"):
        validate_ohlcv(aapl, "mem")


def test_infinite_price_is_rejected(aapl: pd.DataFrame) -> None:
    aapl.iloc[2, aapl.columns.get_loc("close")] = np.inf
    with pytest.raises(DataValidationError) as info:
        validate_ohlcv(aapl, "mem")
    assert (info.value.rule, info.value.row) == ("nan", "2023-01-05")
    assert "(inf)" in str(info.value) and "np.float64" not in str(info.value)


def test_nan_message_shows_a_plain_float(aapl: pd.DataFrame) -> None:
    aapl.iloc[4, aapl.columns.get_loc("open")] = np.nan
    with pytest.raises(DataValidationError, match=r"open is missing or not finite \(nan\)") as info:
        validate_ohlcv(aapl, "mem")
    assert "np.float64" not in str(info.value)


def test_long_gap_is_a_warning_not_an_error(aapl: pd.DataFrame) -> None:
    # 2023-01-10 .. 2023-01-18 removed: 6 trading days, but 7 Mon-Fri business days, as the count includes the
    # exchange holiday on the 16th (Martin Luther King Jr. Day); the message says so.
    gap = aapl.drop(aapl.loc["2023-01-10":"2023-01-18"].index)
    warnings = validate_ohlcv(gap, "mem")
    assert len(warnings) == 1
    assert "2023-01-09" in warnings[0] and "2023-01-19" in warnings[0] and "7 business days" in warnings[0]
    assert "exchange holidays included" in warnings[0]
    short = aapl.drop(aapl.loc["2023-01-10":"2023-01-13"].index)  # 4 business days (+ the holiday) missing
    assert validate_ohlcv(short, "mem") == []


# ---- properties on random valid frames ---------------------------------------------------------------------------


@st.composite
def ohlcv_frames(draw: st.DrawFn, min_rows: int = 1) -> pd.DataFrame:
    n = draw(st.integers(min_rows, 25))
    steps = draw(st.lists(st.integers(1, 4), min_size=n, max_size=n))
    dates = pd.Timestamp("2015-01-02") + pd.to_timedelta(np.cumsum(steps), unit="D")
    price = st.floats(0.01, 1e5, allow_nan=False)
    frac = st.floats(0.0, 0.9, allow_nan=False)
    o = np.array(draw(st.lists(price, min_size=n, max_size=n)))
    c = np.array(draw(st.lists(price, min_size=n, max_size=n)))
    up = np.array(draw(st.lists(frac, min_size=n, max_size=n)))
    down = np.array(draw(st.lists(frac, min_size=n, max_size=n)))
    volume = np.array(draw(st.lists(st.integers(0, 10**12), min_size=n, max_size=n)), dtype=np.int64)
    return pd.DataFrame(
        {
            "open": o,
            "high": np.maximum(o, c) * (1 + up),
            "low": np.minimum(o, c) * (1 - down),
            "close": c,
            "adj_close": c * (1 - down / 2),
            "volume": volume,
        },
        index=pd.DatetimeIndex(dates, name="date"),
    )


@settings(max_examples=60, deadline=None)
@given(ohlcv_frames())
def test_random_valid_frames_pass(frame: pd.DataFrame) -> None:
    """Valid frames raise nothing; the only warning they can get is for their zero-volume days (business days in
    a row: no gap)."""
    halted = int((frame["volume"] == 0).sum())
    expected = [f"mem: {halted} day(s) with zero volume"] if halted else []
    assert [w.split(" (")[0] for w in validate_ohlcv(frame, "mem")] == expected


def _corrupt(frame: pd.DataFrame, i: int, kind: str) -> pd.DataFrame:
    f = frame.copy()
    top, bottom = max(f["open"].iloc[i], f["close"].iloc[i]), min(f["open"].iloc[i], f["close"].iloc[i])
    if kind == "nan":
        f.iloc[i, f.columns.get_loc("open")] = np.nan
    elif kind == "positive_price":
        f.iloc[i, f.columns.get_loc("adj_close")] = -f["adj_close"].iloc[i]
    elif kind == "high_bound":
        f.iloc[i, f.columns.get_loc("high")] = top * 0.5
    elif kind == "low_bound":
        f.iloc[i, f.columns.get_loc("low")] = bottom * 1.5
    elif kind == "volume_negative":
        f.iloc[i, f.columns.get_loc("volume")] = -1 - f["volume"].iloc[i]
    elif kind == "duplicate_date":
        f.index = pd.DatetimeIndex([*f.index[:i], f.index[i - 1], *f.index[i + 1 :]], name="date")
    return f


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ohlcv_frames(min_rows=2),
    st.data(),
    st.sampled_from(["nan", "positive_price", "high_bound", "low_bound", "volume_negative", "duplicate_date"]),
)
def test_random_corruption_is_caught_with_its_rule(frame: pd.DataFrame, data: st.DataObject, kind: str) -> None:
    i = data.draw(st.integers(1, len(frame) - 1))
    corrupted = _corrupt(frame, i, kind)
    with pytest.raises(DataValidationError) as info:
        validate_ohlcv(corrupted, "mem")
    assert info.value.rule == kind
    assert info.value.row == corrupted.index[i].date().isoformat()


def test_zero_volume_days_are_a_warning_that_names_them(aapl: pd.DataFrame) -> None:
    """A halted day is a valid bar, but its volume features are undefined: the ingest says which days."""
    assert validate_ohlcv(aapl, "mem") == []
    halted = aapl.copy()
    halted.iloc[[3, 4, 10, 11, 12, 13, 14], halted.columns.get_loc("volume")] = 0
    (warning,) = validate_ohlcv(halted, "mem")
    days = [d.date().isoformat() for d in aapl.index[[3, 4, 10, 11, 12]]]
    assert warning.startswith(f"mem: 7 day(s) with zero volume ({', '.join(days)} and 2 more)")
    assert "left out of training and refused by the server" in warning
