"""Leakage audit: run the pipeline on markets whose answer is known and check that it reports that answer.

Scenarios (see docs/evaluation.md):

* ``random_walk``: geometric Brownian motion with zero log-drift, so P(up) = 0.5 and nothing is predictable.
* ``shuffled``: the real snapshot's daily bars put in a random order per ticker; each day's direction is then a
  random draw independent of the past (the label-shuffle control, done on prices so the pipeline is unchanged).
* ``permuted_labels``: the literal label-shuffle control on the real snapshot: real features and windows, the
  labels permuted among the tickers of each date (:func:`permute_labels`), so they keep each date's share of up
  days and lose every link to the features.
* ``planted``: the sign of each daily return repeats the previous day's sign with probability ``q``; magnitudes are
  i.i.d. The best forecast of any label then depends on the past only through today's sign, and the Bayes
  accuracy of the label (:func:`bayes_accuracy`) follows: for the default label, the direction of the move from
  the close of t+1 to the close of t+2, it is ``(1 + (2q - 1)^2) / 2`` (0.58 at q = 0.7).
* ``leak``: the original system's flaw, a feature derived from the label (``target_class``), must be flagged by
  :func:`future_dependence` and by an accuracy above the planted Bayes rate.

Every scenario uses the label under audit (``AuditConfig.label``, a ``finmlops.features.LabelSpec``) and every
walk-forward fit goes through ``finmlops.training.cross_val_predict``.

A model "finds no signal" when its accuracy and AUC confidence intervals contain 0.5; it "recovers" the planted
signal when its accuracy CI contains the Bayes rate; it "leaks" when its accuracy CI lies above the Bayes rate.
CIs are Bonferroni-corrected over every check of the audit, so an honest pipeline fails by chance < 5 % of runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field, SerializerFunctionWrapHandler, model_serializer

from finmlops.evaluation.metrics import (
    BootstrapConfig,
    metrics_with_ci,
    prepare,
    validate_predictions,
    within_date_auc,
)
from finmlops.evaluation.results import Estimate, Metrics, Result, read_result
from finmlops.features import LabelSpec, Windows, forward_return, make_target, make_windows, walk_forward_folds

Universe = Mapping[str, pd.DataFrame]
FeatureFn = Callable[[Universe], pd.DataFrame]
LabelTransform = Callable[[pd.Series], pd.Series]
Predictor = Callable[[Universe], pd.DataFrame]
"""A universe in, a predictions frame (``docs/architecture.md``) out: the pipeline under audit."""
PredictorFactory = Callable[[list[int], LabelTransform | None], Predictor]
"""``(test_years, label_transform)`` to the pipeline under audit, which applies ``label_transform`` (if not None)
to its label series ``make_target(universe, label)`` before training and scoring."""

LEAK_FEATURE = "target_class"
# Models that by construction cannot use the past; they are exempt from "must recover the planted signal".
NO_SIGNAL_MODELS: tuple[str, ...] = ("majority",)


def _bars(
    rng: np.random.Generator, log_ret: np.ndarray, daily_vol: float, start: str, ticker_price: float
) -> pd.DataFrame:
    """A valid OHLCV frame whose log close-to-close returns are ``log_ret`` (shape ``[n_days]``).

    The day's move is split into an overnight gap (a fifth of its variance, a Brownian-bridge draw) and the
    session; the high and low extend beyond max/min(open, close) by half-normal amounts, so
    ``low <= min(open, close) <= max(open, close) <= high`` always holds. ``adj_close == close`` (no dividends).
    """
    n = len(log_ret)
    close = ticker_price * np.exp(np.cumsum(log_ret))
    prev = np.concatenate([[ticker_price], close[:-1]])
    # Bridge: given the day's total move r, the gap is N(0.2 r, 0.16 var), so the close path stays exact.
    gap = 0.2 * log_ret + rng.normal(0.0, 0.4 * daily_vol, n)
    open_ = prev * np.exp(gap)
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.5 * daily_vol, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.5 * daily_vol, n)))
    volume = np.round(np.exp(rng.normal(np.log(1e7), 0.3, n))).astype(np.int64)
    index = pd.DatetimeIndex(pd.bdate_range(start, periods=n), name="date")
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "adj_close": close, "volume": volume}, index=index
    )


def snapshot_volatility(universe: Universe) -> dict[str, float]:
    """Each ticker's daily standard deviation of log ``adj_close`` returns."""
    return {t: float(np.log(f["adj_close"]).diff().std()) for t, f in universe.items()}


def simulate_random_walk(
    daily_vols: Sequence[float], n_days: int, *, seed: int, start: str = "2010-01-04"
) -> dict[str, pd.DataFrame]:
    """One GBM ticker per entry of ``daily_vols`` (``SYN00``, ``SYN01``, ...), zero log-drift, ``n_days`` days."""
    rng = np.random.default_rng(seed)
    return {
        f"SYN{i:02d}": _bars(rng, rng.normal(0.0, vol, n_days), vol, start, 100.0) for i, vol in enumerate(daily_vols)
    }


def simulate_planted(
    daily_vols: Sequence[float], n_days: int, *, persistence: float, seed: int, start: str = "2010-01-04"
) -> dict[str, pd.DataFrame]:
    """A market where sign(r_t) = sign(r_{t-1}) with probability ``persistence``; |r_t| i.i.d. half-normal.

    The direction is a two-state Markov chain independent of the magnitudes, so given any history the best
    forecast of the next move is "same as today" (if ``persistence > 0.5``), right with probability
    ``max(persistence, 1 - persistence)``; :func:`bayes_accuracy` gives the rate for a label. Today's return is
    feature ``return_1d`` of every feature set.
    """
    if not 0.0 <= persistence <= 1.0:
        raise ValueError(f"persistence must be in [0, 1], got {persistence}")
    rng = np.random.default_rng(seed)
    universe = {}
    for i, vol in enumerate(daily_vols):
        flips = rng.random(n_days) >= persistence
        sign = np.where(rng.random() < 0.5, 1.0, -1.0) * np.cumprod(np.where(flips, -1.0, 1.0))
        # Half-normal magnitudes scaled so the return's standard deviation is the target volatility.
        log_ret = sign * np.abs(rng.normal(0.0, vol, n_days))
        universe[f"SYN{i:02d}"] = _bars(rng, log_ret, vol, start, 100.0)
    return universe


BAYES_TICKERS, BAYES_DAYS = 20, 5000  # 100k labelled rows: a standard error of about 0.0016


def bayes_accuracy(persistence: float, label: LabelSpec | None = None, seed: int = 0) -> float:
    """The best achievable accuracy of ``label`` (default ``LabelSpec()``) in :func:`simulate_planted`.

    Given the close of t, the future of the market depends on the past only through the sign of t's move (the signs
    are a Markov chain, magnitudes and the open's noise are drawn afresh each day), so the Bayes forecast is a
    function of that sign: the accuracy is ``sum_s P(s) max(P(y = 1 | s), P(y = 0 | s))``. It is computed on a
    large planted market of its own (:data:`BAYES_TICKERS` x :data:`BAYES_DAYS`), so it holds for any horizon,
    execution and dead band; for the default label it equals ``(1 + (2q - 1)^2) / 2`` up to that sampling error.
    """

    market = simulate_planted([0.01] * BAYES_TICKERS, BAYES_DAYS, persistence=persistence, seed=seed)
    target = make_target(market, label or LabelSpec())
    sign = pd.concat({t: np.sign(np.log(f["adj_close"]).diff()) for t, f in market.items()}, names=["ticker", "date"])
    frame = pd.DataFrame({"s": sign.swaplevel().reindex(target.index).to_numpy(), "y": target.to_numpy()}).dropna()
    up = frame.groupby("s")["y"].agg(["mean", "size"])
    return float((np.maximum(up["mean"], 1 - up["mean"]) * up["size"]).sum() / up["size"].sum())


def permute_bars(universe: Universe, *, seed: int) -> dict[str, pd.DataFrame]:
    """Each ticker's daily bars in a random order, rebuilt into a valid price path on the original dates.

    A bar is (open, high, low, close) of dividend-adjusted prices relative to the previous adjusted close, with
    its volume; permuting bars keeps the real distribution of daily moves and destroys all dependence on the past.
    Each bar is divided by the ticker's median close-to-close move, so that half the days are up (the real drift
    would otherwise make "always up" beat 0.5 legitimately). ``close == adj_close`` afterwards.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for ticker, frame in universe.items():
        factor = frame["adj_close"] / frame["close"]
        adj = {c: (frame[c] * factor).to_numpy() for c in ("open", "high", "low")} | {
            "close": frame["adj_close"].to_numpy()
        }
        prev = adj["close"][:-1]
        median_move = np.median(adj["close"][1:] / prev)
        rel = {c: adj[c][1:] / prev / median_move for c in adj}
        order = rng.permutation(len(prev))
        close = adj["close"][0] * np.concatenate([[1.0], np.cumprod(rel["close"][order])])
        new = {c: np.concatenate([[adj[c][0]], close[:-1] * rel[c][order]]) for c in ("open", "high", "low")}
        # Bars whose high equalled the close can come out an ulp apart after the re-basing; restore the bounds.
        new["high"] = np.maximum.reduce([new["high"], new["open"], close])
        new["low"] = np.minimum.reduce([new["low"], new["open"], close])
        volume = np.concatenate([[frame["volume"].iloc[0]], frame["volume"].to_numpy()[1:][order]])
        out[ticker] = pd.DataFrame(
            {**new, "close": close, "adj_close": close, "volume": volume.astype(np.int64)}, index=frame.index
        )
    return out


def permute_labels(target: pd.Series, *, block_days: int, seed: int) -> pd.Series:
    """``target`` (0/1/NaN, indexed by ``(date, ticker)``) with its known labels permuted among the rows of each
    block of ``block_days`` consecutive dates; NaN labels stay where they are.

    Each block keeps its share of up days, while a label no longer belongs to its row's features or window. The
    audit uses blocks of one date: in a longer block a label t -> t+1 can land on a later day, whose features already
    contain that move, and honest models learn the control's own leak.
    """
    if block_days < 1:
        raise ValueError(f"block_days must be >= 1, got {block_days}")
    _, date_idx = np.unique(target.index.get_level_values("date"), return_inverse=True)
    block = date_idx // block_days
    values = target.to_numpy(dtype=float).copy()
    known = np.flatnonzero(np.isfinite(values))
    rng = np.random.default_rng(seed)
    # Sort the known rows by block, then by a random key: each block's rows in a random order.
    order = known[np.lexsort((rng.random(len(known)), block[known]))]
    by_block = known[np.argsort(block[known], kind="stable")]
    values[by_block] = values[order]
    return pd.Series(values, index=target.index, name=target.name)


def check_ohlcv(universe: Universe) -> None:
    """Raise ``ValueError`` naming ticker and date if a synthetic bar breaks low <= open, close <= high."""
    for ticker, f in universe.items():
        bad = (f["high"] < f[["open", "close"]].max(axis=1)) | (f["low"] > f[["open", "close"]].min(axis=1))
        bad |= (f[["open", "high", "low", "close"]] <= 0).any(axis=1) | (f["volume"] <= 0)
        if bad.any():
            raise ValueError(f"{ticker}: invalid bar on {f.index[bad.to_numpy()][0]:%Y-%m-%d}")


def perturb_after(universe: Universe, cut: pd.Timestamp, *, seed: int, jump: float = 1.0) -> dict[str, pd.DataFrame]:
    """A copy of ``universe`` whose rows after ``cut`` follow a different random path (rows <= cut unchanged).

    Every price of a later row is multiplied by the same factor, ``jump`` times a random walk, and volumes by a
    random factor, so the bars stay valid.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for ticker, frame in universe.items():
        after = frame.index > cut
        k = int(after.sum())
        new = frame.copy()
        scale = jump * np.exp(np.cumsum(rng.normal(0.0, 0.03, k)))
        for column in ("open", "high", "low", "close", "adj_close"):
            new.loc[after, column] = frame.loc[after, column].to_numpy() * scale
        new.loc[after, "volume"] = np.maximum(
            1, np.round(frame.loc[after, "volume"].to_numpy() * np.exp(rng.normal(0.0, 0.5, k)))
        ).astype(np.int64)
        out[ticker] = new
    return out


def future_dependence(
    feature_fn: FeatureFn, universe: Universe, *, cut_quantiles: Sequence[float] = (0.3, 0.6, 0.9), seed: int = 0
) -> dict[str, dict[str, Any]]:
    """Features whose value at a date <= t changes when only prices after t change: they read the future.

    For each cut date t (quantiles of the universe's dates), recompute ``feature_fn`` on :func:`perturb_after`
    twice, with later prices jumping up by half and down by a third, so that even a feature that only sees the
    sign of the next move changes in one of them; compare the rows dated <= t. Returns
    ``{feature: {"changed_cells", "first": "date ticker"}}`` for the features that changed (NaN equals NaN;
    relative tolerance 1e-9); empty when no feature looks ahead.
    """
    base = feature_fn(universe)
    dates = np.unique(np.concatenate([f.index.to_numpy() for f in universe.values()]))
    flagged: dict[str, dict[str, Any]] = {}
    for i, (q, jump) in enumerate((q, jump) for q in cut_quantiles for jump in (1.5, 1 / 1.5)):
        cut = pd.Timestamp(dates[int(q * (len(dates) - 1))])
        moved = feature_fn(perturb_after(universe, cut, seed=seed + i, jump=jump))
        past = base.index.get_level_values("date") <= cut
        a, b = base.loc[past], moved.reindex(base.index[past])
        same = np.isclose(a.to_numpy(), b.to_numpy(), rtol=1e-9, atol=1e-12, equal_nan=True)
        for j in np.flatnonzero(~same.all(axis=0)):
            name = str(base.columns[j])
            entry = flagged.setdefault(name, {"changed_cells": 0, "first": None})
            entry["changed_cells"] += int((~same[:, j]).sum())
            if entry["first"] is None:
                date, ticker = a.index[int(np.argmax(~same[:, j]))]
                entry["first"] = f"{date:%Y-%m-%d} {ticker}"
    return flagged


def with_leak(feature_fn: FeatureFn, label: LabelSpec | None = None) -> FeatureFn:
    """``feature_fn`` plus the original system's flaw ``target_class``: the label itself (``make_target(universe,
    label)``) as a feature."""

    def leaky(universe: Universe) -> pd.DataFrame:
        features = feature_fn(universe)
        return features.assign(**{LEAK_FEATURE: make_target(universe, label).reindex(features.index)})

    return leaky


class ProbeModel:
    """The audit's probe as a ``finmlops.models.Predictor``: gradient-boosted trees on the last row of each window."""

    name = "probe"

    def __init__(self, seed: int) -> None:
        from sklearn.ensemble import HistGradientBoostingClassifier  # deferred: sklearn

        self.model = HistGradientBoostingClassifier(
            max_iter=50, max_depth=2, learning_rate=0.05, early_stopping=False, random_state=seed
        )

    def fit(self, train: Windows, val: Windows) -> ProbeModel:
        self.model.fit(train.X[:, -1, :], train.y.astype(int))
        return self

    def predict_proba(self, windows: Windows) -> np.ndarray:
        return self.model.predict_proba(windows.X[:, -1, :])[:, 1]


def probe_predictions(
    universe: Universe,
    feature_fn: FeatureFn,
    *,
    test_years: Sequence[int],
    seed: int = 0,
    label_transform: LabelTransform | None = None,
    label: LabelSpec | None = None,
) -> pd.DataFrame:
    """Walk-forward predictions of a small gradient-boosted tree model on the rows of ``feature_fn``.

    A cheap model for auditing a feature function, independent of the deep pipeline: shallow trees (depth 2, 50
    rounds, learning rate 0.05) can represent a threshold such as "up if yesterday was up" and are too weak to
    memorise noise. It runs through ``finmlops.training.cross_val_predict`` on one-row windows of the complete
    feature rows: for each test year it trains on every earlier row up to an embargo of ``1 + label.reach`` trading
    days (no validation block) and predicts the year. Returns a predictions frame with model ``probe``.
    ``label_transform`` maps the label series before training and scoring, as in the pipeline.
    """
    from finmlops.training import cross_val_predict  # deferred: torch

    label = label or LabelSpec()
    features = feature_fn(universe)
    target = make_target(universe, label)
    if label_transform is not None:
        target = label_transform(target)
    windows = make_windows(features, target, 1)
    calendar = target.index.get_level_values("date")
    folds = walk_forward_folds(calendar, seq_len=1, reach=label.reach, test_years=list(test_years), val_frac=0.0)
    for fold in folds:
        if not np.isin(windows.dates, fold.train_dates).any():
            raise ValueError(f"probe: no training data before test year {fold.name}")
    try:
        preds = cross_val_predict(lambda: ProbeModel(seed), windows, folds, label)
    except ValueError as exc:
        raise ValueError(f"probe: {exc}") from None
    keys = pd.MultiIndex.from_frame(preds[["date", "ticker"]])
    return preds.assign(
        fold=preds["fold"].astype(int), model="probe", ret_next=forward_return(universe, label).reindex(keys).to_numpy()
    )


AUDIT_FILE = "audit.json"


class CheckMetrics(Result):
    """The intervals behind a check (at the audit's corrected level ``ci_level``): accuracy, pooled ROC AUC and, for
    the permuted-label control, the within-date AUC; None where the check has none (the feature checks). Only the
    intervals present are written."""

    accuracy: Estimate | None = None
    roc_auc: Estimate | None = None
    within_date_auc: Estimate | None = None

    @model_serializer(mode="wrap")
    def _present(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class Check(Result):
    """One row of the audit table: the scenario, the model (or feature function) checked, what was checked, the
    verdict, its detail in words and the intervals that decided it."""

    scenario: str
    model: str
    check: str
    passed: bool
    detail: str
    metrics: CheckMetrics = Field(default_factory=CheckMetrics)


class Audit(Result):
    """What :func:`run_audit` returns: whether every check passed, the planted market's Bayes accuracy, the
    (Bonferroni-corrected) level of every interval (None in files older than it), the audit's config (market
    sizes, label, seed, bootstrap) and the checks."""

    passed: bool
    bayes_accuracy: float
    ci_level: float | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    checks: list[Check]


class AuditResult(Audit):
    """``audit.json`` (``finmlops audit``): the :class:`Audit` with its provenance stamp."""

    provenance: dict[str, Any] = Field(default_factory=dict)


def load_audit(results_dir: Path) -> AuditResult:
    """``results_dir/audit.json``; a ``FileNotFoundError`` naming the command that writes it when absent."""
    path = results_dir / AUDIT_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no audit; run `finmlops audit` first")
    return read_result(path, AuditResult)


def _pooled(preds: pd.DataFrame, boot: BootstrapConfig) -> dict[str, Metrics]:
    preds = validate_predictions(preds)
    return {str(m): metrics_with_ci(prepare(rows), boot) for m, rows in preds.groupby("model", sort=True)}


def _recorded(m: Metrics, within_date_auc: Estimate | None = None) -> CheckMetrics:
    """What audit.json records of a model's metrics: accuracy and ROC AUC with their CIs (and the within-date AUC)."""
    return CheckMetrics(accuracy=m.accuracy, roc_auc=m.roc_auc, within_date_auc=within_date_auc)


def _contains(ci: Estimate, value: float) -> bool:
    return ci.contains(value)


def _fmt(ci: Estimate) -> str:
    return f"{ci.value:.4f} [{ci.ci_low:.4f}, {ci.ci_high:.4f}]"


def family_boot(n_checks: int, boot: BootstrapConfig) -> BootstrapConfig:
    """Bonferroni over the whole audit: each CI at level ``1 - (1 - level) / n_checks``, normal-approximation.

    The audit is one family of tests: correcting per scenario would still fail an honest pipeline in about one run
    of ten. The normal interval (point +/- z * bootstrap SD) resolves the extreme tails a few hundred resamples
    cannot.
    """
    return replace(boot, level=1 - (1 - boot.level) / max(n_checks, 1), method="normal")


def _auc_contains_half(auc: Estimate) -> tuple[bool, str]:
    """Whether an AUC CI contains 0.5, and its text. A forecast constant within every fold (majority) ranks
    nothing: its AUC is NaN, passes, and reads "undefined"."""
    if not np.isfinite(auc.value):
        return True, "undefined (constant per fold)"
    return _contains(auc, 0.5), _fmt(auc)


def no_signal_checks(scenario: str, preds: pd.DataFrame, boot: BootstrapConfig) -> list[Check]:
    """Every model's accuracy CI, and AUC CI where AUC is defined, must contain 0.5 (``boot`` already corrected)."""
    checks = []
    for model, m in _pooled(preds, boot).items():
        acc = m.accuracy
        auc_ok, auc_text = _auc_contains_half(m.roc_auc)
        checks.append(
            Check(
                scenario=scenario,
                model=model,
                check="accuracy and AUC CIs contain 0.5",
                passed=_contains(acc, 0.5) and auc_ok,
                detail=f"acc {_fmt(acc)}; AUC {auc_text}",
                metrics=_recorded(m),
            )
        )
    return checks


def permuted_label_checks(scenario: str, preds: pd.DataFrame, boot: BootstrapConfig) -> list[Check]:
    """Labels permuted among the tickers of each date: per model, accuracy CI not above the majority-class rate of
    the test rows, max(b, 1 - b), and within-date AUC CI (where defined) containing 0.5 (``boot`` already corrected).

    The real labels are not balanced (52 % up days over the snapshot), and the permutation keeps that: "always up"
    scores b honestly, so b, not 0.5, is the accuracy no model may beat without leakage. The permutation also keeps
    each date's share of up labels, so whatever the features say about the market's direction survives it; the
    pooled AUC can then differ from 0.5 without any leak (it is reported beside the check). What the permutation
    destroys is which ticker of a date carries which label, so the check is on the within-date AUC
    (``finmlops.evaluation.metrics.within_date_auc``), 0.5 in expectation for any model that does not see the labels.
    """
    checks = []
    preds = validate_predictions(preds)
    base = float(preds.groupby("model")["y_true"].mean().iloc[0])
    rate = max(base, 1 - base)
    pooled = _pooled(preds, boot)
    for model, rows in preds.groupby("model", sort=True):
        m = pooled[str(model)]
        acc = m.accuracy
        within = within_date_auc(rows, boot)
        auc_ok, auc_text = _auc_contains_half(within)
        _, pooled_text = _auc_contains_half(m.roc_auc)
        checks.append(
            Check(
                scenario=scenario,
                model=str(model),
                check=f"accuracy not above majority rate {rate:.3f}; within-date AUC CI contains 0.5",
                passed=bool(acc.ci_low <= rate) and auc_ok,
                detail=f"acc {_fmt(acc)}; within-date AUC {auc_text} (pooled AUC {pooled_text}, which the "
                "permutation's date-level up share may move)",
                metrics=_recorded(m, within_date_auc=within),
            )
        )
    return checks


def planted_checks(scenario: str, preds: pd.DataFrame, bayes: float, boot: BootstrapConfig) -> list[Check]:
    """Per model: not above the Bayes rate (else leakage); and, unless exempt, recovers it (CI contains it)."""
    checks = []
    for model, m in _pooled(preds, boot).items():
        acc = m.accuracy
        checks.append(
            Check(
                scenario=scenario,
                model=model,
                check=f"accuracy not above Bayes {bayes:.3f}",
                passed=bool(acc.ci_low <= bayes),
                detail=f"acc {_fmt(acc)}",
                metrics=_recorded(m),
            )
        )
        if model not in NO_SIGNAL_MODELS:
            checks.append(
                Check(
                    scenario=scenario,
                    model=model,
                    check=f"recovers Bayes {bayes:.3f}",
                    passed=_contains(acc, bayes),
                    detail=f"acc {_fmt(acc)}",
                    metrics=_recorded(m),
                )
            )
    return checks


@dataclass(frozen=True)
class AuditConfig:
    """Sizes of the audit markets. ``n_tickers``/``n_days`` None: the snapshot's."""

    n_tickers: int | None = None
    n_days: int | None = None
    test_years: int = 3
    persistence: float = 0.7
    label_block_days: int = 1
    label: LabelSpec = field(default_factory=LabelSpec)
    seed: int = 42
    boot: BootstrapConfig = field(default_factory=lambda: BootstrapConfig(n_boot=500, block_len=10))


def _test_years(universe: Universe, n: int) -> list[int]:
    """The last ``n`` calendar years present in every ticker, a full fold each."""
    years = sorted(set.intersection(*(set(f.index.year) for f in universe.values())))
    if len(years) < n + 2:
        raise ValueError(f"need at least {n + 2} years of data for {n} test years, got {len(years)}")
    return years[-n:]


def run_audit(
    snapshot: Universe,
    predictor_for: PredictorFactory,
    feature_fn: FeatureFn,
    config: AuditConfig,
) -> Audit:
    """Run the scenarios; ``predictor_for(test_years, label_transform)`` returns the pipeline under audit.

    ``snapshot`` supplies the volatilities, sizes and (shuffled) the real bars; ``feature_fn`` is the pipeline's
    feature function, checked for future dependence with and without the planted leak.
    Returns the :class:`Audit`.
    """
    vols = list(snapshot_volatility(snapshot).values())
    n_tickers = config.n_tickers or len(vols)
    vols = [vols[i % len(vols)] for i in range(n_tickers)]
    n_days = config.n_days or max(len(f) for f in snapshot.values())
    random_walk = simulate_random_walk(vols, n_days, seed=config.seed)
    planted = simulate_planted(vols, n_days, persistence=config.persistence, seed=config.seed + 1)
    real = {t: f.iloc[-n_days:] for t, f in list(snapshot.items())[:n_tickers]}
    shuffled = permute_bars(real, seed=config.seed + 2)
    for market in (random_walk, planted, shuffled):
        check_ohlcv(market)
    bayes = bayes_accuracy(config.persistence, config.label, seed=config.seed + 4)
    planted_years = _test_years(planted, config.test_years)
    permute: LabelTransform = lambda target: permute_labels(  # noqa: E731
        target, block_days=config.label_block_days, seed=config.seed + 3
    )
    preds = {
        "random_walk": predictor_for(_test_years(random_walk, config.test_years), None)(random_walk),
        "shuffled": predictor_for(_test_years(shuffled, config.test_years), None)(shuffled),
        "permuted_labels": predictor_for(_test_years(real, config.test_years), permute)(real),
        "planted": predictor_for(planted_years, None)(planted),
    }
    # The family: accuracy and AUC per model in the three no-signal markets, two planted checks per model, 2 probes.
    n_models = preds["planted"]["model"].nunique()
    boot = family_boot(3 * 2 * n_models + 2 * n_models + 2, config.boot)
    checks: list[Check] = []
    for name in ("random_walk", "shuffled"):
        checks += no_signal_checks(name, preds[name], boot)
    checks += permuted_label_checks("permuted_labels", preds["permuted_labels"], boot)
    checks += planted_checks("planted", preds["planted"], bayes, boot)

    clean = future_dependence(feature_fn, planted, seed=config.seed)
    checks.append(
        Check(
            scenario="future_dependence",
            model="features",
            check="no feature reads prices after its date",
            passed=not clean,
            detail=str(clean or "none"),
        )
    )
    leaked = future_dependence(with_leak(feature_fn, config.label), planted, seed=config.seed)
    checks.append(
        Check(
            scenario="leak",
            model="features+target_class",
            check="future-dependence check flags target_class",
            passed=set(leaked) == {LEAK_FEATURE},
            detail=f"flagged: {sorted(leaked)}",
        )
    )
    for name, fn in (("features", feature_fn), ("features+target_class", with_leak(feature_fn, config.label))):
        probe = probe_predictions(planted, fn, test_years=planted_years, seed=config.seed, label=config.label)
        acc = _pooled(probe, boot)["probe"].accuracy
        above = bool(acc.ci_low > bayes)
        expect_leak = name != "features"
        checks.append(
            Check(
                scenario="leak",
                model=f"probe({name})",
                check="accuracy above Bayes flagged" if expect_leak else f"accuracy not above Bayes {bayes:.3f}",
                passed=above == expect_leak,
                detail=f"acc {_fmt(acc)}",
                metrics=CheckMetrics(accuracy=acc),
            )
        )
    return Audit(
        passed=all(c.passed for c in checks),
        bayes_accuracy=bayes,
        ci_level=boot.level,
        config={**asdict(config), "label": config.label.model_dump(), "n_tickers": n_tickers, "n_days": n_days},
        checks=checks,
    )
