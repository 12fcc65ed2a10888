"""AUC and log loss against scikit-learn, with ties, weights and one class."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from finmlops.stats.classification import LOG_LOSS_EPS, log_loss, roc_auc


def test_auc_and_log_loss_match_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(500) < 0.4).astype(int)
    p = np.round(rng.random(500) * 0.5 + 0.3 * y, 2)  # rounded: many ties
    w = rng.integers(0, 4, 500).astype(float)
    assert roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p))
    assert roc_auc(y, p, w) == pytest.approx(skm.roc_auc_score(y, p, sample_weight=w))
    assert log_loss(y, p) == pytest.approx(skm.log_loss(y, np.clip(p, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)))
    assert log_loss(y, p, w) == pytest.approx(skm.log_loss(y, p, sample_weight=w))
    # Extreme probabilities are clipped once, at float64 eps: a certain wrong answer costs -log(eps), not inf.
    assert log_loss(np.array([1]), np.array([0.0])) == pytest.approx(-math.log(LOG_LOSS_EPS))


def test_auc_is_undefined_with_one_class() -> None:
    assert math.isnan(roc_auc(np.ones(5), np.linspace(0, 1, 5)))
    assert math.isnan(roc_auc(np.array([]), np.array([])))
