from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from finmlops.models import build_network, get_variant
from finmlops.training import TrainConfig, deterministic, predict_logits, resolve_device, train_network

CPU = torch.device("cpu")
FAST = TrainConfig(epochs=3, batch_size=64, threads=1, device="cpu", verbosity="silent")


def _train(x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, config: TrainConfig, **variant: Any):
    v = get_variant("baseline", seq_len=x.shape[1], **variant)
    with deterministic(config.seed, config.threads):
        net = build_network(v, x.shape[2])
        outcome = train_network(net, x, y, xv, yv, v, config)
    return net, outcome


def test_same_seed_gives_identical_weights_and_predictions(linear: Any) -> None:
    tr, va = linear(256, 5, 4, 0), linear(64, 5, 4, 1)
    a, _ = _train(tr.X, tr.y, va.X, va.y, FAST)
    b, _ = _train(tr.X, tr.y, va.X, va.y, FAST)
    c, _ = _train(tr.X, tr.y, va.X, va.y, FAST.model_copy(update={"seed": 7}))
    pa, pb, pc = (predict_logits(n, va.X, CPU) for n in (a, b, c))
    assert np.array_equal(pa, pb)
    assert not np.array_equal(pa, pc)


def test_early_stopping_restores_the_best_epoch() -> None:
    # Pure-noise labels on a tiny training set: the network memorises it and validation loss soon rises.
    rng = np.random.default_rng(0)
    x, xv = rng.normal(size=(48, 4, 6)).astype(np.float32), rng.normal(size=(200, 4, 6)).astype(np.float32)
    y, yv = (rng.random(48) < 0.5).astype(np.float32), (rng.random(200) < 0.5).astype(np.float32)
    config = TrainConfig(epochs=60, batch_size=16, patience=5, threads=1, device="cpu", verbosity="silent")
    net, outcome = _train(x, y, xv, yv, config, lr=0.03, hidden_size=64, dropout=0.0)
    losses = [h["val_loss"] for h in outcome.history]
    assert outcome.stopped_early and len(losses) == outcome.best_epoch + config.patience
    assert outcome.best_epoch == int(np.argmin(losses)) + 1
    restored = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.from_numpy(predict_logits(net, xv, CPU)), torch.from_numpy(yv)
    )
    assert float(restored) == pytest.approx(outcome.best_val_loss, abs=1e-5)
    assert float(restored) < losses[-1] - 1e-3


def test_class_balanced_loss_raises_the_minority_probability(linear: Any) -> None:
    tr, va = linear(600, 5, 4, 0), linear(200, 5, 4, 1)
    # Make positives rare (about 15%) so the unweighted loss favours "down".
    rng = np.random.default_rng(3)
    y, yv = tr.y * (rng.random(600) < 0.2), va.y * (rng.random(200) < 0.2)
    plain, _ = _train(tr.X, y, va.X, yv, FAST)
    balanced, _ = _train(tr.X, y, va.X, yv, FAST.model_copy(update={"class_balanced": True}))
    p_plain = torch.sigmoid(torch.from_numpy(predict_logits(plain, va.X, CPU))).mean()
    p_bal = torch.sigmoid(torch.from_numpy(predict_logits(balanced, va.X, CPU))).mean()
    assert float(p_bal) > float(p_plain) + 0.1


def test_history_records_every_epoch_with_validation_metrics(linear: Any) -> None:
    tr, va = linear(128, 5, 4, 0), linear(64, 5, 4, 1)
    _, outcome = _train(tr.X, tr.y, va.X, va.y, FAST)
    assert [h["epoch"] for h in outcome.history] == [1, 2, 3]
    assert {"train_loss", "val_loss", "val_accuracy", "val_auc", "lr", "seconds"} <= set(outcome.history[0])
    assert outcome.train_samples == 128


def test_device_resolution() -> None:
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            resolve_device("cuda")
