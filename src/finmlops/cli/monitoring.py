"""``finmlops explain``, ``drift`` and ``abtest analyze``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from finmlops.cli.common import (
    CurrentSource,
    Variant,
    app,
    console,
    emit_json,
    err_console,
    fail,
    iso_date_option,
    pairs,
    parse_folds,
    settings_from,
)
from finmlops.data import DataError
from finmlops.report.base import num

PANEL = "Monitoring"  # the group these commands are listed under in finmlops --help


@app.command("explain", rich_help_panel=PANEL)
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
                settings, variant, test_years=parse_folds(folds), epochs=epochs, n_repeats=repeats,
                log=None if json_out else lambda text: err_console.print(text, highlight=False),
            )  # fmt: skip
        except (DataError, OSError, ValueError) as exc:
            fail(str(exc))
        if json_out:
            emit_json(result)
            return
        pooled = result.pooled
        table = Table(
            title=f"{variant}: permutation importance on {len(result.folds)} walk-forward test folds "
            f"(accuracy {pooled.accuracy:.4f} ± {pooled.accuracy_se:.4f} on {pooled.n} windows)"
        )
        for column in ("feature", "accuracy drop", "± se", "AUC drop", "± se", "folds > 0"):
            table.add_column(column, justify="left" if column == "feature" else "right")
        se = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
        for r in result.features[:top]:
            table.add_row(
                r.feature, f"{r.accuracy_drop:+.4f}", se(r.accuracy_drop_se), f"{r.auc_drop:+.4f}", se(r.auc_drop_se),
                f"{r.folds_positive}/{len(result.folds)}",
            )  # fmt: skip
        console.print(table)
        console.print(f"wrote {result.path}", highlight=False)
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
    payload = explanation.payload(top)
    if payload.model_data_hash != payload.store_data_hash:
        err_console.print(
            f"[yellow]warning:[/] the model was trained on data {payload.model_data_hash}, the store now holds "
            f"{payload.store_data_hash}", highlight=False, soft_wrap=True,
        )  # fmt: skip
    if json_out:
        emit_json(payload.to_json())
        return
    table = Table(
        title=f"{model or variant} on {payload.ticker} {payload.date}: P(up) {payload.prob_up:.4f}, "
        f"{payload.baseline_prob_up:.4f} at the training-mean baseline"
    )
    for column in ("feature", "attribution", "value (t)", "baseline"):
        table.add_column(column, justify="left" if column == "feature" else "right")
    for f in payload.top_features:
        table.add_row(f.feature, f"{f.attribution:+.5f}", f"{f.value:.4g}", f"{f.baseline:.4g}")
    days = Table(title="attribution per day (all features)")
    days.add_column("day")
    days.add_column("attribution", justify="right")
    for d in payload.days:
        days.add_row(d.day, f"{d.attribution:+.5f}")
    console.print(table, days)
    console.print(
        f"completeness: sum of attributions {payload.sum_attributions:+.6f} vs f(x) - f(baseline) "
        f"{payload.prob_up - payload.baseline_prob_up:+.6f}, convergence delta "
        f"{payload.convergence_delta:.2e} ({steps} Gauss-Legendre steps, "
        + ("onnxruntime, central differences)" if model else "Captum on CPU in float64)"),
        highlight=False,
    )


@app.command("drift", rich_help_panel=PANEL)
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
app.add_typer(abtest_app, name="abtest", rich_help_panel=PANEL)


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
        if applied.mode == "routing":
            for done in (applied.server, applied.config):
                if done is not None:
                    console.print(
                        f"applied: {done.where} experiment weights "
                        f"{pairs(done.weights_before)} -> {pairs(done.weights)}"
                        + ("" if done.changed else " (already so)"), highlight=False,
                    )  # fmt: skip
        else:
            console.print(
                f"applied: champion of {applied.model} -> v{applied.version}" if applied.changed
                else f"applied: registry unchanged ({applied.reason or 'champion already there; tagged'})",
                highlight=False,
            )  # fmt: skip
    console.print(f"wrote {settings.results_dir / f'abtest_{experiment}.json'}", highlight=False)
