"""Time splits on decision dates, with gaps that stop a window or a label from straddling two blocks.

A window ending at decision date t reads feature rows ``t - seq_len + 1 .. t`` and its label reads prices up to
``t + reach`` (``LabelSpec.reach``: entry at t+1, exit ``horizon`` days later). Two blocks separated by at least
``min_gap(seq_len, reach) = seq_len + reach`` trading days therefore share no input row and no label: every split
here enforces that gap, and records it on the fold (``Fold.purge``, ``Fold.embargo``) so that a consumer can
check it against its own label and windows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd


def min_gap(seq_len: int, reach: int) -> int:
    """Smallest allowed gap in trading days between blocks: ``seq_len + reach``."""
    if seq_len < 1 or reach < 1:
        raise ValueError(f"seq_len and reach must be >= 1, got seq_len={seq_len}, reach={reach}")
    return seq_len + reach


def _checked_gap(name: str, gap: int | None, seq_len: int, reach: int) -> int:
    """``gap`` (default the minimum), or a ValueError when it is below ``min_gap(seq_len, reach)``."""
    needed = min_gap(seq_len, reach)
    if gap is None:
        return needed
    if gap < needed:
        raise ValueError(
            f"{name}={gap} trading days is too small: windows of seq_len={seq_len} with reach={reach} need "
            f"at least {needed} (seq_len + reach) so that no input row or label is shared across the gap"
        )
    return gap


def unique_dates(dates: Iterable[Any]) -> np.ndarray:
    """Sorted unique dates as datetime64[ns] ``[n_unique]`` (input may repeat, e.g. one per ticker)."""
    out = np.unique(pd.DatetimeIndex(np.asarray(dates)).to_numpy(dtype="datetime64[ns]"))
    if len(out) == 0:
        raise ValueError("no dates to split")
    return out


@dataclass(frozen=True)
class Fold:
    """One split: unique decision dates of each block (datetime64[ns], ascending); ``val_dates`` may be empty."""

    name: str
    train_dates: np.ndarray
    val_dates: np.ndarray
    test_dates: np.ndarray
    purge: int = 0  # trading days between the training and the validation block
    embargo: int = 0  # trading days between everything the model saw and the test block

    def check_gaps(self, seq_len: int, reach: int) -> None:
        """Raise ``ValueError`` unless the fold's purge and embargo are at least ``min_gap(seq_len, reach)``."""
        needed = min_gap(seq_len, reach)
        for name, gap in (("purge", self.purge if len(self.val_dates) else needed), ("embargo", self.embargo)):
            if gap < needed:
                raise ValueError(
                    f"fold {self.name}: {name} of {gap} trading days is too small for windows of seq_len={seq_len} "
                    f"and a label reaching {reach} days ahead (needs {needed}); build the folds with "
                    f"seq_len >= {seq_len} and reach >= {reach}"
                )

    def masks(self, dates: Iterable[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boolean masks ``[n]`` (train, val, test) over ``dates`` ``[n]``, e.g. ``Windows.dates``."""
        d = pd.DatetimeIndex(np.asarray(dates)).to_numpy(dtype="datetime64[ns]")
        return np.isin(d, self.train_dates), np.isin(d, self.val_dates), np.isin(d, self.test_dates)


def _carve(name: str, history: np.ndarray, test: np.ndarray, n_val: int, purge: int, embargo: int) -> Fold:
    """Fold from the dates before the test block: a validation tail of ``n_val`` dates after a ``purge`` gap."""
    val = history[len(history) - n_val :] if n_val else history[:0]
    train = history[: max(len(history) - n_val - (purge if n_val else 0), 0)]
    if len(train) == 0:
        raise ValueError(
            f"fold {name}: no training dates left before {pd.Timestamp(test[0]).date()} after the gaps "
            f"({len(history)} dates available, {n_val} for validation, purge {purge})"
        )
    return Fold(name, train, val, test, purge, embargo)


def _check_frac(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")


def chronological_split(
    dates: Iterable[Any],
    val_frac: float = 0.15,
    test_frac: float = 0.15,
    gap: int | None = None,
    *,
    seq_len: int,
    reach: int,
) -> Fold:
    """One split: train | gap | val | gap | test, by fractions of the unique dates (val may be empty).

    ``gap`` defaults to, and must be at least, ``min_gap(seq_len, reach)`` trading days.
    """
    _check_frac("val_frac", val_frac)
    _check_frac("test_frac", test_frac)
    gap = _checked_gap("gap", gap, seq_len, reach)
    u = unique_dates(dates)
    n_test = round(len(u) * test_frac)
    if n_test == 0:
        raise ValueError(f"test_frac={test_frac} of {len(u)} dates leaves no test dates")
    history = u[: max(len(u) - n_test - gap, 0)]
    return _carve("holdout", history, u[len(u) - n_test :], round(len(u) * val_frac), gap, gap)


def _test_blocks(u: np.ndarray, test_years: Sequence[int] | None, n_folds: int | None) -> list[tuple[str, int, int]]:
    """(name, start, stop) index ranges of the test blocks in unique dates ``u``."""
    if (test_years is None) == (n_folds is None):
        raise ValueError("give exactly one of test_years (e.g. range(2014, 2024)) or n_folds")
    if test_years is not None:
        years = pd.DatetimeIndex(u).year.to_numpy()
        blocks = []
        for year in test_years:
            where = np.flatnonzero(years == year)
            if len(where) == 0:
                raise ValueError(f"test year {year} has no dates (data spans {years[0]}-{years[-1]})")
            blocks.append((str(year), int(where[0]), int(where[-1]) + 1))
        return blocks
    assert n_folds is not None
    if n_folds < 1:
        raise ValueError(f"n_folds must be >= 1, got {n_folds}")
    # n_folds + 1 equal chunks: the first is the initial training history, the rest are test blocks.
    chunks = np.array_split(np.arange(len(u)), n_folds + 1)
    if any(len(c) == 0 for c in chunks):
        raise ValueError(f"{len(u)} dates are too few for {n_folds} folds")
    return [(f"fold{k}", int(c[0]), int(c[-1]) + 1) for k, c in enumerate(chunks[1:], start=1)]


def walk_forward_folds(
    dates: Iterable[Any],
    *,
    seq_len: int,
    reach: int,
    test_years: Sequence[int] | None = None,
    n_folds: int | None = None,
    mode: Literal["expanding", "rolling"] = "expanding",
    train_years: int | None = None,
    val_frac: float = 0.1,
    purge: int | None = None,
    embargo: int | None = None,
) -> list[Fold]:
    """Walk-forward folds: each fold trains only on dates before its test block.

    Layout of a fold: ``train | purge | val | embargo | test``. ``val`` is the last ``val_frac`` of the dates
    before the test block (for early stopping); ``purge`` separates it from the dates the model fits on, and
    ``embargo`` separates everything the model saw from the test block. Both default to, and must be at least,
    ``min_gap(seq_len, reach)``. Test blocks are calendar years (``test_years``) or ``n_folds`` equal blocks
    after an initial block of the same length. ``mode="expanding"`` trains on all earlier dates;
    ``mode="rolling"`` on the ``train_years`` calendar years before the test block.
    """
    _check_frac("val_frac", val_frac)
    purge = _checked_gap("purge", purge, seq_len, reach)
    embargo = _checked_gap("embargo", embargo, seq_len, reach)
    if mode not in ("expanding", "rolling"):
        raise ValueError(f"mode must be 'expanding' or 'rolling', got {mode!r}")
    if (mode == "rolling") != (train_years is not None):
        raise ValueError("train_years is required with mode='rolling' and only allowed with it")
    u = unique_dates(dates)
    folds = []
    for name, start, stop in _test_blocks(u, test_years, n_folds):
        first = 0
        if train_years is not None:
            first = int(np.searchsorted(u, (pd.Timestamp(u[start]) - pd.DateOffset(years=train_years)).to_datetime64()))
        history = u[first : max(start - embargo, first)]
        folds.append(_carve(name, history, u[start:stop], round(len(history) * val_frac), purge, embargo))
    return folds


def study_period_folds(
    dates: Iterable[Any],
    *,
    seq_len: int,
    reach: int,
    train_days: int = 750,
    trade_days: int = 250,
    val_frac: float = 0.2,
    purge: int | None = None,
    embargo: int | None = None,
) -> list[Fold]:
    """Fischer & Krauss's study periods: ``train_days`` trading days of training, then ``trade_days`` of trading,
    rolled forward by ``trade_days`` so that the trading blocks follow each other without overlap.

    Layout of a fold: ``train | purge | val | embargo | trade``, where ``train | purge | val`` are the
    ``train_days`` dates before the embargo and ``val`` is their last ``val_frac`` (F&K: 20 % for early stopping).
    F&K had no gap; here the purge and embargo default to, and must be at least, ``min_gap(seq_len, reach)``, as
    every split of this module. The first trading block starts after ``train_days + embargo`` dates; a last block
    shorter than ``trade_days`` is kept (named with its length). Folds are named ``sp01``, ``sp02``, ...
    """
    _check_frac("val_frac", val_frac)
    if train_days < 1 or trade_days < 1:
        raise ValueError(f"train_days and trade_days must be >= 1, got {train_days}, {trade_days}")
    purge = _checked_gap("purge", purge, seq_len, reach)
    embargo = _checked_gap("embargo", embargo, seq_len, reach)
    u = unique_dates(dates)
    first = train_days + embargo
    if len(u) <= first:
        raise ValueError(
            f"{len(u)} dates are too few for one study period ({train_days} training + {embargo} embargo + trading)"
        )
    folds = []
    for k, start in enumerate(range(first, len(u), trade_days), start=1):
        history = u[start - embargo - train_days : start - embargo]
        fold = _carve(
            f"sp{k:02d}", history, u[start : start + trade_days], round(train_days * val_frac), purge, embargo
        )
        folds.append(fold)
    return folds
