"""The ``finmlops`` command line: ``finmlops <verb> --help`` documents every command.

Exit codes: 0 success, 1 the work failed (bad data, a failed check), 2 bad usage.
Commands that a machine reads take ``--json`` and then print one JSON document on stdout and nothing else.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import typer
from rich.console import Console

from finmlops import __version__
from finmlops.settings import Settings, load_settings

app = typer.Typer(
    name="finmlops",
    help="Honest MLOps for next-day stock direction.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect the versioned market-data store.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one clear error line on stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def emit_json(payload: Any) -> None:
    """Write ``payload`` as JSON on stdout, bypassing rich so that it stays machine-readable."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def settings_from(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        fail(f"invalid settings: {exc}", code=2)


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


# --- data: ingest, data info ---------------------------------------------------------------------------------------


# --- features --------------------------------------------------------------------------------------------------------


# --- models: train, evaluate, backtest, audit -----------------------------------------------------------------------


# --- deploy -----------------------------------------------------------------------------------------------------------


def main() -> None:
    app()
