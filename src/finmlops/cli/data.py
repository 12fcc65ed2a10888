"""``finmlops ingest``, ``finmlops data info`` and ``finmlops features``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from finmlops.cli.common import (
    FeatureSet,
    Source,
    app,
    cli_tracker,
    console,
    emit_json,
    err_console,
    fail,
    iso_date_option,
    settings_from,
    tracking_ready,
)
from finmlops.data import DataError, DataStore, read_tickers_file, universe_tickers
from finmlops.features import compute_features, save_features
from finmlops.features.registry import all_features, features_of, sets_of

PANEL = "Data"  # the group these commands are listed under in finmlops --help

data_app = typer.Typer(help="Inspect the versioned market-data store.", no_args_is_help=True)
app.add_typer(data_app, name="data", rich_help_panel=PANEL)


@app.command("ingest", rich_help_panel=PANEL)
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


@app.command("features", rich_help_panel=PANEL)
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
