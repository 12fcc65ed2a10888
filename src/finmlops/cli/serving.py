"""``finmlops serve``, ``traffic`` and ``predict``."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from finmlops.cli.common import (
    EXECUTOR_HELP,
    RAY_ADDRESS_HELP,
    RAY_CPUS_HELP,
    Executor,
    FeatureSet,
    LogLevel,
    ModelInputChoice,
    PerChoice,
    app,
    bootstrap_config,
    console,
    emit_json,
    err_console,
    executor_config,
    fail,
    iso_date_option,
    pairs,
    settings_from,
)
from finmlops.data import DataError, load_snapshot
from finmlops.serving.config import ServingConfigError, load_config
from finmlops.serving.traffic import describe_errors, replay_days, run_traffic

PANEL = "Serving"  # the group these commands are listed under in finmlops --help


@app.command("traffic", rich_help_panel=PANEL)
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
    per: PerChoice = typer.Option(
        "ticker", "--per", help="ticker: a request per ticker per day; day: one binary request a day, a row per ticker."
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
            per=per.value,
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
            )
        except ValueError as exc:
            fail(str(exc), code=2)
    problem = summary.failure()
    if json_out:
        emit_json(summary)
    else:
        span = f" {summary.first_day}..{summary.last_day}" if summary.days else ""
        console.print(
            f"{summary.requests} requests ({summary.ok} ok) over {summary.days} days{span} "
            f"in {summary.elapsed_s} s; feedback {summary.feedback_ok}/{summary.feedback_sent} ok",
            highlight=False,
        )
        console.print(f"arms: {pairs(summary.arms)}", highlight=False)
        if summary.per == "day":
            left_out = "; ".join(f"{k}: {v}" for k, v in summary.rows_dropped.items()) or "none"
            console.print(f"rows scored: {summary.rows_scored}; left out: {left_out}", highlight=False)
        console.print(f"errors: {describe_errors(summary.errors, summary.error_text)}", highlight=False)
        if latency := summary.latency_ms:  # the help promises it: client-side, over the answered infer requests
            console.print(
                f"client-side latency: p50 {latency.p50:.1f} ms, p99 {latency.p99:.1f} ms, max {latency.max:.1f} ms",
                highlight=False,
            )
        if summary.feedback_errors:
            feedback = describe_errors(summary.feedback_errors, summary.error_text, prefix="feedback ")
            console.print(f"feedback errors: {feedback}", highlight=False)
    if problem is not None:
        fail(problem)


@app.command("serve", rich_help_panel=PANEL)
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


@app.command("predict", rich_help_panel=PANEL)
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
            settings, model, Path(data), Path(out), boot=bootstrap_config(n_boot, block_len, settings.seed),
            executor=executor_config(executor, ray_address, ray_cpus),
        )  # fmt: skip
    except (DataError, ModelError, TrackingError, OSError, ValueError) as exc:
        fail(str(exc))
    if json_out:
        emit_json(report)
        return
    console.print(
        f"{report.rows} predictions for {len(report.tickers)} tickers ({report.first_date} to "
        f"{report.last_date}) by {report.model} ({report.variant}, {report.feature_set} features, "
        f"seq_len {report.seq_len}) -> {report.out}",
        highlight=False,
        soft_wrap=True,
    )
    for note in report.notes + report.warnings:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    for s in report.skipped:
        err_console.print(
            f"[yellow]skipped:[/] {s.ticker}: {s.skipped} of {s.rows} rows without a full window "
            f"({s.reason}); first usable date {s.first_usable or 'none'}",
            highlight=False,
            soft_wrap=True,
        )
    realised = report.realised
    if realised is None:
        console.print("no realised outcomes in the files (no next-day close): no accuracy to report")
        return
    ci = lambda m: f"{m.value:.4f} [{m.ci_low:.4f}, {m.ci_high:.4f}]"  # noqa: E731
    console.print(
        f"on {realised.n} rows with a known next close ({realised.n_dates} dates): accuracy "
        f"{ci(realised.accuracy)}, balanced accuracy {ci(realised.balanced_accuracy)}, AUC "
        f"{ci(realised.roc_auc)} (95% block-bootstrap CIs); majority class {realised.majority_class_rate:.4f}",
        highlight=False,
        soft_wrap=True,
    )
