"""``finmlops train``, ``evaluate``, ``backtest``, ``audit`` and ``tune``."""

from __future__ import annotations

import logging
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from finmlops.data import DataError
from finmlops.models.variants import VARIANTS
from finmlops.report.base import num

if TYPE_CHECKING:
    from finmlops.evaluation.results import BacktestResult, Performance
from finmlops.cli.common import (
    EXECUTOR_HELP,
    RAY_ADDRESS_HELP,
    RAY_CPUS_HELP,
    Device,
    ExecutionChoice,
    Executor,
    Metric,
    Strategy,
    Variant,
    app,
    bootstrap_config,
    cli_tracker,
    console,
    emit_json,
    executor_config,
    fail,
    parse_folds,
    settings_from,
    track,
    tracking_ready,
)

PANEL = "Research"  # the group these commands are listed under in finmlops --help

# train (finmlops.training)


@app.command("train", rich_help_panel=PANEL)
def train_command(
    variant: Variant = typer.Option("baseline", "--variant", help="The deep variant to train."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Maximum epochs (early stopping) (default: 30)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed for initialisation and shuffling (default: settings)."),
    device: Device = typer.Option("auto", "--device", help="Where torch trains."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads for torch (default: settings)."),
    class_balanced: bool = typer.Option(False, "--class-balanced", help="Weight the loss by n_neg/n_pos."),
    quiet: bool = typer.Option(False, "--quiet", help="One log line per epoch instead of a progress bar."),
    no_track: bool = typer.Option(False, "--no-track", help="Do not log to MLflow nor register the model."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Train one deep variant on the store with a purged chronological train/val/test split; writes
    results/train_<variant>.json and models/<variant>/ (weights, scaler, config). Logs a training run to MLflow and
    registers the model as a new version of <variant>-predictor with the challenger alias."""

    settings = settings_from(seed=seed, threads=threads)
    if quiet:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from finmlops.training import run_training  # deferred: torch

    tracked = not no_track and tracking_ready(settings)
    try:
        result = run_training(
            settings,
            variant.value,
            epochs=epochs,
            device=device.value,
            verbosity="log" if quiet else "silent" if json_out else "bar",
            class_balanced=class_balanced,
            on_trained=partial(track, "training", "log_trained_variant", settings) if tracked else None,
        )
    except (DataError, OSError, ValueError) as exc:
        fail(str(exc))
    if json_out:
        emit_json(result)
        return
    if (reg := result.mlflow) is not None:
        console.print(
            f"registered {reg.model} version {reg.version} as challenger; "
            + (f"champion is version {reg.champion}" if reg.champion else "no champion yet")
            + f": finmlops promote --model {reg.model} --version {reg.version} --alias champion",
            highlight=False,
            soft_wrap=True,
        )
    test, val = result.metrics.test, result.metrics.val
    console.print(
        f"{variant}: best epoch {result.best_epoch} of {len(result.history)}; "
        f"val accuracy {val.accuracy:.4f} (AUC {val.auc:.3f}), test accuracy {test.accuracy:.4f} "
        f"(AUC {test.auc:.3f}, majority class {result.metrics.test_majority_accuracy:.4f}) on "
        f"{test.n} windows. Wrote {settings.results_dir / f'train_{variant}.json'} and {result.model_dir}",
        highlight=False,
    )


@app.command("evaluate", rich_help_panel=PANEL)
def evaluate_command(
    variant: list[Variant] = typer.Option([], "--variant", help="Deep variant to evaluate (repeatable)."),
    all_variants: bool = typer.Option(False, "--all", help="Evaluate every deep variant."),
    epochs: int = typer.Option(8, "--epochs", min=1, help="Maximum epochs per fit."),
    seed: int | None = typer.Option(None, "--seed", help="Seed for training and the bootstrap (default: settings)."),
    folds: str = typer.Option("2014-2023", "--folds", help="Test years, one walk-forward fold each."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples for the CIs and paired tests."),
    block_len: int = typer.Option(10, "--block-len", help="Bootstrap block length in trading days."),
    executor: Executor | None = typer.Option(None, "--executor", help=EXECUTOR_HELP),
    ray_address: str | None = typer.Option(None, "--ray-address", help=RAY_ADDRESS_HELP),
    ray_cpus: int | None = typer.Option(None, "--ray-cpus", min=1, help=RAY_CPUS_HELP),
    no_track: bool = typer.Option(False, "--no-track", help="Do not log an evaluation run to MLflow."),
    json_out: bool = typer.Option(False, "--json", help="Print the evaluation as JSON."),
) -> None:
    """Walk-forward evaluation of deep variants and every baseline over the whole store, with block-bootstrap
    CIs and paired tests; writes results/evaluation.json, evaluation.md and predictions.parquet, and logs them
    (with per-fold metrics, fold and calibration tables and plots, and backtest.json if any) to MLflow."""
    if all_variants and variant:
        fail("use either --variant or --all", code=2)
    names = list(VARIANTS) if all_variants else [v.value for v in variant] or ["baseline"]
    settings = settings_from(seed=seed)
    from finmlops.evaluation.workspace import markdown_table, signal_table  # deferred: scipy
    from finmlops.workflow.services import evaluate_stage  # deferred: mlflow, onnx, onnxruntime, scipy, torch

    tracked = not no_track and tracking_ready(settings)
    try:
        result = evaluate_stage(
            settings, variants=names, epochs=epochs, test_years=parse_folds(folds),
            boot=bootstrap_config(n_boot, block_len, settings.seed), progress=not json_out,
            executor=executor_config(executor, ray_address, ray_cpus),
            tracker=cli_tracker(settings) if tracked else None,
        ).result  # fmt: skip
    except (DataError, OSError, ValueError, KeyError) as exc:
        fail(str(exc))
    if json_out:
        emit_json(result)
        return
    console.print(markdown_table(result), highlight=False, markup=False)
    console.print(signal_table(result), highlight=False, markup=False)
    console.print(f"wrote {settings.results_dir / 'evaluation.json'} and evaluation.md", highlight=False)


@app.command("backtest", rich_help_panel=PANEL)
def backtest_command(
    strategy: list[Strategy] = typer.Option(
        [],
        "--strategy",
        help="long_flat, long_short, top_k, fk_long_short (Fischer & Krauss, k=--fk-k) or topk_dropout (Qlib: topk "
        "50, n_drop 5, open 0.05 %, close 0.15 %) (repeatable; the first three by default).",
    ),
    fk_k: int = typer.Option(10, "--fk-k", min=1, help="Names per side of fk_long_short (F&K: 10)."),
    cost_bps: float = typer.Option(5.0, "--cost-bps", help="Commission per unit of turnover, basis points."),
    slippage_bps: float = typer.Option(0.0, "--slippage-bps", help="Slippage per unit of turnover, basis points."),
    execution: ExecutionChoice | None = typer.Option(
        None,
        "--execution",
        help="close or open of t+1; default, and it must be, the predictions' label's (the `execution` setting).",
    ),
    top_k: int = typer.Option(2, "--top-k", min=1, help="Names per side of the top_k long/short book."),
    capital: float = typer.Option(100_000.0, "--capital", help="Starting capital for the business-impact figures."),
    no_track: bool = typer.Option(False, "--no-track", help="Do not log a backtest run to MLflow."),
    json_out: bool = typer.Option(False, "--json", help="Print the backtest as JSON."),
) -> None:
    """Backtest the saved walk-forward predictions net of costs against equal-weight buy-and-hold, with the
    deflated Sharpe ratio over every configuration tried; writes results/backtest.json and logs it (metrics per
    model and strategy, tagged with the predictions' SHA-256) to MLflow's evaluation experiment."""
    from finmlops.evaluation.backtest import STRATEGIES, BacktestConfig  # deferred: scipy
    from finmlops.workflow.services import backtest_stage  # deferred: mlflow, onnx, onnxruntime, scipy, torch

    if cost_bps < 0 or slippage_bps < 0 or capital <= 0:
        fail("--cost-bps and --slippage-bps must be >= 0 and --capital > 0", code=2)
    settings = settings_from()
    config = BacktestConfig(
        strategies=tuple(s.value for s in strategy) or STRATEGIES,
        cost_bps=cost_bps,
        slippage_bps=slippage_bps,
        execution=execution.value if execution else None,
        top_k=top_k,
        capital=capital,
        fk_k=fk_k,
    )
    tracked = not no_track and tracking_ready(settings)
    try:
        result = backtest_stage(settings, config, tracker=cli_tracker(settings) if tracked else None).result
    except (DataError, OSError, ValueError, KeyError) as exc:  # no evaluation, or another execution than the label's
        fail(str(exc))
    if json_out:
        emit_json(result)
        return
    print_backtest(result, settings.results_dir / "backtest.json")


def print_backtest(result: BacktestResult, path: Path) -> None:
    """The backtest's tables: every book net of costs with its DSR, the money terms and the trial count."""
    from finmlops.report.sections.backtest import PERFORMANCE_HEADER, performance_cells  # deferred: scipy

    cfg = result.config
    table = Table(title=f"Backtest, {cfg.cost_bps:g}+{cfg.slippage_bps:g} bps per unit turnover; {result.timing}")
    for column in ("model", "strategy", *PERFORMANCE_HEADER):
        table.add_column(column)
    rows: list[tuple[str, str, Performance]] = [("buy_hold", "benchmark", result.benchmark), *result.books()]
    for model, strat, p in rows:
        table.add_row(model, strat, *performance_cells(p))
    console.print(table)
    for strat, why in result.skipped.items():
        console.print(f"{strat}: {why}", highlight=False)
    business = result.business
    assumed = business.assumptions
    caption = None
    if assumed is not None:
        caption = (
            f"Assumes {assumed.cost_bps_per_unit_turnover:g} bps cost + {assumed.slippage_bps_per_unit_turnover:g} "
            f"bps slippage per unit turnover, {assumed.timing}, risk-free rate 0; not modelled: "
            f"{', '.join(assumed.not_modelled)}."
        )
    days = "?" if assumed is None else assumed.trading_days
    money = Table(
        title=f"Business impact of {business.capital:,.0f} over {days} trading days "
        f"(buy-and-hold ends at {num(business.buy_hold_end_value, ',.0f')})",
        caption=caption,
    )
    for column in ("model/strategy", "end value", "vs buy-and-hold", "costs paid", "DSR > 0.95"):
        money.add_column(column)
    for name, b in business.by_config.items():
        money.add_row(
            name,
            num(b.end_value, ",.0f"),
            num(b.excess_vs_buy_hold, "+,.0f"),
            num(b.costs_paid, ",.0f"),
            "yes" if b.dsr_above_0_95 else "no",
        )
    console.print(money)
    trials = result.trials
    console.print(
        f"deflated Sharpe over {trials.total} configurations tried on these predictions "
        f"({trials.this_run} now). Wrote {path}",
        highlight=False,
    )


@app.command("audit", rich_help_panel=PANEL)
def audit_command(
    quick: bool = typer.Option(False, "--quick", help="Smaller markets (10 tickers, 2600 days, 1 test year)."),
    variant: list[Variant] = typer.Option(
        [], "--variant", help="Deep variant to audit (repeatable; default lightweight)."
    ),
    all_variants: bool = typer.Option(False, "--all", help="Audit all five deep variants (slow)."),
    epochs: int = typer.Option(20, "--epochs", min=1, help="Maximum epochs per fit (early stopping, patience 5)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed for the synthetic markets, training and bootstrap."),
    json_out: bool = typer.Option(False, "--json", help="Print the audit as JSON."),
) -> None:
    """Leakage audit: random-walk, shuffled, permuted-label and planted-signal markets through the real pipeline,
    and a planted next-day feature that must be flagged. Exit code 1 when any check fails; writes results/audit.json."""
    if all_variants and variant:
        fail("use either --variant or --all", code=2)
    names = list(VARIANTS) if all_variants else list(dict.fromkeys(v.value for v in variant)) or ["lightweight"]
    settings = settings_from(seed=seed)
    from finmlops.evaluation.metrics import BootstrapConfig  # deferred: scipy
    from finmlops.evaluation.workspace import run_audit_workspace  # deferred: scipy

    boot = BootstrapConfig(n_boot=300 if quick else 1000, block_len=10, seed=settings.seed)
    try:
        result = run_audit_workspace(
            settings, quick=quick, variants=names, epochs=epochs, seed=settings.seed, boot=boot
        )
    except (OSError, ValueError, KeyError) as exc:
        fail(str(exc))
    if json_out:
        emit_json(result)
    else:
        from rich.table import Table

        table = Table(title=f"Leakage audit (Bayes accuracy of the planted market {result.bayes_accuracy:.3f})")
        for column in ("scenario", "model", "check", "result", "detail"):
            table.add_column(column)
        for c in result.checks:
            table.add_row(c.scenario, c.model, c.check, "PASS" if c.passed else "FAIL", c.detail)
        console.print(table)
    if not result.passed:
        raise typer.Exit(1)


@app.command("tune", rich_help_panel=PANEL)
def tune_command(
    variant: Variant = typer.Option(..., "--variant", help="The deep variant whose hyperparameters to search."),
    trials: int = typer.Option(20, "--trials", min=1, help="Finished trials the study should reach (resumes)."),
    storage: str | None = typer.Option(
        None, "--storage", help="Optuna database URL shared by workers (default: <home>/tuning/optuna.journal)."
    ),
    study: str | None = typer.Option(None, "--study", help="Study name (default: <variant>-<metric>)."),
    folds: str | None = typer.Option(
        None, "--folds", help="Test years, one walk-forward fold each (default: the 3 years before the last)."
    ),
    epochs: int = typer.Option(5, "--epochs", min=1, help="Maximum epochs per fold fit."),
    metric: Metric = typer.Option("log_loss", "--metric", help="Objective per fold."),
    seed: int | None = typer.Option(None, "--seed", help="TPE and training seed (default: settings)."),
    no_register: bool = typer.Option(False, "--no-register", help="Do not refit and register the best model."),
    executor: Executor | None = typer.Option(
        None, "--executor", help="serial, or ray: trials as Ray tasks on the shared study (docs/distributed.md)."
    ),
    ray_address: str | None = typer.Option(None, "--ray-address", help=RAY_ADDRESS_HELP),
    ray_cpus: int | None = typer.Option(None, "--ray-cpus", min=1, help=RAY_CPUS_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Optuna search (seeded TPE, median pruning after each walk-forward fold) over a deep variant's
    hyperparameters. Each trial is an MLflow run nested under a tuning run; the trial count enters the backtest's
    deflated Sharpe ratio; the best configuration is refit on all data and registered as the challenger.
    Ctrl-C keeps finished trials: rerun the same command to resume."""
    from finmlops.tracking import TrackingError  # deferred: mlflow, scipy

    # deferred: mlflow, onnxruntime, optuna, scipy, torch
    from finmlops.tuning.search import TuningInterrupted, run_tuning

    settings = settings_from(seed=seed)

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    if json_out:
        logging.getLogger("optuna").setLevel(logging.WARNING)
    try:
        report = run_tuning(
            settings, variant.value, trials=trials, folds=parse_folds(folds) if folds else None, epochs=epochs,
            metric=metric.value, storage=storage, study_name=study, register=not no_register,
            executor=executor_config(executor, ray_address, ray_cpus),
        )  # fmt: skip
    except TuningInterrupted as exc:
        fail(str(exc), code=130)
    except (TrackingError, OSError, ValueError) as exc:
        fail(str(exc))
    if json_out:
        emit_json(report)
        return
    console.print(
        f"study {report.study} at {report.storage}: {report.complete} complete, {report.pruned} pruned, "
        f"{report.failed} failed ({report.this_process} run now); folds {report.folds}, {metric} ({report.direction})",
        highlight=False,
        soft_wrap=True,
    )
    if report.best_trial is not None:
        best = f"{report.best_value:.5f}" if report.best_value is not None else "undefined"
        console.print(
            f"best trial {report.best_trial}: {metric} {best} with {report.best_params}",
            highlight=False,
            soft_wrap=True,
        )
    if (reg := report.registered) is not None:
        console.print(
            f"best trial's model: {reg.model} version {reg.version}, registered as challenger: "
            f"finmlops promote --model {reg.model} --version {reg.version} --alias champion",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"{report.tuning_trials_recorded} tuning trials on record for the deflated Sharpe ratio; the folds took "
        "part in the selection, so judge the tuned model on other years",
        highlight=False,
        soft_wrap=True,
    )
