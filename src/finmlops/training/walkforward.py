"""The walk-forward runner: yearly test folds, expanding training history, every model retrained per fold and
scored on the same ``(date, ticker)`` rows. Its output is the predictions frame of docs/architecture.md."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from finmlops.models.base import Predictor
from finmlops.models.baselines import BASELINES, make_baseline
from finmlops.models.variants import VARIANTS, VariantConfig, get_variant
from finmlops.training.config import TrainConfig
from finmlops.training.trainer import DeepModel

log = logging.getLogger(__name__)

PREDICTION_COLUMNS: tuple[str, ...] = ("date", "ticker", "fold", "model", "prob_up", "y_true", "ret_next")
DEFAULT_TEST_YEARS: tuple[int, ...] = tuple(range(2014, 2024))


def _labelled(windows: Any) -> Any:
    """Only the windows with a known 0/1 label (``make_windows`` already requires one; this guards custom targets)."""
    return windows.subset(np.isfinite(windows.y))


@contextmanager
def _tasks(total: int, progress: bool) -> Iterator[Any]:
    """Yield ``advance(description)``: a rich bar over (fold, model) fits, or one log line per fit."""
    if not progress:
        yield lambda text: log.info("walk-forward: %s", text)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("[bold]walk-forward"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.description}"), console=Console(stderr=True),
    )  # fmt: skip
    with bar:
        task = bar.add_task("", total=total)
        yield lambda text: bar.update(task, advance=1, description=text)


def _intersect(fold: str, scored: dict[str, pd.DataFrame]) -> tuple[pd.MultiIndex, dict[str, Any]]:
    """The ``(date, ticker)`` rows every model scored in ``fold``, and a report of what each model lost."""
    keys = {m: pd.MultiIndex.from_frame(f[["date", "ticker"]]) for m, f in scored.items()}
    common = None
    for index in keys.values():
        common = index if common is None else common.intersection(index)
    assert common is not None
    dropped = {m: int(len(index) - len(common)) for m, index in keys.items()}
    report = {
        "fold": fold,
        "rows": len(common),
        "dropped": dropped,
        "reason": "rows kept only where every model has a window: longer windows and larger feature sets need more "
        "warm-up rows and lose windows around missing days or NaN features"
        if any(dropped.values())
        else "",
    }
    return common, report


def walk_forward_predictions(
    universe: Mapping[str, pd.DataFrame],
    *,
    variants: Sequence[str | VariantConfig] = tuple(VARIANTS),
    baselines: Sequence[str] = BASELINES,
    test_years: Sequence[int] = DEFAULT_TEST_YEARS,
    epochs: int = 6,
    seed: int = 42,
    threads: int = 2,
    device: str = "auto",
    progress: bool = True,
    patience: int = 2,
    val_frac: float = 0.1,
    baseline_feature_set: str = "advanced",
    horizon: int = 1,
    threshold: float = 0.0,
    label_transform: Callable[[pd.Series], pd.Series] | None = None,
) -> pd.DataFrame:
    """Predictions of every model on yearly walk-forward test folds.

    For each year in ``test_years`` every model is refit on all earlier data (expanding window; the last
    ``val_frac`` of it, after a purge gap, is the early-stopping validation block) and predicts every test-year
    window. Purge and embargo come from ``finmlops.features.walk_forward_folds`` with the largest ``seq_len`` of the
    requested variants, so no training window or label overlaps the test year. ``variants`` are preset names or
    configs; ``baselines`` are names from ``BASELINES`` (logistic and LightGBM read ``baseline_feature_set``). The
    label is ``make_target(universe, horizon, threshold)`` and the gaps are sized by ``horizon`` too.
    ``label_transform``, if given, maps that label series to the one used for training and ``y_true`` (the
    leakage audit's label-permutation control; features and windows stay the real ones).
    ``epochs`` and ``patience`` bound each deep fit (early stopping restores the best epoch).

    Returns a frame with columns ``PREDICTION_COLUMNS``: ``date`` (decision date t), ``ticker``, ``fold`` (the test
    year as a string), ``model``, ``prob_up`` in [0, 1], ``y_true`` (0/1) and ``ret_next`` (return t -> t+1), sorted
    by fold, model, date, ticker. Every model has the same ``(date, ticker)`` rows in each fold; ``attrs["row_report"]``
    lists per fold how many rows each model lost to that intersection and why, and ``attrs["fit_seconds"]`` the
    wall-clock time of each fit (it varies between identical runs, so ``finmlops evaluate`` reports it in
    evaluation.json and keeps it out of predictions.parquet).
    """
    from finmlops.features import compute_features, forward_return, make_target, make_windows, walk_forward_folds

    configs = [v if isinstance(v, VariantConfig) else get_variant(v) for v in variants]
    names = [c.name for c in configs] + list(baselines)
    if not names:
        raise ValueError("no models requested: give at least one variant or baseline")
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique, got {names}")
    for b in baselines:
        if b not in BASELINES:
            raise KeyError(f"unknown baseline {b!r}; known: {', '.join(BASELINES)}")

    target = make_target(universe, horizon=horizon, threshold=threshold)
    if label_transform is not None:
        target = label_transform(target)
    ret_next = forward_return(universe, horizon=1)  # the backtest trades daily, whatever the label's horizon
    features: dict[str, pd.DataFrame] = {}
    windows: dict[str, Any] = {}
    for c in configs:
        if c.feature_set not in features:
            features[c.feature_set] = compute_features(universe, c.feature_set)
        windows[c.name] = _labelled(make_windows(features[c.feature_set], target, c.seq_len))
    if set(baselines) & {"logistic", "lightgbm", "majority", "momentum"}:
        if baseline_feature_set not in features:
            features[baseline_feature_set] = compute_features(universe, baseline_feature_set)
        base = _labelled(make_windows(features[baseline_feature_set], target, 1))
        windows.update(dict.fromkeys(baselines, base))

    gap_seq = max([c.seq_len for c in configs], default=1)
    calendar = target.index.get_level_values("date")
    folds = walk_forward_folds(
        calendar, seq_len=gap_seq, horizon=horizon, test_years=list(test_years), val_frac=val_frac
    )
    train_config = TrainConfig(
        epochs=epochs,
        patience=patience,
        seed=seed,
        threads=threads,
        device=device,
        verbosity="silent",  # type: ignore[arg-type]
    )

    def model_for(name: str) -> Predictor:
        config = next((c for c in configs if c.name == name), None)
        if config is not None:
            return DeepModel(config, train_config)
        return make_baseline(name, universe=universe, seed=seed, threads=threads)

    parts, reports, fit_seconds = [], [], []
    with _tasks(len(folds) * len(names), progress) as advance:
        for fold in folds:
            scored: dict[str, pd.DataFrame] = {}
            for name in names:
                w = windows[name]
                train_mask, val_mask, test_mask = fold.masks(w.dates)
                train, val, test = w.subset(train_mask), w.subset(val_mask), w.subset(test_mask)
                for block, part in (("training", train), ("validation", val), ("test", test)):
                    if len(part) == 0:
                        raise ValueError(f"fold {fold.name}: model {name} has no {block} windows")
                started = time.perf_counter()
                prob = model_for(name).fit(train, val).predict_proba(test)
                fit_seconds.append({"fold": fold.name, "model": name, "seconds": time.perf_counter() - started})
                scored[name] = pd.DataFrame({"date": test.dates, "ticker": test.tickers, "prob_up": prob})
                advance(f"fold {fold.name}: {name} ({fit_seconds[-1]['seconds']:.1f}s)")
            common, report = _intersect(fold.name, scored)
            reports.append(report)
            if any(report["dropped"].values()):
                log.info("fold %s: kept %d common rows; dropped %s", fold.name, report["rows"], report["dropped"])
            for name, frame in scored.items():
                kept = frame.set_index(["date", "ticker"]).reindex(common).reset_index()
                kept.insert(2, "fold", fold.name)
                kept.insert(3, "model", name)
                parts.append(kept)

    out = pd.concat(parts, ignore_index=True)
    keys = pd.MultiIndex.from_arrays([pd.DatetimeIndex(out["date"]), out["ticker"]])
    out["y_true"] = target.reindex(keys).to_numpy().astype(np.int8)
    out["ret_next"] = ret_next.reindex(keys).to_numpy()
    out = out[list(PREDICTION_COLUMNS)].sort_values(["fold", "model", "date", "ticker"], ignore_index=True)
    out.attrs["row_report"] = reports
    out.attrs["fit_seconds"] = fit_seconds
    return out
