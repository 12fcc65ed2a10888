"""Classification and ranking metrics with block-bootstrap confidence intervals over dates.

Every metric here is a function of *date weights*: a bootstrap resample of dates is represented by how many times
each date was drawn, and a row's weight is its date's weight. Resampling whole dates keeps the tickers of one day
together (they share the market move and are not independent); resampling contiguous blocks of dates keeps
short-range serial dependence inside a block. All-ones weights give the plain point estimate.

Inputs follow the predictions frame of ``docs/architecture.md``: ``date, ticker, fold, model, prob_up, y_true,
ret_next``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from finmlops.evaluation.results import (
    BaselineTest,
    BootstrapSettings,
    Calibration,
    Estimate,
    Evaluation,
    FoldMetrics,
    McNemar,
    Metrics,
    ModelEvaluation,
    TickerMetrics,
)
from finmlops.evaluation.signal import signal_measures
from finmlops.models.baselines import ALL_BASELINES
from finmlops.stats.bootstrap import BootstrapConfig, interval, paired_test
from finmlops.stats.classification import log_loss, ranked_auc, score_ranks

PREDICTION_COLUMNS: tuple[str, ...] = ("date", "ticker", "fold", "model", "prob_up", "y_true", "ret_next")
METRICS: tuple[str, ...] = (
    "accuracy",
    "balanced_accuracy",
    "roc_auc",
    "log_loss",
    "brier",
    "f1",
    "mcc",
    "up_share",
    "ic",
    "rank_ic",
    "icir",
    "rank_icir",
)


def validate_predictions(frame: pd.DataFrame, source: str = "predictions") -> pd.DataFrame:
    """Check a predictions frame and return it with canonical dtypes, sorted by model, date and ticker.

    Raises ``ValueError`` naming ``source``, the column and the first offending row.
    """
    missing = [c for c in PREDICTION_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{source}: missing columns {missing}; expected {list(PREDICTION_COLUMNS)}")
    out = frame.loc[:, list(PREDICTION_COLUMNS)].copy()
    out["date"] = pd.to_datetime(out["date"])
    checks = {
        "prob_up": ~out["prob_up"].between(0.0, 1.0),
        "y_true": ~out["y_true"].isin([0, 1]),
        "ret_next": ~np.isfinite(out["ret_next"].astype(float)),
    }
    for column, bad in checks.items():
        if bad.any():
            row = out.loc[bad].iloc[0]
            raise ValueError(
                f"{source}: column {column!r} has an invalid value {row[column]!r} "
                f"(model {row['model']}, date {row['date']:%Y-%m-%d}, ticker {row['ticker']})"
            )
    dup = out.duplicated(["model", "date", "ticker"])
    if dup.any():
        row = out.loc[dup].iloc[0]
        raise ValueError(
            f"{source}: duplicate row for model {row['model']}, date {row['date']:%Y-%m-%d}, ticker {row['ticker']}"
        )
    out["y_true"] = out["y_true"].astype(np.int8)
    out["prob_up"] = out["prob_up"].astype(np.float64)
    out["ret_next"] = out["ret_next"].astype(np.float64)
    return out.sort_values(["model", "date", "ticker"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Prepared:
    """One model's rows in the arrays the weighted metrics need.

    ``date_idx`` maps each of the ``n`` rows to one of ``n_dates`` dates (ascending); ``score_idx`` maps it to
    its rank among the distinct ``prob_up`` values (for AUC with ties); ``ic``/``rank_ic`` are per-date
    cross-sectional correlations (NaN where undefined: fewer than 3 tickers or a constant column).
    ``ranks`` is False when ``prob_up`` is constant within every fold (a majority-class forecast): such a model
    orders no rows of a fold, and its AUC pooled over folds would only compare each fold's constant with that
    fold's base rate, so its AUC is undefined (NaN).
    """

    y: np.ndarray
    prob: np.ndarray
    date_idx: np.ndarray
    score_idx: np.ndarray
    n_scores: int
    dates: np.ndarray
    ic: np.ndarray
    rank_ic: np.ndarray
    ranks: bool = True

    @property
    def n_dates(self) -> int:
        return len(self.dates)


def _corr_by_date(date_idx: np.ndarray, x: np.ndarray, y: np.ndarray, n_dates: int) -> np.ndarray:
    """Pearson correlation of ``x`` and ``y`` within each date, shape ``[n_dates]``; NaN if undefined."""
    count = np.bincount(date_idx, minlength=n_dates).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = np.bincount(date_idx, x, n_dates) / count
        my = np.bincount(date_idx, y, n_dates) / count
        dx, dy = x - mx[date_idx], y - my[date_idx]
        sxy = np.bincount(date_idx, dx * dy, n_dates)
        sxx = np.bincount(date_idx, dx * dx, n_dates)
        syy = np.bincount(date_idx, dy * dy, n_dates)
        corr = sxy / np.sqrt(sxx * syy)
    # A constant column has a tiny float variance after centring; treat it as undefined, not as a correlation.
    tol = 1e-12
    corr[(count < 3) | (sxx <= tol * count) | (syy <= tol * count)] = np.nan
    return corr


def _rank_within_dates(date_idx: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Average ranks of ``values`` within each date (ties share their mean rank, as scipy's rankdata)."""
    frame = pd.DataFrame({"d": date_idx, "v": values})
    return frame.groupby("d")["v"].rank(method="average").to_numpy(dtype=float)


def scores_vary_within_a_fold(rows: pd.DataFrame) -> bool:
    """Whether ``prob_up`` takes more than one value in at least one fold of ``rows`` (all rows one fold if
    there is no ``fold`` column)."""
    folds = rows["fold"] if "fold" in rows.columns else np.zeros(len(rows))
    return bool(rows["prob_up"].groupby(folds).nunique().gt(1).any())


def prepare(rows: pd.DataFrame) -> Prepared:
    """Arrays for one model's rows of a validated predictions frame (see :func:`validate_predictions`)."""
    if rows.empty:
        raise ValueError("no prediction rows to score")
    dates, date_idx = np.unique(rows["date"].to_numpy(), return_inverse=True)
    prob = rows["prob_up"].to_numpy(dtype=float)
    ret = rows["ret_next"].to_numpy(dtype=float)
    score_idx, n_scores = score_ranks(prob)
    n_dates = len(dates)
    ic = _corr_by_date(date_idx, prob, ret, n_dates)
    rank_ic = _corr_by_date(date_idx, _rank_within_dates(date_idx, prob), _rank_within_dates(date_idx, ret), n_dates)
    return Prepared(
        y=rows["y_true"].to_numpy(dtype=float),
        prob=prob,
        date_idx=date_idx,
        score_idx=score_idx,
        n_scores=n_scores,
        dates=dates,
        ic=ic,
        rank_ic=rank_ic,
        ranks=scores_vary_within_a_fold(rows),
    )


def _weighted_auc(p: Prepared, w: np.ndarray) -> float:
    """ROC AUC with row weights ``w`` (``finmlops.stats.classification.ranked_auc``); NaN for a model whose scores
    are constant within every fold (``p.ranks`` False) or without both classes."""
    return ranked_auc(p.score_idx, p.n_scores, p.y, w) if p.ranks else float("nan")


def _ic_summary(ic: np.ndarray, date_w: np.ndarray) -> tuple[float, float]:
    """Weighted mean of the per-date IC and ICIR = mean / std (Qlib's definition, not annualised)."""
    ok = np.isfinite(ic) & (date_w > 0)
    weight = date_w[ok]
    if weight.sum() < 2:
        return float("nan"), float("nan")
    mean = float(np.average(ic[ok], weights=weight))
    # Frequency-weighted sample variance: equals np.var(ddof=1) on the expanded sample.
    var = float((weight * (ic[ok] - mean) ** 2).sum() / (weight.sum() - 1))
    return mean, (mean / np.sqrt(var) if var > 0 else float("nan"))


def weighted_metrics(p: Prepared, date_w: np.ndarray | None = None) -> dict[str, float]:
    """Every metric in :data:`METRICS` with date weights ``date_w`` (shape ``[n_dates]``; None = all ones).

    Predicted class is ``prob_up > 0.5``. Log loss is ``finmlops.stats.classification.log_loss``.
    """
    date_w = np.ones(p.n_dates) if date_w is None else np.asarray(date_w, dtype=float)
    w = date_w[p.date_idx]
    total = w.sum()
    pred = (p.prob > 0.5).astype(float)
    tp = float((w * pred * p.y).sum())
    fp = float((w * pred * (1 - p.y)).sum())
    fn = float((w * (1 - pred) * p.y).sum())
    tn = float(total - tp - fp - fn)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = tp / (tp + fn)
        tnr = tn / (tn + fp)
        mcc_den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        mcc = (tp * tn - fp * fn) / mcc_den if mcc_den > 0 else 0.0
    ic, icir = _ic_summary(p.ic, date_w)
    rank_ic, rank_icir = _ic_summary(p.rank_ic, date_w)
    return {
        "accuracy": (tp + tn) / total,
        "balanced_accuracy": float(np.nanmean([tpr, tnr])) if np.isfinite([tpr, tnr]).any() else float("nan"),
        "roc_auc": _weighted_auc(p, w),
        "log_loss": log_loss(p.y, p.prob, w),
        "brier": float((w * (p.prob - p.y) ** 2).sum() / total),
        # scikit-learn's convention: F1 is 0 when there are no positive predictions and no positives.
        "f1": 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) > 0 else 0.0,
        "mcc": float(mcc),
        "up_share": (tp + fp) / total,
        "ic": ic,
        "rank_ic": rank_ic,
        "icir": icir,
        "rank_icir": rank_icir,
    }


def _estimates(p: Prepared, boot: BootstrapConfig) -> dict[str, Estimate]:
    point = weighted_metrics(p)
    draws = [weighted_metrics(p, w) for w in boot.weights(p.n_dates)]
    out: dict[str, Estimate] = {}
    for name in METRICS:
        lo, hi = interval(np.array([d[name] for d in draws], dtype=float), point[name], boot)
        out[name] = Estimate(value=point[name], ci_low=lo, ci_high=hi)
    return out


def metrics_with_ci(p: Prepared, boot: BootstrapConfig) -> Metrics:
    """Every metric of :data:`METRICS` as an :class:`Estimate`: point estimate and block-bootstrap CI
    (``boot.method``)."""
    return Metrics(**_estimates(p, boot))


def fold_metrics_with_ci(p: Prepared, boot: BootstrapConfig, n_rows: int) -> FoldMetrics:
    """:func:`metrics_with_ci` of one fold, with its row count."""
    return FoldMetrics(n_rows=n_rows, **_estimates(p, boot))


def within_date_auc(rows: pd.DataFrame, boot: BootstrapConfig) -> Estimate:
    """Cross-sectional ROC AUC of one model's rows: how well ``prob_up`` orders the tickers of each date by
    ``y_true``, pooled over dates, with a block-bootstrap CI over dates.

    Per date d with n1 labels 1 and n0 labels 0, U_d is the Mann-Whitney count of (1, 0) pairs that the score
    orders correctly (ties count 1/2); the pooled value is sum_d U_d / sum_d n1 n0, and a bootstrap draw weights
    each date's U_d and pairs. Dates with one class only hold no pairs. Any information common to all tickers of
    a date (the market's direction) cancels: a score that only times the market has a within-date AUC of 0.5.
    NaN when no date holds both classes or the scores are constant within every fold.
    """
    dates, date_idx = np.unique(rows["date"].to_numpy(), return_inverse=True)
    n_dates = len(dates)
    y = rows["y_true"].to_numpy(dtype=float)
    ranks = _rank_within_dates(date_idx, rows["prob_up"].to_numpy(dtype=float))
    n1 = np.bincount(date_idx, y, n_dates)
    n0 = np.bincount(date_idx, 1.0 - y, n_dates)
    u = np.bincount(date_idx, ranks * y, n_dates) - n1 * (n1 + 1) / 2
    pairs = n1 * n0
    if pairs.sum() == 0 or not scores_vary_within_a_fold(rows):
        nan = float("nan")
        return Estimate(value=nan, ci_low=nan, ci_high=nan)
    point = float(u.sum() / pairs.sum())
    w = boot.weights(n_dates)
    with np.errstate(invalid="ignore", divide="ignore"):
        draws = (w @ u) / (w @ pairs)
    lo, hi = interval(draws, point, boot)
    return Estimate(value=point, ci_low=lo, ci_high=hi)


def paired_rows(preds: pd.DataFrame, model: str, baseline: str) -> pd.DataFrame:
    """The ``(date, ticker)`` rows both models scored, with ``correct_model`` and ``correct_baseline`` (0/1)."""
    cols = ["date", "ticker", "prob_up", "y_true"]
    a = preds.loc[preds["model"] == model, cols]
    b = preds.loc[preds["model"] == baseline, cols]
    both = a.merge(b, on=["date", "ticker"], suffixes=("_m", "_b"), validate="one_to_one")
    if both.empty:
        raise ValueError(f"models {model!r} and {baseline!r} share no (date, ticker) rows")
    if (both["y_true_m"] != both["y_true_b"]).any():
        row = both.loc[both["y_true_m"] != both["y_true_b"]].iloc[0]
        raise ValueError(f"y_true differs between {model!r} and {baseline!r} on {row['date']:%Y-%m-%d} {row['ticker']}")
    return pd.DataFrame(
        {
            "date": both["date"],
            "correct_model": ((both["prob_up_m"] > 0.5).astype(int) == both["y_true_m"]).astype(int),
            "correct_baseline": ((both["prob_up_b"] > 0.5).astype(int) == both["y_true_m"]).astype(int),
        }
    )


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """Exact (binomial) McNemar test on paired 0/1 correctness: two-sided p-value and discordant counts.

    Assumes independent pairs, which same-day rows of different tickers are not; read it next to the paired
    block bootstrap, which does not assume that.
    """
    only_a = int(((correct_a == 1) & (correct_b == 0)).sum())
    only_b = int(((correct_a == 0) & (correct_b == 1)).sum())
    n = only_a + only_b
    p = 1.0 if n == 0 else float(stats.binomtest(only_a, n, 0.5).pvalue)
    return McNemar(only_model_correct=only_a, only_baseline_correct=only_b, p_value=p)


def paired_accuracy_test(pairs: pd.DataFrame, boot: BootstrapConfig) -> BaselineTest:
    """Accuracy difference model - baseline on the same rows (columns ``date``, ``correct_model``,
    ``correct_baseline``): ``finmlops.stats.bootstrap.paired_test`` (the promotion rule's test too), with its
    two-sided and one-sided (model better) null-centred p-values, and McNemar. Word it with
    ``test.comparison("accuracy", baseline)``."""
    _, date_idx = np.unique(pairs["date"].to_numpy(), return_inverse=True)
    diff = (pairs["correct_model"] - pairs["correct_baseline"]).to_numpy(dtype=float)
    test = paired_test(diff, date_idx, boot)
    mcnemar = mcnemar_exact(pairs["correct_model"].to_numpy(), pairs["correct_baseline"].to_numpy())
    return BaselineTest(**test.model_dump(), mcnemar=mcnemar)


def per_ticker(rows: pd.DataFrame) -> dict[str, TickerMetrics]:
    """Per-ticker accuracy, ROC AUC, up-prediction share, base rate of up days and row count (point estimates)."""
    out: dict[str, TickerMetrics] = {}
    for ticker, group in rows.groupby("ticker", sort=True):
        m = weighted_metrics(prepare(group))
        out[str(ticker)] = TickerMetrics(
            n=len(group),
            accuracy=m["accuracy"],
            roc_auc=m["roc_auc"],
            up_share=m["up_share"],
            base_rate_up=float(group["y_true"].mean()),
        )
    return out


def calibration_bins(prob: np.ndarray, y: np.ndarray, n_bins: int = 10) -> Calibration:
    """Reliability diagram data: ``n_bins`` equal-width bins of ``prob`` on [0, 1] (empty bins omitted).

    Returns bin edges, and per non-empty bin its count, mean predicted probability and observed up frequency,
    plus the expected calibration error (count-weighted mean |observed - predicted|). Bin assignment matches
    ``sklearn.calibration.calibration_curve(strategy="uniform")``.
    """
    prob, y = np.asarray(prob, dtype=float), np.asarray(y, dtype=float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.searchsorted(edges[1:-1], prob)  # right-closed bins, as scikit-learn
    count = np.bincount(which, minlength=n_bins)
    sum_p = np.bincount(which, prob, n_bins)
    sum_y = np.bincount(which, y, n_bins)
    keep = count > 0
    mean_p, freq = sum_p[keep] / count[keep], sum_y[keep] / count[keep]
    ece = float((count[keep] * np.abs(freq - mean_p)).sum() / count.sum())
    return Calibration(
        edges=edges.tolist(),
        bin=np.flatnonzero(keep).tolist(),
        count=count[keep].tolist(),
        mean_predicted=mean_p.tolist(),
        observed_up=freq.tolist(),
        ece=ece,
    )


def evaluate_predictions(
    preds: pd.DataFrame,
    *,
    baselines: Sequence[str],
    boot: BootstrapConfig | None = None,
    n_calibration_bins: int = 10,
) -> Evaluation:
    """Score every model of a predictions frame: pooled and per-fold metrics with CIs, paired tests, breakdowns.

    Returns an :class:`~finmlops.evaluation.results.Evaluation`: per model (frame order) its pooled and per-fold
    metrics, signal measures, paired tests, per-ticker figures and calibration. Paired tests compare each model
    with every baseline in ``baselines`` that is present (a baseline is not compared with itself); ``is_baseline``
    marks those and every model named in ``finmlops.models.ALL_BASELINES``.
    """
    boot = boot or BootstrapConfig()
    preds = validate_predictions(preds)
    models = list(dict.fromkeys(preds["model"]))
    present_baselines = [b for b in baselines if b in set(models)]
    result: dict[str, ModelEvaluation] = {}
    for model in models:
        rows = preds.loc[preds["model"] == model]
        folds = {
            str(fold): fold_metrics_with_ci(prepare(group), boot, len(group))
            for fold, group in rows.groupby("fold", sort=True)
        }
        prepared = prepare(rows)
        pooled = metrics_with_ci(prepared, boot)
        correct = ((prepared.prob > 0.5) == (prepared.y == 1)).astype(float)
        signal = signal_measures(pooled, prepared.ic, prepared.rank_ic, correct, prepared.date_idx, boot)
        result[model] = ModelEvaluation(
            is_baseline=model in present_baselines or model in ALL_BASELINES,
            n_rows=len(rows),
            n_dates=prepared.n_dates,
            pooled=pooled,
            signal=signal,
            folds=folds,
            vs_baselines={
                b: paired_accuracy_test(paired_rows(preds, model, b), boot) for b in present_baselines if b != model
            },
            per_ticker=per_ticker(rows),
            calibration=calibration_bins(prepared.prob, prepared.y, n_calibration_bins),
        )
    return Evaluation(
        bootstrap=BootstrapSettings(n_boot=boot.n_boot, block_len=boot.block_len, seed=boot.seed, level=boot.level),
        baselines=present_baselines,
        models=result,
    )
