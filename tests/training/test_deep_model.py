from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from finmlops.models import VARIANTS, get_variant
from finmlops.training import DeepModel, TrainConfig

CONFIG = TrainConfig(epochs=12, patience=3, threads=1, device="cpu", verbosity="silent", seed=1)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_learns_a_label_the_features_determine(name: str, linear: Any) -> None:
    """Regression test for the replaced system's double sigmoid: its model always said "up" and scored ~50% here."""
    variant = get_variant(name, batch_size=64)
    train, val, test = (linear(n, variant.seq_len, 6, s) for n, s in ((2000, 0), (400, 1), (1000, 2)))
    model = DeepModel(variant, CONFIG).fit(train, val)
    p = model.predict_proba(test)
    assert p.shape == (1000,) and ((p >= 0) & (p <= 1)).all()
    assert np.mean((p > 0.5) == (test.y > 0.5)) > 0.9
    assert 0.3 < np.mean(p > 0.5) < 0.7  # both classes are predicted


def test_predict_proba_applies_the_sigmoid_exactly_once(linear: Any) -> None:
    variant = get_variant("baseline", seq_len=5)
    train, val = linear(300, 5, 4, 0), linear(100, 5, 4, 1)
    model = DeepModel(variant, CONFIG.model_copy(update={"epochs": 2})).fit(train, val)
    logits = model.predict_logits(val)
    p = model.predict_proba(val)
    assert np.allclose(p, torch.sigmoid(torch.from_numpy(logits)).numpy(), atol=1e-7)
    assert not np.allclose(p, torch.sigmoid(torch.sigmoid(torch.from_numpy(logits))).numpy(), atol=1e-3)
    assert (logits < 0).any()  # raw outputs are logits, not probabilities


def test_same_seed_same_predictions_through_the_full_model(linear: Any) -> None:
    variant = get_variant("advanced", seq_len=6, hidden_size=16)
    train, val = linear(300, 6, 4, 0), linear(100, 6, 4, 1)
    config = CONFIG.model_copy(update={"epochs": 2})
    a = DeepModel(variant, config).fit(train, val).predict_proba(val)
    b = DeepModel(variant, config).fit(train, val).predict_proba(val)
    assert np.array_equal(a, b)


def test_scaler_is_fit_on_training_windows_only(linear: Any) -> None:
    train, val = linear(200, 5, 3, 0), linear(100, 5, 3, 1)
    val.X[:] += 100.0  # a validation shift the scaler must not see
    model = DeepModel(get_variant("baseline", seq_len=5), CONFIG.model_copy(update={"epochs": 1})).fit(train, val)
    assert np.allclose(model.scaler.mean_, train.X.reshape(-1, 3).mean(axis=0))


def test_wrong_window_length_is_rejected(linear: Any) -> None:
    model = DeepModel(get_variant("baseline"), CONFIG)
    w = linear(50, 4, 3, 0)
    with pytest.raises(ValueError, match="seq_len=10"):
        model.fit(w, w)
