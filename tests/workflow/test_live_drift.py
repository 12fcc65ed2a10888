"""The live loop's drift alarm (``finmlops.monitoring.drift.calibrate_window_drift``, ``window_drift``): calibrated
on a training window, it alarms on about its stated share of days of the same stationary process, and a real
shift of one feature fires it."""

from __future__ import annotations

import numpy as np
import pytest

from finmlops.monitoring.drift import WindowDriftCalibration, calibrate_window_drift, window_drift

WINDOW, TICKERS, FEATURES = 20, 10, 4


def _ar1(rng: np.random.Generator, days: int, phi: float = 0.9) -> np.ndarray:
    """A stationary process ``[days, tickers, features]``: AR(1) per ticker and feature (unit variance), plus a
    common AR(1) factor per feature, so that the days are autocorrelated and the tickers of one day dependent, as
    rolling features of stocks are."""
    x = np.empty((days, TICKERS, FEATURES))
    own, common = rng.standard_normal((TICKERS, FEATURES)), rng.standard_normal(FEATURES)
    noise = np.sqrt(1 - phi**2)
    for t in range(days):
        own = phi * own + noise * rng.standard_normal((TICKERS, FEATURES))
        common = phi * common + noise * rng.standard_normal(FEATURES)
        x[t] = np.sqrt(0.7) * own + np.sqrt(0.3) * common
    return x


def _windows(x: np.ndarray) -> list[np.ndarray]:
    """Non-overlapping ``WINDOW``-day windows of ``x`` as feature rows ``[WINDOW * TICKERS, FEATURES]``."""
    return [x[s : s + WINDOW].reshape(-1, FEATURES) for s in range(0, len(x) - WINDOW + 1, WINDOW)]


def _calibrated(x: np.ndarray, false_alarm: float = 0.05) -> WindowDriftCalibration:
    days = np.repeat(np.arange(len(x)), TICKERS)
    names = [f"f{j}" for j in range(FEATURES)]
    return calibrate_window_drift(x.reshape(-1, FEATURES), days, names, window_days=WINDOW, false_alarm=false_alarm)


def test_the_alarm_rate_on_stationary_data_is_near_the_stated_level_and_a_shift_fires() -> None:
    rates, shifted_rates, old_rule = [], [], []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        x = _ar1(rng, 800 + 2000)
        calibration = _calibrated(x[:800])
        assert 0.03 <= calibration.in_sample_rate <= 0.06  # the training window's own blocks: the stated 5%
        future = _windows(x[800:])
        rates.append(np.mean([window_drift(calibration, w).alarm for w in future]))
        fixed = [sum(p > 0.25 for p in window_drift(calibration, w).psi.values()) >= 3 for w in future]
        old_rule.append(np.mean(fixed))  # the former rule: 3 features with PSI > 0.25
        shift = x[800:].copy()
        shift[..., 2] += 2.0  # one feature moves by two standard deviations
        results = [window_drift(calibration, w) for w in _windows(shift)]
        shifted_rates.append(np.mean(["f2" in r.drifted for r in results]))  # fired, and by the shifted feature
    # 4 x 100 future windows of the process the calibration saw: near 5% (the quantile of ~200 overlapping blocks
    # is itself uncertain, hence the band), and far below what the old fixed rule gave on such data.
    assert 0.02 <= np.mean(rates) <= 0.10, rates
    assert np.mean(shifted_rates) >= 0.9, shifted_rates
    assert np.mean(old_rule) > np.mean(rates), (old_rule, rates)


def test_a_lower_stated_rate_alarms_less_and_bad_windows_are_refused() -> None:
    x = _ar1(np.random.default_rng(11), 800)
    loose, strict = _calibrated(x, 0.2), _calibrated(x, 0.01)
    assert loose.threshold < strict.threshold and loose.in_sample_rate > strict.in_sample_rate
    with pytest.raises(ValueError, match="too few"):
        _calibrated(x[:50])
    with pytest.raises(ValueError, match="finite"):
        y = x[:300].copy()
        y[3, 0, 0] = np.nan
        _calibrated(y)
