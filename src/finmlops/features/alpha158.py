"""The field's standard sets: Qlib's Alpha158 and Krauss, Do & Huck's 31 multi-period returns (``kdh``).

**Alpha158** (Qlib, ``qlib.contrib.data.loader.Alpha158DL``, default config): 9 candlestick ratios (``KMID`` ...
``KSFT2``), 4 price ratios (``OPEN0``, ``HIGH0``, ``LOW0``, ``VWAP0``) and 29 rolling operators over 5, 10, 20, 30
and 60 days (``ROC`` ... ``VSUMD``): 158 columns, named as in Qlib. Qlib's formulas are applied to the
dividend-adjusted ``o, h, l, c`` and split-adjusted volume ``v`` (Qlib's Yahoo data is adjusted the same way).
Where finmlops differs from Qlib (docs/features.md lists it too):

- a window that does not hold ``d`` rows yet is NaN (Qlib's rolling operators use ``min_periods=1`` and fill the
  first rows from partial windows);
- ``VWAP0`` uses the typical price ``(h + l + c) / 3``, because daily Yahoo bars carry no VWAP (Qlib's US data has
  none either, and leaves the column NaN);
- ``RANK`` is the share of the window at or below today's value, ties counted half (pandas' ``rank(pct=True)``);
- ``CORR`` correlates the close with ``log(v)``, not Qlib's ``log(v + 1)``: a correlation ignores the constant that
  a later split adds to ``log(v)``, but not the ``+ 1``, and a split after t must not move a feature at t (the
  rule every finmlops feature keeps, tests/features/test_properties.py). A window with a zero-volume day is NaN.

**kdh**: ``R{m} = c_t / c_{t-m} - 1`` for m = 1..20 and 40, 60, ..., 240 (Krauss, Do & Huck 2017, 31 features).

Every value at row t uses rows t-window+1..t only (``sliding_window_view`` over the ticker's own rows), so neither
set can look ahead; tests/features/test_leakage.py checks it as for every set.

Every operator here works along the last axis: on one ticker's ``[n]`` series or on a panel ``[tickers, rows]``
whose row k holds one ticker's own rows, left-aligned and NaN-padded (``finmlops.features.panel``). Running sums
(``np.cumsum`` along that axis) add in the same order in both layouts, so the panel gives bitwise the per-ticker
values (tests/features/test_panel.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from finmlops.features import indicators  # noqa: F401  # the project's own features are declared first
from finmlops.features.registry import Feature, TickerInputs, declare

ALPHA158 = ("alpha158",)
KDH = ("kdh",)
WINDOWS = (5, 10, 20, 30, 60)
KDH_LAGS = (*range(1, 21), *range(40, 241, 20))
EPS = 1e-12  # Qlib's guard against a zero denominator


def _pad(values: np.ndarray, n: int) -> np.ndarray:
    """Right-align ``values`` ``[..., m]`` (one per complete window) in ``[..., n]``, NaN in front."""
    out = np.full((*values.shape[:-1], n), np.nan)
    m = values.shape[-1]
    if m:
        out[..., n - m :] = values
    return out


def _windows(p: TickerInputs, name: str, x: np.ndarray, d: int) -> np.ndarray:
    """Rolling windows ``[..., n - d + 1, d]`` of series ``x`` ``[..., n]`` (a view, memoised), oldest first."""
    if x.shape[-1] < d:
        return np.empty((*x.shape[:-1], 0, d))
    return p.memo(f"win_{name}_{d}", lambda: sliding_window_view(x, d, axis=-1))


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return a / b


def _lagged(x: np.ndarray, k: int) -> np.ndarray:
    out = np.full_like(x, np.nan)
    out[..., k:] = x[..., :-k]
    return out


def _diff(p: TickerInputs, name: str, x: np.ndarray) -> np.ndarray:
    return p.memo(f"diff_{name}", lambda: x - _lagged(x, 1))


_ORDER_STATS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "max": lambda w: w.max(axis=-1),
    "min": lambda w: w.min(axis=-1),
    "argmax": lambda w: w.argmax(axis=-1),
    "argmin": lambda w: w.argmin(axis=-1),
}


def _rolling(p: TickerInputs, name: str, x: np.ndarray, d: int, stat: str) -> np.ndarray:
    """Order statistic ``stat`` (max, min, argmax, argmin) of each complete window of ``x`` (last axis),
    right-aligned in ``[..., n]``, memoised: for the statistics that have no running-sum form."""
    return p.memo(f"{stat}_{name}_{d}", lambda: _pad(_ORDER_STATS[stat](_windows(p, name, x, d)), x.shape[-1]))


def _quantiles(p: TickerInputs, d: int) -> np.ndarray:
    """The 0.2 and 0.8 quantiles (numpy's linear rule) of each window of the close: ``[2, ..., n]``, one pass."""
    return p.memo(
        f"qtl_c_{d}", lambda: _pad(np.quantile(_windows(p, "c", p.close, d), [0.2, 0.8], axis=-1), p.close.shape[-1])
    )


def _window_sums(x: np.ndarray, d: int) -> np.ndarray:
    """Sum of each trailing window of ``d`` rows, ``[n]``, from one cumulative sum (O(n), not O(n d)); NaN until
    ``d`` rows and for any window that holds a non-finite value."""
    finite = np.isfinite(x)
    n = x.shape[-1]
    sums = np.full(x.shape, np.nan)
    if n >= d:
        zero = np.zeros((*x.shape[:-1], 1))
        cs = np.concatenate([zero, np.cumsum(np.where(finite, x, 0.0), axis=-1)], axis=-1)
        cb = np.concatenate([zero.astype(np.int64), np.cumsum(~finite, axis=-1)], axis=-1)
        sums[..., d - 1 :] = np.where(cb[..., d:] - cb[..., :-d] > 0, np.nan, cs[..., d:] - cs[..., :-d])
    return sums


def _centred(x: np.ndarray) -> np.ndarray:
    """``x`` minus its first finite value, so that sums of squares do not cancel catastrophically. The first value,
    not the mean: a constant taken from the whole series would let later rows move earlier ones by rounding."""
    if x.ndim == 1:
        finite = np.flatnonzero(np.isfinite(x))
        return x - x[finite[0]] if len(finite) else x
    finite = np.isfinite(x)
    first = np.take_along_axis(x, finite.argmax(axis=-1)[..., None], axis=-1)
    return x - np.where(finite.any(axis=-1)[..., None], first, 0.0)


def _sum_of(p: TickerInputs, name: str, x: np.ndarray, d: int) -> np.ndarray:
    return p.memo(f"sum_{name}_{d}", lambda: _window_sums(x, d))


def _mean_of(p: TickerInputs, name: str, x: np.ndarray, d: int) -> np.ndarray:
    return _sum_of(p, name, x, d) / d


def _std_of(p: TickerInputs, name: str, x: np.ndarray, d: int) -> np.ndarray:
    """Sample standard deviation (ddof 1, as Qlib's pandas rolling std) of each trailing window."""

    def compute() -> np.ndarray:
        c = _centred(x)
        s1, s2 = _window_sums(c, d), _window_sums(c * c, d)
        return np.sqrt(np.maximum(s2 - s1 * s1 / d, 0.0) / (d - 1))

    return p.memo(f"std_{name}_{d}", compute)


def _regression_memo(p: TickerInputs, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares line of each trailing window of the close on its day index ``t = 0..d-1``: (slope, R²,
    residual of the last day), ``[n]`` each, from running sums of ``y`` and ``i y`` (``i``: the row number)."""

    def compute() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        y = _centred(p.close)
        i = np.arange(y.shape[-1], dtype=np.float64)
        sy, syy, siy = _window_sums(y, d), _window_sums(y * y, d), _window_sums(i * y, d)
        t_mean = (d - 1) / 2
        first = i - (d - 1)  # row of each window's first day
        sty = siy - (first + t_mean) * sy  # sum over the window of (t - t_mean) y
        sxx = d * (d * d - 1) / 12.0  # sum of (t - t_mean)^2
        slope = sty / sxx
        y_ss = syy - sy * sy / d
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = np.where(y_ss > 0, slope * slope * sxx / y_ss, np.nan)
        resid_last = y - (sy / d + slope * (d - 1 - t_mean))
        return slope, r2, resid_last

    return p.memo(f"reg_close_{d}", compute)


def _corr_of(a: np.ndarray, b: np.ndarray, d: int) -> np.ndarray:
    """Pearson correlation of ``a`` and ``b`` over each trailing window of ``d`` rows, from running sums."""
    a, b = _centred(a), _centred(b)
    sa, sb = _window_sums(a, d), _window_sums(b, d)
    cov = _window_sums(a * b, d) - sa * sb / d
    va, vb = _window_sums(a * a, d) - sa * sa / d, _window_sums(b * b, d) - sb * sb / d
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((va > 0) & (vb > 0), cov / np.sqrt(va * vb), np.nan)


def _rank_last(w: np.ndarray) -> np.ndarray:
    last = w[..., -1:]
    return ((w < last).sum(axis=-1) + 0.5 * ((w == last).sum(axis=-1) - 1) + 1) / w.shape[-1]


def _log_volume(p: TickerInputs) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return p.memo("log_v", lambda: np.log(p.volume))  # -inf on a zero-volume day: its windows are NaN


def _volume_change(p: TickerInputs) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return p.memo("log_dv", lambda: np.log(_div(p.volume, _lagged(p.volume, 1)) + 1.0))


def _abs_ret_volume(p: TickerInputs) -> np.ndarray:
    return p.memo("arv", lambda: np.abs(_div(p.close, _lagged(p.close, 1)) - 1.0) * p.volume)


def _feature(
    name: str, formula: str, window: int, fn: Callable[[TickerInputs], np.ndarray], sets: tuple[str, ...]
) -> None:
    declare(Feature(name=name, formula=formula, window=window, compute=fn), sets)


# --- Alpha158: the candlestick and price ratios --------------------------------------------------------------------

_KBAR: dict[str, tuple[str, Callable[[TickerInputs], np.ndarray]]] = {
    "KMID": ("(c - o) / o", lambda p: _div(p.close - p.open, p.open)),
    "KLEN": ("(h - l) / o", lambda p: _div(p.high - p.low, p.open)),
    "KMID2": ("(c - o) / (h - l + 1e-12)", lambda p: _div(p.close - p.open, p.high - p.low + EPS)),
    "KUP": ("(h - max(o, c)) / o", lambda p: _div(p.high - np.maximum(p.open, p.close), p.open)),
    "KUP2": ("(h - max(o, c)) / (h - l + 1e-12)", lambda p: _div(p.high - np.maximum(p.open, p.close), p.high - p.low + EPS)),
    "KLOW": ("(min(o, c) - l) / o", lambda p: _div(np.minimum(p.open, p.close) - p.low, p.open)),
    "KLOW2": ("(min(o, c) - l) / (h - l + 1e-12)", lambda p: _div(np.minimum(p.open, p.close) - p.low, p.high - p.low + EPS)),
    "KSFT": ("(2c - h - l) / o", lambda p: _div(2 * p.close - p.high - p.low, p.open)),
    "KSFT2": ("(2c - h - l) / (h - l + 1e-12)", lambda p: _div(2 * p.close - p.high - p.low, p.high - p.low + EPS)),
    "OPEN0": ("o / c", lambda p: _div(p.open, p.close)),
    "HIGH0": ("h / c", lambda p: _div(p.high, p.close)),
    "LOW0": ("l / c", lambda p: _div(p.low, p.close)),
    "VWAP0": ("((h + l + c) / 3) / c (typical price: daily bars have no VWAP)", lambda p: _div(p.high + p.low + p.close, 3 * p.close)),
}  # fmt: skip
for _name, (_formula, _fn) in _KBAR.items():
    _feature(_name, _formula, 1, _fn, ALPHA158)


# --- Alpha158: the rolling operators, d in 5, 10, 20, 30, 60 ---------------------------------------------------------


def _rolling_features(d: int) -> dict[str, tuple[str, int, Callable[[TickerInputs], np.ndarray]]]:
    """The 29 rolling features of window ``d``: name -> (formula, rows needed, function)."""

    def close_w(p: TickerInputs) -> np.ndarray:
        return _windows(p, "c", p.close, d)

    def flags(p: TickerInputs, sign: int) -> np.ndarray:
        up = np.where(np.isnan(_diff(p, "c", p.close)), np.nan, (sign * _diff(p, "c", p.close) > 0).astype(float))
        return _mean_of(p, f"up{sign}", up, d)

    def sums(p: TickerInputs, name: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        dx = _diff(p, name, x)
        up = _sum_of(p, f"{name}+", p.memo(f"pos_{name}", lambda: np.maximum(dx, 0)), d)  # NaN stays NaN
        down = _sum_of(p, f"{name}-", p.memo(f"neg_{name}", lambda: np.maximum(-dx, 0)), d)
        total = _sum_of(p, f"{name}|", p.memo(f"abs_{name}", lambda: np.abs(dx)), d) + EPS
        return _div(up, total), _div(down, total), _div(up - down, total)

    c = "c"
    return {
        f"ROC{d}": (f"c[-{d}] / c", d + 1, lambda p: _div(_lagged(p.close, d), p.close)),
        f"MA{d}": (f"mean(c, {d}) / c", d, lambda p: _div(_mean_of(p, c, p.close, d), p.close)),
        f"STD{d}": (f"std(c, {d}) / c", d, lambda p: _div(_std_of(p, c, p.close, d), p.close)),
        f"BETA{d}": (f"slope(c, {d}) / c", d, lambda p: _div(_regression_memo(p, d)[0], p.close)),
        f"RSQR{d}": (f"rsquare(c, {d})", d, lambda p: _regression_memo(p, d)[1]),
        f"RESI{d}": (f"resi(c, {d}) / c", d, lambda p: _div(_regression_memo(p, d)[2], p.close)),
        f"MAX{d}": (f"max(h, {d}) / c", d, lambda p: _div(_rolling(p, "h", p.high, d, "max"), p.close)),
        f"MIN{d}": (f"min(l, {d}) / c", d, lambda p: _div(_rolling(p, "l", p.low, d, "min"), p.close)),
        f"QTLU{d}": (f"quantile(c, {d}, 0.8) / c", d, lambda p: _div(_quantiles(p, d)[1], p.close)),
        f"QTLD{d}": (f"quantile(c, {d}, 0.2) / c", d, lambda p: _div(_quantiles(p, d)[0], p.close)),
        f"RANK{d}": (f"rank of c within its last {d} values, as a fraction", d, lambda p: _pad(_rank_last(close_w(p)), p.close.shape[-1])),
        f"RSV{d}": (
            f"(c - min(l, {d})) / (max(h, {d}) - min(l, {d}) + 1e-12)", d,
            lambda p: _div(
                p.close - _rolling(p, "l", p.low, d, "min"),
                _rolling(p, "h", p.high, d, "max") - _rolling(p, "l", p.low, d, "min") + EPS,
            ),
        ),
        f"IMAX{d}": (f"(argmax(h, {d}) + 1) / {d} (1: the oldest day)", d, lambda p: (_rolling(p, "h", p.high, d, "argmax") + 1) / d),
        f"IMIN{d}": (f"(argmin(l, {d}) + 1) / {d}", d, lambda p: (_rolling(p, "l", p.low, d, "argmin") + 1) / d),
        f"IMXD{d}": (
            f"(argmax(h, {d}) - argmin(l, {d})) / {d}", d,
            lambda p: _rolling(p, "h", p.high, d, "argmax") / d - _rolling(p, "l", p.low, d, "argmin") / d,
        ),
        f"CORR{d}": (f"corr(c, log(v), {d}) (Qlib: log(v + 1))", d, lambda p: _corr_of(p.close, _log_volume(p), d)),
        f"CORD{d}": (
            f"corr(c / c[-1], log(v / v[-1] + 1), {d})", d + 1,
            lambda p: _corr_of(_div(p.close, _lagged(p.close, 1)), _volume_change(p), d),
        ),
        f"CNTP{d}": (f"mean(c > c[-1], {d})", d + 1, lambda p: flags(p, 1)),
        f"CNTN{d}": (f"mean(c < c[-1], {d})", d + 1, lambda p: flags(p, -1)),
        f"CNTD{d}": (f"CNTP{d} - CNTN{d}", d + 1, lambda p: flags(p, 1) - flags(p, -1)),
        f"SUMP{d}": (f"sum(max(c - c[-1], 0), {d}) / (sum(|c - c[-1]|, {d}) + 1e-12)", d + 1, lambda p: sums(p, "c", p.close)[0]),
        f"SUMN{d}": (f"sum(max(c[-1] - c, 0), {d}) / (sum(|c - c[-1]|, {d}) + 1e-12)", d + 1, lambda p: sums(p, "c", p.close)[1]),
        f"SUMD{d}": (f"SUMP{d} - SUMN{d}", d + 1, lambda p: sums(p, "c", p.close)[2]),
        f"VMA{d}": (f"mean(v, {d}) / (v + 1e-12)", d, lambda p: _div(_mean_of(p, "v", p.volume, d), p.volume + EPS)),
        f"VSTD{d}": (f"std(v, {d}) / (v + 1e-12)", d, lambda p: _div(_std_of(p, "v", p.volume, d), p.volume + EPS)),
        f"WVMA{d}": (
            f"std(|c / c[-1] - 1| v, {d}) / (mean(|c / c[-1] - 1| v, {d}) + 1e-12)", d + 1,
            lambda p: _div(_std_of(p, "arv", _abs_ret_volume(p), d), _mean_of(p, "arv", _abs_ret_volume(p), d) + EPS),
        ),
        f"VSUMP{d}": (f"sum(max(v - v[-1], 0), {d}) / (sum(|v - v[-1]|, {d}) + 1e-12)", d + 1, lambda p: sums(p, "v", p.volume)[0]),
        f"VSUMN{d}": (f"sum(max(v[-1] - v, 0), {d}) / (sum(|v - v[-1]|, {d}) + 1e-12)", d + 1, lambda p: sums(p, "v", p.volume)[1]),
        f"VSUMD{d}": (f"VSUMP{d} - VSUMN{d}", d + 1, lambda p: sums(p, "v", p.volume)[2]),
    }  # fmt: skip


_ROLLING_ORDER = (
    "ROC", "MA", "STD", "BETA", "RSQR", "RESI", "MAX", "MIN", "QTLU", "QTLD", "RANK", "RSV", "IMAX", "IMIN", "IMXD",
    "CORR", "CORD", "CNTP", "CNTN", "CNTD", "SUMP", "SUMN", "SUMD", "VMA", "VSTD", "WVMA", "VSUMP", "VSUMN", "VSUMD",
)  # fmt: skip
_BY_WINDOW = {d: _rolling_features(d) for d in WINDOWS}
for _op in _ROLLING_ORDER:  # Qlib's column order: each operator over every window, then the next operator
    for _d in WINDOWS:
        _formula, _window, _fn = _BY_WINDOW[_d][f"{_op}{_d}"]
        _feature(f"{_op}{_d}", _formula, _window, _fn, ALPHA158)


# --- kdh: Krauss, Do & Huck's multi-period returns -------------------------------------------------------------------

for _m in KDH_LAGS:
    _feature(f"R{_m}", f"c / c[-{_m}] - 1", _m + 1, lambda p, m=_m: _div(p.close, _lagged(p.close, m)) - 1.0, KDH)
