"""Named universes: ``snapshot10`` (the bundled ten large caps) and ``sp500`` (443 S&P 500 constituents of April
2021), and ticker files.

The package ships the ``sp500`` *ticker list* (``universes/sp500.txt``, with its source and its survivorship bias in
the header), not its prices: the vendor's terms cover redistribution. Build the same universe with
``finmlops ingest --source yahoo --universe sp500`` (or ``--tickers-file``), or point ``sp500_dir``
(``FINMLOPS_SP500_DIR``) at a folder of its Yahoo-format CSVs, e.g. ``../shared/data/sp500/ohlcv``.

A universe names where its rows come from (:func:`universe_source`): the snapshot, the ``sp500`` folder, or any
folder of ``<TICKER>.csv`` files. Tickers keep their own histories: one that lists late (an IPO, a later addition)
simply has no rows before its first date, and its features are NaN until it has its own warm-up rows.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from pydantic import BaseModel

from finmlops.data.csv_source import find_csv_files
from finmlops.data.errors import DataSourceError
from finmlops.data.snapshot import snapshot_tickers

UNIVERSES: tuple[str, ...] = ("snapshot10", "sp500")
SNAPSHOT_ALIASES = frozenset({"snapshot", "snapshot10"})
SP500_HINT = (
    "the sp500 prices are not shipped (their vendor's terms): download them with `finmlops ingest --source yahoo "
    "--universe sp500 --start 1999-11-01 --end 2021-04-21`, or set sp500_dir (FINMLOPS_SP500_DIR) to a folder of "
    "its Yahoo-format CSVs (<TICKER>.csv; e.g. ../shared/data/sp500/ohlcv)"
)
_TICKER = re.compile(r"^[A-Z0-9][A-Z0-9.\-^=]{0,19}$")


class UniverseSource(BaseModel):
    """Where a universe's rows come from: ``source`` is an ingest source (snapshot or csv), ``data_dir`` the CSV
    folder (None for the snapshot), ``tickers`` the universe's tickers, sorted."""

    name: str
    source: str
    data_dir: Path | None
    tickers: list[str]


def read_tickers_file(path: Path) -> list[str]:
    """Tickers of a file, one per line; ``#`` starts a comment, blank lines are skipped, case is upper-cased.

    A bad symbol or a repeated one is a ``DataSourceError`` naming the file and line.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataSourceError(f"{path}: cannot read the tickers file ({exc.__class__.__name__}: {exc})") from None
    tickers: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        ticker = line.split("#", 1)[0].strip().upper()
        if not ticker:
            continue
        if not _TICKER.match(ticker):
            raise DataSourceError(f"{path}, line {number}: {ticker!r} is not a ticker symbol (one per line)")
        if ticker in seen:
            raise DataSourceError(f"{path}, line {number}: {ticker} repeats line {seen[ticker]}")
        seen[ticker] = number
        tickers.append(ticker)
    if not tickers:
        raise DataSourceError(f"{path}: no tickers in the file (one per line, # for comments)")
    return tickers


def shipped_list(name: str) -> Path:
    """The ticker list that ships for universe ``name`` (``sp500``)."""
    return Path(str(resources.files("finmlops.data") / "universes" / f"{name}.txt"))


def universe_tickers(name: str) -> list[str]:
    """The tickers of a named universe: the snapshot's ten, or the shipped sp500 list (443)."""
    if name in SNAPSHOT_ALIASES:
        return snapshot_tickers()
    if name == "sp500":
        return read_tickers_file(shipped_list("sp500"))
    raise DataSourceError(f"unknown universe {name!r}; choose one of {', '.join(UNIVERSES)}")


def universe_source(universe: str, sp500_dir: Path | None = None) -> UniverseSource:
    """Resolve ``snapshot10`` | ``sp500`` | ``<csv dir>`` to its ingest source, folder and tickers.

    ``sp500`` reads the CSV folder ``sp500_dir``; when it is unset or missing the error says where to get the data.
    A folder's tickers are its ``<TICKER>.csv`` file names.
    """
    if universe in SNAPSHOT_ALIASES:
        return UniverseSource(name="snapshot10", source="snapshot", data_dir=None, tickers=snapshot_tickers())
    if universe == "sp500":
        if sp500_dir is None:
            raise DataSourceError(f"universe sp500: sp500_dir is not set; {SP500_HINT}")
        folder = Path(sp500_dir)
        if not folder.is_dir():
            raise DataSourceError(f"universe sp500: {folder} is not a folder; {SP500_HINT}")
        listed = universe_tickers("sp500")
        found = find_csv_files(folder)
        missing = [t for t in listed if t not in found]
        if missing:
            raise DataSourceError(
                f"universe sp500: {folder} lacks {len(missing)} of its {len(listed)} tickers "
                f"({', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}); {SP500_HINT}"
            )
        return UniverseSource(name="sp500", source="csv", data_dir=folder, tickers=sorted(listed))
    folder = Path(universe).expanduser()
    if not folder.is_dir():
        raise DataSourceError(
            f"universe {universe!r} is neither {' nor '.join(UNIVERSES)} nor a folder of <TICKER>.csv files"
        )
    found = find_csv_files(folder)
    if not found:
        raise DataSourceError(f"universe {universe!r}: no <TICKER>.csv files in {folder}")
    return UniverseSource(name=str(folder), source="csv", data_dir=folder, tickers=sorted(found))
