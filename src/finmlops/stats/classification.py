"""Binary-classification scores, one implementation each: ROC AUC (Mann-Whitney, ties counted half) and log loss
(one clipping), both with optional row weights (a bootstrap resample's multiplicities)."""

from __future__ import annotations

import numpy as np

# Same clipping as scikit-learn's log_loss for float64 probabilities; the only clipping in finmlops.
LOG_LOSS_EPS = float(np.finfo(np.float64).eps)


def score_ranks(score: np.ndarray) -> tuple[np.ndarray, int]:
    """``(rank [n], n_distinct)``: each score's index among the distinct values of ``score`` ``[n]`` (ascending),
    computed once so that :func:`ranked_auc` can be evaluated for many weightings."""
    _, idx = np.unique(np.asarray(score, dtype=float), return_inverse=True)
    return idx, int(idx.max()) + 1 if idx.size else 0


def ranked_auc(rank: np.ndarray, n_distinct: int, y: np.ndarray, weight: np.ndarray | None = None) -> float:
    """ROC AUC = P(score_pos > score_neg) + 0.5 P(tie), from :func:`score_ranks` and 0/1 labels ``y`` ``[n]``, with
    row weights ``weight`` ``[n]`` (None: all 1). NaN without both classes (of positive weight)."""
    y = np.asarray(y, dtype=float)
    w = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=float)
    pos = np.bincount(rank, w * y, n_distinct)
    neg = np.bincount(rank, w * (1.0 - y), n_distinct)
    total_pos, total_neg = pos.sum(), neg.sum()
    if total_pos <= 0 or total_neg <= 0:
        return float("nan")
    neg_below = np.cumsum(neg) - neg
    return float((pos * (neg_below + 0.5 * neg)).sum() / (total_pos * total_neg))


def roc_auc(y: np.ndarray, score: np.ndarray, weight: np.ndarray | None = None) -> float:
    """ROC AUC of ``score`` ``[n]`` against 0/1 labels ``y`` ``[n]`` (equals scikit-learn's ``roc_auc_score``);
    NaN with one class only."""
    y = np.asarray(y, dtype=float)
    if y.size == 0:
        return float("nan")
    rank, n_distinct = score_ranks(score)
    return ranked_auc(rank, n_distinct, y, weight)


def log_loss(y: np.ndarray, prob: np.ndarray, weight: np.ndarray | None = None) -> float:
    """Mean negative log-likelihood (nats) of P(y = 1) ``prob`` ``[n]`` for 0/1 labels ``y`` ``[n]``, probabilities
    clipped to ``[eps, 1 - eps]`` (``LOG_LOSS_EPS``), weighted by ``weight`` ``[n]`` (None: all 1)."""
    y = np.asarray(y, dtype=float)
    p = np.clip(np.asarray(prob, dtype=float), LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    w = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=float)
    nll = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return float((w * nll).sum() / w.sum())
