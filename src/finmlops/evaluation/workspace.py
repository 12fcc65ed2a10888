"""Workspace runners behind ``finmlops evaluate``, ``backtest`` and ``audit``: read the store, run, write results.

Files in ``settings.results_dir``: ``predictions.parquet`` (the walk-forward predictions frame),
``evaluation.json`` + ``evaluation.md``, ``backtest.json`` + ``backtest_paths.parquet`` (the daily equity of
every book) + ``backtest_trials.json`` (every backtest configuration ever tried on the current predictions, for the
deflated Sharpe ratio) and ``audit.json``.
Every JSON carries ``provenance`` from :func:`finmlops.provenance.stamp`; writes go through a temporary file and
a rename, so a failed run leaves the previous results intact.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pandas as pd

from finmlops.data import DataStore, dataset_hash_of, load_snapshot
from finmlops.evaluation.audit import AUDIT_FILE, AuditConfig, AuditResult, LabelTransform, Predictor, run_audit
from finmlops.evaluation.backtest import BacktestConfig, backtest_paths, check_execution, run_backtest
from finmlops.evaluation.metrics import BootstrapConfig, evaluate_predictions, validate_predictions
from finmlops.evaluation.results import (
    BACKTEST_FILE,
    EVALUATION_FILE,
    BacktestResult,
    BaselineTest,
    Estimate,
    Evaluation,
    EvaluationResult,
    FileRef,
    Provenance,
    WalkForwardReport,
    load_evaluation,
    pooled_cells,
    pooled_header,
    write_result,
)
from finmlops.executor import ExecutorConfig
from finmlops.features import FEATURE_SETS, compute_features
from finmlops.features.target import LabelSpec, label_from_settings
from finmlops.models import BASELINES
from finmlops.provenance import atomic_path, file_lock, file_sha256, stamp, write_json_atomic, write_text_atomic
from finmlops.settings import Settings
from finmlops.stats import describe_comparison
from finmlops.stats.comparison import format_interval, format_number

PAIRED_BASELINES: tuple[str, ...] = ("majority", "momentum")
PREDICTIONS_FILE = "predictions.parquet"


def _fmt_ci(entry: Estimate, digits: int = 3, undefined: str = "–") -> str:
    """``value [low, high]``, or ``undefined`` when the value is."""
    if not entry.defined:
        return undefined
    return format_interval(entry.value, entry.ci_low, entry.ci_high, f".{digits}f")


def _fmt_p(test: BaselineTest | None, baseline: str) -> str:
    """The paired test against ``baseline`` in words (``describe_comparison``), or a dash without one."""
    return "–" if test is None else describe_comparison(test.comparison("accuracy", baseline))


def markdown_table(evaluation: Evaluation) -> str:
    """Every model and baseline side by side: pooled metrics with 95 % CIs, and the paired tests."""
    level = evaluation.bootstrap.level
    header = ["model", *pooled_header(level), *(f"vs {b}" for b in PAIRED_BASELINES)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, m in evaluation.models.items():
        cells = [
            name + (" (baseline)" if m.is_baseline else ""),
            *pooled_cells(m.pooled),
            *(_fmt_p(m.vs_baselines.get(b), b) for b in PAIRED_BASELINES),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    boot = evaluation.bootstrap
    lines.append("")
    lines.append(
        f"CIs: circular block bootstrap over dates, {boot.n_boot} resamples of {boot.block_len}-day blocks, "
        f"seed {boot.seed}. vs: the model's accuracy minus the baseline's on the same rows, with the two-sided "
        "paired block-bootstrap p-value (null-centred); better/worse only where p < 0.05 in that direction."
    )
    return "\n".join(lines) + "\n"


def signal_table(evaluation: Evaluation) -> str:
    """IC, Rank IC, ICIR and accuracy against 0.5 per model (``finmlops.evaluation.signal``), with CIs and tests."""
    header = ["model", "IC [CI]", "IC vs 0", "rank IC [CI]", "rank IC vs 0", "ICIR [CI]", "rank ICIR [CI]",
              "ICIR x sqrt(252)", "accuracy vs 0.5"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, m in evaluation.models.items():
        sig = m.signal
        if sig is None:
            continue
        lines.append("| " + " | ".join([
            name, _fmt_ci(sig.ic, 4), describe_comparison(sig.ic_vs_zero), _fmt_ci(sig.rank_ic, 4),
            describe_comparison(sig.rank_ic_vs_zero), _fmt_ci(sig.icir), _fmt_ci(sig.rank_icir),
            _fmt_ci(sig.icir_annualised, 2), describe_comparison(sig.accuracy_vs_half),
        ]) + " |")  # fmt: skip
    lines.append("")
    lines.append(
        "IC: per-date Pearson correlation of prob_up with the next traded return across tickers; rank IC: Spearman. "
        "ICIR = mean / std of the daily series, unannualised (Qlib's definition); x sqrt(252) annualised. "
        "Accuracy vs 0.5 is the test that matters on a balanced (cross-sectional) label."
    )
    return "\n".join(lines) + "\n"


def fold_table(evaluation: Evaluation) -> str:
    """Accuracy per test fold (rows) and model (columns)."""
    models = list(evaluation.models)
    folds = sorted({f for m in evaluation.models.values() for f in m.folds})
    lines = ["| fold | " + " | ".join(models) + " |", "|" + "---|" * (len(models) + 1)]
    for fold in folds:
        cells = [
            format_number(evaluation.models[m].folds[fold].accuracy.value, ".3f")
            if fold in evaluation.models[m].folds
            else "–"
            for m in models
        ]
        lines.append(f"| {fold} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_parquet_atomic(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame``'s content to ``path`` through a temporary file and a rename.

    ``frame.attrs`` are left out: pandas would store them in the file's metadata, and run-dependent attrs (the
    walk-forward's ``fit_seconds``) would change the file's SHA-256 on every identical rerun, which keys the trial
    ledger of the deflated Sharpe ratio. Same content, same bytes.
    """
    content = frame.copy(deep=False)
    content.attrs = {}
    with atomic_path(path) as tmp:
        content.to_parquet(tmp, index=False)
    return path


def _evaluated_sha256(results_dir: Path) -> str | None:
    """The predictions' SHA-256 that ``results_dir``'s evaluation records (None when it cannot be read)."""
    try:
        return load_evaluation(results_dir).predictions.sha256
    except (OSError, ValueError):
        return None


def evaluate_and_write(
    preds: pd.DataFrame, results_dir: Path, *, data_hash: str | None, config: dict[str, Any], boot: BootstrapConfig
) -> EvaluationResult:
    """Write the predictions, then score them and write ``evaluation.json`` and ``evaluation.md``.

    The predictions go first: at universe scale the scoring takes minutes after hours of fits, and a failure there
    must not lose the fits. An evaluation left from other predictions is removed before scoring, so that a failed
    scoring never leaves a pair that disagrees. The walk-forward's ``attrs`` (``row_report``, ``fit_seconds``),
    when present, go into ``evaluation.json`` under ``walk_forward``, not into the predictions file, whose SHA-256
    must depend on the predictions alone.
    """
    pred_path = write_parquet_atomic(validate_predictions(preds), results_dir / PREDICTIONS_FILE)
    sha256 = file_sha256(pred_path)
    if (results_dir / EVALUATION_FILE).exists() and _evaluated_sha256(results_dir) != sha256:
        for stale in (EVALUATION_FILE, "evaluation.md"):
            (results_dir / stale).unlink(missing_ok=True)
    evaluation = evaluate_predictions(preds, baselines=PAIRED_BASELINES, boot=boot)
    payload = EvaluationResult(
        provenance=Provenance.model_validate(stamp(data_hash=data_hash, config=config, seed=boot.seed)),
        predictions=FileRef(file=PREDICTIONS_FILE, sha256=sha256),
        walk_forward=WalkForwardReport.model_validate(
            {k: preds.attrs[k] for k in ("row_report", "fit_seconds") if k in preds.attrs}
        ),
        bootstrap=evaluation.bootstrap,
        baselines=evaluation.baselines,
        models=evaluation.models,
    )
    write_result(results_dir / EVALUATION_FILE, payload)
    markdown = (
        f"# Walk-forward evaluation\n\n{markdown_table(evaluation)}\n## Signal measures\n\n{signal_table(evaluation)}"
        f"\n## Accuracy per fold\n\n{fold_table(evaluation)}"
    )
    write_text_atomic(results_dir / "evaluation.md", markdown)
    return payload


def run_evaluation(
    settings: Settings,
    *,
    variants: Sequence[str],
    epochs: int,
    seed: int,
    test_years: Sequence[int],
    boot: BootstrapConfig,
    progress: bool = True,
    executor: ExecutorConfig | None = None,
) -> EvaluationResult:
    """Walk-forward over the whole store (every baseline, the given ``variants``) and score it; ``executor`` runs
    the fits serially or as Ray tasks (same predictions)."""
    from finmlops.training.walkforward import walk_forward_predictions  # deferred: torch

    universe, data_hash = DataStore(settings.data_dir).read_versioned()
    label = label_from_settings(settings)
    preds = walk_forward_predictions(
        universe,
        variants=variants,
        baselines=BASELINES,
        test_years=test_years,
        epochs=epochs,
        seed=seed,
        threads=settings.threads,
        device="auto",
        progress=progress,
        label=label,
        executor=executor,
    )
    config = {
        "variants": list(variants),
        "label": label.model_dump(),
        "baselines": list(BASELINES),
        "epochs": epochs,
        "test_years": list(test_years),
        "tickers": sorted(universe),
        "bootstrap": asdict(boot),
    }
    return evaluate_and_write(preds, settings.results_dir, data_hash=data_hash, config=config, boot=boot)


def load_predictions(results_dir: Path) -> tuple[pd.DataFrame, str]:
    """The saved predictions frame (validated) and its SHA-256; a clear error when ``evaluate`` has not run."""
    path = results_dir / PREDICTIONS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no predictions; run `finmlops evaluate` first")
    return validate_predictions(pd.read_parquet(path), source=str(path)), file_sha256(path)


def _trial_key(model: str, strategy: str, config: BacktestConfig, label: LabelSpec) -> str:
    key: list[Any] = [model, strategy, config.cost_bps, config.slippage_bps, label.execution, config.top_k]
    if strategy == "fk_long_short":  # the papers' books: their own settings make another trial
        key.append(config.fk_k)
    elif strategy == "topk_dropout":
        key.append(asdict(config.topk_dropout))
    return json.dumps(key)


TRIALS_FILE = "backtest_trials.json"


def record_tuning_trials(results_dir: Path, study: str, n_trials: int) -> int:
    """Record that hyperparameter study ``study`` has tried ``n_trials`` configurations (its finished trials so
    far: a rerun of the same study replaces its count). Returns the tuning trials now on record, all studies.

    They enter every later backtest's deflated Sharpe ratio as trials without a Sharpe ratio of their own (they
    raise the count, not the variance), and they survive new predictions files: the tuning chose the model whose
    predictions are being backtested.
    """
    if n_trials < 0:
        raise ValueError(f"n_trials must be >= 0, got {n_trials}")
    path = results_dir / TRIALS_FILE
    results_dir.mkdir(parents=True, exist_ok=True)
    # Parallel tuning workers update the ledger at once: read-modify-write under a lock, or one loses the other's.
    with file_lock(results_dir / f".{TRIALS_FILE}.lock"):
        ledger = json.loads(path.read_text()) if path.exists() else {}
        ledger["tuning"] = {**ledger.get("tuning", {}), study: n_trials}
        write_json_atomic(path, ledger)
    return sum(ledger["tuning"].values())


def predictions_label(results_dir: Path) -> LabelSpec:
    """The label the saved predictions were made with, from ``evaluation.json`` (older files without the execution:
    the default close). Raises ``FileNotFoundError`` when ``evaluate`` has not run."""
    return load_evaluation(results_dir).label


def run_backtest_workspace(settings: Settings, config: BacktestConfig) -> BacktestResult:
    """Backtest the saved predictions: each position earns the label's traded return, the predictions' ``ret_next``
    (the label comes from evaluation.json); records every configuration tried on the predictions in
    ``backtest_trials.json``.

    The deflated Sharpe ratio counts all configurations ever tried on the same predictions file (identified by its
    SHA-256), not only this run's, so re-running with other settings until something looks good is paid for; the
    hyperparameter trials of ``finmlops tune`` (:func:`record_tuning_trials`) count too.
    """
    preds, pred_sha = load_predictions(settings.results_dir)
    evaluation = load_evaluation(settings.results_dir)
    label = evaluation.label
    check_execution(config, label)
    data_hash = evaluation.provenance.data_hash
    ledger_path = settings.results_dir / TRIALS_FILE
    with file_lock(settings.results_dir / f".{TRIALS_FILE}.lock"):
        return _backtest_with_ledger(settings, config, label, preds, pred_sha, data_hash, ledger_path)


def _backtest_with_ledger(
    settings: Settings,
    config: BacktestConfig,
    label: LabelSpec,
    preds: pd.DataFrame,
    pred_sha: str,
    data_hash: str | None,
    ledger_path: Path,
) -> BacktestResult:
    ledger = json.loads(ledger_path.read_text()) if ledger_path.exists() else {}
    trials: dict[str, float | None] = ledger.get("trials", {}) if ledger.get("predictions_sha256") == pred_sha else {}
    tuning: dict[str, int] = ledger.get("tuning", {})
    this_keys = {_trial_key(m, s, config, label) for m in preds["model"].unique() for s in config.strategies}
    prior = [v if v is not None else float("nan") for k, v in trials.items() if k not in this_keys]
    prior += [float("nan")] * sum(tuning.values())
    # The tuning trials are part of "prior".
    result = run_backtest(preds, config, label=label, prior_trials=prior, tuning_trials=sum(tuning.values()))
    for model, strategy, perf in result.books():
        trials[_trial_key(model, strategy, config, label)] = perf.sharpe_daily
    write_json_atomic(ledger_path, {"predictions_sha256": pred_sha, "trials": trials, "tuning": tuning})
    provenance_config = {**result.config.model_dump(mode="json"), "predictions_sha256": pred_sha}
    payload = BacktestResult(
        provenance=Provenance.model_validate(stamp(data_hash=data_hash, config=provenance_config, seed=None)),
        timing=label.timing,
        paths=write_backtest_paths(settings.results_dir, preds, config, label),
        **dict(result),
    )
    write_result(settings.results_dir / BACKTEST_FILE, payload)
    return payload


PATHS_FILE = "backtest_paths.parquet"


def write_backtest_paths(results_dir: Path, preds: pd.DataFrame, config: BacktestConfig, label: LabelSpec) -> FileRef:
    """Write :func:`~finmlops.evaluation.backtest.backtest_paths` (the daily equity of every book) to
    ``backtest_paths.parquet`` beside ``backtest.json``, which names it with its SHA-256 (the returned
    :class:`FileRef`): the report draws these paths and recomputes nothing."""
    path = write_parquet_atomic(backtest_paths(preds, config, label), results_dir / PATHS_FILE)
    return FileRef(file=PATHS_FILE, sha256=file_sha256(path))


def run_audit_workspace(
    settings: Settings,
    *,
    quick: bool,
    variants: Sequence[str],
    epochs: int,
    seed: int,
    boot: BootstrapConfig,
    patience: int = 5,
) -> AuditResult:
    """The leakage audit with the real pipeline (``walk_forward_predictions``) on the bundled snapshot's sizes.

    ``quick`` shrinks the markets (10 tickers, 2600 days, 1 test year) for a run of minutes on a laptop. Smaller
    markets are not a fair test: with a few thousand training windows a deep model cannot learn even the planted
    signal, and the audit would blame the pipeline for the sample size. Deep fits stop early after ``patience``
    epochs without a better validation loss.
    """
    from finmlops.training.walkforward import walk_forward_predictions  # deferred: torch

    snapshot = load_snapshot()
    label = label_from_settings(settings)
    config = AuditConfig(seed=seed, boot=boot, label=label)
    if quick:
        config = replace(config, n_tickers=10, n_days=2600, test_years=1)

    def predictor_for(years: list[int], label_transform: LabelTransform | None) -> Predictor:
        run: Callable[[Any], pd.DataFrame] = lambda universe: walk_forward_predictions(  # noqa: E731
            universe,
            label=label,
            label_transform=label_transform,
            variants=variants,
            baselines=BASELINES,
            test_years=years,
            epochs=epochs,
            patience=patience,
            seed=seed,
            threads=settings.threads,
            device="auto",
            progress=False,
        )
        return run

    def all_features(universe: Any) -> pd.DataFrame:
        frame = pd.concat([compute_features(universe, s) for s in FEATURE_SETS], axis=1)
        return frame.loc[:, ~frame.columns.duplicated()]

    audit = run_audit(snapshot, predictor_for, all_features, config)
    run_config = {"quick": quick, "variants": list(variants), "epochs": epochs, "patience": patience, **audit.config}
    result = AuditResult(
        **dict(audit), provenance=stamp(data_hash=dataset_hash_of(snapshot), config=run_config, seed=seed)
    )
    write_result(settings.results_dir / AUDIT_FILE, result)
    return result
