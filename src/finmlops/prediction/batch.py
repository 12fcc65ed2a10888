"""Batch prediction (``finmlops predict``): a logged or exported ONNX model scores a folder of Yahoo-format CSVs.

The CSVs are parsed and validated by ``finmlops.data`` and turned into features by ``finmlops.features`` (the code
that training and serving use), then into windows with ``make_windows(require_target=False)``, so tickers and
dates never seen in training are scored like any other. Scoring runs the model's ONNX graph with onnxruntime (no
torch). Rows whose window lacks history (feature warm-up, a gap) are reported per ticker, never dropped silently.

Cross-asset features (``market_*``, advanced set) read the equal-weight return of the tickers in the folder, the
universe of this prediction: with fewer than 2 tickers they would be the ticker's own return, so that is an error.
"""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from finmlops.contract import CARD_FILE, ModelArtifact, ModelCard, ModelError, open_session, score
from finmlops.contract.session import SCORE_BATCH
from finmlops.data import DataSourceError
from finmlops.data.csv_source import find_csv_files, read_csv_folder
from finmlops.data.frames import validate_batch
from finmlops.evaluation.metrics import metrics_with_ci, prepare, validate_predictions
from finmlops.evaluation.results import Estimate, Result
from finmlops.executor import ExecutorConfig, open_executor
from finmlops.features import LabelSpec, compute_features, features_of, forward_return, make_target, make_windows
from finmlops.provenance import atomic_path
from finmlops.settings import Settings
from finmlops.tracking.packaging import fetch_model, read_model, registry_uri


def resolve_model(ref: str, dst: Path) -> tuple[ModelArtifact, ModelCard, str]:
    """The model behind ``ref``, its card and the reference to report: a folder (MLflow model, or a triton/mlserver
    export), ``models:/name@alias``, ``name@alias``, ``name/version``, a ``runs:/`` URI, or a registered name /
    variant (its champion, else newest).

    Registry models are downloaded under ``dst``; call ``configure_tracking`` first. Raises ``ModelError`` when the
    model is missing, or its card or ONNX file is corrupt.
    """
    local = Path(ref)
    if local.exists() and not local.is_dir():
        raise ModelError(f"{local}: a model is a folder, not a file")
    if local.is_dir() and not (local / "MLmodel").is_file() and not (local / CARD_FILE).is_file():
        raise ModelError(f"{local}: neither an MLflow model (no MLmodel) nor a finmlops export (no {CARD_FILE})")
    artifact = read_model(local if local.is_dir() else fetch_model(ref, dst))
    assert artifact.card is not None  # read_model checked it
    return artifact, artifact.card, str(local) if local.is_dir() else registry_uri(ref)


def read_folder(folder: Path) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Every ``<TICKER>.csv`` in ``folder``, parsed and validated (``finmlops.data``): (universe, warnings)."""

    if not folder.is_dir():
        raise DataSourceError(f"{folder}: no such folder of CSVs")
    tickers = sorted(find_csv_files(folder))
    if not tickers:
        raise DataSourceError(f"{folder}: no <TICKER>.csv files")
    universe, _, warnings = validate_batch(read_csv_folder(folder, tickers))
    return universe, warnings


def min_history(card: ModelCard) -> int:
    """Fewest rows of a ticker that give one window: the longest feature warm-up plus ``seq_len - 1``."""

    return max(f.window for f in features_of(card.feature_set)) + card.seq_len - 1


def prediction_windows(universe: dict[str, pd.DataFrame], card: ModelCard) -> tuple[Any, list[str]]:
    """Unlabelled windows ``[n, seq_len, n_features]`` in the card's feature order, and notes on the universe."""

    cross = [f.name for f in features_of(card.feature_set) if f.cross_asset and f.name in card.feature_names]
    notes = []
    if cross:
        if len(universe) < 2:
            raise ValueError(
                f"model {card.variant} reads cross-asset features ({', '.join(cross)}) computed over the universe; "
                f"the folder holds only {', '.join(universe)}: add the other tickers' CSVs (at least 2 tickers)"
            )
        notes.append(
            f"cross-asset features ({', '.join(cross)}) computed over the {len(universe)} tickers in the folder: "
            f"{', '.join(sorted(universe))}"
        )
    features = compute_features(universe, card.feature_set)
    missing = [n for n in card.feature_names if n not in features.columns]
    if missing:
        raise ModelError(f"model {card.variant} needs features {missing} that feature set {card.feature_set} lacks")
    return make_windows(features[card.feature_names], None, card.seq_len, require_target=False), notes


def no_window_message(universe: dict[str, pd.DataFrame], card: ModelCard, data_dir: Path) -> str:
    """Why nothing could be scored: the rows the model needs per ticker and the rows each file has."""
    have = ", ".join(f"{t} has {len(f)}" for t, f in sorted(universe.items()))
    return (
        f"no prediction: model {card.variant} ({card.feature_set} features, seq_len {card.seq_len}) needs at least "
        f"{min_history(card)} rows of history per ticker (feature warm-up + window) and no file in {data_dir} "
        f"gives one full window: {have}; nothing written"
    )


class SkippedTicker(Result):
    """A ticker with rows that got no window: its ``rows``, the ``windows`` scored, the ``skipped`` rows, the
    ``first_usable`` date (None: none) and the ``reason``."""

    ticker: str
    rows: int
    windows: int
    skipped: int
    first_usable: date | None
    reason: str


class BootstrapSettings(Result):
    """The block bootstrap of the realised metrics' CIs: ``n_boot`` resamples of ``block_len``-day blocks, ``seed``,
    ``level`` (a fraction)."""

    n_boot: int
    block_len: int
    seed: int
    level: float


class RealisedMetrics(Result):
    """Metrics on the ``n`` scored rows (``n_dates`` dates) whose label is known: estimates with block-bootstrap
    CIs, beside ``majority_class_rate`` (the best constant in hindsight) and ``up_rate`` (fractions)."""

    n: int
    n_dates: int
    accuracy: Estimate
    balanced_accuracy: Estimate
    roc_auc: Estimate
    majority_class_rate: float
    up_rate: float
    bootstrap: BootstrapSettings


def skipped_rows(universe: dict[str, pd.DataFrame], windows: Any, need: int) -> list[SkippedTicker]:
    """Per ticker with rows that got no window: rows, windows, skipped count, first usable date (None if none)."""
    report = []
    for ticker, frame in sorted(universe.items()):
        dates = windows.dates[windows.tickers == ticker]
        if len(dates) == len(frame):
            continue
        first = pd.Timestamp(dates.min()).date() if len(dates) else None
        reason = "feature warm-up and gaps" if len(dates) else f"needs >= {need} rows of history, has {len(frame)}"
        report.append(
            SkippedTicker(ticker=ticker, rows=len(frame), windows=len(dates), skipped=len(frame) - len(dates),
                          first_usable=first, reason=reason)
        )  # fmt: skip
    return report


def card_label(card: ModelCard) -> LabelSpec:
    """The label the model was fit on, from its card (older cards: the default label)."""
    return LabelSpec(kind=card.kind, horizon=card.horizon, threshold=card.threshold, execution=card.execution)


def realised_metrics(rows: pd.DataFrame, model: str, boot: Any) -> RealisedMetrics:
    """Accuracy, balanced accuracy and ROC AUC with block-bootstrap CIs (``finmlops.evaluation.metrics``) on the
    rows whose label is known, beside the majority-class rate of those rows (the best constant in hindsight)."""

    frame = validate_predictions(rows.assign(fold="predict", model=model))
    scored = metrics_with_ci(prepare(frame), boot)
    up = float(frame["y_true"].mean())
    return RealisedMetrics(
        n=len(frame),
        n_dates=int(frame["date"].nunique()),
        accuracy=scored.accuracy,
        balanced_accuracy=scored.balanced_accuracy,
        roc_auc=scored.roc_auc,
        majority_class_rate=max(up, 1 - up),
        up_rate=up,
        bootstrap=BootstrapSettings(n_boot=boot.n_boot, block_len=boot.block_len, seed=boot.seed, level=boot.level),
    )


def write_csv_atomic(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` to ``path`` through a temporary file and a rename: a failed write keeps the old file."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path


class PredictionReport(Result):
    """What ``finmlops predict`` did (its ``--json``): the ``model`` reference and its card's ``variant``,
    ``feature_set`` and ``seq_len``; the CSV written (``out``) with its ``rows`` for ``tickers`` over
    ``first_date``..``last_date`` (None: no row); the tickers ``skipped`` in part, ``notes`` and data ``warnings``;
    the ``realised`` metrics where an outcome is known (else None) and the card's ``label``, which ``y_true`` and
    ``realised`` use."""

    model: str
    variant: str
    feature_set: str
    seq_len: int
    out: Path
    rows: int
    tickers: list[str]
    first_date: date | None
    last_date: date | None
    skipped: list[SkippedTicker] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    realised: RealisedMetrics | None = None
    label: LabelSpec = Field(default_factory=LabelSpec)


def _score_span(shared: tuple[bytes, np.ndarray, int], span: tuple[int, int]) -> np.ndarray:
    """P(up) of windows ``x[start:stop]`` by the ONNX graph ``graph`` (bytes), in a Ray task."""
    graph, x, threads = shared
    with tempfile.TemporaryDirectory(prefix="finmlops-score-") as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(graph)
        return score(open_session(path, threads), x[span[0] : span[1]])


def score_windows(graph: Path, x: np.ndarray, threads: int, executor: ExecutorConfig | None = None) -> np.ndarray:
    """P(up) ``[n]`` float64 of windows ``x`` ``[n, seq_len, n_features]``, in this process or as Ray tasks.

    Under Ray the windows (ticker-major, so each chunk is a run of tickers) go to the object store once and each
    task scores a chunk of consecutive rows; chunks are cut at multiples of ``SCORE_BATCH``, so every ONNX call sees
    the batch it sees serially, and the scores are the same bit for bit."""
    if executor is None or executor.kind == "serial":
        return score(open_session(graph, threads), x)
    with open_executor(executor) as run:
        per_worker = -(-len(x) // max(run.workers // max(threads, 1), 1))
        chunk = max(SCORE_BATCH, -(-per_worker // SCORE_BATCH) * SCORE_BATCH)
        spans = [(i, min(i + chunk, len(x))) for i in range(0, len(x), chunk)]
        parts = run.map(_score_span, spans, shared=(graph.read_bytes(), x, threads), cpus=threads)
    return np.concatenate(parts) if parts else np.empty(0)


def predict_folder(
    settings: Settings, model: str, data_dir: Path, out: Path, *, boot: Any, executor: ExecutorConfig | None = None
) -> PredictionReport:
    """Score every CSV in ``data_dir`` with ``model`` (see :func:`resolve_model`) and write ``out``: one row per
    (date, ticker) window with columns ``date, ticker, prob_up, pred_up`` (``prob_up > 0.5``, as the metrics), plus
    ``y_true`` (the model card's label: 1 up, 0 down, empty where the traded return is unknown or in the dead band)
    when any outcome is known.

    ``boot``: ``finmlops.evaluation.metrics.BootstrapConfig`` for the realised metrics' CIs. ``executor``: score in
    this process (default) or as Ray tasks over chunks of tickers (:func:`score_windows`; same output). Raises
    ``ModelError``, ``TrackingError``, ``DataError`` or ``ValueError`` with a message naming the model, file or
    ticker.
    """
    universe, warnings = read_folder(data_dir)
    with tempfile.TemporaryDirectory(prefix="finmlops-predict-") as tmp:
        if not Path(model).exists():
            from finmlops.tracking.backend import configure_tracking

            configure_tracking(settings)
        artifact, card, source = resolve_model(model, Path(tmp))
        windows, notes = prediction_windows(universe, card)
        if len(windows.dates) == 0:
            raise ValueError(no_window_message(universe, card, data_dir))
        prob = score_windows(artifact.graph, windows.X, settings.threads, executor)
    keys = pd.MultiIndex.from_arrays([pd.DatetimeIndex(windows.dates), windows.tickers], names=["date", "ticker"])
    rows = pd.DataFrame(
        {"date": keys.get_level_values("date"), "ticker": windows.tickers, "prob_up": prob,
         "pred_up": (prob > 0.5).astype(np.int8)}
    )  # fmt: skip
    label = card_label(card)
    y = make_target(universe, label).reindex(keys).to_numpy()
    realised = None
    if np.isfinite(y).any():
        rows["y_true"] = pd.array(np.where(np.isfinite(y), y, np.nan), dtype="Int8")
        known = np.isfinite(y)
        labelled = rows.loc[known, ["date", "ticker", "prob_up"]].assign(
            y_true=y[known].astype(np.int8), ret_next=forward_return(universe, label).reindex(keys).to_numpy()[known]
        )
        realised = realised_metrics(labelled, card.variant, boot)
    write_csv_atomic(rows.assign(date=rows["date"].dt.strftime("%Y-%m-%d")), out)
    return PredictionReport(
        model=source, variant=card.variant, feature_set=card.feature_set, seq_len=card.seq_len, out=out,
        rows=len(rows), tickers=sorted(universe),
        first_date=rows["date"].min().date() if len(rows) else None,
        last_date=rows["date"].max().date() if len(rows) else None,
        skipped=skipped_rows(universe, windows, min_history(card)), notes=notes, warnings=warnings, realised=realised,
        label=label,
    )  # fmt: skip
