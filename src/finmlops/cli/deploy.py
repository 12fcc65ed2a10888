"""``finmlops deploy render``, ``promote`` and ``rules``: the GitOps overlays."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer

from finmlops.cli.common import app, console, emit_json, err_console, fail, settings_from
from finmlops.deploy import release
from finmlops.deploy.release import DeployError
from finmlops.deploy.rules import sync_rule

PANEL = "Deployment"  # the group these commands are listed under in finmlops --help

deploy_app = typer.Typer(help="GitOps deployment: render and promote the Kustomize overlays.", no_args_is_help=True)
app.add_typer(deploy_app, name="deploy", rich_help_panel=PANEL)


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
