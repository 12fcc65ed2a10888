"""``finmlops run`` (a whole run from its config) and ``finmlops live`` (the daily loop)."""

from __future__ import annotations

from datetime import date as _date
from enum import StrEnum
from pathlib import Path

import typer
from rich.table import Table

from finmlops.cli.common import (
    EXECUTOR_HELP,
    RAY_ADDRESS_HELP,
    RAY_CPUS_HELP,
    Executor,
    app,
    console,
    emit_json,
    err_console,
    executor_config,
    fail,
    iso_date_option,
    settings_from,
)
from finmlops.settings import (
    SettingsError,
    check_workspace,
)
from finmlops.workflow.config import RunConfigError, load_run_config
from finmlops.workflow.daily import LiveError, run_live
from finmlops.workflow.engine import StepReport
from finmlops.workflow.live_config import SHIPPED_LIVE, load_live_config, shipped_live_config

PANEL = "Workflow"  # the group these commands are listed under in finmlops --help


@app.command("run", rich_help_panel=PANEL)
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
    if result.report:
        console.print(f"report: {result.report}")
    elif result.plan.steps is not None and "report" not in result.plan.steps:
        console.print(f"report: none (the run config's steps are {', '.join(result.plan.steps)})")
    else:
        console.print("report: none (see the report step)")


class LiveFeed(StrEnum):
    replay = "replay"
    yahoo = "yahoo"


@app.command("live", rich_help_panel=PANEL)
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
