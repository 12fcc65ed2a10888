"""The circular moving-block bootstrap over dates, as date weights, and the paired test built on it.

A resample of dates is represented by how many times each date was drawn (its weight); a row's weight is its date's
weight. Resampling whole dates keeps the tickers of one day together (they share the market move and are not
independent); resampling contiguous blocks of dates keeps short-range serial dependence inside a block.

:func:`paired_test` is the ONE paired comparison of two models on the same rows: the evaluation's ``vs_baselines``
and the registry's promotion rule both call it, with the same :class:`BootstrapConfig`, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy import stats

from finmlops.stats.comparison import Comparison


def block_bootstrap_weights(n_dates: int, *, n_boot: int, block_len: int, seed: int) -> np.ndarray:
    """Date multiplicities of ``n_boot`` circular moving-block bootstrap resamples, shape ``[n_boot, n_dates]``.

    Each resample concatenates ``ceil(n_dates / block_len)`` blocks of ``block_len`` consecutive dates starting
    at uniform random positions (wrapping around the end, so every date is equally likely), truncated to
    ``n_dates`` dates. Row ``b`` counts how often each date appears in resample ``b``; rows sum to ``n_dates``.
    """
    if n_dates < 1 or n_boot < 1 or block_len < 1:
        raise ValueError(f"need n_dates, n_boot and block_len >= 1, got {n_dates}, {n_boot}, {block_len}")
    block_len = min(block_len, n_dates)
    rng = np.random.default_rng(seed)
    n_blocks = -(-n_dates // block_len)
    starts = rng.integers(0, n_dates, size=(n_boot, n_blocks))
    idx = ((starts[:, :, None] + np.arange(block_len)) % n_dates).reshape(n_boot, -1)[:, :n_dates]
    flat = (idx + np.arange(n_boot)[:, None] * n_dates).ravel()
    return np.bincount(flat, minlength=n_boot * n_dates).reshape(n_boot, n_dates).astype(float)


@dataclass(frozen=True)
class BootstrapConfig:
    """Block bootstrap settings: ``n_boot`` resamples of blocks of ``block_len`` trading days, ``level`` CI.

    ``method="percentile"`` reads the interval off the resamples' quantiles. ``"normal"`` uses the point estimate
    plus or minus z times the resamples' standard deviation: stable at the extreme levels of a Bonferroni
    correction, where a few hundred resamples cannot resolve a 0.1% tail.
    """

    n_boot: int = 1000
    block_len: int = 10
    seed: int = 42
    level: float = 0.95
    method: Literal["percentile", "normal"] = "percentile"

    def weights(self, n_dates: int) -> np.ndarray:
        """``[n_boot, n_dates]`` date weights (:func:`block_bootstrap_weights`)."""
        return block_bootstrap_weights(n_dates, n_boot=self.n_boot, block_len=self.block_len, seed=self.seed)


def interval(samples: np.ndarray, point: float, boot: BootstrapConfig) -> tuple[float, float]:
    """The ``boot.level`` interval of bootstrap ``samples`` ``[n_boot]`` (NaN ones dropped) by ``boot.method``."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return float("nan"), float("nan")
    alpha = (1 - boot.level) / 2
    if boot.method == "normal":
        half = float(stats.norm.ppf(1 - alpha)) * float(finite.std(ddof=1))
        return point - half, point + half
    lo, hi = np.quantile(finite, [alpha, 1 - alpha])
    return float(lo), float(hi)


class PairedTest(BaseModel):
    """Model minus reference mean of a paired per-row quantity (e.g. accuracy: correct_a - correct_b) on ``n_rows``
    shared rows over ``n_dates`` dates, with its block-bootstrap CI and two p-values of H0: difference = ``margin``:
    ``p_value`` two-sided, ``p_value_greater`` one-sided (H1: difference > ``margin``, the promotion rule's)."""

    model_config = ConfigDict(extra="ignore")  # subclasses read files that carry more keys

    difference: float
    ci_low: float
    ci_high: float
    margin: float
    p_value: float
    p_value_greater: float
    n_rows: int
    n_dates: int
    n_boot: int
    block_len: int

    def comparison(
        self, metric: str, reference: str, side: Literal["two-sided", "greater"] = "two-sided"
    ) -> Comparison:
        """The :class:`Comparison` to word this test with (``describe_comparison``), for ``side``'s p-value."""
        p = self.p_value if side == "two-sided" else self.p_value_greater
        return Comparison(metric=metric, reference=reference, difference=self.difference, p_value=p, side=side)


def paired_test(diff: np.ndarray, date_idx: np.ndarray, boot: BootstrapConfig, *, margin: float = 0.0) -> PairedTest:
    """Paired block-bootstrap test of the mean of ``diff`` ``[n]`` (per row: model minus reference), rows on dates
    ``date_idx`` ``[n]`` (0 .. n_dates - 1, in date order).

    Each resample's difference is sum(date weight x diff) / sum(date weight x rows). The p-values are null-centred:
    the resamples shifted to H0 (difference = ``margin``), with the +1 correction so that none is 0:
    two-sided = (1 + #{|d* - d| >= |d - margin|}) / (1 + n_boot), greater = (1 + #{d* - d >= d - margin}) / (...).
    """
    diff = np.asarray(diff, dtype=float)
    date_idx = np.asarray(date_idx)
    if diff.size == 0:
        raise ValueError("no shared rows to compare")
    n_dates = int(date_idx.max()) + 1
    diff_sum = np.bincount(date_idx, diff, n_dates)
    count = np.bincount(date_idx, minlength=n_dates).astype(float)
    return paired_test_of_dates(diff_sum, count, boot, margin=margin)


def paired_test_of_dates(
    diff_sum: np.ndarray, count: np.ndarray, boot: BootstrapConfig, *, margin: float = 0.0
) -> PairedTest:
    """:func:`paired_test` from per-date aggregates: ``diff_sum`` ``[n_dates]``, each date's sum of the per-row
    differences, and ``count`` ``[n_dates]``, its rows (dates in order; a date may have none)."""
    diff_sum, count = np.asarray(diff_sum, dtype=float), np.asarray(count, dtype=float)
    if count.sum() <= 0:
        raise ValueError("no shared rows to compare")
    n_dates = len(count)
    observed = float(diff_sum.sum() / count.sum())
    weights = boot.weights(n_dates)
    draws = (weights @ diff_sum) / (weights @ count)
    lo, hi = interval(draws, observed, boot)
    centred, distance = draws - observed, observed - margin
    return PairedTest(
        difference=observed,
        ci_low=lo,
        ci_high=hi,
        margin=margin,
        p_value=(int((np.abs(centred) >= abs(distance)).sum()) + 1) / (len(draws) + 1),
        p_value_greater=(int((centred >= distance).sum()) + 1) / (len(draws) + 1),
        n_rows=int(count.sum()),
        n_dates=n_dates,
        n_boot=boot.n_boot,
        block_len=min(boot.block_len, n_dates),
    )
