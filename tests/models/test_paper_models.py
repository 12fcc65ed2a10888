"""The papers' models: presets as specified, each fits and predicts a small slice, seeded determinism, and the
random and reversal baselines by hand."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from finmlops.models import PAPER_VARIANTS, build_network, make_baseline, make_estimator
from finmlops.training import DeepModel, TrainConfig, estimator

LOOP = TrainConfig(epochs=3, patience=2, threads=1, device="cpu", verbosity="silent", seed=3)


def test_presets_match_the_papers() -> None:
    fk, kdh = PAPER_VARIANTS["fk_lstm"], PAPER_VARIANTS["kdh_dnn"]
    assert (fk.architecture, fk.hidden_size, fk.num_layers, fk.dropout) == ("lstm", 25, 1, 0.1)
    assert (fk.optimizer, fk.seq_len, fk.feature_set, fk.patience) == ("rmsprop", 240, "fk240", 10)
    assert (kdh.architecture, kdh.hidden_size, kdh.layers, kdh.feature_set, kdh.seq_len) == (
        "dnn",
        31,
        (10, 5),
        "kdh",
        1,
    )
    net = build_network(kdh, 31)
    widths = [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [62, 20, 10, 1]  # maxout, two pieces: 31, 10 and 5 units, then one logit
    assert build_network(fk, 1)(torch.randn(2, 240, 1)).shape == (2,)


@pytest.mark.parametrize("name", ["kdh_gbt", "kdh_rf", "lgbm_alpha158", "kdh_ensemble", "kdh_dnn"])
def test_each_model_learns_a_determined_label_and_is_deterministic(name: str, linear: Any) -> None:
    train, val, test = (linear(n, 1, 31, s) for n, s in ((1500, 0), (300, 1), (500, 2)))

    def fresh() -> Any:
        if name == "kdh_dnn":
            return DeepModel(
                PAPER_VARIANTS["kdh_dnn"].model_copy(update={"dropout": 0.1}), LOOP.model_copy(update={"epochs": 20})
            )
        if name == "kdh_rf":
            return make_estimator(name, seed=3, n_estimators=30)
        if name == "kdh_ensemble":
            return estimator(name, LOOP)
        if name == "lgbm_alpha158":
            # Qlib's L1 205 / L2 581 are sized for millions of rows: on 1,500 they allow no split at all.
            return make_estimator(name, seed=3, reg_alpha=0.0, reg_lambda=1.0)
        return make_estimator(name, seed=3)

    p = fresh().fit(train, val).predict_proba(test)
    assert p.shape == (500,) and ((p >= 0) & (p <= 1)).all()
    assert np.mean((p > 0.5) == (test.y > 0.5)) > 0.7, name
    assert np.array_equal(p, fresh().fit(train, val).predict_proba(test))


def test_the_forest_on_two_threads_predicts_the_same_bits_every_time(linear: Any) -> None:
    # scikit-learn's parallel predict_proba adds the trees in the order its threads finish: on two threads, nine of
    # ten calls differed in the last bits before the forest predicted on one.
    train, test = linear(20_000, 1, 31, 0), linear(20_000, 1, 31, 1)
    forest = make_estimator("kdh_rf", seed=1, threads=2, n_estimators=100, max_depth=8).fit(train, train)
    first = forest.predict_proba(test)
    assert all(np.array_equal(first, forest.predict_proba(test)) for _ in range(5))
    assert forest.model.n_jobs == 2  # type: ignore[attr-defined]  # the fit stays parallel


def test_fk_lstm_fits_a_short_slice(linear: Any) -> None:
    variant = PAPER_VARIANTS["fk_lstm"].model_copy(update={"seq_len": 20})
    train, val = linear(300, 20, 1, 0), linear(100, 20, 1, 1)
    model = DeepModel(variant, LOOP.model_copy(update={"epochs": 2})).fit(train, val)
    assert model.outcome is not None and len(model.outcome.history) == 2
    assert model.predict_proba(val).shape == (100,)


class _W:
    def __init__(self, dates: list[str], tickers: list[str]) -> None:
        self.dates = pd.DatetimeIndex(dates).to_numpy()
        self.tickers = np.array(tickers)
        self.X = np.zeros((len(dates), 1, 1), dtype=np.float32)
        self.y = np.zeros(len(dates), dtype=np.float32)


def test_reversal_buys_yesterdays_losers_by_hand() -> None:
    dates = pd.bdate_range("2024-01-01", periods=3, name="date")
    frame = lambda c: pd.DataFrame({"adj_close": c}, index=dates)  # noqa: E731
    model = make_baseline("reversal", universe={"A": frame([100.0, 110.0, 99.0]), "B": frame([50.0, 45.0, 45.0])})
    w = _W(["2024-01-02", "2024-01-02", "2024-01-03", "2024-01-03"], ["A", "B", "A", "B"])
    np.testing.assert_allclose(model.fit(w, w).predict_proba(w), [0.5 - 0.1, 0.5 + 0.1, 0.5 + 0.1, 0.5])
    with pytest.raises(ValueError, match="reversal: no return"):
        model.predict_proba(_W(["2024-01-01"], ["A"]))


def test_random_baseline_is_seeded() -> None:
    w = _W(["2024-01-02"] * 50, ["A"] * 50)
    a, b = make_baseline("random", seed=1), make_baseline("random", seed=2)
    np.testing.assert_array_equal(a.predict_proba(w), np.random.default_rng(1).random(50))
    assert not np.array_equal(a.predict_proba(w), b.predict_proba(w))
