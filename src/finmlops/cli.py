"""The ``finmlops`` command line: ``finmlops <verb> --help`` documents every command.

Exit codes: 0 success, 1 the work failed (bad data, a failed check), 2 bad usage.
Commands that a machine reads take ``--json`` and then print one JSON document on stdout and nothing else.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
from dataclasses import asdict
from datetime import date
from datetime import date as _date
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, get_args

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from finmlops import __version__
from finmlops.data import DataError, DataStore, load_snapshot, read_tickers_file, universe_tickers
from finmlops.data.ingest import SOURCES
from finmlops.deploy import release
from finmlops.deploy.release import DeployError
from finmlops.deploy.rules import sync_rule
from finmlops.executor import ExecutorConfig, RayConfig
from finmlops.features import compute_features, save_features
from finmlops.features.registry import FEATURE_SETS, all_features, features_of, sets_of
from finmlops.features.target import Execution
from finmlops.models.variants import PRESETS, VARIANTS
from finmlops.report.base import num
from finmlops.serving.config import ServingConfigError, load_config
from finmlops.serving.traffic import ModelInput, describe_errors, failure, replay_days, run_traffic
from finmlops.settings import (
    Settings,
    SettingsError,
    check_workspace,
    config_file,
    load_settings,
    parse_iso_date,
)
from finmlops.workflow.config import RunConfigError, load_run_config
from finmlops.workflow.daily import LiveError, run_live
from finmlops.workflow.engine import StepReport
from finmlops.workflow.live_config import SHIPPED_LIVE, load_live_config, shipped_live_config

if TYPE_CHECKING:
    from finmlops.evaluation.results import BacktestResult, Performance

app = typer.Typer(
    name="finmlops",
    help="Honest MLOps for next-day stock direction.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect the versioned market-data store.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _stdout_console() -> Console:
    """Rich on stdout. Piped or captured (no terminal, no COLUMNS): there is no screen to fit, so lines and tables
    print whole instead of cutting names at rich's 80-column default (two rows both reading "baseline…")."""
    plain = Console()
    return plain if plain.is_terminal or "COLUMNS" in os.environ else Console(width=PIPED_WIDTH)


PIPED_WIDTH = 1000  # columns of stdout when it is not a terminal: wider than any table or line the commands print
console = _stdout_console()
err_console = Console(stderr=True)


# --- choices: Typer checks them (exit code 2 naming the option and the allowed values) --------------------------------


def _choices(name: str, values: Any) -> Any:
    """A ``StrEnum`` named ``name`` whose members are ``values`` (each its own name), for a Typer option: the
    stage's own tuple or Literal is the single source of the allowed values."""
    return StrEnum(name, {str(v): str(v) for v in values})


Source = _choices("Source", SOURCES)
FeatureSet = _choices("FeatureSet", FEATURE_SETS)
Variant = _choices("Variant", PRESETS)  # the project's VARIANTS and the papers' presets
ExecutionChoice = _choices("ExecutionChoice", get_args(Execution))
ModelInputChoice = _choices("ModelInputChoice", get_args(ModelInput))
# The stages below define these where importing them would load torch, MLflow or scipy at every command's start;
# tests/test_cli_choices.py checks that each equals its stage's tuple.
Device = _choices("Device", ("auto", "cpu", "cuda", "mps"))  # finmlops.training.config.Device (torch)
Strategy = _choices(  # evaluation.backtest.ALL_STRATEGIES (scipy)
    "Strategy", ("long_flat", "long_short", "top_k", "fk_long_short", "topk_dropout")
)
Metric = _choices("Metric", ("log_loss", "auc", "accuracy"))  # tuning.search.METRICS (optuna, torch)
ExportFormat = _choices("ExportFormat", ("mlflow", "triton", "mlserver"))  # tracking.EXPORT_FORMATS (mlflow)
Experiment = _choices("Experiment", ("ingestion", "training", "tuning", "evaluation"))  # tracking EXPERIMENTS
CurrentSource = _choices("CurrentSource", ("recent", "log"))  # monitoring.drift.CURRENT_SOURCES (scipy)
LogLevel = _choices("LogLevel", ("debug", "info", "warning", "error"))  # uvicorn's levels, server.run


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one clear error line on stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def emit_json(payload: Any) -> None:
    """Write ``payload`` as JSON on stdout, bypassing rich so that it stays machine-readable; a pydantic model as
    its ``model_dump_json`` (NaN as null, as in the result files)."""
    if isinstance(payload, BaseModel):
        sys.stdout.write(payload.model_dump_json(indent=2) + "\n")
        return
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def pairs(mapping: Any) -> str:
    """``{"a": 70, "b": 30}`` as people read it: ``a 70, b 30`` (sorted by key; ``none`` when empty)."""
    return ", ".join(f"{key} {value}" for key, value in sorted(dict(mapping or {}).items())) or "none"


def settings_from(**overrides: Any) -> Settings:
    """Settings with the command's flags on top; a bad flag is exit code 2 naming it, a bad file or variable 1."""
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        flags = {k for k, v in overrides.items() if v is not None}
        if not exc.fields:
            fail(str(exc))
        named = [
            f"--{f.replace('_', '-')}: {m}"
            if f in flags
            else f"setting {f} ({config_file()} or FINMLOPS_{f.upper()}): {m}"
            for f, m in exc.fields
        ]
        fail("; ".join(named), code=2 if all(f in flags for f, _ in exc.fields) else 1)


def iso_date_option(param: typer.CallbackParam, value: str | None) -> str | None:
    """Callback of every date option: ``YYYY-MM-DD`` only, else one error line naming the option (exit code 2)."""
    if value is None:
        return None
    try:
        return parse_iso_date(value).isoformat()
    except ValueError as exc:
        fail(f"{param.opts[0]}: {exc}", code=2)


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"finmlops {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    """Honest MLOps for next-day stock direction."""


class Executor(StrEnum):
    """Where ``run``, ``evaluate``, ``tune`` and ``predict`` run their independent work (docs/distributed.md)."""

    serial = "serial"
    ray = "ray"


def executor_config(executor: Executor | None, ray_address: str | None, ray_cpus: int | None) -> Any:
    """The ``finmlops.executor.ExecutorConfig`` of the flags; ``None`` when no flag is given (the default)."""

    if executor is None and ray_address is None and ray_cpus is None:
        return None
    if executor is Executor.serial:
        if ray_address or ray_cpus:
            fail("--ray-address and --ray-cpus need --executor ray", code=2)
        return ExecutorConfig()
    return ExecutorConfig(kind="ray", ray=RayConfig(address=ray_address, num_cpus=ray_cpus))


EXECUTOR_HELP = "serial, or ray: independent work as Ray tasks, same results (docs/distributed.md)."
RAY_ADDRESS_HELP = "Ray cluster to join, e.g. ray://head:10001 (default: start a local Ray on this machine's cores)."
RAY_CPUS_HELP = "CPUs of the local Ray (default: this machine's cores)."


# --- data: ingest, data info ---------------------------------------------------------------------------------------


@app.command("ingest")
def ingest_command(
    source: Source = typer.Option(
        "snapshot", "--source", help="snapshot (bundled real data, default), yahoo (yfinance) or csv (a folder)."
    ),
    tickers: str | None = typer.Option(None, "--tickers", help="Comma-separated tickers (default: settings)."),
    tickers_file: str | None = typer.Option(
        None, "--tickers-file", help="File of tickers, one per line, # comments (instead of --tickers)."
    ),
    universe: str | None = typer.Option(
        None, "--universe", help="A named universe's tickers: snapshot10 or sp500 (the shipped list of 443)."
    ),
    start: str | None = typer.Option(
        None, "--start", callback=iso_date_option, help="First date, YYYY-MM-DD, inclusive (default: settings)."
    ),
    end: str | None = typer.Option(
        None, "--end", callback=iso_date_option, help="Last date, YYYY-MM-DD, inclusive (default: settings)."
    ),
    data_dir: str | None = typer.Option(
        None, "--data-dir", help="Folder of Yahoo-format CSVs for --source csv (default: settings.raw_data_dir)."
    ),
    retries: int = typer.Option(3, "--retries", min=1, help="Tries per ticker for yahoo; waits 1 s, 2 s, 4 s, ..."),
    no_track: bool = typer.Option(False, "--no-track", help="Do not log an ingestion run to MLflow."),
    json_out: bool = typer.Option(False, "--json", help="Print the ingest report as JSON."),
) -> None:
    """Validate market data and add its new dates to the versioned store in <home>/data.

    Every ticker is read and validated before anything is written.
    Bad data or a failed download leave the store byte-for-byte as it was.
    Dates already stored are kept; a re-ingest with nothing new changes nothing.
    """
    from finmlops.workflow.services import ingest_stage  # deferred: mlflow, onnx, onnxruntime, scipy, torch

    if sum(x is not None for x in (tickers, tickers_file, universe)) > 1:
        fail("give one of --tickers, --tickers-file and --universe", code=2)
    try:
        if tickers_file is not None:
            tickers = ",".join(read_tickers_file(Path(tickers_file)))
        elif universe is not None:
            tickers = ",".join(universe_tickers(universe))
    except DataError as exc:
        fail(str(exc), code=2)
    settings = settings_from(tickers=tickers, start=start, end=end, raw_data_dir=data_dir)
    tracked = not no_track and tracking_ready(settings)
    try:
        report = ingest_stage(
            settings, source.value, settings.tickers, settings.start, settings.end, data_dir=settings.raw_data_dir,
            retries=retries, tracker=cli_tracker(settings) if tracked else None,
        ).report  # fmt: skip
    except DataError as exc:
        fail(str(exc))
    if json_out:
        emit_json(report.model_dump(mode="json"))
        return

    table = Table(title=f"ingest from {source} into {report.store}")
    for column in ("ticker", "added rows", "rows", "first date", "last date", "source"):
        table.add_column(column, justify="right" if "rows" in column else "left")
    for t in report.tickers:
        table.add_row(t.ticker, str(t.added_rows), str(t.rows), str(t.first_date), str(t.last_date), t.source)
    console.print(table)
    for warning in report.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    state = "updated to" if report.changed else "nothing new; unchanged at"
    console.print(f"store {state} version {report.version}, dataset hash {report.dataset_hash}", highlight=False)


@data_app.command("info")
def data_info_command(
    verify: bool = typer.Option(False, "--verify", help="Also re-hash every file against the manifest."),
    json_out: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Show the store's tickers, first/last dates, rows and content hashes, and the dataset hash."""

    store = DataStore(settings_from().data_dir)
    try:
        manifest = store.manifest()
        if verify:
            store.read()
    except DataError as exc:
        fail(str(exc))
    if json_out:
        emit_json({"store": str(store.root), "verified": verify, **manifest.model_dump(mode="json")})
        return

    table = Table(title=f"market data in {store.root} (version {manifest.version})")
    for column in ("ticker", "first date", "last date", "rows", "sha256", "source"):
        table.add_column(column, justify="right" if column == "rows" else "left")
    for ticker, entry in manifest.tickers.items():
        table.add_row(
            ticker, str(entry.first_date), str(entry.last_date), str(entry.rows), entry.sha256[:16], entry.source
        )
    console.print(table)
    console.print(f"dataset hash {manifest.dataset_hash}" + (" (every file verified)" if verify else ""))


# --- features --------------------------------------------------------------------------------------------------------


@app.command("features")
def features_command(
    feature_set: FeatureSet | None = typer.Option(
        None, "--set", help="basic, enhanced or advanced (default: settings.feature_set; with --list: every set)."
    ),
    list_only: bool = typer.Option(False, "--list", help="Print the feature registry (name, formula, window)."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Compute a feature set from the data store and save it in <home>/features/<set>.parquet (+ <set>.json).

    Each value uses data at or before its date only; see docs/features.md. With --list, compute nothing and print
    the registry instead.
    """

    feature_set = feature_set.value if feature_set else None
    if list_only:
        records = [
            {"name": f.name, "formula": f.formula, "window": f.window, "sets": sets_of(f.name)}
            for f in (features_of(feature_set) if feature_set else all_features())
        ]
        if json_out:
            emit_json(records)
            return
        from rich.table import Table

        table = Table(title=f"features ({feature_set or 'all sets'}: {len(records)})")
        for column in ("name", "formula", "window", "sets"):
            table.add_column(column, justify="right" if column == "window" else "left")
        for r in records:
            table.add_row(r["name"], r["formula"], str(r["window"]), ", ".join(r["sets"]))
        console.print(table)
        return

    settings = settings_from(feature_set=feature_set)
    store = DataStore(settings.data_dir)
    try:
        universe, data_hash = store.read_versioned()
    except DataError as exc:
        fail(str(exc))
    try:
        frame = compute_features(universe, settings.feature_set)
    except ValueError as exc:
        fail(str(exc))
    meta = save_features(frame, settings.feature_set, settings.features_dir, data_hash=data_hash, seed=settings.seed)
    if json_out:
        emit_json({"path": str(settings.features_dir / f"{settings.feature_set}.parquet"), **meta})
        return
    console.print(
        f"{meta['feature_set']}: {len(meta['feature_names'])} features x {meta['rows']} rows "
        f"({meta['start']} to {meta['end']}, {len(meta['tickers'])} tickers) -> "
        f"{settings.features_dir / (settings.feature_set + '.parquet')}, data hash {data_hash}",
        highlight=False,
    )


# --- models: train, evaluate, backtest, audit -----------------------------------------------------------------------

# train (finmlops.training)


@app.command("train")
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
    if "mlflow" in result:
        reg = result["mlflow"]
        console.print(
            f"registered {reg['model']} version {reg['version']} as challenger; "
            + (f"champion is version {reg['champion']}" if reg["champion"] else "no champion yet")
            + f": finmlops promote --model {reg['model']} --version {reg['version']} --alias champion",
            highlight=False,
            soft_wrap=True,
        )
    test, val = result["metrics"]["test"], result["metrics"]["val"]
    console.print(
        f"{variant}: best epoch {result['best_epoch']} of {len(result['history'])}; "
        f"val accuracy {val['accuracy']:.4f} (AUC {val['auc']:.3f}), test accuracy {test['accuracy']:.4f} "
        f"(AUC {test['auc']:.3f}, majority class {result['metrics']['test_majority_accuracy']:.4f}) on "
        f"{test['n']} windows. Wrote {settings.results_dir / f'train_{variant}.json'} and {result['model_dir']}",
        highlight=False,
    )


# evaluate, backtest, audit (finmlops.evaluation)


def _parse_folds(text: str) -> list[int]:
    """``2014-2023`` or ``2019,2021`` to a list of test years."""
    try:
        if "-" in text:
            first, last = (int(x) for x in text.split("-", 1))
            years = list(range(first, last + 1))
        else:
            years = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        fail(f"--folds {text!r}: expected a year range like 2014-2023 or a list like 2019,2021", code=2)
    if not years:
        fail(f"--folds {text!r}: no years", code=2)
    return years


def _bootstrap(n_boot: int, block_len: int, seed: int) -> Any:
    from finmlops.evaluation.metrics import BootstrapConfig  # deferred: scipy

    if n_boot < 100 or block_len < 1:
        fail("--n-boot must be >= 100 and --block-len >= 1", code=2)
    return BootstrapConfig(n_boot=n_boot, block_len=block_len, seed=seed)


@app.command("evaluate")
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
            settings, variants=names, epochs=epochs, test_years=_parse_folds(folds),
            boot=_bootstrap(n_boot, block_len, settings.seed), progress=not json_out,
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


@app.command("backtest")
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


@app.command("audit")
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

        table = Table(title=f"Leakage audit (Bayes accuracy of the planted market {result['bayes_accuracy']:.3f})")
        for column in ("scenario", "model", "check", "result", "detail"):
            table.add_column(column)
        for c in result["checks"]:
            table.add_row(c["scenario"], c["model"], c["check"], "PASS" if c["passed"] else "FAIL", c["detail"])
        console.print(table)
    if not result["passed"]:
        raise typer.Exit(1)


# --- tracking: runs, export, register, promote, models -------------------------------------------------------------


def tracking_ready(settings: Settings) -> bool:
    """At a command's start: False (with a note) when MLflow is not installed; exit 1 with one error line naming
    the URI when the tracking backend does not answer, so a dead URI fails in seconds, before the work."""
    try:
        from finmlops.tracking.backend import TrackingError, configure_tracking  # deferred: mlflow, scipy
    except ImportError as exc:  # a core install has no MLflow
        err_console.print(f"tracking skipped: {exc.name or exc} is not installed", highlight=False)
        return False
    try:
        configure_tracking(settings)
    except TrackingError as exc:
        fail(f"{exc} (or pass --no-track)")
    return True


def track(what: str, function: str, settings: Settings, **kwargs: Any) -> str | None:
    """Call ``finmlops.tracking.<function>(settings, **kwargs)`` (a logging helper returning a run id) at the end
    of a command, e.g. ``track("ingestion", "log_ingestion", settings, tickers=..., ...)``.

    Imports MLflow only here. A tracking failure (or an ONNX export that fails its parity check) is one clear error
    line naming the tracking URI, exit code 1. Without MLflow it says tracking is skipped and returns None: the
    command's own results are already written.
    """
    import finmlops.tracking as tracking  # deferred: mlflow, onnx, onnxruntime, scipy, torch
    from finmlops.workflow.services import log_to_mlflow  # deferred: mlflow, onnx, onnxruntime, scipy, torch

    try:
        run_id = log_to_mlflow(settings, function, **kwargs)
    except ImportError as exc:
        err_console.print(f"tracking {what} skipped: {exc.name or exc} is not installed", highlight=False)
        return None
    except (tracking.TrackingError, ValueError) as exc:
        fail(f"tracking {what} at {tracking.redact(settings.tracking_uri)} failed: {exc}")
    except RuntimeError as exc:
        from finmlops.tracking.onnx_export import ParityError  # deferred: onnx, onnxruntime, torch

        if not isinstance(exc, ParityError):
            raise
        fail(f"tracking {what}: the ONNX export failed its parity check (run FAILED, no model registered): {exc}")
    err_console.print(f"tracked {what} as MLflow run {run_id}", highlight=False)
    return run_id


def cli_tracker(settings: Settings) -> Any:
    """The tracker (:mod:`finmlops.workflow.services`) of a command: :func:`track`, one error line on failure."""
    return lambda what, function, **kwargs: track(what, function, settings, **kwargs)


@app.command("runs")
def runs_command(
    experiment: Experiment | None = typer.Option(None, "--experiment", help="MLflow experiment (default: all)."),
    limit: int = typer.Option(20, "--limit", min=1, help="Most recent runs to show."),
    json_out: bool = typer.Option(False, "--json", help="Print the runs as JSON."),
) -> None:
    """List recent MLflow runs, newest first, with their data hash and pooled metrics."""

    from finmlops.tracking import TrackingError, list_runs, redact  # deferred: mlflow, onnxruntime, scipy

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    settings = settings_from()
    try:
        runs = list_runs(settings, experiment.value if experiment else None, limit)
    except TrackingError as exc:
        fail(str(exc))
    except ValueError as exc:
        fail(str(exc), code=2)
    if json_out:
        emit_json({"tracking_uri": redact(settings.tracking_uri), "runs": runs})
        return

    table = Table(title=f"MLflow runs at {redact(settings.tracking_uri)}")
    for column in ("started", "experiment", "name", "status", "run id", "data hash", "metrics"):
        table.add_column(column)
    for run in runs:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in run["metrics"].items())
        table.add_row(
            run["started"], run["experiment"], run["name"], run["status"], run["run_id"][:12],
            (run["data_hash"] or "")[:12], metrics,
        )  # fmt: skip
    console.print(table)


@app.command("export")
def export_command(
    model: str = typer.Option(
        ..., "--model", help="A variant, registered name (its champion, else latest), MLflow URI or model folder."
    ),
    fmt: ExportFormat = typer.Option("mlflow", "--format", help="Layout to write."),
    out: str = typer.Option(..., "--out", help="Folder that receives <name>/ (replaced atomically)."),
    name: str | None = typer.Option(None, "--name", help="Model name in the layout (default: <variant>-predictor)."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Lay a logged ONNX model out as an MLflow model folder, a Triton repository or an MLServer model."""

    # deferred: mlflow, onnx, onnxruntime, scipy
    from finmlops.tracking import ModelError, TrackingError, configure_tracking, export_model

    try:
        if not Path(model).exists():
            configure_tracking(settings_from())
        target = export_model(model, fmt.value, Path(out), name)
    except (ModelError, TrackingError) as exc:
        fail(str(exc))
    if json_out:
        emit_json({"model": model, "format": fmt.value, "path": str(target)})
    else:
        console.print(f"exported {model} as {fmt} to {target}", highlight=False)


@app.command("register")
def register_command(
    variant: Variant = typer.Option(..., "--variant", help="The trained deep variant to register."),
    run_id: str | None = typer.Option(
        None, "--run-id", help="Training run whose model to register (default: the variant's newest)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the new version as JSON."),
) -> None:
    """Register a trained variant's model as a new version of <variant>-predictor, tagged with the accuracy of its
    run's predictions and what they are (walk-forward folds, or the single test split of `finmlops train`)."""
    from finmlops.tracking import (  # deferred: mlflow, scipy
        PromotionRefused,
        TrackingError,
        configure_tracking,
        describe_evidence,
        register_variant,
    )

    try:
        configure_tracking(settings_from())
        version = register_variant(variant.value, run_id)
    except KeyError as exc:
        fail(str(exc.args[0]), code=2)
    except (TrackingError, PromotionRefused, ValueError) as exc:
        fail(str(exc))
    payload = {"name": version.name, "version": int(version.version), "run_id": version.run_id, **version.tags}
    if json_out:
        emit_json(payload)
    else:
        console.print(
            f"registered {version.name} version {version.version} ({describe_evidence(dict(version.tags))})",
            highlight=False,
        )


@app.command("promote")
def promote_command(
    model: str = typer.Option(..., "--model", help="Registered model name, e.g. baseline-predictor."),
    version: int = typer.Option(..., "--version", min=1, help="Version to promote."),
    alias: str = typer.Option("champion", "--alias", help="champion or challenger."),
    margin: float = typer.Option(
        0.005, "--margin", min=0.0, help="Accuracy the candidate must beat the holder by (a fraction)."
    ),
    force: bool = typer.Option(False, "--force", help="Skip the significance test; recorded as tags."),
    reason: str | None = typer.Option(None, "--reason", help="Why --force was used (required with --force)."),
    json_out: bool = typer.Option(False, "--json", help="Print the decision as JSON."),
) -> None:
    """Give an alias to a model version only if it significantly beats the current holder.

    The candidate must beat the holder (or, when nobody holds the alias, the majority class) on the same
    rows of their runs' predictions (walk-forward folds, or the test split of `finmlops train`; the output says
    which) by more than --margin in accuracy, with p < 0.05 in a one-sided paired moving-block bootstrap over
    dates. Exit code 1 when refused.
    """
    # deferred: mlflow, scipy
    from finmlops.tracking import PromotionRefused, TrackingError, configure_tracking, evidence_of, promote

    def evidence() -> str:
        return f"evidence: v{version}'s {evidence_of(model, version)}, on the rows it shares with the reference"

    try:
        configure_tracking(settings_from())
        decision = promote(model, version, alias, margin=margin, force=force, reason=reason)
    except PromotionRefused as exc:
        fail(f"promotion refused: {exc}\n{evidence()}")
    except (TrackingError, ValueError) as exc:
        fail(str(exc))
    if json_out:
        emit_json(decision)
    elif decision["forced"]:
        console.print(f"FORCED {model} v{version} to {alias!r}: {decision['reason']}", highlight=False)
    else:
        console.print(
            f"promoted {model} v{version} to {alias!r}: accuracy {decision['candidate_accuracy']:.4f} vs "
            f"{decision['reference_accuracy']:.4f}, {decision['summary']}",
            highlight=False,
        )
        console.print(evidence(), highlight=False)


models_app = typer.Typer(help="The model registry: versions, aliases and their audited history.")
app.add_typer(models_app, name="models")


@models_app.callback(invoke_without_command=True)
def models_command(
    ctx: typer.Context, json_out: bool = typer.Option(False, "--json", help="Print the registry as JSON.")
) -> None:
    """List registered *-predictor models, their versions, aliases and recorded accuracy, saying on what it was
    measured (walk-forward folds, or the single test split of `finmlops train`). `finmlops models history` says
    who held each alias on every day, and why."""
    if ctx.invoked_subcommand is not None:
        return
    # deferred: mlflow, scipy
    from finmlops.tracking import TrackingError, configure_tracking, describe_evidence, list_models

    try:
        configure_tracking(settings_from())
        models = list_models()
    except TrackingError as exc:
        fail(str(exc))
    if json_out:
        emit_json(models)
        return

    from finmlops.tracking.registry import promotion_comparisons  # deferred: mlflow, scipy

    table = Table(title="registered models")
    for column in ("model", "version", "aliases", "accuracy (evidence)", "promotion test", "data hash", "created"):
        table.add_column(column)
    for entry in models:
        for v in entry["versions"]:
            tags = v["tags"]
            tests = "; ".join(f"{alias}: {text}" for alias, text in promotion_comparisons(tags).items())
            table.add_row(
                entry["name"], str(v["version"]), ",".join(v["aliases"]) or "-", describe_evidence(tags), tests,
                tags.get("data_hash", "unknown")[:12], v["created"],
            )  # fmt: skip
    if not models:
        console.print("no registered *-predictor models (finmlops train or finmlops run registers them)")
        return
    console.print(table)


@models_app.command("history")
def models_history_command(
    model: list[str] = typer.Option(
        [], "--model", help="Registered model name (repeatable); default every *-predictor."
    ),
    on: str | None = typer.Option(None, "--on", help="A day (YYYY-MM-DD): who held each alias then, and why."),
    json_out: bool = typer.Option(False, "--json", help="Print the history as JSON."),
) -> None:
    """Which version held `champion` and `challenger` on each day, and why (the promotion evidence or the forced
    reason), reconstructed from the registry's audited alias events, so it survives any restart."""

    from finmlops.tracking import TrackingError, configure_tracking, list_models  # deferred: mlflow, scipy
    from finmlops.tracking.registry import alias_history, describe_event, holders_on  # deferred: mlflow, scipy

    try:
        day = _date.fromisoformat(on) if on else None
    except ValueError:
        fail(f"--on {on!r}: not a date; use YYYY-MM-DD", code=2)
    try:
        configure_tracking(settings_from())
        names = model or [m["name"] for m in list_models()]
        if day is not None:
            payload: Any = {"day": str(day), "models": {}}
            for name in names:
                holders = holders_on(name, day)
                payload["models"][name] = {
                    a: None if p is None else {**p.model_dump(mode="json"), "why": describe_event(p.event)}
                    for a, p in holders.items()
                }
            if len(names) == 1:
                payload["holders"] = payload["models"][names[0]]
        else:
            payload = {name: [p.model_dump(mode="json") | {"why": describe_event(p.event)} for p in
                              alias_history(name)] for name in names}  # fmt: skip
    except (TrackingError, ValueError) as exc:
        fail(str(exc))
    if json_out:
        emit_json(payload)
        return
    if day is not None:
        for name, holders in payload["models"].items():
            for alias, period in holders.items():
                if period is None:
                    held = "nobody (or set before the audit log)"
                else:
                    held = "nobody (removed)" if period["version"] is None else f"v{period['version']}"
                why = f" since {period['start']}: {period['why']}" if period else ""
                console.print(f"{name} {alias} on {day}: {held}{why}", highlight=False)
        return
    for name, periods in payload.items():
        if not periods:
            console.print(f"{name}: no audited alias moves", highlight=False)
        for p in periods:
            holder = "removed" if p["version"] is None else f"v{p['version']}"
            console.print(
                f"{name} {p['alias']:<10} {holder:<8} {p['start']}..{p['end'] or 'now'}  {p['why']}", highlight=False
            )


# --- monitoring: explain ----------------------------------------------------------------------------------------------


@app.command("explain")
def explain_command(
    variant: Variant | None = typer.Option(
        None, "--variant", help="Deep variant: its trained model in <home>/models/<variant>/ (finmlops train)."
    ),
    model: str | None = typer.Option(
        None, "--model", help="Instead of --variant: a registered model, NAME@alias or NAME/VERSION (e.g. from run)."
    ),
    ticker: str | None = typer.Option(
        None, "--ticker", help="Ticker to explain (default: the first the model was trained on)."
    ),
    date: str | None = typer.Option(
        None,
        "--date",
        callback=iso_date_option,
        help="Decision date YYYY-MM-DD (default: the ticker's latest complete window).",
    ),
    top: int = typer.Option(10, "--top", min=1, help="Features to list."),
    steps: int = typer.Option(50, "--steps", min=2, help="Gauss-Legendre nodes of the Integrated Gradients path."),
    global_: bool = typer.Option(
        False, "--global", help="Permutation importance on walk-forward test folds instead of one prediction."
    ),
    folds: str = typer.Option("2014-2023", "--folds", help="Test years for --global, one walk-forward fold each."),
    epochs: int = typer.Option(8, "--epochs", min=1, help="Maximum epochs per fold fit (--global)."),
    repeats: int = typer.Option(5, "--repeats", min=1, help="Shuffles per feature and fold (--global)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed for --global fits and shuffles (default: settings)."),
    json_out: bool = typer.Option(False, "--json", help="Print the explanation as JSON."),
) -> None:
    """Explain a deep variant or a registered model (see docs/explain.md).

    Default: Integrated Gradients (Captum, CPU) of one prediction of the trained model: which features and which
    days of the window moved P(up) away from the training-mean baseline, with the completeness check. With
    --model: the same for a registered ONNX model (onnxruntime), e.g. a champion that `finmlops run` registered.
    With --global: how much walk-forward test accuracy and AUC drop when each feature is shuffled across windows,
    refitting the variant per fold; writes results/importance_<variant>.json.
    """

    if (variant is None) == (model is None):
        fail("give one of --variant NAME (a model from finmlops train) or --model NAME@alias|NAME/VERSION", code=2)
    variant = variant.value if variant else None
    if global_ and variant is None:
        fail("--global refits a variant per fold: give --variant", code=2)
    settings = settings_from(seed=seed)

    # deferred: onnxruntime
    from finmlops.monitoring.explain import explain_registered_model, explain_saved_model, run_global_importance

    if global_:
        try:
            result = run_global_importance(
                settings, variant, test_years=_parse_folds(folds), epochs=epochs, n_repeats=repeats,
                log=None if json_out else lambda text: err_console.print(text, highlight=False),
            )  # fmt: skip
        except (DataError, OSError, ValueError) as exc:
            fail(str(exc))
        if json_out:
            emit_json(result)
            return
        pooled = result["pooled"]
        table = Table(
            title=f"{variant}: permutation importance on {len(result['folds'])} walk-forward test folds "
            f"(accuracy {pooled['accuracy']:.4f} ± {pooled['accuracy_se']:.4f} on {pooled['n']} windows)"
        )
        for column in ("feature", "accuracy drop", "± se", "AUC drop", "± se", "folds > 0"):
            table.add_column(column, justify="left" if column == "feature" else "right")
        se = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
        for r in result["features"][:top]:
            table.add_row(
                r["feature"], f"{r['accuracy_drop']:+.4f}", se(r["accuracy_drop_se"]), f"{r['auc_drop']:+.4f}",
                se(r["auc_drop_se"]), f"{r['folds_positive']}/{len(result['folds'])}",
            )  # fmt: skip
        console.print(table)
        console.print(f"wrote {result['path']}", highlight=False)
        return
    errors: tuple[type[Exception], ...] = (DataError, OSError, ValueError)
    try:
        if model is not None:
            from finmlops.tracking import ModelError, TrackingError  # deferred: mlflow, onnx, onnxruntime, scipy

            errors = (*errors, ModelError, TrackingError)
            explanation = explain_registered_model(settings, model, ticker=ticker, date=date, steps=steps)
        else:
            explanation = explain_saved_model(settings, str(variant), ticker=ticker, date=date, steps=steps)
    except errors as exc:
        fail(str(exc))
    payload = explanation.to_dict(top)
    if payload["model_data_hash"] != payload["store_data_hash"]:
        err_console.print(
            f"[yellow]warning:[/] the model was trained on data {payload['model_data_hash']}, the store now holds "
            f"{payload['store_data_hash']}", highlight=False, soft_wrap=True,
        )  # fmt: skip
    if json_out:
        emit_json(payload)
        return
    table = Table(
        title=f"{model or variant} on {payload['ticker']} {payload['date']}: P(up) {payload['prob_up']:.4f}, "
        f"{payload['baseline_prob_up']:.4f} at the training-mean baseline"
    )
    for column in ("feature", "attribution", "value (t)", "baseline"):
        table.add_column(column, justify="left" if column == "feature" else "right")
    for f in payload["top_features"]:
        table.add_row(f["feature"], f"{f['attribution']:+.5f}", f"{f['value']:.4g}", f"{f['baseline']:.4g}")
    days = Table(title="attribution per day (all features)")
    days.add_column("day")
    days.add_column("attribution", justify="right")
    for d in payload["days"]:
        days.add_row(d["day"], f"{d['attribution']:+.5f}")
    console.print(table, days)
    console.print(
        f"completeness: sum of attributions {payload['sum_attributions']:+.6f} vs f(x) - f(baseline) "
        f"{payload['prob_up'] - payload['baseline_prob_up']:+.6f}, convergence delta "
        f"{payload['convergence_delta']:.2e} ({steps} Gauss-Legendre steps, "
        + ("onnxruntime, central differences)" if model else "Captum on CPU in float64)"),
        highlight=False,
    )


# --- monitoring: drift, abtest ----------------------------------------------------------------------------------------


@app.command("drift")
def drift_command(
    model: str | None = typer.Option(
        None, "--model", help="Served model: NAME@alias, a registered name, an MLflow URI or a model folder."
    ),
    reference: str | None = typer.Option(
        None, "--reference", help="Reference features parquet (default with --model: its training date range)."
    ),
    current: CurrentSource = typer.Option(
        "recent", "--current", help="recent (the store) or log (the server's inputs)."
    ),
    window: int = typer.Option(90, "--window", min=1, help="Current window: the last DAYS calendar days."),
    psi: float = typer.Option(0.2, "--psi", min=0.0, help="Alert when a feature's PSI exceeds this."),
    ks_p: float = typer.Option(0.05, "--ks-p", min=1e-12, max=0.5, help="Alert when the KS p-value is below this."),
    wasserstein: float = typer.Option(
        0.1, "--wasserstein", min=1e-12, help="Alert when the normalised Wasserstein distance reaches this."
    ),
    bins: int = typer.Option(10, "--bins", min=2, max=100, help="Reference quantile bins for PSI."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Feature and prediction drift of a current window against the reference (training) window: PSI, KS and
    normalised Wasserstein per feature; writes results/drift.json. Exit 0 even when features drift (a report)."""

    from finmlops.monitoring.drift import DriftThresholds, run_drift  # deferred: scipy

    if model is None and reference is None:
        fail("give --model NAME@alias or --reference FEATURES.parquet", code=2)
    settings = settings_from()
    try:
        from finmlops.tracking import ModelError, TrackingError  # deferred: mlflow, onnx, onnxruntime, scipy

        errors: tuple[type[Exception], ...] = (DataError, ModelError, TrackingError, OSError, ValueError)
    except ImportError:  # a serving install has no MLflow tracking stack; --reference still works
        errors = (DataError, OSError, ValueError)
    try:
        result = run_drift(
            settings, model=model, reference=Path(reference) if reference else None, current=current.value,
            window_days=window,
            thresholds=DriftThresholds(psi=psi, ks_p_value=ks_p, wasserstein=wasserstein, n_bins=bins),
        )  # fmt: skip
    except errors as exc:
        fail(str(exc))
    if json_out:
        emit_json(result)
        return

    table = Table(title=f"drift: {result.current} vs {result.reference}")
    for column in ("column", "PSI", "KS p", "Wasserstein (norm)", "test", "drifted"):
        table.add_column(column, justify="left" if column in ("column", "test") else "right")
    for c in [*result.features, *([result.prediction] if result.prediction else [])]:
        table.add_row(
            c.column, num(c.psi, ".3f"), num(c.ks_p_value, ".3g"), num(c.wasserstein_norm, ".3f"), c.test,
            "[bold red]yes[/]" if c.drifted else "no",
        )  # fmt: skip
    console.print(table)
    for note in result.notes:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False)
    console.print(
        f"{result.n_drifted} of {len(result.features)} features alert"
        + (f" ({', '.join(result.drifted_features)})" if result.drifted_features else "")
        + f"; wrote {settings.results_dir / 'drift.json'}",
        highlight=False,
    )


abtest_app = typer.Typer(help="Analyse the serving A/B experiments from the request log.", no_args_is_help=True)
app.add_typer(abtest_app, name="abtest")


@abtest_app.command("analyze")
def abtest_analyze(
    experiment: str = typer.Option(..., "--experiment", help="Experiment name, as in serving.yaml."),
    alpha: float = typer.Option(0.05, "--alpha", min=1e-6, max=0.5, help="Significance level of the mSPRT."),
    tau: float = typer.Option(0.05, "--tau", min=1e-4, help="Mixture scale: the accuracy difference expected."),
    control: str | None = typer.Option(None, "--control", help="Control arm (default: the arm with most traffic)."),
    apply: bool = typer.Option(
        False,
        "--apply",
        help="Act on the decision: arms of one model move its champion alias; arms of different models get the "
        "experiment's traffic sent to the winner (needs --server and/or --config). Tagged.",
    ),
    server: str | None = typer.Option(
        None,
        "--server",
        help="With --apply: running server URL whose experiment is changed (PUT /admin/...; its admin port when "
        "server.admin_port is set).",
    ),
    token: str | None = typer.Option(
        None, "--token", envvar="FINMLOPS_ADMIN_TOKEN", help="Admin bearer token for --server."
    ),
    config: str | None = typer.Option(
        None, "--config", help="With --apply: serving config file (serving.yaml) whose experiment is changed."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the analysis as JSON."),
) -> None:
    """Per-arm accuracy (Wilson 95% CI) and latency, an always-valid sequential test (mSPRT) of each challenger
    against the control, and the decision: promote, roll back or continue. Writes results/abtest_<experiment>.json."""

    from finmlops.monitoring.abtest import run_abtest  # deferred: scipy

    if (server or config) and not apply:
        fail("--server and --config only act with --apply", code=2)

    settings = settings_from()
    errors: tuple[type[Exception], ...] = (OSError, ValueError)
    if apply:
        from mlflow.exceptions import MlflowException  # deferred: mlflow, scipy

        from finmlops.tracking import TrackingError  # deferred: mlflow, scipy

        errors = (*errors, TrackingError, MlflowException)
    try:
        result = run_abtest(
            settings, experiment, alpha=alpha, tau=tau, control=control, apply=apply, server=server, token=token,
            config_path=Path(config) if config else None,
        )  # fmt: skip
    except errors as exc:
        fail(str(exc))
    if json_out:
        emit_json(result.model_dump(mode="json", exclude_unset=True))  # as the file: no "applied" unless applied
        return

    table = Table(title=f"experiment {experiment} (control {result.control})")
    for column in ("arm", "models", "requests", "errors", "outcomes", "accuracy [95% CI]", "p50/p95/p99 ms"):
        table.add_column(column, justify="left" if column in ("arm", "models") else "right")
    for arm, s in result.arms.items():
        lat, (low, high) = s.latency_ms, s.accuracy_ci95
        table.add_row(
            arm, ", ".join(s.models), str(s.requests), str(s.errors), str(s.outcomes),
            f"{num(s.accuracy, '.4f')} [{num(low, '.4f')}, {num(high, '.4f')}]",
            f"{num(lat.p50, '.1f')}/{num(lat.p95, '.1f')}/{num(lat.p99, '.1f')}",
        )  # fmt: skip
    console.print(table)
    for c in result.comparisons:
        console.print(
            f"{c.arm} - {c.control}: {num(c.difference, '+.4f')} (always-valid 95% CS [{num(c.ci[0], '+.4f')}, "
            f"{num(c.ci[1], '+.4f')}]), log Lambda {num(c.log_lambda, '.2f')} vs boundary {num(c.boundary, '.2f')}, "
            f"p = {num(c.p_value, '.4g')}",
            highlight=False,
        )
    decision = result.decision
    console.print(f"decision: {decision.action.upper()} - {decision.reason}", highlight=False)
    console.print(f"rule: {decision.rule}", highlight=False)
    if result.applied is not None:
        applied = result.applied
        if applied.get("mode") == "routing":
            for where in ("server", "config"):
                if where in applied:
                    done = applied[where]
                    console.print(
                        f"applied: {done.get('url') or done.get('path')} experiment weights "
                        f"{pairs(done['weights_before'])} -> {pairs(done['weights'])}"
                        + ("" if done["changed"] else " (already so)"), highlight=False,
                    )  # fmt: skip
        else:
            console.print(
                f"applied: champion of {applied['model']} -> v{applied['version']}" if applied.get("changed")
                else f"applied: registry unchanged ({applied.get('reason', 'champion already there; tagged')})",
                highlight=False,
            )  # fmt: skip
    console.print(f"wrote {settings.results_dir / f'abtest_{experiment}.json'}", highlight=False)


# --- serving: traffic -------------------------------------------------------------------------------------------------


@app.command("traffic")
def traffic_command(
    experiment: str = typer.Option(..., "--experiment", help="Experiment to drive (seldon-model: NAME.experiment)."),
    rate: float = typer.Option(
        20.0, "--rate", help="Cap on HTTP requests per second, infer and feedback together (timing only)."
    ),
    days: int | None = typer.Option(
        None, "--days", min=1, help="Trading days to replay (default: every day from --start to --end)."
    ),
    url: str = typer.Option("http://127.0.0.1:8080", "--url", help="Base URL of the V2 server."),
    feedback_delay: int = typer.Option(
        2,
        "--feedback-delay",
        min=0,
        help="Simulated trading days before a prediction's outcome is posted (2: the label's exit, the close of t+2).",
    ),
    model_input: ModelInputChoice = typer.Option(
        "raw", "--model-input", help="raw (OHLCV history; works for any arm) or tensor (one feature window)."
    ),
    seed: int = typer.Option(
        0, "--seed", help="Names the request ids (the server routes by them) and draws the users; new log, new seed."
    ),
    tickers: str | None = typer.Option(None, "--tickers", help="Comma-separated snapshot tickers (default: all)."),
    start: str = typer.Option(
        "2023-01-03", "--start", callback=iso_date_option, help="First simulated day, YYYY-MM-DD."
    ),
    end: str | None = typer.Option(
        None, "--end", callback=iso_date_option, help="Last simulated day, YYYY-MM-DD (default: the data's last)."
    ),
    history: int = typer.Option(120, "--history", min=2, help="Rows of OHLCV history per raw request."),
    feature_set: FeatureSet = typer.Option("basic", "--feature-set", help="Feature set of --model-input tensor."),
    seq_len: int = typer.Option(10, "--seq-len", min=1, help="Window length of --model-input tensor."),
    users: int = typer.Option(100, "--users", min=1, help="Simulated users behind the sticky key header."),
    key_header: str = typer.Option("x-user-id", "--key-header", help="Header carrying the sticky user key."),
    token: str | None = typer.Option(
        None, "--token", envvar="FINMLOPS_INFER_TOKEN", help="Bearer token for infer and feedback, if required."
    ),
    concurrency: int = typer.Option(4, "--concurrency", min=1, help="Keep-alive connections in flight."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Replay real snapshot history against a running server: infer per ticker per day, feedback a day later.

    Each simulated day, every ticker sends its history up to that day; after --feedback-delay days the realised
    direction (next adj_close up or down) goes to /v2/feedback. What is sent depends on the days, tickers and
    --seed only, never on timing. Prints requests, errors, per-arm counts and feedback (--json adds client-side
    latency); exits 1, with the server's error text, when more than half of the requests failed.
    """

    if rate <= 0:
        fail(f"--rate must be positive, got {rate}", code=2)
    try:
        first = date.fromisoformat(start)
        last = date.fromisoformat(end) if end else None
        wanted = [t.strip().upper() for t in tickers.split(",") if t.strip()] if tickers else None
        universe = load_snapshot(wanted)
        replay = replay_days(
            universe,
            start=first,
            end=last,
            history=history,
            model_input=model_input.value,
            feature_set=feature_set.value,
            seq_len=seq_len,
        )
    except (ValueError, DataError) as exc:
        fail(str(exc), code=2)

    with Progress(
        TextColumn("[bold]traffic[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=json_out,
    ) as progress:
        task = progress.add_task(f"{experiment} -> {url}", total=None)
        try:
            summary = run_traffic(
                replay,
                url=url,
                experiment=experiment,
                rate=rate,
                max_days=days,
                model_input=model_input.value,
                feedback_delay=feedback_delay,
                seed=seed,
                users=users,
                key_header=key_header.lower(),
                token=token,
                concurrency=concurrency,
                on_request=lambda: progress.advance(task),
            ).as_dict()
        except ValueError as exc:
            fail(str(exc), code=2)
    problem = failure(summary)
    if json_out:
        emit_json(summary)
    else:
        span = f" {summary['first_day']}..{summary['last_day']}" if summary["days"] else ""
        console.print(
            f"{summary['requests']} requests ({summary['ok']} ok) over {summary['days']} days{span} "
            f"in {summary['elapsed_s']} s; feedback {summary['feedback_ok']}/{summary['feedback_sent']} ok",
            highlight=False,
        )
        console.print(f"arms: {pairs(summary['arms'])}", highlight=False)
        console.print(f"errors: {describe_errors(summary['errors'], summary['error_text'])}", highlight=False)
        if latency := summary["latency_ms"]:  # the help promises it: client-side, over the answered infer requests
            console.print(
                f"client-side latency: p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms, "
                f"max {latency['max']:.1f} ms",
                highlight=False,
            )
        if summary["feedback_errors"]:
            feedback = describe_errors(summary["feedback_errors"], summary["error_text"], prefix="feedback ")
            console.print(f"feedback errors: {feedback}", highlight=False)
    if problem is not None:
        fail(problem)


# --- serving: serve ---------------------------------------------------------------------------------------------------


@app.command("serve")
def serve_command(
    config: str | None = typer.Option(
        None, "--config", help="serving.yaml (without it: every *-predictor@champion in the registry + the A/B test)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (0.0.0.0 exposes it to the network)."),
    port: int = typer.Option(8080, "--port", min=1, max=65535, help="TCP port."),
    log_level: LogLevel = typer.Option("info", "--log-level", help="The server's log level."),
    admin_port: int | None = typer.Option(
        None, "--admin-port", min=1, max=65535, help="Serve /admin/* only on this port (server.admin_host, loopback)."
    ),
    insecure_admin: bool = typer.Option(
        False, "--insecure-admin", help="Open /admin/* to anyone when serving.yaml has no admin_tokens (local use)."
    ),
    grpc_port: int | None = typer.Option(
        None,
        "--grpc-port",
        min=0,
        max=65535,
        help="gRPC V2 port on --host (default server.grpc_port, 8081); 0 turns gRPC off.",
    ),
) -> None:
    """Serve models over the Open Inference Protocol V2 (REST, and gRPC on --grpc-port), with Seldon-style
    experiments, feedback, Prometheus metrics at /metrics and a request log in <home>/serving/requests.db. The admin
    API is off unless serving.yaml sets auth.admin_tokens (or --insecure-admin). See docs/serving.md."""

    from finmlops.serving.models import ModelLoadError  # deferred: onnxruntime

    # deferred: onnxruntime, prometheus_client
    from finmlops.serving.server import ListenerError, build_app, needs_registry, run

    if config is not None and not Path(config).is_file():
        fail(f"--config {config}: no such file", code=2)
    settings = settings_from()
    try:
        loaded = load_config(Path(config)) if config else None
        if loaded is None or needs_registry(loaded):
            # A dead registry is one line naming its URI (password redacted), not MLflow's 237-line traceback.
            from finmlops.tracking.backend import TrackingError, check_reachable  # deferred: mlflow, scipy

            try:
                check_reachable(settings.tracking_uri)
            except TrackingError as exc:
                fail(str(exc))
        serving_app = build_app(
            settings, config=loaded, insecure_admin=insecure_admin, admin_port=admin_port, grpc_port=grpc_port
        )
        run(serving_app, host=host, port=port, log_level=log_level.value)
    except (ServingConfigError, ModelLoadError, ListenerError) as exc:
        fail(str(exc))


# --- run --------------------------------------------------------------------------------------------------------------


@app.command("run")
def run_command(
    config: Path | None = typer.Option(
        None, "--config", help="A run config (YAML, see configs/ and docs/run.md); default: configs/default.yaml."
    ),
    quick: bool = typer.Option(
        False, "--quick", help="configs/quick.yaml: 3 tickers, 2 folds, 2 variants, a 2023 replay; in <home>/quick."
    ),
    force: bool = typer.Option(False, "--force", help="Rerun every step, even when its inputs are unchanged."),
    step: list[str] | None = typer.Option(
        None, "--step", help="Rerun this step even when its inputs are unchanged (repeatable); the others as usual."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Run nothing; show which steps would run and why."),
    executor: Executor | None = typer.Option(
        None, "--executor", help="Replaces the config's executor: " + EXECUTOR_HELP
    ),
    ray_address: str | None = typer.Option(None, "--ray-address", help=RAY_ADDRESS_HELP),
    ray_cpus: int | None = typer.Option(None, "--ray-cpus", min=1, help=RAY_CPUS_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
) -> None:
    """The whole platform on the bundled snapshot, from a fresh checkout to a finished report (docs/run.md).

    A run config (--config) declares the universe, dates, label, variants and their hyperparameters, folds,
    bootstrap, costs and traffic; every run writes its resolved config to <home>/results/run_config.yaml, and
    `finmlops run --config` on that file reproduces the run.

    1 ingest (the whole snapshot, 2010-2023, for yearly walk-forward folds 2014-2023), 2 features, 3 train and
    evaluate every variant and baseline walk-forward, 4 backtest, 5 register each variant's final model and decide
    champion, 6 serve and replay 2023 through the 70/30 A/B test, 7 A/B analysis, 8 drift, 9 permutation importance,
    10 report. A step whose inputs (data, settings, code) are unchanged since it last succeeded is skipped
    (<home>/run_state.json); --step NAME reruns NAME anyway. The first failing step is named; exit code 1.
    """
    from finmlops.workflow.steps import StepFailed, run_pipeline  # deferred: mlflow, onnx, onnxruntime, scipy, torch

    if config is not None and quick:
        fail("--config and --quick are exclusive: --quick is configs/quick.yaml")
    settings = settings_from()
    try:
        check_workspace(settings.home)  # also for --dry-run: a run that would fail at its first write says so now
        run_config = load_run_config(config) if config is not None else None
    except (SettingsError, RunConfigError) as exc:
        fail(str(exc))
    say = (lambda text: None) if json_out else (lambda text: err_console.print(text, highlight=False, markup=False))

    def on_step(r: StepReport) -> None:
        say(f"[{r.step}] {r.status} in {r.seconds:.1f} s: {r.figure or r.detail}")

    try:
        result = run_pipeline(
            settings, run_config, quick=quick, force=force, steps=step or (), dry_run=dry_run, progress=not json_out,
            log=say, on_step=on_step, executor=executor_config(executor, ray_address, ray_cpus),
        )  # fmt: skip
    except StepFailed as exc:
        fail(f"{exc} (earlier steps' outputs are kept; rerun `finmlops run` to resume from this step)")
    except ValueError as exc:  # an unreadable run_state.json, an unknown --step
        fail(str(exc))
    if json_out:
        emit_json(result.as_dict())
        return

    table = Table(title=f"finmlops run ({result.plan.name}) in {result.home}: {result.seconds:.0f} s")
    for column in ("step", "status", "time", "key figure"):
        table.add_column(column, justify="right" if column == "time" else "left")
    for r in result.steps:
        figure = r.figure if r.status in ("ran", "skipped", "would skip") else r.detail
        table.add_row(r.step, r.status, f"{r.seconds:.1f} s", figure)
    console.print(table)
    for c in result.champions.values():
        console.print(f"champion of {c['name']}: v{c['champion']} ({c['decision']}: {c['detail']})", highlight=False)
    console.print(f"report: {result.report}" if result.report else "report: none (see the report step)")


class LiveFeed(StrEnum):
    replay = "replay"
    yahoo = "yahoo"


@app.command("live")
def live_command(
    start: str | None = typer.Option(None, "--from", callback=iso_date_option, help="First trading day (YYYY-MM-DD)."),
    end: str | None = typer.Option(None, "--to", callback=iso_date_option, help="Last trading day (YYYY-MM-DD)."),
    today: bool = typer.Option(False, "--today", help="Live today only (for a cron): the Yahoo feed by default."),
    config: str = typer.Option(
        "live",
        "--config",
        help="A live config file (YAML), or a shipped one: live, live-quarterly, live-drift, "
        "live-static, live-tiny (configs/).",
    ),
    feed: LiveFeed | None = typer.Option(
        None, "--feed", help="replay: the history store's bars as if from Yahoo (default with --from); yahoo: yfinance."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Live day by day (docs/live.md): each trading day the bars arrive through the ingest path, the served champion
    (and a challenger in shadow or canary) scores every ticker, yesterday's outcomes are fed back, drift is checked,
    a refit starts on schedule, on drift or on decaying accuracy (in another process), and the always-valid test
    moves the challenger shadow -> canary steps -> champion, or rolls it back; every alias move is audited.

    Kill it at any point and run it again: it resumes, and nothing is ingested, fed back, registered or moved twice.
    """

    if today == (start is not None or end is not None):
        fail("give --from and --to, or --today", code=2)
    if not today and (start is None or end is None):
        fail("--from and --to go together", code=2)
    first = _date.today() if today else _date.fromisoformat(start or "")
    last = first if today else _date.fromisoformat(end or "")
    if last < first:
        fail(f"--to {last} is before --from {first}", code=2)
    settings = settings_from()
    try:
        check_workspace(settings.home)
        live_config = shipped_live_config(config) if config in SHIPPED_LIVE else load_live_config(Path(config))
    except (SettingsError, RunConfigError) as exc:
        fail(str(exc))
    chosen = (feed.value if feed else None) or ("yahoo" if today else "replay")
    say = (lambda text: None) if json_out else (lambda text: err_console.print(text, highlight=False, markup=False))
    try:
        result = run_live(settings, live_config, start=first, end=last, feed=chosen, log=say)  # type: ignore[arg-type]
    except (LiveError, ValueError, OSError) as exc:
        fail(f"{exc} (finished days are kept; rerun to resume)")
    if json_out:
        emit_json(result.model_dump(mode="json"))
        return
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in result.phase_seconds.items() if v)
    console.print(
        f"finmlops live {result.name} ({result.feed}) in {result.home}: {len(result.days)} days lived, "
        f"{result.skipped} already done, {result.seconds:.0f} s ({phases}); champion v{result.champion}"
        + (f", challenger v{result.challenger}" if result.challenger else ""),
        highlight=False,
    )


# --- monitoring: report -----------------------------------------------------------------------------------------------


@app.command("report")
def report_command(
    out: str | None = typer.Option(None, "--out", help="HTML file to write (default: <home>/report.html)."),
    json_out: bool = typer.Option(False, "--json", help="Print the path and each section's inputs as JSON."),
) -> None:
    """One self-contained HTML page (no external assets) of every result in the workspace: evaluation with CIs,
    calibration and confusion, backtest and equity curves, leakage audit, importance, drift, A/B timeline and
    serving latency, with provenance. A section without its input says which command fills it. See docs/report.md."""

    from finmlops.report.page import ReportError, write_report  # deferred: scipy

    settings = settings_from()
    try:
        path, sections = write_report(settings, Path(out) if out else None)
    except (ReportError, OSError) as exc:
        fail(str(exc))
    if json_out:
        emit_json({
            "path": str(path),
            "sections": [
                {"key": s.key, "title": s.title, "filled": s.filled, "sources": list(s.sources), "missing": s.missing}
                for s in sections
            ],
        })  # fmt: skip
        return
    for s in sections:
        state = "[green]ok[/]" if s.filled else f"[yellow]empty[/] (run `{s.missing}`)"
        console.print(f"{s.title}: {state}", highlight=False)
    console.print(f"wrote {path}", highlight=False)


Paper = _choices("Paper", ("fischer-krauss",))  # finmlops.report.reproduction.PAPERS (pandas, scipy)


@app.command("reproduce")
def reproduce_command(
    paper: Paper = typer.Argument(..., help="The paper to set this run beside: fischer-krauss."),  # type: ignore[valid-type]
    results: Path = typer.Option(..., "--results", help="A run's results folder (<home>/results)."),
    out: Path = typer.Option(Path("docs/reproductions/fischer-krauss.md"), "--out", help="Markdown page to write."),
    period: list[str] = typer.Option(
        ["2001-2009", "2010-2021"], "--period", help="FIRST-LAST years of decision dates (repeatable)."
    ),
    k: int = typer.Option(10, "--k", min=1, help="Stocks long and stocks short each day."),
    cost_bps: float = typer.Option(5.0, "--cost-bps", min=0.0, help="Costs in bps per half-turn."),
    n_boot: int | None = typer.Option(None, "--n-boot", min=50, help="Bootstrap resamples (default: the run's)."),
    json_out: bool = typer.Option(False, "--json", help="Print every figure of the page as JSON."),
) -> None:
    """The papers' published figures beside this run's, from the run's own saved predictions and provenance (no
    refit): F&K's daily long top-k / short bottom-k, before and after costs, per model and period, with block-
    bootstrap CIs, the signal measures, and what survivorship bias does to the comparison. See docs/evaluation.md."""
    # deferred: scipy
    from finmlops.report.reproduction import ReproductionError, parse_period, read_run, write_reproduction
    from finmlops.stats.bootstrap import BootstrapConfig  # deferred: scipy

    try:
        periods = [parse_period(p) for p in period]
    except ReproductionError as exc:
        fail(f"--period: {exc}", code=2)
    try:
        boot = None
        if n_boot is not None:
            b = read_run(results).bootstrap
            boot = BootstrapConfig(n_boot=n_boot, block_len=int(b.get("block_len", 10)), seed=int(b.get("seed", 42)))
        rep = write_reproduction(results, out, periods=periods, k=k, cost_bps=cost_bps, boot=boot)
    except (ReproductionError, OSError, ValueError) as exc:
        fail(str(exc))
    if json_out:
        emit_json(rep.model_dump(mode="json"))
        return
    measured = sum(c.ok for c in rep.cells)
    edges = [f"{c.model} {c.period}" for c in rep.cells if c.ok and c.after and c.after.verdict == "edge"]
    console.print(
        f"{paper.value}: {measured} of {len(rep.cells)} model x period books measured; edge after costs: "
        f"{', '.join(edges) or 'none'}; wrote {out}",
        highlight=False,
    )


# --- tracking: predict, tune ------------------------------------------------------------------------------------------


@app.command("predict")
def predict_command(
    model: str = typer.Option(
        ..., "--model", help="models:/NAME@ALIAS, NAME@ALIAS, NAME/VERSION, runs:/..., or an exported model folder."
    ),
    data: str = typer.Option(..., "--data", help="Folder of Yahoo-format <TICKER>.csv files to score."),
    out: str = typer.Option("predictions.csv", "--out", help="CSV to write: date,ticker,prob_up,pred_up[,y_true]."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples for the realised metrics' CIs."),
    block_len: int = typer.Option(10, "--block-len", help="Bootstrap block length in trading days."),
    executor: Executor | None = typer.Option(None, "--executor", help=EXECUTOR_HELP),
    ray_address: str | None = typer.Option(None, "--ray-address", help=RAY_ADDRESS_HELP),
    ray_cpus: int | None = typer.Option(None, "--ray-cpus", min=1, help=RAY_CPUS_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Score every window of the CSVs in --data with a logged or exported ONNX model (features computed by the
    training code; tickers and dates unseen in training are fine). Where the next close is in the file, the
    realised direction is added and accuracy, balanced accuracy and AUC are printed with block-bootstrap CIs beside
    the majority-class rate. Rows without enough history are reported per ticker and skipped."""

    from finmlops.prediction.batch import predict_folder  # deferred: mlflow, onnx, onnxruntime, scipy
    from finmlops.tracking import ModelError, TrackingError  # deferred: mlflow, onnx, onnxruntime, scipy

    settings = settings_from()
    try:
        report = predict_folder(
            settings, model, Path(data), Path(out), boot=_bootstrap(n_boot, block_len, settings.seed),
            executor=executor_config(executor, ray_address, ray_cpus),
        ).as_dict()  # fmt: skip
    except (DataError, ModelError, TrackingError, OSError, ValueError) as exc:
        fail(str(exc))
    if json_out:
        emit_json(report)
        return
    console.print(
        f"{report['rows']} predictions for {len(report['tickers'])} tickers ({report['first_date']} to "
        f"{report['last_date']}) by {report['model']} ({report['variant']}, {report['feature_set']} features, "
        f"seq_len {report['seq_len']}) -> {report['out']}",
        highlight=False,
        soft_wrap=True,
    )
    for note in report["notes"] + report["warnings"]:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    for s in report["skipped"]:
        err_console.print(
            f"[yellow]skipped:[/] {s['ticker']}: {s['skipped']} of {s['rows']} rows without a full window "
            f"({s['reason']}); first usable date {s['first_usable'] or 'none'}",
            highlight=False,
            soft_wrap=True,
        )
    realised = report["realised"]
    if realised is None:
        console.print("no realised outcomes in the files (no next-day close): no accuracy to report")
        return
    ci = lambda m: f"{m['value']:.4f} [{m['ci_low']:.4f}, {m['ci_high']:.4f}]"  # noqa: E731
    console.print(
        f"on {realised['n']} rows with a known next close ({realised['n_dates']} dates): accuracy "
        f"{ci(realised['accuracy'])}, balanced accuracy {ci(realised['balanced_accuracy'])}, AUC "
        f"{ci(realised['roc_auc'])} (95% block-bootstrap CIs); majority class {realised['majority_class_rate']:.4f}",
        highlight=False,
        soft_wrap=True,
    )


@app.command("tune")
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
            settings, variant.value, trials=trials, folds=_parse_folds(folds) if folds else None, epochs=epochs,
            metric=metric.value, storage=storage, study_name=study, register=not no_register,
            executor=executor_config(executor, ray_address, ray_cpus),
        ).as_dict()  # fmt: skip
    except TuningInterrupted as exc:
        fail(str(exc), code=130)
    except (TrackingError, OSError, ValueError) as exc:
        fail(str(exc))
    if json_out:
        emit_json(report)
        return
    console.print(
        f"study {report['study']} at {report['storage']}: {report['complete']} complete, {report['pruned']} pruned, "
        f"{report['failed']} failed ({report['this_process']} run now); folds {report['folds']}, {metric} "
        f"({report['direction']})",
        highlight=False,
        soft_wrap=True,
    )
    if report["best_trial"] is not None:
        console.print(
            f"best trial {report['best_trial']}: {metric} {report['best_value']:.5f} with {report['best_params']}",
            highlight=False,
            soft_wrap=True,
        )
    reg = report["registered"]
    if reg:
        console.print(
            f"best trial's model: {reg['model']} version {reg['version']}, registered as challenger: "
            f"finmlops promote --model {reg['model']} --version {reg['version']} --alias champion",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"{report['tuning_trials_recorded']} tuning trials on record for the deflated Sharpe ratio; the folds took "
        "part in the selection, so judge the tuned model on other years",
        highlight=False,
        soft_wrap=True,
    )


# --- deploy -----------------------------------------------------------------------------------------------------------

deploy_app = typer.Typer(help="GitOps deployment: render and promote the Kustomize overlays.", no_args_is_help=True)
app.add_typer(deploy_app, name="deploy")


def _report_release(change: Any, as_json: bool) -> None:
    """Print a ``finmlops.deploy.release.ReleaseChange``: JSON, or a summary, the warnings and the git diff."""

    if as_json:
        emit_json({**asdict(change), "refs": [asdict(r) for r in change.refs]})
        return
    for ref in change.refs:
        console.print(f"{ref.model}@{ref.alias}: version {ref.version} at {ref.uri}", highlight=False)
    console.print(f"serve image: {change.serve_image}", highlight=False)
    console.print(f"train image: {change.train_image}", highlight=False)
    for warning in change.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    if not change.changed:
        console.print(f"{change.path} is already up to date", highlight=False)
    else:
        console.print(f"wrote {change.path}", highlight=False)
    sys.stdout.write(change.diff)


def _release_step(step: str, overlay: str, k8s_dir: str, tracking_uri: str | None, **kwargs: Any) -> Any:
    """Run ``finmlops.deploy.release.<step>`` against the MLflow registry; a DeployError becomes exit 1."""

    import mlflow  # deferred: mlflow, scipy

    uri = settings_from(mlflow_tracking_uri=tracking_uri).tracking_uri
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        return getattr(release, step)(Path(k8s_dir), overlay, client, **kwargs)
    except release.DeployError as exc:
        fail(str(exc))


@deploy_app.command("render")
def deploy_render(
    overlay: str = typer.Option("dev", help="Overlay folder under <k8s-dir>/overlays."),
    k8s_dir: str = typer.Option("deploy/k8s", help="Kustomize root that holds overlays/."),
    image_tag: str | None = typer.Option(
        None, help="Serving image tag; default: the git commit the champions were trained at (12 hex digits)."
    ),
    tracking_uri: str | None = typer.Option(None, help="MLflow tracking/registry URI; default from settings."),
    allow_local_uris: bool = typer.Option(
        False, "--allow-local-uris", help="Accept schemes besides s3://, gs://, https:// (clusters cannot read them)."
    ),
    out: str | None = typer.Option(
        None, "--out", help="Release file to write (default: <home>/deploy/<overlay>/release.yaml, outside the tree)."
    ),
    in_place: bool = typer.Option(
        False, "--in-place", help="Write the overlay's tracked release.yaml instead, for a GitOps commit."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Render the overlay's release.yaml from the MLflow registry: the artifact URI and version of every alias it
    serves, and the serving image tag; print the diff against the overlay's file.

    By default into the workspace (--out), leaving the tracked file alone; there a local registry's file:// URIs
    are warnings. With --in-place the overlay's file is written, and only if every alias resolves to a URI the
    cluster can download (s3://, gs://, https://; or --allow-local-uris)."""

    if in_place and out is not None:
        fail("give --out PATH or --in-place, not both", code=2)
    target = None if in_place else Path(out) if out else settings_from().home / "deploy" / overlay / "release.yaml"
    change = _release_step(
        "render", overlay, k8s_dir, tracking_uri, image_tag=image_tag,
        allow_local_uris=allow_local_uris or target is not None, out=target,
    )  # fmt: skip
    _report_release(change, as_json)


@deploy_app.command("promote")
def deploy_promote(
    model: str = typer.Option(..., help="Registered model name, e.g. enhanced-predictor."),
    alias: str = typer.Option("champion", help="Registry alias whose current version the overlay should serve."),
    overlay: str = typer.Option("dev", help="Overlay folder under <k8s-dir>/overlays."),
    k8s_dir: str = typer.Option("deploy/k8s", help="Kustomize root that holds overlays/."),
    tracking_uri: str | None = typer.Option(None, help="MLflow tracking/registry URI; default from settings."),
    allow_local_uris: bool = typer.Option(
        False, "--allow-local-uris", help="Accept schemes besides s3://, gs://, https:// (clusters cannot read them)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Point one model@alias of the overlay at the version the registry alias names now (after `finmlops promote`)
    and print the git diff, ready to commit: ArgoCD rolls it out once pushed."""
    change = _release_step(
        "promote", overlay, k8s_dir, tracking_uri, model=model, alias=alias, allow_local_uris=allow_local_uris
    )
    _report_release(change, as_json)


@deploy_app.command("rules")
def deploy_rules(
    rules: str = typer.Option("monitoring/prometheus/alert-rules.yaml", help="Prometheus rules file (the source)."),
    out: str = typer.Option("deploy/k8s/base/monitoring/prometheusrule.yaml", help="PrometheusRule to generate."),
    check: bool = typer.Option(False, "--check", help="Write nothing; exit 1 when the PrometheusRule is stale."),
) -> None:
    """Generate the Prometheus Operator PrometheusRule from the alert rules file that Prometheus loads."""

    try:
        stale = sync_rule(Path(rules), Path(out), check=check)
    except DeployError as exc:
        fail(str(exc))
    if check and stale:
        fail(f"{out} is out of date with {rules}: run `finmlops deploy rules`")
    console.print(f"{out} {'regenerated' if stale else 'is up to date'}", highlight=False)


# Optional packages (top-level module) -> the extra of pyproject's [project.optional-dependencies] that installs them.
EXTRA_OF_MODULE = {
    "torch": "train", "sklearn": "train", "lightgbm": "train", "mlflow": "train", "onnx": "train", "optuna": "train",
    "captum": "train", "psycopg2": "train", "boto3": "train", "yfinance": "yahoo", "onnxruntime": "serve",
    "starlette": "serve", "uvicorn": "serve", "orjson": "serve", "prometheus_client": "serve", "grpc": "serve",
    "grpc_health": "serve", "ray": "distributed",
}  # fmt: skip
_OS_ERROR_HINTS = {
    errno.ENOSPC: "the disk is full; free space and retry (the data store keeps its last complete version)",
    errno.EDQUOT: "the disk quota is exhausted; free space and retry",
    errno.EROFS: "the file system is read-only; set FINMLOPS_HOME to a writable workspace",
    errno.EACCES: "permission denied; set FINMLOPS_HOME to a workspace you can write",
    errno.EPERM: "operation not permitted; set FINMLOPS_HOME to a workspace you can write",
    errno.ENOTDIR: "a part of the path is a file, not a directory; check FINMLOPS_HOME",
}


def _error_line(exc: BaseException) -> str | None:
    """One line for an error that is the user's or the machine's, not a bug; None for anything else."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        extra = EXTRA_OF_MODULE.get(exc.name.split(".")[0])
        if extra:
            return (
                f"this command needs {exc.name.split('.')[0]}, which is not installed: pip install 'finmlops[{extra}]'"
            )
    if isinstance(exc, SettingsError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in _OS_ERROR_HINTS:
        where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f) or "a workspace file"
        return f"{where}: {exc.strerror or exc}: {_OS_ERROR_HINTS[exc.errno]}"
    return None


def main() -> None:
    """The ``finmlops`` entry point: a missing extra, a full disk, a read-only or misplaced workspace become one
    error line and exit code 1 instead of a traceback (commands catch their own domain errors)."""
    try:
        app()
    except Exception as exc:  # re-raised below unless it is a known user or machine error
        line = _error_line(exc)
        if line is None:
            raise
        err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
        sys.exit(1)
