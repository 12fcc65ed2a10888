"""``finmlops runs``, ``export``, ``register``, ``promote`` and ``models``: MLflow's runs and the registry."""

from __future__ import annotations

import logging
from datetime import date as _date
from pathlib import Path

import typer
from rich.table import Table

from finmlops.cli.common import Experiment, ExportFormat, Variant, app, console, emit_json, fail, settings_from

PANEL = "Tracking and the registry"  # the group these commands are listed under in finmlops --help


@app.command("runs", rich_help_panel=PANEL)
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


@app.command("export", rich_help_panel=PANEL)
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


@app.command("register", rich_help_panel=PANEL)
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


@app.command("promote", rich_help_panel=PANEL)
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
    from finmlops.tracking.registry import ForcedPromotion  # deferred: mlflow, scipy

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
    elif isinstance(decision, ForcedPromotion):
        console.print(f"FORCED {model} v{version} to {alias!r}: {decision.reason}", highlight=False)
    else:
        console.print(
            f"promoted {model} v{version} to {alias!r}: accuracy {decision.candidate_accuracy:.4f} vs "
            f"{decision.reference_accuracy:.4f}, {decision.summary}",
            highlight=False,
        )
        console.print(evidence(), highlight=False)


models_app = typer.Typer(help="The model registry: versions, aliases and their audited history.")
app.add_typer(models_app, name="models", rich_help_panel=PANEL)


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
        emit_json([m.model_dump(mode="json") for m in models])
        return

    from finmlops.tracking.registry import promotion_comparisons  # deferred: mlflow, scipy

    table = Table(title="registered models")
    for column in ("model", "version", "aliases", "accuracy (evidence)", "promotion test", "data hash", "created"):
        table.add_column(column)
    for entry in models:
        for v in entry.versions:
            tests = "; ".join(f"{alias}: {text}" for alias, text in promotion_comparisons(v.tags).items())
            table.add_row(
                entry.name, str(v.version), ",".join(v.aliases) or "-", describe_evidence(v.tags), tests,
                v.tags.get("data_hash", "unknown")[:12], v.created,
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
    from finmlops.tracking.registry import explained_history, explained_holders  # deferred: mlflow, scipy

    try:
        day = _date.fromisoformat(on) if on else None
    except ValueError:
        fail(f"--on {on!r}: not a date; use YYYY-MM-DD", code=2)
    try:
        configure_tracking(settings_from())
        names = model or [m.name for m in list_models()]
        holders = explained_holders(names, day) if day is not None else None
        history = {name: explained_history(name) for name in names} if day is None else {}
    except (TrackingError, ValueError) as exc:
        fail(str(exc))
    if holders is not None:
        if json_out:  # "holders" only when one model was asked for
            emit_json(holders.model_dump(mode="json", exclude={"holders"} if holders.holders is None else None))
            return
        for name, by_alias in holders.models.items():
            for alias, period in by_alias.items():
                if period is None:
                    held = "nobody (or set before the audit log)"
                else:
                    held = "nobody (removed)" if period.version is None else f"v{period.version}"
                why = f" since {period.start}: {period.why}" if period else ""
                console.print(f"{name} {alias} on {day}: {held}{why}", highlight=False)
        return
    if json_out:
        emit_json({name: [p.model_dump(mode="json") for p in periods] for name, periods in history.items()})
        return
    for name, periods in history.items():
        if not periods:
            console.print(f"{name}: no audited alias moves", highlight=False)
        for p in periods:
            holder = "removed" if p.version is None else f"v{p.version}"
            console.print(f"{name} {p.alias:<10} {holder:<8} {p.start}..{p.end or 'now'}  {p.why}", highlight=False)
