"""Step 5 of ``finmlops run``: each variant's final model, registered, and the ``champion`` decision.

The final model of a variant is fitted exactly as the walk-forward's last fold fits it (same dates, purge, embargo,
early-stopping block, epochs and seed): on every date before the last test year. Its registered version carries
the variant's walk-forward predictions, so the promotion rule compares versions on out-of-sample rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from finmlops.evaluation.results import Evaluation
from finmlops.features import compute_features, make_target, make_windows
from finmlops.features.target import LabelSpec
from finmlops.models.variants import VariantConfig
from finmlops.provenance import Result
from finmlops.settings import Settings

DRIFT_REFERENCE_WINDOWS = 5000  # training windows kept as the drift reference (evenly spaced): plenty for PSI bins
PROMOTION_MARGIN = 0.005


class FinalModel(Result):
    """A variant's registered final model: its registry name and version, training run, the training span (ISO
    dates), its pooled walk-forward accuracy (a fraction), and ``max_abs_diff_last_fold``: how far its P(up) on the
    last test year is from the walk-forward's (0 when training is deterministic; None without shared rows)."""

    name: str
    version: int
    run_id: str
    train_start: str
    train_end: str
    wf_accuracy: float | None = None
    max_abs_diff_last_fold: float | None = None


class ChampionDecision(Result):
    """What the run did with ``champion`` for one registered model (see :func:`decide_champion`): the decision,
    the version that holds it now, and why, in words."""

    decision: Literal["promoted", "kept", "bootstrapped"]
    champion: int
    detail: str


class RegisteredChampion(FinalModel, ChampionDecision):
    """One entry of the register step's output: the final model and the champion decision about it."""


def final_fit(
    universe: Mapping[str, pd.DataFrame],
    variant: VariantConfig,
    *,
    gap_seq_len: int,
    last_test_year: int,
    epochs: int,
    seed: int,
    threads: int,
    label: LabelSpec,
) -> tuple[Any, Any, Any]:
    """Fit ``variant`` (a preset with the run config's overrides) on all dates before ``last_test_year`` with
    ``cross_val_predict`` on the walk-forward's
    last fold (purge and embargo sized by ``gap_seq_len`` and ``label``, the runner's loop settings), on the label
    ``make_target(universe, label)``. Returns ``(model, train_windows, test_windows)``; the test windows are that
    year's, to check the fit against the walk-forward predictions."""
    from finmlops.training import DeepModel, cross_val_predict, label_folds, train_config  # deferred: torch

    target = make_target(universe, label)
    windows = make_windows(compute_features(universe, variant.feature_set), target, variant.seq_len)
    folds = label_folds(target, seq_len=gap_seq_len, label=label, test_years=[last_test_year])
    loop = train_config(epochs=epochs, seed=seed, threads=threads)
    fitted: list[tuple[Any, Any]] = []
    cross_val_predict(
        lambda: DeepModel(variant, loop), windows, folds, label,
        on_fold=lambda _fold, model, test, _prob: fitted.append((model, test)),
    )  # fmt: skip
    ((model, test),) = fitted
    train = windows.subset(folds[0].masks(windows.dates)[0] & np.isfinite(windows.y))
    return model, train, test


def _pooled_metrics(evaluation: Evaluation, variant: str) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Pooled walk-forward metrics (``wf_<name>``, the defined ones) and per-fold accuracy of ``variant`` from
    evaluation.json."""
    entry = evaluation.models[variant]
    pooled = {f"wf_{k}": float(v) for k, v in entry.pooled.values().items() if math.isfinite(v)}
    folds = [{"accuracy": float(f.accuracy.value)} for _, f in sorted(entry.folds.items())]
    return pooled, folds


def register_final_model(
    settings: Settings,
    variant: VariantConfig,
    *,
    label: LabelSpec,
    universe: Mapping[str, pd.DataFrame],
    predictions: pd.DataFrame,
    evaluation: Evaluation,
    data_hash: str,
    gap_seq_len: int,
    test_years: Sequence[int],
    epochs: int,
) -> FinalModel:
    """Fit, log (ONNX pyfunc + the variant's walk-forward predictions) and register one variant's final model:
    ``variant`` with the run config's hyperparameters, on the run's ``label``, so the registered model is the one
    the walk-forward evaluated."""
    import mlflow  # deferred: mlflow

    from finmlops.tracking import TrainedNetwork, log_training_run  # deferred: mlflow, onnxruntime

    variant_name = variant.name
    model, train, test = final_fit(
        universe, variant, gap_seq_len=gap_seq_len, last_test_year=test_years[-1], epochs=epochs,
        seed=settings.seed, threads=settings.threads, label=label,
    )  # fmt: skip
    rows = predictions[predictions["model"] == variant_name]
    last = rows[rows["fold"] == str(test_years[-1])]
    wf = last.set_index(["date", "ticker"])["prob_up"]
    keys = pd.MultiIndex.from_arrays([pd.DatetimeIndex(test.dates), test.tickers])
    shared = keys.isin(wf.index)
    diff = np.abs(model.predict_proba(test)[shared] - wf.reindex(keys[shared]).to_numpy())
    metrics, folds = _pooled_metrics(evaluation, variant_name)
    span = {
        "train_start": str(pd.Timestamp(train.dates.min()).date()),
        "train_end": str(pd.Timestamp(train.dates.max()).date()),
    }
    keep = np.linspace(0, len(train) - 1, min(len(train), DRIFT_REFERENCE_WINDOWS)).astype(int)
    history = model.outcome.history if model.outcome else []
    run_id = log_training_run(
        settings,
        variant=variant_name,
        params={
            "variant": model.variant.model_dump(),
            "train": model.config.model_dump(),
            "test_years": list(test_years),
            "label": label.model_dump(),
            "tickers": sorted(universe),
            "final_fit": span | {"windows": len(train)},
        },
        feature_set=model.variant.feature_set,
        feature_names=list(train.feature_names),
        data_hash=data_hash,
        epoch_losses={k: [h[k] for h in history] for k in (history[0] if history else {}) if k != "epoch"},
        fold_metrics=folds,
        metrics=metrics,
        predictions=rows,
        trained=TrainedNetwork(model.net.cpu(), model.scaler, train.X[keep], span["train_start"], span["train_end"]),
        register=True,
    )
    (version,) = mlflow.MlflowClient().search_model_versions(f"run_id = '{run_id}'")
    return FinalModel(
        name=version.name, version=int(version.version), run_id=run_id, **span,
        wf_accuracy=metrics.get("wf_accuracy"), max_abs_diff_last_fold=float(diff.max()) if len(diff) else None,
    )  # fmt: skip


def decide_champion(name: str, version: int, boot: Any) -> ChampionDecision:
    """Give ``champion`` to ``name`` v``version`` by the promotion rule with the run's bootstrap ``boot`` (a
    ``finmlops.stats.bootstrap.BootstrapConfig``, the evaluation's), or bootstrap it.

    - ``promoted``: it beat the holder (or, with no holder, the majority class) significantly.
    - ``bootstrapped``: nobody held ``champion`` and the rule refused; the alias is set with a recorded forced
      promotion (``promotion.champion.*`` tags), so that the A/B experiment has something to serve.
    - ``kept``: a holder exists and the candidate did not beat it; the holder stays champion.
    """
    from finmlops.tracking import PromotionRefused, promote  # deferred: mlflow
    from finmlops.tracking.registry import TestedPromotion, alias_holder  # deferred: mlflow

    holder = alias_holder(name, "champion")
    try:
        decision = promote(name, version, "champion", margin=PROMOTION_MARGIN, boot=boot)
        detail = decision.summary if isinstance(decision, TestedPromotion) else decision.reason
        return ChampionDecision(decision="promoted", champion=version, detail=detail)
    except PromotionRefused as exc:
        if holder is not None:
            return ChampionDecision(decision="kept", champion=int(holder.version), detail=str(exc))
        reason = (
            "bootstrap by `finmlops run`: nobody held champion and the promotion rule refused "
            f"({exc}); set so that the A/B experiment can serve a model, not because it is better"
        )
        promote(name, version, "champion", force=True, reason=reason)
        return ChampionDecision(decision="bootstrapped", champion=version, detail=str(exc))
