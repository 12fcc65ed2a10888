"""Honest baselines, scored on exactly the same windows as the deep variants.

A deep model is only worth its cost if it beats these: the majority class, yesterday's direction (momentum), and
logistic regression and LightGBM on the last day's features.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from finmlops.models.base import WindowsLike, check_windows

BASELINES: tuple[str, ...] = ("majority", "momentum", "logistic", "lightgbm")
"""The default baselines of every walk-forward."""
ALL_BASELINES: tuple[str, ...] = (*BASELINES, "random", "reversal")
"""Every baseline ``make_baseline`` builds: the defaults, a seeded random score and 1-day reversal."""


def _labels(windows: WindowsLike, what: str) -> np.ndarray:
    check_windows(windows, what)
    y = np.asarray(windows.y, dtype=np.float64)
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"{what}: labels must be 0 or 1")
    return y


def _last_day(windows: WindowsLike) -> np.ndarray:
    """The decision day's features, ``[n, n_features]`` float64."""
    return np.asarray(windows.X[:, -1, :], dtype=np.float64)


class MajorityBaseline:
    """Always the training set's up-rate: its argmax is the majority class of the training labels."""

    name = "majority"

    def __init__(self) -> None:
        self.p_up: float | None = None

    def fit(self, train: WindowsLike, val: WindowsLike) -> MajorityBaseline:
        self.p_up = float(_labels(train, "train").mean())
        return self

    def predict_proba(self, windows: WindowsLike) -> np.ndarray:
        if self.p_up is None:
            raise RuntimeError("majority baseline used before fit")
        return np.full(len(windows.dates), self.p_up)


class MomentumBaseline:
    """Yesterday's direction: P(up) = 1 when the ticker's ``adj_close`` rose from t-1 to t, else 0.

    Read from the price data itself (not from any feature column), so it works with every feature set.
    """

    name = "momentum"

    def __init__(self, universe: Mapping[str, pd.DataFrame]) -> None:
        self._returns = _last_returns(universe)

    def fit(self, train: WindowsLike, val: WindowsLike) -> MomentumBaseline:
        return self

    def predict_proba(self, windows: WindowsLike) -> np.ndarray:
        return (_returns_at(self._returns, windows, self.name) > 0).astype(np.float64)


class LogisticBaseline:
    """Standardised L2 logistic regression on the last day's features (scaler fit on the training windows)."""

    name = "logistic"

    def __init__(self, seed: int = 0) -> None:
        from sklearn.linear_model import LogisticRegression  # deferred: scipy, sklearn
        from sklearn.pipeline import make_pipeline  # deferred: scipy, sklearn
        from sklearn.preprocessing import StandardScaler  # deferred: scipy, sklearn

        self.model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000, random_state=seed))

    def fit(self, train: WindowsLike, val: WindowsLike) -> LogisticBaseline:
        y = _labels(train, "train")
        if len(np.unique(y)) < 2:
            raise ValueError("train: logistic regression needs both classes in the training labels")
        self.model.fit(_last_day(train), y.astype(int))
        return self

    def predict_proba(self, windows: WindowsLike) -> np.ndarray:
        return self.model.predict_proba(_last_day(windows))[:, 1]


class LightGBMBaseline:
    """Gradient-boosted trees on the last day's features; deterministic, early-stopped on the validation windows.

    Shallow trees, strong row/column subsampling and a large leaf minimum: daily direction is mostly noise.
    """

    name = "lightgbm"

    def __init__(self, seed: int = 0, threads: int = 1, n_estimators: int = 400, patience: int = 30) -> None:
        import lightgbm as lgb  # deferred: lightgbm, scipy, sklearn

        self.patience = patience
        self.model = lgb.LGBMClassifier(
            n_estimators=n_estimators, learning_rate=0.03, num_leaves=15, min_child_samples=100,
            subsample=0.8, subsample_freq=1, colsample_bytree=0.8, reg_lambda=1.0,
            n_jobs=threads, random_state=seed, deterministic=True, force_row_wise=True, verbose=-1,
        )  # fmt: skip

    def fit(self, train: WindowsLike, val: WindowsLike) -> LightGBMBaseline:
        import lightgbm as lgb  # deferred: lightgbm, scipy, sklearn

        y = _labels(train, "train").astype(int)
        y_val = _labels(val, "val").astype(int)
        self.model.fit(
            _last_day(train), y, eval_X=(_last_day(val),), eval_y=(y_val,), eval_metric="binary_logloss",
            callbacks=[lgb.early_stopping(self.patience, verbose=False)],
        )  # fmt: skip
        return self

    def predict_proba(self, windows: WindowsLike) -> np.ndarray:
        return self.model.predict_proba(_last_day(windows))[:, 1]


def _last_returns(universe: Mapping[str, pd.DataFrame]) -> pd.Series:
    """``adj_close_t / adj_close_{t-1} - 1`` on each ticker's own previous row, indexed by ``(date, ticker)``."""
    returns = {str(t).upper(): frame["adj_close"].pct_change(fill_method=None) for t, frame in universe.items()}
    return pd.concat(returns, names=["ticker", "date"]).swaplevel().sort_index()


def _returns_at(returns: pd.Series, windows: WindowsLike, model: str) -> np.ndarray:
    """The return from t-1 to t of each window's ticker on its date, shape ``(n_windows,)``; a window without one
    (a date missing from the universe, or a ticker's first row) is an error that names it."""
    keys = pd.MultiIndex.from_arrays([pd.DatetimeIndex(windows.dates), np.asarray(windows.tickers)])
    ret = returns.reindex(keys).to_numpy()
    if np.isnan(ret).any():
        i = int(np.flatnonzero(np.isnan(ret))[0])
        raise ValueError(
            f"{model}: no return from t-1 to t for {keys[i][1]} on {keys[i][0].date()} "
            "(date missing from the universe or first row of the ticker)"
        )
    return ret


class RandomBaseline:
    """A seeded uniform score in [0, 1) per window, ignoring every input: what any IC or long-short figure is
    worth by chance. The same seed and windows give the same scores."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, train: WindowsLike, val: WindowsLike) -> RandomBaseline:
        return self

    def predict_proba(self, windows: WindowsLike) -> np.ndarray:
        return np.random.default_rng(self.seed).random(len(windows.dates))


class ReversalBaseline:
    """1-day reversal, Fischer & Krauss's simple rule: buy yesterday's losers. The score is ``0.5 - r`` clipped to
    [0, 1], ``r`` the ticker's return from t-1 to t (``adj_close``), so it ranks exactly as ``-r`` (and its
    Pearson IC is that of ``-r``) unless a day moved by more than 50 %; above 0.5 means the stock fell."""

    name = "reversal"

    def __init__(self, universe: Mapping[str, pd.DataFrame]) -> None:
        self._returns = _last_returns(universe)

    def fit(self, train: WindowsLike, val: WindowsLike) -> ReversalBaseline:
        return self

    def predict_proba(self, windows: WindowsLike) -> np.ndarray:
        return np.clip(0.5 - _returns_at(self._returns, windows, self.name), 0.0, 1.0)


def make_baseline(
    name: str, *, universe: Mapping[str, pd.DataFrame] | None = None, seed: int = 0, threads: int = 1
) -> MajorityBaseline | MomentumBaseline | LogisticBaseline | LightGBMBaseline | RandomBaseline | ReversalBaseline:
    """A fresh, unfitted baseline by name (``momentum`` and ``reversal`` need the ``universe`` whose prices they
    read)."""
    if name == "majority":
        return MajorityBaseline()
    if name in ("momentum", "reversal"):
        if universe is None:
            raise ValueError(f"the {name} baseline needs the universe (it reads adj_close)")
        return MomentumBaseline(universe) if name == "momentum" else ReversalBaseline(universe)
    if name == "random":
        return RandomBaseline(seed=seed)
    if name == "logistic":
        return LogisticBaseline(seed=seed)
    if name == "lightgbm":
        return LightGBMBaseline(seed=seed, threads=threads)
    raise KeyError(f"unknown baseline {name!r}; known: {', '.join(ALL_BASELINES)}")
