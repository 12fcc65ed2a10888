"""What each stage logs to MLflow, and the listing behind ``finmlops runs``.

Experiments: ``ingestion`` (tickers, dates, source, dataset hash), ``training`` (every hyperparameter, features, data
hash, code version, per-epoch losses, per-fold and pooled walk-forward metrics, the dataset, the predictions, the
ONNX pyfunc model), ``tuning`` and ``evaluation`` (the result JSON and plots, headline metrics).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from finmlops.contract import ScalerLike
from finmlops.evaluation.results import BacktestResult, Evaluation, EvaluationResult, Performance, read_result
from finmlops.features.registry import feature_set_version
from finmlops.provenance import file_sha256, git_commit, json_safe, software_versions
from finmlops.settings import Settings
from finmlops.tracking.backend import EXPERIMENTS, TrackingError, configure_tracking, ensure_experiment, redact
from finmlops.tracking.registry import (
    PREDICTIONS_ARTIFACT,
    SPLIT_TAG,
    mark_challenger,
    registered_name,
    split_of,
    tag_version,
)
from finmlops.training.results import Registration, TrainRun

MAX_PARAM_CHARS = 500  # MLflow's limit on a param value
PREDICTIONS_SHA_TAG = "finmlops.predictions_sha256"
BACKTEST_METRICS = ("annual_return", "sharpe", "max_drawdown", "turnover_annual", "hit_rate", "deflated_sharpe")


@dataclass(frozen=True)
class TrainedNetwork:
    """A trained torch network (windows -> logits) with its scaler, real windows for the export parity check and
    the example, and the first and last decision dates it was trained on."""

    network: Any  # torch.nn.Module; typed loosely so that importing this module does not import torch
    scaler: ScalerLike
    windows: np.ndarray
    train_start: str | None = None
    train_end: str | None = None


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings become dotted keys; values become strings cut to MLflow's 500-character limit."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = str(value)[:MAX_PARAM_CHARS]
    return flat


def provenance_tags(data_hash: str | None) -> dict[str, str]:
    """Code and data identity of a run: git commit, finmlops and key package versions, data hash."""
    versions = software_versions()
    tags = {f"finmlops.version.{name}": value for name, value in versions.items()}
    tags |= {"finmlops.git_commit": git_commit(Path(__file__).parent) or "unknown"}
    tags |= {
        "finmlops.data_hash": data_hash or "unknown",
        "mlflow.source.git.commit": tags["finmlops.git_commit"],
    }
    return tags


@contextmanager
def tracked_run(settings: Settings, experiment: str, run_name: str, tags: Mapping[str, str]) -> Iterator[str]:
    """Start a run in ``experiment``; yields its id. Any MLflow failure becomes a ``TrackingError`` naming the URI."""
    uri = configure_tracking(settings)
    try:
        experiment_id = ensure_experiment(settings, experiment)
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=dict(tags)) as run:
            yield run.info.run_id
    except MlflowException as exc:
        raise TrackingError(f"MLflow at {redact(uri)} failed: {exc.message}") from exc


def _log_json(payload: Any, artifact_file: str) -> None:
    mlflow.log_text(json.dumps(json_safe(payload), indent=2, default=str), artifact_file)


def log_ingestion(
    settings: Settings,
    *,
    tickers: Sequence[str],
    start: Any,
    end: Any,
    source: str,
    dataset_hash: str,
    n_rows: int | None = None,
    warnings: Sequence[str] = (),
) -> str:
    """Log one ingestion to the ``ingestion`` experiment; returns the run id."""
    params = {
        "tickers": ",".join(tickers),
        "n_tickers": len(tickers),
        "start": start,
        "end": end,
        "source": source,
    }
    with tracked_run(settings, "ingestion", f"ingest-{source}", provenance_tags(dataset_hash)) as run_id:
        mlflow.log_params(flatten(params))
        mlflow.log_metrics({"n_warnings": len(warnings)} | ({"n_rows": n_rows} if n_rows is not None else {}))
        if warnings:
            mlflow.log_text("\n".join(warnings), "validation_warnings.txt")
    return run_id


def log_training_run(
    settings: Settings,
    *,
    variant: str,
    params: Mapping[str, Any],
    feature_set: str,
    feature_names: Sequence[str],
    data_hash: str | None,
    epoch_losses: Mapping[str, Sequence[float]] | None = None,
    fold_metrics: Sequence[Mapping[str, float]] = (),
    metrics: Mapping[str, float] | None = None,
    dataset: pd.DataFrame | None = None,
    dataset_source: str | None = None,
    predictions: pd.DataFrame | None = None,
    artifacts: Sequence[Path] = (),
    trained: TrainedNetwork | None = None,
    register: bool = False,
    experiment: str = "training",
) -> str:
    """Log one training (or tuning) run; returns its run id.

    ``params``: every hyperparameter (nested mappings are flattened to dotted keys). ``epoch_losses``: name ->
    per-epoch values, logged as ``epoch/<name>`` with step = epoch. ``fold_metrics``: one mapping per walk-forward
    fold, logged as ``fold/<name>`` with step = fold. ``metrics``: pooled walk-forward metrics. ``dataset``: the
    feature frame, logged with ``mlflow.data`` (digest included). ``predictions``: the walk-forward predictions frame
    (architecture.md), which promotion compares on. ``trained``: exported to ONNX (parity-checked) and logged as
    the pyfunc ``model``; with ``register`` it also becomes a new version of ``<variant>-predictor``. The run and
    the model card carry ``feature_set_version(feature_set)``, the hash of the set's registry declarations; the
    card also carries ``params["label"]`` (``horizon``, ``threshold`` of ``make_target``; absent: 1 and 0).
    """
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; known: {', '.join(EXPERIMENTS)}")
    set_version = feature_set_version(feature_set)
    tags = provenance_tags(data_hash) | {"finmlops.variant": variant, "finmlops.feature_set": feature_set}
    tags |= {"finmlops.feature_set_version": set_version}
    with tracked_run(settings, experiment, variant, tags) as run_id:
        mlflow.log_params(flatten(params) | {"feature_set": feature_set, "n_features": str(len(feature_names))})
        _log_json({"feature_set": feature_set, "feature_names": list(feature_names)}, "features.json")
        for name, values in (epoch_losses or {}).items():
            for epoch, value in enumerate(values):
                mlflow.log_metric(f"epoch/{name}", float(value), step=epoch)
        for fold, fold_values in enumerate(fold_metrics):
            for name, value in fold_values.items():
                mlflow.log_metric(f"fold/{name}", float(value), step=fold)
        if metrics:
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
        if dataset is not None:
            frame = dataset.reset_index() if isinstance(dataset.index, pd.MultiIndex) else dataset
            name = f"{feature_set}-features-{(data_hash or 'unhashed')[:12]}"
            mlflow.log_input(mlflow.data.from_pandas(frame, source=dataset_source, name=name), context="training")
        if predictions is not None:
            _log_predictions(predictions)
        for path in artifacts:
            mlflow.log_artifact(str(path), "results")
        if trained is not None:
            card_fields = {
                "variant": variant,
                "feature_set": feature_set,
                "feature_set_version": set_version,
                "feature_names": list(feature_names),
                **dict(params.get("label") or {}),  # horizon, threshold: what the output is a probability of
            }
            _log_trained(trained, card_fields | {"data_hash": data_hash, "walk_forward": dict(metrics or {})}, register)
    return run_id


def _log_predictions(predictions: pd.DataFrame) -> None:
    missing = {"date", "ticker", "model", "prob_up", "y_true"} - set(predictions.columns)
    if missing:
        raise ValueError(f"predictions frame lacks columns {sorted(missing)}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(PREDICTIONS_ARTIFACT).name
        predictions.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), str(Path(PREDICTIONS_ARTIFACT).parent))
    mlflow.set_tag(SPLIT_TAG, split_of(predictions))


def _log_trained(trained: TrainedNetwork, card_fields: dict[str, Any], register: bool) -> None:
    from finmlops.tracking.onnx_export import export_onnx  # deferred: onnx, torch
    from finmlops.tracking.packaging import ModelCard, log_onnx_model  # deferred: onnx

    card = ModelCard(
        seq_len=int(trained.windows.shape[1]),
        train_start=trained.train_start,
        train_end=trained.train_end,
        **{
            **card_fields,
            "walk_forward": {k: v for k, v in card_fields["walk_forward"].items() if np.isfinite(v)},
        },
    )
    with tempfile.TemporaryDirectory() as tmp:
        exported = export_onnx(trained.network, trained.scaler, trained.windows, Path(tmp) / "model.onnx")
        mlflow.log_metric("onnx_max_abs_diff", exported.max_abs_diff)
        name = registered_name(card.variant) if register else None
        info = log_onnx_model(exported, card, trained.windows, registered_model_name=name)
    mlflow.set_tag("finmlops.model_uri", info.model_uri)
    if name is not None and info.registered_model_version is not None:
        tag_version(name, str(info.registered_model_version))


def log_evaluation(
    settings: Settings,
    *,
    name: str,
    metrics: Mapping[str, float],
    data_hash: str | None,
    artifacts: Sequence[Path] = (),
    params: Mapping[str, Any] | None = None,
    fold_metrics: Mapping[int, Mapping[str, float]] | None = None,
    tags: Mapping[str, str] | None = None,
) -> str:
    """Log an evaluation (or backtest) result to the ``evaluation`` experiment: headline metrics, and the result
    JSON, backtest tables and plots in ``artifacts``. ``fold_metrics``: step (e.g. the test year) -> metrics,
    logged as ``fold/<name>``. ``tags`` join the provenance tags. Returns the run id."""
    with tracked_run(settings, "evaluation", name, provenance_tags(data_hash) | dict(tags or {})) as run_id:
        if params:
            mlflow.log_params(flatten(params))
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)})
        for step, values in (fold_metrics or {}).items():
            for key, value in values.items():
                if value is not None and np.isfinite(value):
                    mlflow.log_metric(f"fold/{key}", float(value), step=step)
        for path in artifacts:
            mlflow.log_artifact(str(path), "results")
    return run_id


def log_trained_variant(settings: Settings, *, trained: Any, result: TrainRun) -> str:
    """Log ``finmlops train``'s run (``trained``: ``finmlops.training.pipeline.TrainedVariant``, not imported here
    for torch; ``result``: its ``TrainRun``) to ``training``, register the model as a new version of
    ``<variant>-predictor`` and make it the ``challenger``. Sets ``result.mlflow`` (run id, model, version, alias,
    current champion). Returns the run id.

    The held-out test block is logged as the run's walk-forward predictions (one fold, ``holdout``): promotion
    compares versions on it. The drift reference is the last timestep of every training window.
    """

    model, test = trained.model, trained.test
    predictions = pd.DataFrame(
        {
            "date": pd.to_datetime(test.dates), "ticker": test.tickers, "fold": "holdout", "model": result.variant,
            "prob_up": model.predict_proba(test), "y_true": test.y.astype(np.int8),
        }
    )  # fmt: skip
    metrics = {
        f"{block}_{k}": float(v)
        for block, scores in (("val", result.metrics.val), ("test", result.metrics.test))
        for k, v in scores.model_dump().items()
    }
    history = result.history
    run_id = log_training_run(
        settings, variant=result.variant, params=result.config,
        feature_set=result.config["variant"]["feature_set"], feature_names=result.feature_names,
        data_hash=result.data_hash,
        epoch_losses={k: [h[k] for h in history] for k in ("train_loss", "val_loss", "val_accuracy", "val_auc")},
        metrics=metrics | {"test_majority_accuracy": result.metrics.test_majority_accuracy},
        dataset=trained.features, dataset_source=str(settings.data_dir.resolve()), predictions=predictions,
        artifacts=[settings.results_dir / f"train_{result.variant}.json"],
        trained=TrainedNetwork(
            model.net.cpu(), model.scaler, trained.train.X, result.split.train.first,
            result.split.train.last,
        ),
        register=True,
    )  # fmt: skip
    try:
        result.mlflow = Registration(run_id=run_id, **mark_challenger(run_id).model_dump())
    except MlflowException as exc:
        raise TrackingError(f"MLflow at {redact(settings.tracking_uri)} failed: {exc.message}") from exc
    return run_id


def evaluation_tables(evaluation: Evaluation) -> dict[str, pd.DataFrame]:
    """``folds`` (model, fold, n_rows, accuracy and AUC with CIs) and ``calibration`` (model, bin, count, mean
    predicted, observed up rate) as long frames, from ``finmlops.evaluation.workspace``'s result."""
    folds, calibration = [], []
    for model, m in evaluation.models.items():
        for fold, f in m.folds.items():
            row: dict[str, Any] = {"model": model, "fold": fold, "n_rows": f.n_rows}
            for key, e in (("accuracy", f.accuracy), ("roc_auc", f.roc_auc)):
                row |= {key: e.value, f"{key}_ci_low": e.ci_low, f"{key}_ci_high": e.ci_high}
            folds.append(row)
        c = m.calibration
        if c is None:
            continue
        calibration += [
            {"model": model, "bin": b, "count": n, "mean_predicted": p, "observed_up": o}
            for b, n, p, o in zip(c.bin, c.count, c.mean_predicted, c.observed_up, strict=True)
        ]
    return {"folds": pd.DataFrame(folds), "calibration": pd.DataFrame(calibration)}


def evaluation_plots(tables: Mapping[str, pd.DataFrame], folder: Path) -> list[Path]:
    """``fold_accuracy.png`` (accuracy per fold with 95% CI, per model) and ``calibration.png`` (reliability
    diagram) in ``folder``; matplotlib comes with MLflow and Captum, so the train install always has it."""
    import matplotlib  # deferred: matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: matplotlib

    folds, calibration = tables["folds"], tables["calibration"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for model, rows in folds.groupby("model", sort=False):
        err = [rows["accuracy"] - rows["accuracy_ci_low"], rows["accuracy_ci_high"] - rows["accuracy"]]
        ax.errorbar(rows["fold"], rows["accuracy"], yerr=err, marker="o", capsize=3, label=model)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set(xlabel="test fold", ylabel="accuracy (95% block-bootstrap CI)", title="Walk-forward accuracy per fold")
    ax.legend(fontsize=7)
    paths = [folder / "fold_accuracy.png", folder / "calibration.png"]
    fig.savefig(paths[0], dpi=100, bbox_inches="tight")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    for model, rows in calibration.groupby("model", sort=False):
        ax.plot(rows["mean_predicted"], rows["observed_up"], marker="o", label=model)
    ax.set(xlabel="mean predicted P(up)", ylabel="observed up rate", title="Calibration (10 equal-width bins)")
    ax.legend(fontsize=7)
    fig.savefig(paths[1], dpi=100, bbox_inches="tight")
    plt.close(fig)
    return paths


def backtest_predictions_sha(path: Path) -> str | None:
    """The SHA-256 of the predictions file a ``backtest.json`` was computed on, or None when unreadable/absent."""
    try:
        return read_result(path, BacktestResult).predictions_sha256
    except (OSError, ValueError):
        return None


def log_evaluation_result(settings: Settings, *, result: EvaluationResult) -> str:
    """Log ``finmlops evaluate``'s result to ``evaluation``: pooled ``<model>/<metric>`` (with ``_ci_low`` and
    ``_ci_high``), per-fold ``fold/<model>/<metric>`` (step = test year), the result files in ``results_dir``
    (``evaluation.json``, ``evaluation.md``, ``predictions.parquet``, and ``backtest.json`` only when it was computed
    on these very predictions, same SHA-256), the fold and calibration tables as CSV and their plots. The run is
    tagged ``finmlops.predictions_sha256``. Returns the run id."""
    metrics: dict[str, float] = {}
    fold_metrics: dict[int, dict[str, float]] = {}
    for model, m in result.models.items():
        p = m.pooled
        pooled = {"accuracy": p.accuracy, "balanced_accuracy": p.balanced_accuracy, "roc_auc": p.roc_auc,
                  "log_loss": p.log_loss, "ic": p.ic}  # fmt: skip
        for key, entry in pooled.items():
            metrics |= {f"{model}/{key}": entry.value}
            metrics |= {f"{model}/{key}_ci_low": entry.ci_low, f"{model}/{key}_ci_high": entry.ci_high}
        for position, (fold, f) in enumerate(m.folds.items()):
            step = int(fold) if str(fold).isdigit() else position
            fold_metrics.setdefault(step, {}).update(
                {f"{model}/accuracy": f.accuracy.value, f"{model}/roc_auc": f.roc_auc.value}
            )
    provenance = result.provenance
    results_dir = settings.results_dir
    predictions_sha = file_sha256(results_dir / "predictions.parquet")
    files = ["evaluation.json", "evaluation.md", "predictions.parquet"]
    # evaluate has just rewritten the predictions: an older backtest.json describes other ones.
    if backtest_predictions_sha(results_dir / "backtest.json") == predictions_sha:
        files.append("backtest.json")
    with tempfile.TemporaryDirectory() as tmp:
        tables = evaluation_tables(result)
        extra = []
        for name, frame in tables.items():
            frame.to_csv(Path(tmp) / f"{name}.csv", index=False)
            extra.append(Path(tmp) / f"{name}.csv")
        extra += evaluation_plots(tables, Path(tmp))
        return log_evaluation(
            settings, name="walk-forward", metrics=metrics, data_hash=provenance.data_hash,
            artifacts=[results_dir / f for f in files if (results_dir / f).is_file()] + extra,
            params=provenance.config, fold_metrics=fold_metrics, tags={PREDICTIONS_SHA_TAG: predictions_sha},
        )  # fmt: skip


def log_backtest_result(settings: Settings, *, result: BacktestResult) -> str:
    """Log ``finmlops backtest``'s result to ``evaluation`` as a run named ``backtest``: per model and strategy
    ``<model>/<strategy>/<metric>`` (``BACKTEST_METRICS``; the benchmark as ``buy_hold/<metric>``), the backtest
    settings as params, ``results/backtest.json``, and the tag ``finmlops.predictions_sha256`` of the predictions it
    was computed on (match it with the evaluation run's). Returns the run id."""
    metrics: dict[str, float] = {}
    rows: list[tuple[str, Performance]] = [("buy_hold", result.benchmark)]
    rows += [(f"{model}/{strategy}", p) for model, strategy, p in result.books()]
    for prefix, perf in rows:
        figures = perf.model_dump(include=set(BACKTEST_METRICS))
        metrics |= {f"{prefix}/{k}": figures[k] for k in BACKTEST_METRICS if k in figures}
    metrics |= {"trials_total": result.trials.total}
    config = dict(result.provenance.config)
    predictions_sha = config.pop("predictions_sha256")
    return log_evaluation(
        settings, name="backtest", metrics=metrics, data_hash=result.provenance.data_hash,
        artifacts=[settings.results_dir / "backtest.json"], params=config, tags={PREDICTIONS_SHA_TAG: predictions_sha},
    )  # fmt: skip


def list_runs(settings: Settings, experiment: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The ``limit`` most recent runs (of one experiment, or of all four), newest first, with their key metrics
    (pooled ones; per-epoch and per-fold histories are left out)."""
    if experiment is not None and experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; known: {', '.join(EXPERIMENTS)}")
    uri = configure_tracking(settings)
    client = mlflow.MlflowClient()
    try:
        experiments = {e.experiment_id: e.name for e in client.search_experiments() if e.name in EXPERIMENTS}
        wanted = [i for i, n in experiments.items() if experiment in (None, n)]
        runs = client.search_runs(wanted, max_results=limit, order_by=["attributes.start_time DESC"]) if wanted else []
    except MlflowException as exc:
        raise TrackingError(f"MLflow at {redact(uri)} failed: {exc.message}") from exc
    return [
        {
            "run_id": run.info.run_id,
            "experiment": experiments[run.info.experiment_id],
            "name": run.info.run_name,
            "status": run.info.status,
            "started": datetime.fromtimestamp(run.info.start_time / 1000, UTC).isoformat(timespec="seconds"),
            "data_hash": run.data.tags.get("finmlops.data_hash"),
            "metrics": {k: v for k, v in sorted(run.data.metrics.items()) if not k.startswith(("epoch/", "fold/"))},
        }
        for run in runs
    ]
