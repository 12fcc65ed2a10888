"""Hyperparameter search (``finmlops tune``): Optuna TPE over a deep variant, scored by walk-forward folds.

Each trial fits the variant on every fold with ``finmlops.training.cross_val_predict`` (expanding history, purged
validation tail for early stopping, the settings' label) and reports the fold's out-of-sample metric after each
fold, so a ``MedianPruner`` stops a trial whose fold is worse than the
median of earlier trials on the same fold. The objective is the mean over folds. Those folds take part in the
selection, so judge the tuned model on other years, and read the backtest's deflated Sharpe ratio: every finished
trial is recorded with ``finmlops.evaluation.workspace.record_tuning_trials``.

The study lives in ``<home>/tuning/optuna.journal`` (an Optuna journal file) unless ``storage`` names a database
(``postgresql://...``, ``sqlite:///...``), which several processes can share; a rerun with the same study name
resumes it (the trial target counts finished trials of the study, whoever ran them). Every trial is an MLflow
nested run under one ``tuning`` parent run per process. At the end the best configuration is refit on all data
and registered as a new ``challenger`` version of ``<variant>-predictor``.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
import optuna
import pandas as pd
from mlflow.exceptions import MlflowException
from optuna.storages.journal import JournalFileBackend, JournalStorage
from pydantic import BaseModel, Field

from finmlops.data import DataStore
from finmlops.evaluation.workspace import record_tuning_trials
from finmlops.executor import ExecutorConfig, open_executor
from finmlops.features import (
    Fold,
    LabelSpec,
    Windows,
    compute_features,
    forward_return,
    label_from_settings,
    make_target,
    make_windows,
    min_gap,
)
from finmlops.models.variants import VariantConfig, get_variant
from finmlops.settings import Settings
from finmlops.tracking.backend import TrackingError, configure_tracking, ensure_experiment, redact, storage_url
from finmlops.tracking.registry import EVIDENCE_TAG, PREDICTIONS_ARTIFACT, mark_challenger
from finmlops.tracking.runs import TrainedNetwork, _log_predictions, log_training_run, provenance_tags
from finmlops.training import cross_val_predict, label_folds, train_config
from finmlops.training.pipeline import classification_metrics
from finmlops.training.results import Registration
from finmlops.training.trainer import DeepModel

METRICS: dict[str, str] = {"log_loss": "minimize", "auc": "maximize", "accuracy": "maximize"}
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
VAL_FRAC = 0.1
CREATE_ATTEMPTS = 5


class TuningInterrupted(RuntimeError):
    """Ctrl-C stopped the study; the finished trials are stored and a rerun resumes it."""


def suggest_variant(trial: optuna.Trial, base: VariantConfig) -> VariantConfig:
    """The preset ``base`` with a sampled learning rate, width, depth, dropout, weight decay, window and batch.

    Widths are multiples of 4 so every transformer width divides into its 4 heads.
    """
    return get_variant(
        base.name,
        lr=trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        hidden_size=trial.suggest_categorical("hidden_size", [16, 32, 64, 128]),
        num_layers=trial.suggest_int("num_layers", 1, 2),
        dropout=trial.suggest_float("dropout", 0.0, 0.5),
        weight_decay=trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        seq_len=trial.suggest_categorical("seq_len", [5, 10, 20]),
        batch_size=trial.suggest_categorical("batch_size", [256, 512, 1024]),
    )


def fold_metric(metric: str, y: np.ndarray, prob: np.ndarray) -> float:
    """``metric`` of P(up) ``prob`` ``[n]`` against 0/1 ``y`` ``[n]`` (the training pipeline's definitions)."""

    return float(getattr(classification_metrics(y, prob), metric))


def default_storage(settings: Settings) -> Any:
    """The workspace's Optuna journal file ``<home>/tuning/optuna.journal``."""

    path = settings.home / "tuning" / "optuna.journal"
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


class TuneReport(BaseModel):
    """What a ``finmlops tune`` process did, and where the study stands: the study and its storage (credentials
    redacted), the variant, the objective ``metric`` per fold and its ``direction``, the test years, the target of
    finished trials, the study's complete / pruned / failed trial counts and how many this process ran; the best
    trial's number, objective value (None when undefined) and parameters; the MLflow parent run, the best trial's
    refit registered as the challenger (None with ``--no-register`` or no complete trial), and the tuning trials on
    record for the deflated Sharpe ratio."""

    study: str
    storage: str
    variant: str
    metric: str
    direction: str
    folds: list[int]
    target_trials: int
    complete: int
    pruned: int
    failed: int
    this_process: int
    best_trial: int | None = None
    best_value: float | None = None
    best_params: dict[str, Any] = Field(default_factory=dict)
    parent_run_id: str | None = None
    registered: Registration | None = None
    tuning_trials_recorded: int = 0


class WalkForwardObjective:
    """The objective: ``cross_val_predict`` over the folds, reporting each fold's metric to Optuna (which may prune
    the trial there), returning the mean. Features are computed once; windows once per window length."""

    def __init__(
        self,
        universe: dict[str, pd.DataFrame],
        base: VariantConfig,
        *,
        folds: Sequence[int],
        metric: str,
        epochs: int,
        seed: int,
        threads: int,
        label: LabelSpec,
    ) -> None:
        self.base, self.folds, self.metric, self.label = base, list(folds), metric, label
        self.train_config = train_config(epochs=epochs, seed=seed, threads=threads, device="cpu")
        self.target = make_target(universe, label)
        self.traded = forward_return(universe, label)
        self.features = compute_features(universe, base.feature_set)
        self._windows: dict[int, Windows] = {}
        # (experiment id, run id) of the tuning run, for trials run in a Ray task (no active parent run there).
        self.parent: tuple[str, str] | None = None

    def windows(self, seq_len: int) -> Windows:
        """Labelled windows of ``seq_len`` days (cached)."""

        if seq_len not in self._windows:
            w = make_windows(self.features, self.target, seq_len)
            self._windows[seq_len] = w.subset(np.isfinite(w.y))
        return self._windows[seq_len]

    def fit(self, variant: VariantConfig, train: Any, val: Any) -> Any:
        return DeepModel(variant, self.train_config).fit(train, val)

    def __call__(self, trial: optuna.Trial) -> float:
        variant = suggest_variant(trial, self.base)
        windows = self.windows(variant.seq_len)
        folds = label_folds(
            self.target, seq_len=variant.seq_len, label=self.label, test_years=self.folds, val_frac=VAL_FRAC
        )
        # Nested runs do not inherit the parent's experiment: name it.
        active = mlflow.active_run()
        experiment_id, parent_id = self.parent or ((active.info.experiment_id, None) if active else (None, None))
        mlflow.start_run(
            experiment_id=experiment_id, run_name=f"trial-{trial.number}", nested=True, parent_run_id=parent_id,
            tags={"finmlops.trial": str(trial.number)},
        )  # fmt: skip
        status = "FAILED"
        values: list[float] = []

        def report(fold: Fold, _model: Any, test: Windows, prob: np.ndarray) -> None:
            nonlocal status
            value = fold_metric(self.metric, test.y, prob)
            mlflow.log_metric(f"fold/{self.metric}", value, step=len(values))
            trial.report(value, len(values))
            values.append(value)
            if trial.should_prune():
                status = "KILLED"
                raise optuna.TrialPruned(f"fold {fold.name}: {self.metric} {value:.4f} worse than the median")

        try:
            mlflow.log_params({k: str(v) for k, v in trial.params.items()})
            trial.set_user_attr("mlflow_run_id", mlflow.active_run().info.run_id)
            preds = cross_val_predict(
                lambda: DeepModel(variant, self.train_config), windows, folds, self.label, on_fold=report
            )
            keys = pd.MultiIndex.from_frame(preds[["date", "ticker"]])
            preds = preds.assign(model=self.base.name, ret_next=self.traded.reindex(keys).to_numpy())
            objective = float(np.mean(values))
            mlflow.log_metric(self.metric, objective)
            _log_predictions(preds)
            status = "FINISHED"
            return objective
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            mlflow.set_tag("finmlops.trial_state", {"FINISHED": "complete", "KILLED": "stopped"}.get(status, "failed"))
            mlflow.end_run(status)


def final_split(windows: Any, seq_len: int, label: LabelSpec) -> tuple[Any, Any]:
    """All labelled windows as (train, val): the last ``VAL_FRAC`` of the dates validate early stopping, after a
    purge of ``min_gap(seq_len, label.reach)`` trading days."""

    dates = np.unique(windows.dates)
    n_val = max(1, round(len(dates) * VAL_FRAC))
    train_dates = dates[: max(len(dates) - n_val - min_gap(seq_len, label.reach), 0)]
    if len(train_dates) == 0:
        raise ValueError(f"too few dates ({len(dates)}) to refit the best configuration")
    return windows.subset(np.isin(windows.dates, train_dates)), windows.subset(np.isin(windows.dates, dates[-n_val:]))


def _trial_predictions(run_id: str) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        return pd.read_parquet(
            mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=PREDICTIONS_ARTIFACT, dst_path=tmp)
        )


def register_best(
    settings: Settings, objective: WalkForwardObjective, best: optuna.trial.FrozenTrial, meta: dict[str, Any]
) -> Registration:
    """Refit the best trial's configuration on all data, log it to ``tuning`` with the best trial's walk-forward
    predictions, register it as a new version of ``<variant>-predictor`` and make it the challenger.

    Those predictions are the rows the trial was selected on, so the version is tagged
    ``finmlops.evidence=selection`` and ``promote`` refuses it unless forced (registry module docstring)."""

    variant = get_variant(objective.base.name, **{k: best.params[k] for k in best.params})
    train, val = final_split(objective.windows(variant.seq_len), variant.seq_len, objective.label)
    model = objective.fit(variant, train, val)
    history = model.outcome.history
    run_id = log_training_run(
        settings, variant=variant.name, experiment="tuning",
        params={"variant": variant.model_dump(), "train": objective.train_config.model_dump(), "tuning": meta,
                "best_trial": best.number, "label": objective.label.model_dump()},
        feature_set=variant.feature_set, feature_names=list(train.feature_names), data_hash=meta["data_hash"],
        epoch_losses={k: [h[k] for h in history] for k in ("train_loss", "val_loss")},
        metrics={f"wf_{objective.metric}": best.value},
        predictions=_trial_predictions(best.user_attrs["mlflow_run_id"]),
        trained=TrainedNetwork(
            model.net.cpu(), model.scaler, train.X, str(pd.Timestamp(train.dates.min()).date()),
            str(pd.Timestamp(train.dates.max()).date()),
        ),
        register=True,
    )  # fmt: skip
    challenger = mark_challenger(run_id)
    mlflow.MlflowClient().set_model_version_tag(challenger.model, str(challenger.version), EVIDENCE_TAG, "selection")
    return Registration(run_id=run_id, **challenger.model_dump())


def _counts(study: optuna.Study) -> dict[str, int]:
    states = [t.state for t in study.get_trials(deepcopy=False)]
    return {
        "complete": states.count(optuna.trial.TrialState.COMPLETE),
        "pruned": states.count(optuna.trial.TrialState.PRUNED),
        "failed": states.count(optuna.trial.TrialState.FAIL),
    }


# SQLSTATEs of "the object another worker just created already exists": unique_violation (a row of pg_type or a
# study name), duplicate_table, duplicate_object (Optuna's enum types).
_ALREADY_EXISTS = {"23505", "42P07", "42710"}


def _lost_schema_race(exc: Exception) -> bool:
    """True when ``exc`` says a table, type or study that another worker created at the same moment already exists.

    Workers started together (a parallel Job) race to create Optuna's schema on an empty database; the loser gets
    one of these errors for whichever object the winner made first, and succeeds on a retry."""
    from sqlalchemy.exc import IntegrityError  # deferred: sqlalchemy

    if isinstance(exc, IntegrityError):
        return True
    code = getattr(getattr(exc, "orig", None), "pgcode", None)
    return code in _ALREADY_EXISTS or "already exists" in str(getattr(exc, "orig", exc)).lower()


def open_study(name: str, storage: Any, meta: dict[str, Any], seed: int) -> optuna.Study:
    """Create or load study ``name``; a loaded study must have been created with the same ``meta`` (variant,
    metric, folds, epochs, data) or its trials would not be comparable. The TPE seed is offset by the trials
    already there, so a resumed run does not redraw the first run's random start points."""
    from sqlalchemy.exc import SQLAlchemyError  # deferred: sqlalchemy

    for attempt in range(CREATE_ATTEMPTS):
        try:
            study = optuna.create_study(
                study_name=name, storage=storage_url(storage) if isinstance(storage, str) else storage,
                direction=METRICS[meta["metric"]], load_if_exists=True,
                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0),
            )  # fmt: skip
            break
        except (ImportError, SQLAlchemyError) as exc:
            if _lost_schema_race(exc) and attempt < CREATE_ATTEMPTS - 1:
                time.sleep(0.2 * 2**attempt)
                continue
            where = redact(storage) if isinstance(storage, str) else "the journal file"
            raise ValueError(f"Optuna storage {where} is unusable: {type(exc).__name__}: {exc}") from None
    stored = study.user_attrs.get("finmlops")
    if stored is None:
        study.set_user_attr("finmlops", meta)
    elif stored != meta:
        diff = {k: (stored.get(k), v) for k, v in meta.items() if stored.get(k) != v}
        raise ValueError(f"study {name!r} was created with other settings (stored, now): {diff}; use another --study")
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.get_trials(deepcopy=False)))
    return study


@dataclass
class _RayTuning:
    """What each Ray task needs to join the study: the objective (features and windows), where the study and
    MLflow live, and the parent run its trials nest under."""

    objective: WalkForwardObjective
    storage: str | None  # a database URL; None: the workspace's journal file at ``journal``
    journal: str
    name: str
    meta: dict[str, Any]
    seed: int
    trials: int
    remaining: int
    tracking_uri: str
    parent: tuple[str, str]


def _tune_in_task(job: _RayTuning, worker: int) -> list[int]:
    """One Ray worker of the study: trials until the study has ``trials`` finished ones; returns their numbers."""

    mlflow.set_tracking_uri(job.tracking_uri)
    storage = job.storage or JournalStorage(JournalFileBackend(job.journal))
    # Each worker's TPE gets its own seed, so that workers starting together do not sample the same points.
    study = open_study(job.name, storage, job.meta, job.seed + 1009 * (worker + 1))
    job.objective.parent = job.parent
    ran: list[int] = []
    callbacks = [optuna.study.MaxTrialsCallback(job.trials, states=FINISHED), lambda _s, t: ran.append(t.number)]
    study.optimize(job.objective, n_trials=job.remaining, callbacks=callbacks, gc_after_trial=True)
    return ran


def run_tuning(
    settings: Settings,
    variant: str,
    *,
    trials: int,
    folds: Sequence[int] | None = None,
    epochs: int = 5,
    metric: str = "log_loss",
    storage: str | None = None,
    study_name: str | None = None,
    register: bool = True,
    executor: ExecutorConfig | None = None,
) -> TuneReport:
    """Run the study until it has ``trials`` finished (complete or pruned) trials; see the module docstring.

    ``executor`` ray runs the trials as Ray tasks, one per Ray worker (its CPUs over the settings' threads), each
    an Optuna worker on the shared storage (the journal file on one machine; a ``postgresql://`` URL on a cluster)
    whose trials are MLflow runs nested under this process's tuning run. Parallel TPE sees fewer finished trials
    when it samples, so a Ray study is not the same sequence of trials as a serial one.

    ``folds``: test years (default: the 3 years before the store's last year, which stays out of the selection).
    Raises ``TuningInterrupted`` on
    Ctrl-C (after closing the MLflow runs and recording the trial count), ``TrackingError`` naming the URI when
    MLflow is unreachable, ``ValueError`` for bad settings or data.
    """

    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    base = get_variant(variant)
    uri = configure_tracking(settings)
    store = DataStore(settings.data_dir)
    universe, data_hash = store.read_versioned()
    years = sorted({d.year for f in universe.values() for d in f.index})
    if not folds and len(years) < 5:
        raise ValueError(f"the store spans {years[0]}-{years[-1]}: give --folds (test years with history before)")
    folds = list(folds) if folds else years[-4:-1]
    name = study_name or f"{variant}-{metric}"
    label = label_from_settings(settings)
    meta = {"variant": variant, "metric": metric, "folds": folds, "epochs": epochs, "data_hash": data_hash}
    meta["label"] = label.model_dump()
    study = open_study(name, storage or default_storage(settings), meta, settings.seed)
    objective = WalkForwardObjective(
        universe, base, folds=folds, metric=metric, epochs=epochs, seed=settings.seed, threads=settings.threads,
        label=label,
    )  # fmt: skip
    report = TuneReport(
        study=name, storage=redact(storage) if storage else str(settings.home / "tuning" / "optuna.journal"),
        variant=variant, metric=metric, direction=METRICS[metric], folds=folds, target_trials=trials,
        this_process=0, **_counts(study),
    )  # fmt: skip
    remaining = trials - report.complete - report.pruned
    try:
        experiment_id = ensure_experiment(settings, "tuning")
        tags = provenance_tags(data_hash) | {"finmlops.variant": variant, "finmlops.study": name}
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"tune-{name}", tags=tags) as parent:
            report.parent_run_id = parent.info.run_id
            mlflow.log_params({"study": name, "metric": metric, "folds": ",".join(map(str, folds)), "epochs": epochs})
            if remaining > 0:
                ran: list[int] = []  # this process's trials (other workers add theirs meanwhile)
                callbacks = [
                    optuna.study.MaxTrialsCallback(trials, states=FINISHED),
                    lambda _study, frozen: ran.append(frozen.number),
                ]
                try:
                    if executor is not None and executor.kind == "ray":
                        job = _RayTuning(
                            objective, storage, str(settings.home / "tuning" / "optuna.journal"), name, meta,
                            settings.seed, trials, remaining, uri, (experiment_id, parent.info.run_id),
                        )  # fmt: skip
                        with open_executor(executor) as run:
                            workers = max(1, min(remaining, run.workers // max(settings.threads, 1)))
                            ran += [n for part in run.map(_tune_in_task, range(workers), shared=job,
                                                          cpus=settings.threads) for n in part]  # fmt: skip
                    else:
                        study.optimize(objective, n_trials=remaining, callbacks=callbacks, gc_after_trial=True)
                except KeyboardInterrupt:
                    mlflow.set_tag("finmlops.interrupted", "true")
                    mlflow.end_run("KILLED")
                    counts = _counts(study)
                    record_tuning_trials(settings.results_dir, name, counts["complete"] + counts["pruned"])
                    raise TuningInterrupted(
                        f"interrupted: study {name!r} has {counts['complete'] + counts['pruned']} of {trials} "
                        "finished trials; rerun the same command to resume"
                    ) from None
                report.this_process = len(ran)
            for state, count in _counts(study).items():
                setattr(report, state, count)
            finished = report.complete + report.pruned
            report.tuning_trials_recorded = record_tuning_trials(settings.results_dir, name, finished)
            mlflow.log_metrics({"complete": report.complete, "pruned": report.pruned, "failed": report.failed})
            if report.complete:
                best = study.best_trial
                report.best_trial, report.best_value, report.best_params = best.number, best.value, best.params
                mlflow.log_metric(f"best_{metric}", best.value)
                mlflow.log_params({f"best.{k}": str(v) for k, v in best.params.items()})
        # One registration per best trial: a rerun or a second worker that finds no better trial adds no version.
        done = study.user_attrs.get("registered", {})
        if register and report.best_trial is not None and done.get("trial") != report.best_trial:
            report.registered = register_best(settings, objective, study.best_trial, meta)
            mlflow.MlflowClient().set_tag(report.registered.run_id, "mlflow.parentRunId", report.parent_run_id)
            study.set_user_attr("registered", {"trial": report.best_trial, **report.registered.model_dump()})
        elif done.get("trial") == report.best_trial:
            report.registered = Registration.model_validate(done)
    except MlflowException as exc:
        raise TrackingError(f"MLflow at {redact(uri)} failed: {exc.message}") from exc
    if report.best_value is not None and not math.isfinite(report.best_value):
        report.best_value = None
    return report
