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


@app.command("ingest")
def ingest_command(
    source: str = typer.Option(
        "snapshot", "--source", help="snapshot (bundled real data, default), yahoo (yfinance) or csv (a folder)."
    ),
    tickers: str | None = typer.Option(None, "--tickers", help="Comma-separated tickers (default: settings)."),
    start: str | None = typer.Option(None, "--start", help="First date, YYYY-MM-DD, inclusive (default: settings)."),
    end: str | None = typer.Option(None, "--end", help="Last date, YYYY-MM-DD, inclusive (default: settings)."),
    data_dir: str | None = typer.Option(
        None, "--data-dir", help="Folder of Yahoo-format CSVs for --source csv (default: settings.raw_data_dir)."
    ),
    retries: int = typer.Option(3, "--retries", min=1, help="Tries per ticker for yahoo; waits 1 s, 2 s, 4 s, ..."),
    json_out: bool = typer.Option(False, "--json", help="Print the ingest report as JSON."),
) -> None:
    """Validate market data and add its new dates to the versioned store in <home>/data.

    Every ticker is read and validated before anything is written.
    Bad data or a failed download leave the store byte-for-byte as it was.
    Dates already stored are kept; a re-ingest with nothing new changes nothing.
    """
    from finmlops.data import SOURCES, DataError, DataStore, ingest

    if source not in SOURCES:
        fail(f"--source must be one of {', '.join(SOURCES)}, got {source!r}", code=2)
    settings = settings_from(tickers=tickers, start=start, end=end, raw_data_dir=data_dir)
    try:
        report = ingest(
            DataStore(settings.data_dir),
            source,  # type: ignore[arg-type]  # checked against SOURCES above
            settings.tickers,
            settings.start,
            settings.end,
            data_dir=settings.raw_data_dir,
            retries=retries,
        )
    except DataError as exc:
        fail(str(exc))
    if json_out:
        emit_json(report.model_dump(mode="json"))
        return
    from rich.table import Table

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
    from finmlops.data import DataError, DataStore

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
    from rich.table import Table

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
    feature_set: str | None = typer.Option(
        None, "--set", help="basic, enhanced or advanced (default: settings.feature_set; with --list: every set)."
    ),
    list_only: bool = typer.Option(False, "--list", help="Print the feature registry (name, formula, window)."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Compute a feature set from the data store and save it in <home>/features/<set>.parquet (+ <set>.json).

    Each value uses data at or before its date only; see docs/features.md. With --list, compute nothing and print
    the registry instead.
    """
    from finmlops.features.registry import FEATURE_SETS, all_features, features_of, sets_of

    if feature_set is not None and feature_set not in FEATURE_SETS:
        fail(f"--set must be one of {', '.join(FEATURE_SETS)}, got {feature_set!r}", code=2)
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

    from finmlops.data import DataError, DataStore
    from finmlops.features import compute_features, save_features

    settings = settings_from(feature_set=feature_set)
    store = DataStore(settings.data_dir)
    try:
        universe = store.read()
        data_hash = store.dataset_hash
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
    from finmlops.evaluation.metrics import BootstrapConfig

    if n_boot < 100 or block_len < 1:
        fail("--n-boot must be >= 100 and --block-len >= 1", code=2)
    return BootstrapConfig(n_boot=n_boot, block_len=block_len, seed=seed)


@app.command("evaluate")
def evaluate_command(
    variant: list[str] = typer.Option([], "--variant", help="Deep variant to evaluate (repeatable)."),
    all_variants: bool = typer.Option(False, "--all", help="Evaluate every deep variant."),
    epochs: int = typer.Option(8, "--epochs", min=1, help="Maximum epochs per fit."),
    seed: int | None = typer.Option(None, "--seed", help="Seed for training and the bootstrap (default: settings)."),
    folds: str = typer.Option("2014-2023", "--folds", help="Test years, one walk-forward fold each."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples for the CIs and paired tests."),
    block_len: int = typer.Option(10, "--block-len", help="Bootstrap block length in trading days."),
    json_out: bool = typer.Option(False, "--json", help="Print the evaluation as JSON."),
) -> None:
    """Walk-forward evaluation of deep variants and every baseline over the whole store, with block-bootstrap
    CIs and paired tests; writes results/evaluation.json, evaluation.md and predictions.parquet."""
    from finmlops.models import VARIANTS

    if all_variants and variant:
        fail("use either --variant or --all", code=2)
    names = list(VARIANTS) if all_variants else variant or ["baseline"]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        fail(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}", code=2)
    settings = settings_from(seed=seed)
    from finmlops.evaluation.report import markdown_table, run_evaluation

    try:
        result = run_evaluation(
            settings,
            variants=names,
            epochs=epochs,
            seed=settings.seed,
            test_years=_parse_folds(folds),
            boot=_bootstrap(n_boot, block_len, settings.seed),
            progress=not json_out,
        )
    except (OSError, ValueError, KeyError) as exc:
        fail(str(exc))
    if json_out:
        emit_json(result)
        return
    console.print(markdown_table(result), highlight=False, markup=False)
    console.print(f"wrote {settings.results_dir / 'evaluation.json'} and evaluation.md", highlight=False)


@app.command("backtest")
def backtest_command(
    strategy: list[str] = typer.Option(
        [], "--strategy", help="long_flat, long_short or top_k (repeatable; all by default)."
    ),
    cost_bps: float = typer.Option(5.0, "--cost-bps", help="Commission per unit of turnover, basis points."),
    slippage_bps: float = typer.Option(0.0, "--slippage-bps", help="Slippage per unit of turnover, basis points."),
    execution: str = typer.Option(
        "close", "--execution", help="close: trade at the close of t; open: at the open of t+1."
    ),
    top_k: int = typer.Option(2, "--top-k", min=1, help="Names per side of the top_k long/short book."),
    capital: float = typer.Option(100_000.0, "--capital", help="Starting capital for the business-impact figures."),
    json_out: bool = typer.Option(False, "--json", help="Print the backtest as JSON."),
) -> None:
    """Backtest the saved walk-forward predictions net of costs against equal-weight buy-and-hold, with the
    deflated Sharpe ratio over every configuration tried; writes results/backtest.json."""
    from finmlops.evaluation.backtest import STRATEGIES, BacktestConfig
    from finmlops.evaluation.report import run_backtest_workspace

    bad = [s for s in strategy if s not in STRATEGIES]
    if bad or execution not in ("close", "open"):
        fail(f"--strategy must be among {', '.join(STRATEGIES)} and --execution close or open", code=2)
    if cost_bps < 0 or slippage_bps < 0 or capital <= 0:
        fail("--cost-bps and --slippage-bps must be >= 0 and --capital > 0", code=2)
    settings = settings_from()
    config = BacktestConfig(
        strategies=tuple(strategy) or STRATEGIES,
        cost_bps=cost_bps,
        slippage_bps=slippage_bps,
        execution=execution,  # type: ignore[arg-type]
        top_k=top_k,
        capital=capital,
    )
    try:
        result = run_backtest_workspace(settings, config)
    except (OSError, ValueError, KeyError) as exc:
        fail(str(exc))
    if json_out:
        emit_json(result)
        return
    from rich.table import Table

    table = Table(title=f"Backtest, {cost_bps:g}+{slippage_bps:g} bps per unit turnover; {result['timing']}")
    columns = ("model", "strategy", "ann. return", "vol", "Sharpe", "Sortino", "max DD", "turnover/yr", "hit")
    for column in (*columns, "exposure", "DSR"):
        table.add_column(column)
    rows = [("buy_hold", "benchmark", result["benchmark"])]
    rows += [(m, s, p) for m, by_s in result["results"].items() for s, p in by_s.items()]
    for model, strat, p in rows:
        dsr = p.get("deflated_sharpe")
        table.add_row(
            model,
            strat,
            f"{p['annual_return']:+.1%}",
            f"{p['annual_volatility']:.1%}",
            f"{p['sharpe']:.2f}",
            f"{p['sortino']:.2f}",
            f"{p['max_drawdown']:.1%}",
            f"{p['turnover_annual']:.0f}x",
            f"{p['hit_rate']:.3f}",
            f"{p['exposure']:.2f}",
            "–" if dsr is None else f"{dsr:.3f}",
        )
    console.print(table)
    trials = result["trials"]
    console.print(
        f"deflated Sharpe over {trials['total']} configurations tried on these predictions "
        f"({trials['this_run']} now); buy-and-hold ends at {result['business']['buy_hold_end_value']:,.0f} "
        f"from {capital:,.0f}. Wrote {settings.results_dir / 'backtest.json'}",
        highlight=False,
    )


@app.command("audit")
def audit_command(
    quick: bool = typer.Option(False, "--quick", help="Small markets (4 tickers, 1000 days, 2 test years)."),
    variant: list[str] = typer.Option([], "--variant", help="Deep variant to audit (repeatable; default lightweight)."),
    epochs: int = typer.Option(3, "--epochs", min=1, help="Maximum epochs per fit."),
    seed: int | None = typer.Option(None, "--seed", help="Seed for the synthetic markets, training and bootstrap."),
    json_out: bool = typer.Option(False, "--json", help="Print the audit as JSON."),
) -> None:
    """Leakage audit: random-walk, shuffled and planted-signal markets through the real pipeline, and a planted
    next-day feature that must be flagged. Exit code 1 when any check fails; writes results/audit.json."""
    from finmlops.models import VARIANTS

    names = variant or ["lightweight"]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        fail(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}", code=2)
    settings = settings_from(seed=seed)
    from finmlops.evaluation.metrics import BootstrapConfig
    from finmlops.evaluation.report import run_audit_workspace

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


def track(what: str, function: str, settings: Settings, **kwargs: Any) -> str:
    """Call ``finmlops.tracking.<function>(settings, **kwargs)`` (a logging helper returning a run id) at the end
    of a command, e.g. ``track("ingestion", "log_ingestion", settings, tickers=..., ...)``.

    Imports MLflow only here. A tracking failure is one clear error line naming the tracking URI, exit code 1.
    """
    import logging

    import finmlops.tracking as tracking

    # MLflow's INFO lines (database migrations, registrations) would clutter the command's output.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    try:
        run_id = getattr(tracking, function)(settings, **kwargs)
    except (tracking.TrackingError, ValueError) as exc:
        fail(f"tracking {what} at {settings.tracking_uri} failed: {exc}")
    err_console.print(f"tracked {what} as MLflow run {run_id}", highlight=False)
    return run_id


@app.command("runs")
def runs_command(
    experiment: str | None = typer.Option(
        None, "--experiment", help="ingestion, training, tuning or evaluation [default: all]."
    ),
    limit: int = typer.Option(20, "--limit", min=1, help="Most recent runs to show."),
    json_out: bool = typer.Option(False, "--json", help="Print the runs as JSON."),
) -> None:
    """List recent MLflow runs, newest first, with their data hash and pooled metrics."""
    import logging

    from finmlops.tracking import TrackingError, list_runs

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    settings = settings_from()
    try:
        runs = list_runs(settings, experiment, limit)
    except TrackingError as exc:
        fail(str(exc))
    except ValueError as exc:
        fail(str(exc), code=2)
    if json_out:
        emit_json({"tracking_uri": settings.tracking_uri, "runs": runs})
        return
    from rich.table import Table

    table = Table(title=f"MLflow runs at {settings.tracking_uri}")
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
    fmt: str = typer.Option("mlflow", "--format", help="mlflow, triton or mlserver."),
    out: str = typer.Option(..., "--out", help="Folder that receives <name>/ (replaced atomically)."),
    name: str | None = typer.Option(None, "--name", help="Model name in the layout [default: <variant>-predictor]."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Lay a logged ONNX model out as an MLflow model folder, a Triton repository or an MLServer model."""
    from pathlib import Path

    from finmlops.tracking import EXPORT_FORMATS, ModelError, TrackingError, configure_tracking, export_model

    if fmt not in EXPORT_FORMATS:
        fail(f"--format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}", code=2)
    try:
        if not Path(model).exists():
            configure_tracking(settings_from())
        target = export_model(model, fmt, Path(out), name)  # type: ignore[arg-type]  # checked above
    except (ModelError, TrackingError) as exc:
        fail(str(exc))
    if json_out:
        emit_json({"model": model, "format": fmt, "path": str(target)})
    else:
        console.print(f"exported {model} as {fmt} to {target}", highlight=False)


@app.command("register")
def register_command(
    variant: str = typer.Option(..., "--variant", help="baseline, lightweight, enhanced, advanced or transformer."),
    run_id: str | None = typer.Option(
        None, "--run-id", help="Training run whose model to register [default: the variant's newest]."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the new version as JSON."),
) -> None:
    """Register a trained variant's model as a new version of <variant>-predictor, with its walk-forward accuracy."""
    from finmlops.tracking import PromotionRefused, TrackingError, configure_tracking, register_variant

    try:
        configure_tracking(settings_from())
        version = register_variant(variant, run_id)
    except KeyError as exc:
        fail(str(exc.args[0]), code=2)
    except (TrackingError, PromotionRefused, ValueError) as exc:
        fail(str(exc))
    payload = {"name": version.name, "version": int(version.version), "run_id": version.run_id, **version.tags}
    if json_out:
        emit_json(payload)
    else:
        console.print(
            f"registered {version.name} version {version.version} "
            f"(walk-forward accuracy {version.tags.get('wf_accuracy')} on {version.tags.get('wf_rows')} rows)",
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
    walk-forward rows by more than --margin in accuracy, with p < 0.05 in a one-sided paired moving-block
    bootstrap over dates. Exit code 1 when refused.
    """
    from finmlops.tracking import PromotionRefused, TrackingError, configure_tracking, promote

    try:
        configure_tracking(settings_from())
        decision = promote(model, version, alias, margin=margin, force=force, reason=reason)
    except (TrackingError, PromotionRefused, ValueError) as exc:
        fail(f"promotion refused: {exc}" if isinstance(exc, PromotionRefused) else str(exc))
    if json_out:
        emit_json(decision)
    elif decision["forced"]:
        console.print(f"FORCED {model} v{version} to {alias!r}: {decision['reason']}", highlight=False)
    else:
        console.print(
            f"promoted {model} v{version} to {alias!r}: accuracy {decision['candidate_accuracy']:.4f} vs "
            f"{decision['reference']} {decision['reference_accuracy']:.4f}, p = {decision['p_value']:.4f}",
            highlight=False,
        )


@app.command("models")
def models_command(json_out: bool = typer.Option(False, "--json", help="Print the registry as JSON.")) -> None:
    """List registered *-predictor models, their versions, aliases and stored walk-forward metrics."""
    from finmlops.tracking import TrackingError, configure_tracking, list_models

    try:
        configure_tracking(settings_from())
        models = list_models()
    except TrackingError as exc:
        fail(str(exc))
    if json_out:
        emit_json(models)
        return
    from rich.table import Table

    table = Table(title="registered models")
    for column in ("model", "version", "aliases", "wf accuracy", "rows", "data hash", "created"):
        table.add_column(column)
    for entry in models:
        for v in entry["versions"]:
            tags = v["tags"]
            table.add_row(
                entry["name"], str(v["version"]), ",".join(v["aliases"]), tags.get("wf_accuracy", ""),
                tags.get("wf_rows", ""), tags.get("data_hash", "")[:12], v["created"],
            )  # fmt: skip
    console.print(table)


# --- deploy -----------------------------------------------------------------------------------------------------------

deploy_app = typer.Typer(help="GitOps deployment: render and promote the Kustomize overlays.", no_args_is_help=True)
app.add_typer(deploy_app, name="deploy")


def _report_release(change: Any, as_json: bool) -> None:
    """Print a ``finmlops.deploy.release.ReleaseChange``: JSON, or a summary, the warnings and the git diff."""
    from dataclasses import asdict

    if as_json:
        emit_json({**asdict(change), "refs": [asdict(r) for r in change.refs]})
        return
    for ref in change.refs:
        console.print(f"{ref.model}@{ref.alias}: version {ref.version} at {ref.uri}", highlight=False)
    console.print(f"serve image: {change.serve_image}", highlight=False)
    for warning in change.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    if not change.changed:
        console.print(f"{change.path} is already up to date")
    sys.stdout.write(change.diff)


def _release_step(step: str, overlay: str, k8s_dir: str, tracking_uri: str | None, **kwargs: Any) -> Any:
    """Run ``finmlops.deploy.release.<step>`` against the MLflow registry; a DeployError becomes exit 1."""
    from pathlib import Path

    import mlflow

    from finmlops.deploy import release

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
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Write the overlay's release.yaml from the MLflow registry: the artifact URI and version of every alias it
    serves, and the serving image tag. Nothing is written unless every alias resolves. Prints the git diff."""
    _report_release(_release_step("render", overlay, k8s_dir, tracking_uri, image_tag=image_tag), as_json)


@deploy_app.command("promote")
def deploy_promote(
    model: str = typer.Option(..., help="Registered model name, e.g. enhanced-predictor."),
    alias: str = typer.Option("champion", help="Registry alias whose current version the overlay should serve."),
    overlay: str = typer.Option("dev", help="Overlay folder under <k8s-dir>/overlays."),
    k8s_dir: str = typer.Option("deploy/k8s", help="Kustomize root that holds overlays/."),
    tracking_uri: str | None = typer.Option(None, help="MLflow tracking/registry URI; default from settings."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Point one model@alias of the overlay at the version the registry alias names now (after `finmlops promote`)
    and print the git diff, ready to commit: ArgoCD rolls it out once pushed."""
    _report_release(_release_step("promote", overlay, k8s_dir, tracking_uri, model=model, alias=alias), as_json)


@deploy_app.command("rules")
def deploy_rules(
    rules: str = typer.Option("monitoring/prometheus/alert-rules.yaml", help="Prometheus rules file (the source)."),
    out: str = typer.Option("deploy/k8s/base/monitoring/prometheusrule.yaml", help="PrometheusRule to generate."),
    check: bool = typer.Option(False, "--check", help="Write nothing; exit 1 when the PrometheusRule is stale."),
) -> None:
    """Generate the Prometheus Operator PrometheusRule from the alert rules file that Prometheus loads."""
    from pathlib import Path

    from finmlops.deploy.release import DeployError
    from finmlops.deploy.rules import sync_rule

    try:
        stale = sync_rule(Path(rules), Path(out), check=check)
    except DeployError as exc:
        fail(str(exc))
    if check and stale:
        fail(f"{out} is out of date with {rules}: run `finmlops deploy rules`")
    console.print(f"{out} {'regenerated' if stale else 'is up to date'}", highlight=False)


def main() -> None:
    app()
