"""Walk-forward evaluation: :func:`cross_val_predict`, the one fit loop (fit on each fold's training block,
predict its test block), and the runner that applies it to every model on yearly test folds and scores them all on
the same ``(date, ticker)`` rows. Its output is the predictions frame of docs/architecture.md.

Every consumer of walk-forward predictions (``finmlops evaluate``, ``tune``, ``explain --global``, the champions
step of ``finmlops run`` and the leakage audit) calls :func:`cross_val_predict`, so they fit the same models on the
same rows, with the same label, purge and embargo."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from finmlops.executor import ExecutorConfig, open_executor
from finmlops.features import compute_features, forward_return, make_target, make_windows
from finmlops.features.splits import Fold, study_period_folds, walk_forward_folds
from finmlops.features.target import LabelSpec
from finmlops.features.windows import Windows
from finmlops.models.base import Predictor
from finmlops.models.baselines import ALL_BASELINES, BASELINES, make_baseline
from finmlops.models.estimators import ENSEMBLE_MEMBERS, ESTIMATORS, check_estimator_params, make_estimator
from finmlops.models.variants import VARIANTS, VariantConfig, get_variant
from finmlops.training.config import TrainConfig
from finmlops.training.trainer import DeepModel

log = logging.getLogger(__name__)

PREDICTION_COLUMNS: tuple[str, ...] = ("date", "ticker", "fold", "model", "prob_up", "y_true", "ret_next")
DEFAULT_TEST_YEARS: tuple[int, ...] = tuple(range(2014, 2024))
WALK_FORWARD_PATIENCE = 2  # epochs without a better validation loss before a walk-forward fit stops


def _labelled(windows: Windows) -> Windows:
    """Only the windows with a known 0/1 label (``make_windows`` already requires one; this guards custom targets)."""
    return windows.subset(np.isfinite(windows.y))


@contextmanager
def _tasks(total: int, progress: bool) -> Iterator[Any]:
    """Yield ``advance(description)``: a rich bar over (fold, model) fits, or one log line per fit."""
    if not progress:
        yield lambda text: log.info("walk-forward: %s", text)
        return

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


FoldCallback = Callable[[Fold, Predictor, Windows, np.ndarray], None]
"""``on_fold(fold, fitted_model, test_windows, prob_up)``, called after each fold: tuning reports the fold's metric
to Optuna there (and may raise ``optuna.TrialPruned``), importance permutes the test features there."""


def cross_val_predict(
    factory: Callable[[], Predictor],
    windows: Windows,
    folds: Sequence[Fold],
    label: LabelSpec,
    *,
    on_fold: FoldCallback | None = None,
) -> pd.DataFrame:
    """Out-of-sample P(up) of one model on every fold's test block (scikit-learn's ``cross_val_predict`` pattern).

    ``factory()`` returns a fresh, unfitted, seeded model (its config carries the seed, so the same factory gives the
    same predictions); it is fitted on the fold's training windows, with the validation windows for early stopping
    only, and predicts the test windows. ``windows`` are labelled with ``make_target(universe, label)``; each
    fold's purge and embargo must be at least ``min_gap(windows.seq_len, label.reach)`` trading days
    (``Fold.check_gaps``), so no training window or label reads a day a test window reads.

    Returns the rows ``date, ticker, fold, prob_up, y_true`` (0/1), in fold order then ``(date, ticker)``;
    ``attrs["fit_seconds"]`` lists ``{"fold", "seconds"}`` per fit. Raises ``ValueError`` naming the fold and the
    block when a fold has no training, validation (unless it has no validation dates) or test windows.
    """
    windows = _labelled(windows)
    parts, fit_seconds = [], []
    for fold in folds:
        fold.check_gaps(windows.seq_len, label.reach)
        train, val, test = (windows.subset(m) for m in fold.masks(windows.dates))
        for block, part in (("training", train), ("validation", val), ("test", test)):
            # A fold built without a validation block (val_frac 0) is for models that do not stop early.
            if len(part) == 0 and (block != "validation" or len(fold.val_dates)):
                raise ValueError(f"fold {fold.name}: no {block} windows")
        started = time.perf_counter()
        model = factory().fit(train, val)
        prob = np.asarray(model.predict_proba(test), dtype=np.float64)
        fit_seconds.append({"fold": fold.name, "seconds": time.perf_counter() - started})
        parts.append(
            pd.DataFrame(
                {"date": pd.DatetimeIndex(test.dates), "ticker": test.tickers, "fold": fold.name, "prob_up": prob,
                 "y_true": test.y.astype(np.int8)}
            )
        )  # fmt: skip
        if on_fold is not None:
            on_fold(fold, model, test, prob)
    out = pd.concat(parts, ignore_index=True)
    out.attrs["fit_seconds"] = fit_seconds
    return out


def label_folds(
    target: pd.Series, *, seq_len: int, label: LabelSpec, test_years: Sequence[int], val_frac: float = 0.1
) -> list[Fold]:
    """Yearly expanding walk-forward folds on the calendar of ``target`` (``make_target(universe, label)``), with
    purge and embargo of ``min_gap(seq_len, label.reach)`` trading days."""
    calendar = target.index.get_level_values("date")
    return walk_forward_folds(
        calendar, seq_len=seq_len, reach=label.reach, test_years=list(test_years), val_frac=val_frac
    )


def study_folds(
    target: pd.Series,
    *,
    seq_len: int,
    label: LabelSpec,
    test_years: Sequence[int],
    periods: tuple[int, int],
    val_frac: float = 0.2,
) -> list[Fold]:
    """Fischer & Krauss's study periods (``periods = (train_days, trade_days)``) on the calendar of ``target``,
    purge and embargo ``min_gap(seq_len, label.reach)``, keeping those whose trading block starts in a year of
    ``test_years``. Raises ``ValueError`` when none does."""
    calendar = target.index.get_level_values("date")
    train_days, trade_days = periods
    every = study_period_folds(
        calendar, seq_len=seq_len, reach=label.reach, train_days=train_days, trade_days=trade_days, val_frac=val_frac
    )
    years = set(test_years)
    kept = [f for f in every if pd.Timestamp(f.test_dates[0]).year in years]
    if not kept:
        raise ValueError(
            f"no study period of {train_days} + {trade_days} days starts trading in test years "
            f"{min(years)}..{max(years)} (the {len(every)} periods start in "
            f"{sorted({pd.Timestamp(f.test_dates[0]).year for f in every})})"
        )
    return kept


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
    patience: int = WALK_FORWARD_PATIENCE,
    val_frac: float = 0.1,
    baseline_feature_set: str = "advanced",
    label: LabelSpec | None = None,
    label_transform: Callable[[pd.Series], pd.Series] | None = None,
    estimators: Sequence[str] = (),
    estimator_params: Mapping[str, Mapping[str, Any]] | None = None,
    executor: ExecutorConfig | None = None,
    study_periods: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """Predictions of every model on yearly walk-forward test folds, each by :func:`cross_val_predict`.

    For each year in ``test_years`` every model is refit on all earlier data (expanding window; the last
    ``val_frac`` of it, after a purge gap, is the early-stopping validation block) and predicts every test-year
    window. With ``study_periods=(train_days, trade_days)`` the folds are instead Fischer & Krauss's rolling study
    periods (:func:`study_folds`): ``train_days`` of training (the last ``val_frac`` for early stopping), then
    ``trade_days`` of trading, keeping the periods whose trading block starts in one of ``test_years``. Purge and
    embargo are ``min_gap(seq_len, label.reach)`` with the largest ``seq_len`` of the requested
    variants, so no training window or label overlaps the test year. ``variants`` are preset names or configs;
    ``baselines`` are names from ``ALL_BASELINES`` (logistic and LightGBM read ``baseline_feature_set``);
    ``estimators`` names from ``ESTIMATORS`` (tree models on their own feature set, :func:`estimator`), with
    ``estimator_params[name]`` over the papers' hyperparameters (``{"kdh_rf": {"n_estimators": 100}}``). The label is
    ``make_target(universe, label)`` (default ``LabelSpec()``). ``label_transform``, if given, maps that label
    series to the one used for training and ``y_true`` (the leakage audit's label-permutation control; features,
    windows and the traded return stay the real ones). ``epochs`` and ``patience`` bound each deep fit (early
    stopping restores the best epoch); :func:`train_config` builds the loop settings. ``executor`` runs the
    ``folds x models`` fits (each a :func:`cross_val_predict` on one fold) serially (default) or as Ray tasks
    (``finmlops.executor``); every fit seeds itself, so the predictions are the same bit for bit.

    Returns a frame with columns ``PREDICTION_COLUMNS``: ``date`` (decision date t), ``ticker``, ``fold`` (the test
    year as a string), ``model``, ``prob_up`` in [0, 1], ``y_true`` (0/1) and ``ret_next``, the label's traded
    return (``forward_return(universe, label)``: entered at the execution price of t+1, exited ``label.horizon``
    days later), sorted by fold, model, date, ticker. Every model has the same ``(date, ticker)`` rows in each
    fold; ``attrs["row_report"]`` lists per fold how many rows each model lost to that intersection and why,
    ``attrs["fit_seconds"]`` the wall-clock time of each fit (it varies between identical runs, so ``finmlops
    evaluate`` reports it in evaluation.json and keeps it out of predictions.parquet) and ``attrs["label"]`` the
    label.
    """

    label = label or LabelSpec()
    configs = [v if isinstance(v, VariantConfig) else get_variant(v) for v in variants]
    names = [c.name for c in configs] + list(baselines) + list(estimators)
    if not names:
        raise ValueError("no models requested: give at least one variant or baseline")
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique, got {names}")
    for b in baselines:
        if b not in ALL_BASELINES:
            raise KeyError(f"unknown baseline {b!r}; known: {', '.join(ALL_BASELINES)}")

    for e, params in (estimator_params or {}).items():
        check_estimator_params(e, params)  # before any fit: a typo fails now, not after the first hour
    target = make_target(universe, label)
    if label_transform is not None:
        target = label_transform(target)
    traded = forward_return(universe, label)
    features: dict[str, pd.DataFrame] = {}
    built: dict[tuple[str, int], Windows] = {}

    def windows_of(feature_set: str, seq_len: int) -> Windows:
        """Built once per (feature set, seq_len): models that read the same windows share them (read-only)."""
        if (feature_set, seq_len) not in built:
            if feature_set not in features:
                features[feature_set] = compute_features(universe, feature_set)
            built[feature_set, seq_len] = make_windows(features[feature_set], target, seq_len)
        return built[feature_set, seq_len]

    windows: dict[str, Windows] = {c.name: windows_of(c.feature_set, c.seq_len) for c in configs}
    windows |= {e: windows_of(ESTIMATORS[e].feature_set, 1) for e in estimators}  # KeyError names an unknown one
    windows |= {b: windows_of(baseline_feature_set, 1) for b in baselines}

    gap_seq = max([c.seq_len for c in configs], default=1)
    if study_periods is None:
        folds = label_folds(target, seq_len=gap_seq, label=label, test_years=test_years, val_frac=val_frac)
    else:
        folds = study_folds(target, seq_len=gap_seq, label=label, test_years=test_years, periods=study_periods,
                            val_frac=val_frac)  # fmt: skip
    loop = train_config(epochs=epochs, seed=seed, threads=threads, device=device, patience=patience)

    factories: dict[str, Callable[[], Predictor]] = {c.name: _DeepFactory(c, loop) for c in configs}
    factories |= {
        b: _BaselineFactory(b, universe if b in ("momentum", "reversal") else None, seed, threads) for b in baselines
    }
    params = dict(estimator_params or {})
    factories |= {e: _EstimatorFactory(e, loop, params) for e in estimators}
    shared = _FitInputs(windows=windows, folds=list(folds), label=label, factories=factories)
    averaged = _reused_ensemble(configs, estimators)
    items = [(name, i) for name in names if name != averaged for i in range(len(folds))]
    fit_seconds = []
    with _tasks(len(items), progress) as advance, open_executor(executor) as run:

        def done(_index: int, result: tuple[pd.DataFrame, float]) -> None:
            part, seconds = result
            advance(f"fold {part['fold'].iat[0]}: {part.attrs['model']} ({seconds:.1f}s)")

        results = run.map(_fit_one, items, shared=shared, cpus=threads, on_done=done)
    scored: dict[str, pd.DataFrame] = {}
    for name in names:
        parts = [results[k][0] for k, item in enumerate(items) if item[0] == name]
        if parts:
            scored[name] = pd.concat(parts, ignore_index=True)
    for (name, i), (_, seconds) in zip(items, results, strict=True):
        fit_seconds.append({"fold": folds[i].name, "model": name, "seconds": seconds})
    if averaged:
        scored[averaged] = _ensemble_mean(scored, ENSEMBLE_MEMBERS)
        fit_seconds += [{"fold": f.name, "model": averaged, "seconds": 0.0} for f in folds]  # no fit of its own

    out_parts, reports = [], []
    for fold in folds:
        by_model = {name: frame[frame["fold"] == fold.name] for name, frame in scored.items()}
        common, report = _intersect(fold.name, by_model)
        reports.append(report)
        if any(report["dropped"].values()):
            log.info("fold %s: kept %d common rows; dropped %s", fold.name, report["rows"], report["dropped"])
        for name, frame in by_model.items():
            kept = frame.set_index(["date", "ticker"])[["prob_up"]].reindex(common).reset_index()
            kept.insert(2, "fold", fold.name)
            kept.insert(3, "model", name)
            out_parts.append(kept)

    out = pd.concat(out_parts, ignore_index=True)
    keys = pd.MultiIndex.from_arrays([pd.DatetimeIndex(out["date"]), out["ticker"]])
    out["y_true"] = target.reindex(keys).to_numpy().astype(np.int8)
    out["ret_next"] = traded.reindex(keys).to_numpy()
    out = out[list(PREDICTION_COLUMNS)].sort_values(["fold", "model", "date", "ticker"], ignore_index=True)
    out.attrs["row_report"] = reports
    out.attrs["fit_seconds"] = fit_seconds
    out.attrs["label"] = label.model_dump()
    return out


def _reused_ensemble(configs: Sequence[VariantConfig], estimators: Sequence[str]) -> str | None:
    """``"kdh_ensemble"`` when the run also fits all its members as they would be inside it (the ``kdh_dnn`` preset
    unchanged, ``kdh_gbt`` and ``kdh_rf`` with the same ``estimator_params``): its predictions are then their mean,
    the same numbers as refitting the three, without the second fit. ``None``: it fits its own members."""
    deep, *trees = ENSEMBLE_MEMBERS
    if "kdh_ensemble" not in estimators or not set(trees) <= set(estimators):
        return None
    return "kdh_ensemble" if get_variant(deep) in configs else None


def _ensemble_mean(scored: Mapping[str, pd.DataFrame], members: Sequence[str]) -> pd.DataFrame:
    """The equal-weight mean of the members' ``prob_up`` on the ``(fold, date, ticker)`` rows all of them scored,
    in the ensemble's order of summation (:class:`finmlops.models.estimators.EnsembleModel`), as ``date, ticker,
    fold, prob_up``."""
    keys = ["fold", "date", "ticker"]
    joined = pd.concat([scored[m].set_index(keys)["prob_up"].rename(m) for m in members], axis=1, join="inner")
    mean = np.mean([joined[m].to_numpy(dtype=np.float64) for m in members], axis=0)
    return joined.index.to_frame(index=False).assign(prob_up=mean)[["date", "ticker", "fold", "prob_up"]]


def estimator(name: str, loop: TrainConfig, params: Mapping[str, Mapping[str, Any]] | None = None) -> Predictor:
    """A fresh tree model of ``finmlops.models.ESTIMATORS`` seeded by ``loop.seed`` on ``loop.threads`` threads,
    with the hyperparameters ``params[name]`` over the paper's; ``kdh_ensemble`` is the equal-weight mean of
    ``kdh_dnn`` (a :class:`DeepModel` trained with ``loop``), ``kdh_gbt`` and ``kdh_rf``, each with its own
    ``params`` entry, so the ensemble's members are the models fitted beside it."""
    params = params or {}

    def tree(member: str) -> Predictor:
        return make_estimator(member, seed=loop.seed, threads=loop.threads, **params.get(member, {}))

    if name == "kdh_ensemble":
        deep, *trees = ENSEMBLE_MEMBERS
        return make_estimator(name, members=[DeepModel(get_variant(deep), loop), *map(tree, trees)])
    return tree(name)


class _DeepFactory:
    """A fresh seeded ``DeepModel`` per call (a class, not a closure, so that Ray pickles it by reference)."""

    def __init__(self, config: VariantConfig, loop: TrainConfig) -> None:
        self.config, self.loop = config, loop

    def __call__(self) -> Predictor:
        return DeepModel(self.config, self.loop)


class _BaselineFactory:
    """A fresh seeded baseline per call; ``universe`` only for momentum and reversal, which read the prices."""

    def __init__(self, name: str, universe: Mapping[str, pd.DataFrame] | None, seed: int, threads: int) -> None:
        self.name, self.universe, self.seed, self.threads = name, universe, seed, threads

    def __call__(self) -> Predictor:
        return make_baseline(self.name, universe=self.universe, seed=self.seed, threads=self.threads)


class _EstimatorFactory:
    """A fresh seeded tree model of ``ESTIMATORS`` per call (:func:`estimator`)."""

    def __init__(self, name: str, loop: TrainConfig, params: Mapping[str, Mapping[str, Any]]) -> None:
        self.name, self.loop, self.params = name, loop, params

    def __call__(self) -> Predictor:
        return estimator(self.name, self.loop, self.params)


@dataclass(frozen=True)
class _FitInputs:
    """What every fit reads: the windows of each model, the folds, the label and the model factories (shipped to
    Ray's object store once)."""

    windows: Mapping[str, Windows]
    folds: list[Fold]
    label: LabelSpec
    factories: Mapping[str, Callable[[], Predictor]]


def _fit_one(inputs: _FitInputs, item: tuple[str, int]) -> tuple[pd.DataFrame, float]:
    """Fit model ``item[0]`` on fold number ``item[1]`` and predict its test block: (rows, fit seconds)."""
    name, i = item
    fold = inputs.folds[i]
    try:
        part = cross_val_predict(inputs.factories[name], inputs.windows[name], [fold], inputs.label)
    except ValueError as exc:
        raise ValueError(f"model {name}: {exc}") from None
    part.attrs["model"] = name
    return part, float(part.attrs["fit_seconds"][0]["seconds"])


def train_config(
    *, epochs: int, seed: int, threads: int, device: str = "auto", patience: int = WALK_FORWARD_PATIENCE
) -> TrainConfig:
    """The training loop of every walk-forward fit (silent; early stopping after ``patience`` epochs)."""
    return TrainConfig(
        epochs=epochs, patience=patience, seed=seed, threads=threads, device=device,  # type: ignore[arg-type]
        verbosity="silent",
    )  # fmt: skip
