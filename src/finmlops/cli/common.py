"""What every command shares: the Typer app and its sub-apps' roots, the consoles, the choices (Typer checks
them: exit code 2 naming the option and the allowed values), one-line errors, JSON output and the tracking hook."""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from typing import Any, NoReturn, get_args

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape

from finmlops import __version__
from finmlops.data.ingest import SOURCES
from finmlops.executor import ExecutorConfig, RayConfig
from finmlops.features.registry import FEATURE_SETS
from finmlops.features.target import Execution
from finmlops.models.variants import PRESETS
from finmlops.serving.traffic import ModelInput, Per
from finmlops.settings import (
    Settings,
    SettingsError,
    config_file,
    load_settings,
    parse_iso_date,
)

app = typer.Typer(
    name="finmlops",
    help="Honest MLOps for next-day stock direction.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _stdout_console() -> Console:
    """Rich on stdout. Piped or captured (no terminal, no COLUMNS): there is no screen to fit, so lines and tables
    print whole instead of cutting names at rich's 80-column default (two rows both reading "baseline…")."""
    plain = Console()
    return plain if plain.is_terminal or "COLUMNS" in os.environ else Console(width=PIPED_WIDTH)


PIPED_WIDTH = 1000  # columns of stdout when it is not a terminal: wider than any table or line the commands print
console = _stdout_console()
err_console = Console(stderr=True)


def choices(name: str, values: Any) -> Any:
    """A ``StrEnum`` named ``name`` whose members are ``values`` (each its own name), for a Typer option: the
    stage's own tuple or Literal is the single source of the allowed values."""
    return StrEnum(name, {str(v): str(v) for v in values})


Source = choices("Source", SOURCES)
FeatureSet = choices("FeatureSet", FEATURE_SETS)
Variant = choices("Variant", PRESETS)  # the project's VARIANTS and the papers' presets
ExecutionChoice = choices("ExecutionChoice", get_args(Execution))
ModelInputChoice = choices("ModelInputChoice", get_args(ModelInput))
PerChoice = choices("PerChoice", get_args(Per))
# The stages below define these where importing them would load torch, MLflow or scipy at every command's start;
# tests/cli/test_common.py checks that each equals its stage's tuple.
Device = choices("Device", ("auto", "cpu", "cuda", "mps"))  # finmlops.training.config.Device (torch)
Strategy = choices(  # evaluation.backtest.ALL_STRATEGIES (scipy)
    "Strategy", ("long_flat", "long_short", "top_k", "fk_long_short", "topk_dropout")
)
Metric = choices("Metric", ("log_loss", "auc", "accuracy"))  # tuning.search.METRICS (optuna, torch)
ExportFormat = choices("ExportFormat", ("mlflow", "triton", "mlserver"))  # tracking.EXPORT_FORMATS (mlflow)
Experiment = choices("Experiment", ("ingestion", "training", "tuning", "evaluation"))  # tracking EXPERIMENTS
CurrentSource = choices("CurrentSource", ("recent", "log"))  # monitoring.drift.CURRENT_SOURCES (scipy)
LogLevel = choices("LogLevel", ("debug", "info", "warning", "error"))  # uvicorn's levels, server.run


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


# evaluate, backtest, audit (finmlops.evaluation)


def parse_folds(text: str) -> list[int]:
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


def bootstrap_config(n_boot: int, block_len: int, seed: int) -> Any:
    from finmlops.evaluation.metrics import BootstrapConfig  # deferred: scipy

    if n_boot < 100 or block_len < 1:
        fail("--n-boot must be >= 100 and --block-len >= 1", code=2)
    return BootstrapConfig(n_boot=n_boot, block_len=block_len, seed=seed)


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
