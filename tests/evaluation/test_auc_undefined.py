"""A forecast constant within every fold ranks nothing: its AUC is undefined, not a pooled artefact of the folds."""

from __future__ import annotations

import numpy as np
import pandas as pd

from finmlops.evaluation.audit import no_signal_checks
from finmlops.evaluation.metrics import BootstrapConfig, evaluate_predictions, metrics_with_ci, prepare
from finmlops.evaluation.workspace import markdown_table

BOOT = BootstrapConfig(n_boot=200, block_len=5, seed=1)


def _fold_constant_market(seed: int = 0) -> pd.DataFrame:
    """Two folds of 400 dates x 4 tickers. "majority" says 0.55 in the fold with 45 % up days and 0.56 in the
    fold with 55 %: accuracy 0.5 overall, but pooled over folds the higher constant sits on more up days, so the
    pooled AUC is 0.55 with a CI well above 0.5. "noise" is an honest random forecast."""
    rng = np.random.default_rng(seed)
    parts = []
    for fold, start, base_rate, constant in (("2020", "2020-01-01", 0.45, 0.55), ("2022", "2022-01-03", 0.55, 0.56)):
        dates = pd.bdate_range(start, periods=400)
        grid = pd.MultiIndex.from_product([dates, list("ABCD")], names=["date", "ticker"]).to_frame(index=False)
        y = np.zeros(len(grid), dtype=int)
        y[rng.permutation(len(grid))[: round(base_rate * len(grid))]] = 1
        ret = np.where(y == 1, 1.0, -1.0) * rng.uniform(0.001, 0.02, len(grid))
        for model, prob in (("majority", np.full(len(grid), constant)), ("noise", rng.uniform(0.3, 0.7, len(grid)))):
            parts.append(grid.assign(fold=fold, model=model, prob_up=prob, y_true=y, ret_next=ret))
    return pd.concat(parts, ignore_index=True)


def test_pooled_auc_of_a_fold_constant_forecast_is_undefined() -> None:
    preds = _fold_constant_market()
    result = evaluate_predictions(preds, baselines=["majority"], boot=BOOT)
    majority = result.models["majority"]
    assert majority.pooled.accuracy.value == 0.5
    for entry in (majority.pooled.roc_auc, *(f.roc_auc for f in majority.folds.values())):
        assert np.isnan([entry.value, entry.ci_low, entry.ci_high]).all()
    assert all(np.isnan(t.roc_auc) for t in majority.per_ticker.values())
    # A forecast that varies keeps its AUC.
    assert 0.4 < result.models["noise"].pooled.roc_auc.value < 0.6
    row = next(line for line in markdown_table(result).splitlines() if line.startswith("| majority"))
    assert row.split(" | ")[3] == "n/a"


def test_random_walk_check_ignores_the_pooled_auc_of_a_fold_constant_forecast() -> None:
    preds = _fold_constant_market()
    rows = preds.loc[preds["model"] == "majority"]
    # What pooling would report, were the scores taken as one ranking: an AUC CI that excludes 0.5.
    pooled = metrics_with_ci(prepare(rows.assign(fold="all")), BOOT).roc_auc
    assert pooled.value > 0.53 and pooled.ci_low > 0.5
    checks = {c.model: c for c in no_signal_checks("random_walk", preds, BOOT)}
    assert checks["majority"].passed, checks["majority"].detail
    assert "undefined" in checks["majority"].detail
