"""Explanations: Integrated Gradients for one prediction, and permutation importance over walk-forward test folds.

Every attribution explains the exported model's output, P(up) in [0, 1], in terms of the UNSCALED input window
``[seq_len, n_features]`` in the card's feature order, relative to a stated baseline window:

- ``training_mean`` (the CLI default): every feature at its training mean on every day, i.e. zero in the scaled
  space the network sees. IG is invariant to per-feature affine rescaling, so this equals IG on the scaled input
  with a zero baseline.
- ``window_mean`` (the server default when it has no training statistics): every feature held at its own average
  over the window's days; the attributions then say which days' deviations mattered, not which levels.

Completeness: the attributions sum to ``f(x) - f(baseline)`` up to the quadrature error, reported as the
convergence delta ``sum(attributions) - (f(x) - f(baseline))`` (Captum's definition).

Two implementations of the same integral, with the same quadrature nodes and weights as Captum:
:func:`integrated_gradients_torch` (Captum's autograd, on the CPU in float64: Captum's backward fails on cuDNN LSTMs
in eval mode) and :func:`integrated_gradients_onnx` (numpy + onnxruntime, central finite differences; the server
uses it and never imports torch). This module imports neither torch nor captum at import time.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from finmlops.contract import open_session
from finmlops.contract.explain import (
    DEFAULT_STEPS,
    QUADRATURES,
    Explanation,
    Quadrature,
    integrated_gradients_onnx,
    onnx_probabilities,
    window_pair,
)
from finmlops.data import DataStore, dataset_hash_of
from finmlops.evaluation.results import Result, read_result, write_result
from finmlops.features import Windows, compute_features, label_from_settings, make_target, make_windows
from finmlops.features.target import LabelSpec
from finmlops.models.variants import get_variant
from finmlops.provenance import Real, stamp
from finmlops.stats.classification import roc_auc

# --- Captum's implementation of the same integral (torch) -------------------------------------------------------------


def integrated_gradients_torch(
    network: Any,
    scaler: Any,
    x: np.ndarray,
    baseline: np.ndarray | None,
    steps: int = DEFAULT_STEPS,
    *,
    method: Quadrature = "gausslegendre",
) -> tuple[np.ndarray, float, float, float]:
    """Captum's Integrated Gradients of P(up) for one unscaled window ``x`` ``[seq, f]``.

    ``network`` maps scaled windows to logits (``finmlops.models``); ``scaler`` has ``mean_``/``scale_``. The model
    explained is ``finmlops.tracking.onnx_export.ProbabilityModel`` (scaling, network, sigmoid), the graph that is
    exported to ONNX, so both engines explain the same function. It runs on a float64 CPU copy of the network:
    Captum's backward pass fails on cuDNN LSTMs in eval mode, and float64 leaves only the quadrature error in the
    convergence delta. Returns attributions ``[seq, f]`` float64, the convergence delta, P(up) at ``x`` and at the
    baseline.
    """
    import torch  # deferred: torch
    from captum.attr import IntegratedGradients  # deferred: captum, matplotlib, torch

    from finmlops.tracking.onnx_export import ProbabilityModel  # deferred: onnx, torch

    x, b = window_pair(x, baseline)
    if method not in QUADRATURES:
        raise ValueError(f"unknown quadrature {method!r}; known: {', '.join(QUADRATURES)}")
    network = copy.deepcopy(network).cpu()
    model = ProbabilityModel(network, scaler.mean_, scaler.scale_).double().eval()
    inputs, base = torch.from_numpy(x[None].copy()), torch.from_numpy(b[None].copy())
    attributions, delta = IntegratedGradients(model).attribute(
        inputs, baselines=base, target=0, n_steps=steps, method=method, return_convergence_delta=True
    )
    with torch.no_grad():
        probs = model(torch.cat([inputs, base])).reshape(-1).tolist()
    return attributions[0].detach().numpy(), float(delta[0]), probs[0], probs[1]


def _decision_window(
    features: pd.DataFrame, seq_len: int, ticker: str, date: str | None
) -> tuple[np.ndarray, list[str]]:
    """The unscaled window ``[seq_len, f]`` of ``ticker`` ending on ``date`` (default: its latest complete window)
    from a feature frame of the whole stored universe, and its days. Raises ``ValueError`` naming what is missing."""

    if ticker not in features.index.get_level_values("ticker"):
        known = sorted(set(features.index.get_level_values("ticker")))
        raise ValueError(f"ticker {ticker!r} is not in the data store (it has {', '.join(known)})")
    own = features.xs(ticker, level="ticker")
    # Windows over the whole universe, as in training: its calendar decides which days count as missing.
    windows = make_windows(features, None, seq_len, require_target=False)
    windows = windows.subset(windows.tickers == ticker)
    if len(windows) == 0:
        raise ValueError(f"{ticker}: no complete window of {seq_len} days without missing features")
    if date is None:
        i = len(windows) - 1
    else:
        try:
            day = pd.Timestamp(date)
        except ValueError:
            raise ValueError(f"--date {date!r}: expected YYYY-MM-DD") from None
        hits = np.flatnonzero(pd.DatetimeIndex(windows.dates) == day)
        if len(hits) == 0:
            raise ValueError(
                f"{ticker} has no complete {seq_len}-day window ending on {day.date()} (not a trading "
                f"day, or within the features' warm-up); its windows end {pd.Timestamp(windows.dates[0]).date()} "
                f"to {pd.Timestamp(windows.dates[-1]).date()}"
            )
        i = int(hits[0])
    end = own.index.get_loc(pd.Timestamp(windows.dates[i]))
    return windows.X[i], [str(d.date()) for d in own.index[end - seq_len + 1 : end + 1]]


def explain_saved_model(
    settings: Any,
    variant: str,
    *,
    ticker: str | None = None,
    date: str | None = None,
    steps: int = DEFAULT_STEPS,
    method: Quadrature = "gausslegendre",
) -> Explanation:
    """``finmlops explain``: IG (Captum) of the model in ``settings.models_dir/<variant>/`` (the training stage's
    ``load_model``) for the window of ``ticker`` ending on ``date``, against the training-mean baseline.

    Features come from the data store through ``compute_features`` on the whole stored universe, as in training.
    ``ticker`` defaults to the first ticker the model was trained on, ``date`` to that ticker's latest complete
    window (its label may still be unknown: that is tomorrow's prediction). Raises ``FileNotFoundError`` without a
    trained model, ``ValueError`` naming the ticker, date or feature that does not fit.
    """
    from finmlops.training import load_model  # deferred: torch

    model, config = load_model(settings.models_dir / variant)
    store = DataStore(settings.data_dir)
    universe = store.read()
    features = compute_features(universe, model.variant.feature_set)
    if list(features.columns) != list(config["feature_names"]):
        raise ValueError(
            f"{settings.models_dir / variant}/config.json: the model's features {config['feature_names']} differ "
            f"from the {model.variant.feature_set!r} features computed now {list(features.columns)}"
        )
    ticker = (ticker or (config.get("tickers") or sorted(universe))[0]).upper()
    window, days = _decision_window(features, model.variant.seq_len, ticker, date)
    baseline = np.asarray(model.scaler.mean_, dtype=np.float64)
    attributions, delta, prob, base_prob = integrated_gradients_torch(
        model.net, model.scaler, window, baseline, steps, method=method
    )
    return Explanation(
        attributions=attributions, values=window.astype(np.float64),
        baseline=np.broadcast_to(baseline, window.shape).copy(), feature_names=list(config["feature_names"]),
        days=days, prob_up=prob, baseline_prob_up=base_prob, convergence_delta=delta, baseline_kind="training_mean",
        steps=steps, method=method, engine="captum",
        context={
            "variant": variant, "ticker": ticker, "date": days[-1], "model_dir": str(settings.models_dir / variant),
            "model_data_hash": config.get("data_hash"), "store_data_hash": store.dataset_hash,
        },
    )  # fmt: skip


def explain_registered_model(
    settings: Any,
    ref: str,
    *,
    ticker: str | None = None,
    date: str | None = None,
    steps: int = DEFAULT_STEPS,
    method: Quadrature = "gausslegendre",
) -> Explanation:
    """``finmlops explain --model``: IG of a registered (or exported) ONNX model, e.g. one ``finmlops run``
    registered, computed with :func:`integrated_gradients_onnx` (onnxruntime, no torch) for the window of ``ticker``
    ending on ``date``, against the training-mean baseline (the per-feature means of the model's
    ``drift_reference.json``, its training windows' last days).

    ``ref``: ``NAME@alias``, ``NAME/VERSION``, a registered name, an MLflow URI or a model folder. ``ticker``
    defaults to the store's first ticker. Raises ``ModelError`` when the model cannot be fetched, ``ValueError``
    naming the ticker, date or feature that does not fit.
    """

    from finmlops.tracking.backend import configure_tracking  # deferred: mlflow, scipy
    from finmlops.tracking.packaging import fetch_model, read_model, registry_uri  # deferred: mlflow, onnx, scipy

    uri = registry_uri(ref)
    if not Path(uri).exists():
        configure_tracking(settings)
    store = DataStore(settings.data_dir)
    universe = store.read()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = fetch_model(uri, Path(tmp))
        artifact = read_model(model_dir)
        card, reference = artifact.card, artifact.drift_reference
        assert card is not None  # read_model checked it
        session = open_session(artifact.graph, max(1, int(getattr(settings, "threads", 1))))
    if reference is None or list(reference["features"]) != list(card.feature_names):
        raise ValueError(f"model {ref!r}: no drift_reference.json with its training means of {card.feature_names}")
    features = compute_features(universe, card.feature_set)
    if list(features.columns) != list(card.feature_names):
        raise ValueError(
            f"model {ref!r}: its features {card.feature_names} differ from the {card.feature_set!r} features "
            f"computed now {list(features.columns)}"
        )
    ticker = (ticker or sorted(universe)[0]).upper()
    window, days = _decision_window(features, card.seq_len, ticker, date)
    baseline = np.array([reference["features"][n]["mean"] for n in card.feature_names], dtype=np.float64)
    attributions = integrated_gradients_onnx(session, window, baseline, steps, method=method)
    b = np.broadcast_to(baseline, window.shape).copy()
    prob, base_prob = onnx_probabilities(session, np.stack([window, b]))
    return Explanation(
        attributions=attributions, values=window.astype(np.float64), baseline=b, feature_names=list(card.feature_names),
        days=days, prob_up=float(prob), baseline_prob_up=float(base_prob),
        convergence_delta=float(attributions.sum() - (prob - base_prob)), baseline_kind="training_mean",
        steps=steps, method=method, engine="onnxruntime-central-differences",
        context={
            "variant": card.variant, "model": ref, "model_uri": uri, "ticker": ticker, "date": days[-1],
            "model_data_hash": card.data_hash, "store_data_hash": store.dataset_hash,
        },
    )  # fmt: skip


# --- global: permutation importance ----------------------------------------------------------------------------------


def _accuracy(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((p > 0.5) == (y > 0.5)))


def permutation_importance(
    predict_fn: Callable[[np.ndarray], np.ndarray],
    windows: Any,
    y: np.ndarray,
    n_repeats: int = 5,
    seed: int = 0,
    *,
    feature_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """How much accuracy (at 0.5) and ROC AUC drop when one feature is shuffled across samples.

    ``predict_fn``: windows ``[n, seq, f]`` -> P(up) ``[n]``; ``windows``: the array, or an object with ``X`` (and
    ``feature_names``); ``y``: 0/1 labels ``[n]``. A feature is permuted for all timesteps of a window together
    (the whole ``[seq]`` series of feature ``j`` moves to another sample), so its own time pattern stays intact and
    only its link to the other features and to the label is broken. Returns a frame indexed by ``feature`` (input
    order) with ``accuracy_drop_mean/std`` and ``auc_drop_mean/std`` over ``n_repeats`` permutations (std with
    ddof=1; 0 for one repeat); ``attrs`` holds the unpermuted ``accuracy``, ``auc`` and ``n``.
    """
    x = np.asarray(getattr(windows, "X", windows))
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.ndim != 3 or len(x) != len(y) or len(x) < 2:
        raise ValueError(f"need windows [n >= 2, seq, f] and labels [n], got {x.shape} and {y.shape}")
    if n_repeats < 1:
        raise ValueError(f"n_repeats must be >= 1, got {n_repeats}")
    names = list(feature_names or getattr(windows, "feature_names", None) or [f"f{j}" for j in range(x.shape[2])])
    if len(names) != x.shape[2]:
        raise ValueError(f"{len(names)} feature names for {x.shape[2]} features")
    base = np.asarray(predict_fn(x), dtype=np.float64)
    base_acc, base_auc = _accuracy(y, base), roc_auc(y, base)
    rng = np.random.default_rng(seed)
    drops = np.empty((x.shape[2], n_repeats, 2))
    shuffled = x.copy()
    for r in range(n_repeats):
        for j in range(x.shape[2]):
            shuffled[:, :, j] = x[rng.permutation(len(x)), :, j]
            p = np.asarray(predict_fn(shuffled), dtype=np.float64)
            drops[j, r] = base_acc - _accuracy(y, p), base_auc - roc_auc(y, p)
            shuffled[:, :, j] = x[:, :, j]
    ddof = 1 if n_repeats > 1 else 0
    frame = pd.DataFrame(
        {
            "accuracy_drop_mean": drops[:, :, 0].mean(axis=1),
            "accuracy_drop_std": drops[:, :, 0].std(axis=1, ddof=ddof),
            "auc_drop_mean": drops[:, :, 1].mean(axis=1),
            "auc_drop_std": drops[:, :, 1].std(axis=1, ddof=ddof),
        },
        index=pd.Index(names, name="feature"),
    )
    frame.attrs.update(accuracy=base_acc, auc=base_auc, n=len(x))
    return frame


class FoldDrop(Result):
    """One feature on one fold: the drops (fractions of accuracy, of AUC) when it is shuffled, mean and std over the
    repeats."""

    accuracy_drop_mean: Real
    accuracy_drop_std: Real
    auc_drop_mean: Real
    auc_drop_std: Real


class FoldImportance(Result):
    """One walk-forward test fold: its ``n`` test windows, unpermuted ``accuracy`` and ``auc``, the seconds its fit
    and permutations took, and each feature's :class:`FoldDrop`."""

    fold: str
    n: int
    accuracy: Real
    auc: Real
    seconds: float
    features: dict[str, FoldDrop]


class FeatureImportance(Result):
    """One feature pooled over the folds: the mean drop weighted by test rows, its standard error across folds
    (None with one fold), the mean repeat-to-repeat std, and on how many folds the accuracy drop was positive."""

    feature: str
    accuracy_drop: Real
    accuracy_drop_se: float | None = None
    accuracy_repeat_std: Real = float("nan")
    auc_drop: Real
    auc_drop_se: float | None = None
    auc_repeat_std: Real = float("nan")
    folds_positive: int


class PooledAccuracy(Result):
    """The unpermuted accuracy over all test windows (``n``), with its binomial standard error."""

    n: int
    accuracy: float
    accuracy_se: float


class GlobalImportance(Result):
    """``results/importance_<variant>.json``: the pooled ranking (sorted by accuracy drop), the per-fold tables, the
    run's settings and its provenance stamp; ``path`` is where it was written (not stored in the file)."""

    variant: str
    feature_set: str
    seq_len: int
    test_years: list[int]
    label: LabelSpec = Field(default_factory=LabelSpec)
    epochs: int
    n_repeats: int
    seed: int
    pooled: PooledAccuracy
    features: list[FeatureImportance]
    folds: list[FoldImportance] = Field(default_factory=list)
    provenance: dict[str, Any] = Field(default_factory=dict)
    path: str | None = None


def _pool_folds(folds: Sequence[FoldImportance], names: list[str]) -> list[FeatureImportance]:
    """Per feature: the mean drop over folds weighted by test rows, and its standard error across folds (None with
    one fold: the repeat-to-repeat std alone would hide the model-to-model variation). Sorted by accuracy drop."""
    n = np.array([f.n for f in folds], dtype=np.float64)
    rows = []
    for name in names:
        drops = [f.features[name] for f in folds]
        record: dict[str, float | None] = {}
        for metric in ("accuracy", "auc"):
            means = np.array([getattr(d, f"{metric}_drop_mean") for d in drops])
            record[f"{metric}_drop"] = float(np.average(means, weights=n))
            record[f"{metric}_drop_se"] = float(means.std(ddof=1) / np.sqrt(len(means))) if len(means) > 1 else None
            record[f"{metric}_repeat_std"] = float(np.mean([getattr(d, f"{metric}_drop_std") for d in drops]))
        positive = int(sum(d.accuracy_drop_mean > 0 for d in drops))
        rows.append(FeatureImportance(feature=name, folds_positive=positive, **record))
    return sorted(rows, key=lambda r: -r.accuracy_drop)


def walk_forward_importance(
    universe: Mapping[str, pd.DataFrame],
    variant: str,
    *,
    test_years: Sequence[int],
    label: LabelSpec | None = None,
    epochs: int = 8,
    seed: int = 42,
    threads: int = 2,
    device: str = "auto",
    n_repeats: int = 5,
    val_frac: float = 0.1,
    log: Callable[[str], None] | None = None,
) -> GlobalImportance:
    """Permutation importance of ``variant`` on each walk-forward test fold (one calendar year each).

    The folds, windows and fits are ``finmlops.training.cross_val_predict``'s for this variant, as
    ``walk_forward_predictions`` runs it (same label, purge/embargo, ``val_frac``, loop settings and seed, so the
    unpermuted predictions are the runner's); each fold's fitted model is permuted in the fold callback.
    ``label`` defaults to ``LabelSpec()``. Returns per-fold tables and the pooled
    ranking of :func:`_pool_folds`.
    """
    from finmlops.training import DeepModel, cross_val_predict, label_folds, train_config  # deferred: torch

    label = label or LabelSpec()
    config = get_variant(variant)
    target = make_target(universe, label)
    windows = make_windows(compute_features(universe, config.feature_set), target, config.seq_len)
    folds = label_folds(target, seq_len=config.seq_len, label=label, test_years=test_years, val_frac=val_frac)
    loop = train_config(epochs=epochs, seed=seed, threads=threads, device=device)
    results: list[FoldImportance] = []
    started = [time.perf_counter()]

    def permute(fold: Any, model: Any, test: Windows, _prob: np.ndarray) -> None:
        def predict(x: np.ndarray) -> np.ndarray:
            return model.predict_proba(Windows(x, test.y, test.dates, test.tickers, test.feature_names))

        table = permutation_importance(predict, test, test.y, n_repeats, seed)
        results.append(FoldImportance(
            fold=fold.name, n=table.attrs["n"], accuracy=table.attrs["accuracy"], auc=table.attrs["auc"],
            seconds=time.perf_counter() - started[0], features=table.to_dict(orient="index"),
        ))  # fmt: skip
        if log is not None:
            log(f"fold {fold.name}: {len(test)} test windows, accuracy {results[-1].accuracy:.4f}, "
                f"{results[-1].seconds:.1f}s")  # fmt: skip
        started[0] = time.perf_counter()

    try:
        cross_val_predict(lambda: DeepModel(config, loop), windows, folds, label, on_fold=permute)
    except ValueError as exc:
        raise ValueError(f"variant {variant}: {exc}") from None
    n = sum(f.n for f in results)
    accuracy = sum(f.accuracy * f.n for f in results) / n
    return GlobalImportance(
        variant=variant, feature_set=config.feature_set, seq_len=config.seq_len,
        test_years=[int(y) for y in test_years], label=label, epochs=epochs, n_repeats=n_repeats, seed=seed,
        pooled=PooledAccuracy(n=n, accuracy=accuracy, accuracy_se=float(np.sqrt(accuracy * (1 - accuracy) / n))),
        features=_pool_folds(results, list(windows.feature_names)), folds=results,
    )  # fmt: skip


def run_global_importance(
    settings: Any,
    variant: str,
    *,
    test_years: Sequence[int],
    epochs: int = 8,
    n_repeats: int = 5,
    device: str = "auto",
    log: Callable[[str], None] | None = None,
    universe: Mapping[str, pd.DataFrame] | None = None,
) -> GlobalImportance:
    """``finmlops explain --global``: :func:`walk_forward_importance` on the data store (or on ``universe``, e.g.
    ``finmlops run``'s own tickers and dates), written with a provenance stamp to
    ``results/importance_<variant>.json`` (atomically, read back by :func:`load_importance`). Returns the result
    with its ``path``."""

    if universe is None:
        store = DataStore(settings.data_dir)
        universe, data_hash = store.read_versioned()
    else:
        data_hash = dataset_hash_of(universe)
    result = walk_forward_importance(
        universe, variant, test_years=test_years, label=label_from_settings(settings), epochs=epochs,
        seed=settings.seed, threads=settings.threads, device=device, n_repeats=n_repeats, log=log,
    )  # fmt: skip
    run_config = {
        "variant": variant, "test_years": result.test_years, "label": result.label.model_dump(), "epochs": epochs,
        "n_repeats": n_repeats, "tickers": sorted(universe),
    }  # fmt: skip
    result.provenance = stamp(data_hash=data_hash, config=run_config, seed=settings.seed)
    path = settings.results_dir / f"importance_{variant}.json"
    write_result(path, result, exclude={"path"})
    result.path = str(path)
    return result


def load_importance(path: Path) -> GlobalImportance:
    """Read an ``importance_<variant>.json`` that :func:`run_global_importance` wrote (or an older one); a
    ``ResultFileError`` names the file and the field that does not follow the schema."""
    return read_result(path, GlobalImportance)
