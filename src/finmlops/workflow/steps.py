"""``finmlops run``: the ten steps from the bundled snapshot to a finished report, each skipped when its inputs
did not change (see :mod:`finmlops.workflow.engine`).

1 ingest, 2 features, 3 train + evaluate (walk-forward, every variant and baseline), 4 backtest, 5 register final
models and decide ``champion``, 6 serve + replay traffic through the 70/30 A/B test, 7 A/B analysis, 8 drift,
9 permutation importance of the best deep variant, 10 report. Each step calls the same stage functions as its own
command and writes the same files.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from finmlops.data import DataError, DataSourceError, dataset_hash_of, snapshot_tickers, universe_source
from finmlops.data.csv_source import find_csv_files
from finmlops.evaluation.backtest import BacktestConfig
from finmlops.evaluation.metrics import BootstrapConfig
from finmlops.evaluation.results import Estimate, load_evaluation
from finmlops.evaluation.workspace import evaluate_and_write
from finmlops.executor import ExecutorConfig
from finmlops.features import FEATURE_SETS, compute_features, save_features
from finmlops.models.estimators import ESTIMATORS
from finmlops.monitoring.abtest import ArmComparison, run_abtest
from finmlops.monitoring.drift import run_drift
from finmlops.provenance import file_sha256, git_commit, stamp, write_json_atomic
from finmlops.settings import Settings
from finmlops.stats import describe_comparison
from finmlops.workflow.champions import RegisteredChampion, decide_champion, register_final_model
from finmlops.workflow.config import RunConfig, shipped_config, write_resolved
from finmlops.workflow.engine import (
    Context,
    Outcome,
    RunState,
    Step,
    StepFailed,
    StepReport,
    run_steps,
)
from finmlops.workflow.live import champion_versions, registered_versions, serve_and_replay
from finmlops.workflow.services import backtest_stage, ingest_stage, mlflow_tracker, track_evaluation

DRIFT_MODEL = "enhanced-predictor@champion"  # the challenger arm: the larger feature set, more to drift


@dataclass
class RunResult:
    """The run's summary: one report per step, the workspace, the report path (None in a dry run)."""

    plan: RunConfig
    home: Path
    steps: list[StepReport]
    report: str | None
    champions: dict[str, Any]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan.model_dump(mode="json"),
            "home": str(self.home),
            "steps": [s.as_dict() for s in self.steps],
            "report": self.report,
            "champions": self.champions,
            "seconds": round(self.seconds, 1),
        }


def run_settings(settings: Settings, config: RunConfig) -> Settings:
    """The settings the steps' stage functions read: the config's workspace (``<home>/quick``), tickers, label,
    seed and threads, so that a step and its standalone command see the same values. A run follows its config, not
    ``finmlops.yaml`` or ``FINMLOPS_*``, for these (:func:`settings_differences` names what differs)."""
    home = settings.home / config.workspace if config.workspace else settings.home
    update = {
        "home": home, "tickers": list(config.tickers), "seed": config.seed, "threads": config.threads,
        "horizon": config.label.horizon, "threshold": config.label.threshold, "execution": config.label.execution,
    }  # fmt: skip
    return settings.model_copy(update=update)


def settings_differences(settings: Settings, config: RunConfig) -> list[str]:
    """The settings a run does not follow because its config declares them (tickers, label, seed, threads), as
    ``name: settings X, config Y``, so that ``finmlops run`` can say so instead of silently ignoring them."""
    pairs = {
        "tickers": (_ticker_list(settings.tickers), _ticker_list(config.tickers)),
        "horizon": (settings.horizon, config.label.horizon),
        "threshold": (settings.threshold, config.label.threshold),
        "execution": (settings.execution, config.label.execution), "seed": (settings.seed, config.seed),
        "threads": (settings.threads, config.threads),
    }  # fmt: skip
    return [f"{name}: settings {ours}, config {theirs}" for name, (ours, theirs) in pairs.items() if ours != theirs]


def _ticker_list(tickers: Sequence[str], shown: int = 4) -> str:
    """A ticker list short enough for one log line: all of a few, or the count with the first and last
    (a universe's 443 tickers would otherwise fill the terminal)."""
    tickers = list(tickers)
    if len(tickers) <= shown + 1:
        return "[" + ", ".join(tickers) + "]"
    return f"{len(tickers)} tickers [{', '.join(tickers[:shown])}, …, {tickers[-1]}]"


# --- helpers the steps share -----------------------------------------------------------------------------------------


def _universe(ctx: Context) -> dict[str, Any]:
    """The run's tickers and dates from the store (read once per run, each file verified against the manifest)."""
    if "universe" not in ctx.cache:
        from finmlops.data import DataStore

        plan: RunConfig = ctx.plan
        store = DataStore(ctx.settings.data_dir)
        ctx.cache["universe"] = store.read(list(plan.tickers), plan.universe.start, plan.universe.end)
    return ctx.cache["universe"]


def _predictions(ctx: Context) -> Any:
    if "predictions" not in ctx.cache:
        from finmlops.evaluation.workspace import load_predictions

        ctx.cache["predictions"] = load_predictions(ctx.settings.results_dir)[0]
    return ctx.cache["predictions"]


def _snapshot_digest(tickers: tuple[str, ...]) -> str:
    """SHA-256 of the bundled CSV files of ``tickers``; an unknown ticker is the ingest's own clear error."""

    unknown = sorted(set(tickers) - set(snapshot_tickers()))
    if unknown:
        raise DataSourceError(
            f"the bundled snapshot has no {unknown}; available tickers: {', '.join(snapshot_tickers())}"
        )
    folder = resources.files("finmlops.data") / "snapshot" / "ohlcv"
    digest = hashlib.sha256()
    for t in tickers:
        digest.update(t.encode() + b"\0" + (folder / f"{t}.csv").read_bytes())
    return digest.hexdigest()


def _universe_source(ctx: Context) -> Any:
    """The run's universe resolved to an ingest source, CSV folder and tickers (``finmlops.data.universe``)."""

    return universe_source(ctx.plan.universe.source, ctx.settings.sp500_dir)


def _source_digest(ctx: Context) -> str:
    """SHA-256 of the run's input files: the bundled snapshot's, or the CSV folder's files of the run's tickers."""
    plan: RunConfig = ctx.plan
    source = _universe_source(ctx)
    if source.data_dir is None:
        return _snapshot_digest(plan.tickers)

    found = find_csv_files(source.data_dir)
    digest = hashlib.sha256()
    for t in plan.tickers:
        files = found.get(t, [])
        digest.update(t.encode() + b"\0" + (files[0].read_bytes() if len(files) == 1 else b"missing or ambiguous"))
    return digest.hexdigest()


def _feature_sets(plan: RunConfig) -> list[str]:

    # The logistic and LightGBM baselines read the advanced set (walk_forward_predictions' default).
    wanted = {v.feature_set for v in plan.variant_configs()} | {ESTIMATORS[e].feature_set for e in plan.estimators}
    wanted |= {"advanced"}
    return [s for s in FEATURE_SETS if s in wanted]


def _bootstrap(plan: RunConfig, seed: int) -> Any:
    return BootstrapConfig(n_boot=plan.bootstrap.n_boot, block_len=plan.bootstrap.block_len, seed=seed)


def _ci(entry: Estimate) -> str:
    return f"{entry.value:.3f} [{entry.ci_low:.3f}, {entry.ci_high:.3f}]"


# --- the steps --------------------------------------------------------------------------------------------------------


def _ingest(ctx: Context) -> Outcome:
    plan: RunConfig = ctx.plan
    # The same service as `finmlops ingest`, tracked the same way.
    source = _universe_source(ctx)
    outcome = ingest_stage(
        ctx.settings, source.source, list(plan.tickers), plan.universe.start, plan.universe.end,
        data_dir=source.data_dir, tracker=mlflow_tracker(ctx.settings),
    )  # fmt: skip
    report, run_id = outcome.report, outcome.mlflow_run
    for warning in report.warnings:
        ctx.log(f"[ingest] warning: {warning}")
    ctx.cache.pop("universe", None)
    universe = _universe(ctx)
    rows = sum(len(f) for f in universe.values())
    first = min(f.index.min() for f in universe.values()).date()
    last = max(f.index.max() for f in universe.values()).date()
    data_hash = dataset_hash_of(universe)
    return Outcome(
        figure=f"{len(universe)} tickers, {rows:,} rows {first}..{last}, data {data_hash[:12]}",
        data={"dataset_hash": data_hash, "rows": rows, "first": str(first), "last": str(last), "mlflow_run": run_id},
    )


def _ingest_valid(ctx: Context, data: dict[str, Any]) -> bool:
    try:
        return dataset_hash_of(_universe(ctx)) == data.get("dataset_hash")
    except (DataError, OSError):
        return False


def _features(ctx: Context) -> Outcome:
    data_hash = ctx.output("ingest")["dataset_hash"]
    files, shapes, digests = [], [], {}
    for feature_set in _feature_sets(ctx.plan):
        frame = compute_features(_universe(ctx), feature_set)
        meta = save_features(frame, feature_set, ctx.settings.features_dir, data_hash=data_hash)
        files += [ctx.settings.features_dir / f"{feature_set}.{ext}" for ext in ("parquet", "json")]
        shapes.append(f"{feature_set} {len(meta['feature_names'])}")
        digests[feature_set] = meta["file_sha256"]
    return Outcome(figure=f"{', '.join(shapes)} features x {len(frame):,} rows", files=files, data={"sha256": digests})


def _train_inputs(ctx: Context) -> dict[str, Any]:
    plan: RunConfig = ctx.plan
    # Only when set, so that a workspace trained before estimator_params existed is not retrained for nothing.
    params = {"estimator_params": plan.estimator_params} if plan.estimator_params else {}
    return params | {
        "dataset_hash": ctx.output("ingest")["dataset_hash"],
        "features": ctx.output("features")["sha256"],
        "variants": [v.model_dump() for v in plan.variants],
        "baselines": plan.baselines,
        "estimators": plan.estimators,
        "epochs": plan.epochs,
        "test_years": plan.test_years,
        "folds": _fold_inputs(plan),
        "label": plan.label.model_dump(),
        "seed": ctx.settings.seed,
        "threads": ctx.settings.threads,
        "bootstrap": plan.bootstrap.model_dump(),
    }


def _fold_inputs(plan: RunConfig) -> dict[str, Any]:
    """The fold scheme as the train step's inputs see it (the study periods only when they are used)."""
    if plan.folds == "yearly":
        return {"scheme": "yearly"}
    return {"scheme": plan.folds, **plan.study_periods.model_dump()}


def _walk_forward_folds(plan: RunConfig) -> dict[str, Any]:
    """``walk_forward_predictions``' fold arguments: yearly (its defaults) or the study periods."""
    if plan.folds == "yearly":
        return {}
    sp = plan.study_periods
    return {"study_periods": (sp.train_days, sp.trade_days), "val_frac": sp.val_frac}


def _train(ctx: Context) -> Outcome:
    from finmlops.training.walkforward import walk_forward_predictions  # deferred: torch

    plan: RunConfig = ctx.plan
    universe, seed = _universe(ctx), ctx.settings.seed
    preds = walk_forward_predictions(
        universe, variants=plan.variant_configs(), baselines=plan.baselines, test_years=plan.test_years,
        epochs=plan.epochs, seed=seed, threads=ctx.settings.threads, device="auto",
        progress=ctx.cache.get("progress", False), label=plan.label, executor=plan.executor_config,
        estimators=plan.estimators, estimator_params=plan.estimator_params, **_walk_forward_folds(plan),
    )  # fmt: skip
    ctx.cache["predictions"] = preds
    fit_seconds: dict[str, float] = {}
    for fit in preds.attrs["fit_seconds"]:  # where the walk-forward's time goes, per model over all folds
        fit_seconds[fit["model"]] = round(fit_seconds.get(fit["model"], 0.0) + fit["seconds"], 1)
    boot = _bootstrap(plan, seed)
    config = {
        "variants": [v.model_dump() for v in plan.variants], "baselines": list(plan.baselines),
        "estimators": list(plan.estimators), "estimator_params": plan.estimator_params, "epochs": plan.epochs,
        "test_years": list(plan.test_years),
        "folds": _fold_inputs(plan), "tickers": sorted(universe), "bootstrap": asdict(boot),
        "label": ctx.plan.label.model_dump(),
    }  # fmt: skip
    payload = evaluate_and_write(
        preds, ctx.settings.results_dir, data_hash=ctx.output("ingest")["dataset_hash"], config=config, boot=boot
    )
    deep = {m: payload.models[m] for m in plan.variant_names}
    best = max(deep, key=lambda m: deep[m].pooled.accuracy.value)
    if "majority" in deep[best].vs_baselines:
        vs = describe_comparison(deep[best].vs_baselines["majority"].comparison("accuracy", "majority"))
        versus = f"majority {payload.models['majority'].pooled.accuracy.value:.3f}: {vs}"
    else:  # a run without the majority baseline (a research run's random and reversal): against a coin flip
        versus = describe_comparison(deep[best].signal.accuracy_vs_half)
    results = ctx.settings.results_dir
    run_id = track_evaluation(payload, mlflow_tracker(ctx.settings))
    folds = len({f["fold"] for f in preds.attrs["fit_seconds"]})
    return Outcome(
        figure=f"{folds} folds, {len(payload.models)} models; best deep {best} accuracy "
        f"{_ci(deep[best].pooled.accuracy)}, {versus}",
        files=[results / "predictions.parquet", results / "evaluation.json", results / "evaluation.md"],
        data={
            "predictions_sha256": payload.predictions.sha256 if payload.predictions else None,
            "best_deep": best,
            "fit_seconds": fit_seconds,
            "mlflow_run": run_id,
        },
    )


def _backtest(ctx: Context) -> Outcome:
    strategies = {} if ctx.plan.strategies is None else {"strategies": tuple(ctx.plan.strategies)}
    outcome = backtest_stage(
        ctx.settings, BacktestConfig(**ctx.plan.costs.model_dump(), **strategies), tracker=mlflow_tracker(ctx.settings)
    )
    result, run_id = outcome.result, outcome.mlflow_run
    # The deep variants' best: the majority baseline's long_flat is buy-and-hold itself.
    rows = [(m, s, p) for m, s, p in result.books() if m in ctx.plan.variant_names]
    model, strategy, best = max(rows, key=lambda r: r[2].sharpe)
    dsr = best.deflated_sharpe
    return Outcome(
        figure=f"best deep net Sharpe {best.sharpe:.2f} ({model} {strategy}, deflated SR "
        f"{'n/a' if dsr != dsr else f'{dsr:.2f}'}) vs buy-and-hold {result.benchmark.sharpe:.2f}",
        files=[ctx.settings.results_dir / "backtest.json"],
        data={"mlflow_run": run_id},
    )


def _register_inputs(ctx: Context) -> dict[str, Any]:
    predictions = ctx.output("train")["predictions_sha256"]
    return {
        **_train_inputs(ctx), "predictions": predictions, "uri": ctx.settings.tracking_uri,
        "register": list(ctx.plan.registered_names),
    }  # fmt: skip


def _register(ctx: Context) -> Outcome:
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    plan: RunConfig = ctx.plan
    evaluation = load_evaluation(ctx.settings.results_dir)
    models: dict[str, RegisteredChampion] = {}
    for config in plan.variant_configs():
        variant = config.name
        if variant not in plan.registered_names:
            continue
        ctx.log(f"[register] {variant}: final fit on every date before {plan.test_years[-1]}, ONNX export, register")
        final = register_final_model(
            ctx.settings, config, label=plan.label, universe=_universe(ctx), predictions=_predictions(ctx),
            evaluation=evaluation, data_hash=ctx.output("ingest")["dataset_hash"], gap_seq_len=plan.gap_seq_len,
            test_years=plan.test_years, epochs=plan.epochs,
        )  # fmt: skip
        # The evaluation's bootstrap, so the promotion test is the one evaluation.json recorded for the pair.
        decision = decide_champion(final.name, final.version, _bootstrap(plan, ctx.settings.seed))
        ctx.log(f"[register] {final.name} v{final.version}: {decision.decision} ({decision.detail})")
        models[variant] = RegisteredChampion(**final.model_dump(), **decision.model_dump())
    by_decision: dict[str, list[str]] = {}
    for variant, entry in models.items():
        by_decision.setdefault(entry.decision, []).append(f"{variant} v{entry.champion}")
    words = {"promoted": "promoted by the rule", "bootstrapped": "bootstrapped (forced, recorded)", "kept": "kept"}
    return Outcome(
        figure=f"{len(models)} registered; champion "
        + "; ".join(f"{words[d]}: {', '.join(v)}" for d, v in by_decision.items()),
        data={"models": {variant: entry.model_dump() for variant, entry in models.items()}},
    )


def _register_valid(ctx: Context, data: dict[str, Any]) -> bool:
    """The recorded versions are still in the registry (a deleted mlflow.db means register again)."""

    registered = registered_versions(ctx.settings)
    return all((e["name"], str(e["version"])) in registered for e in data["models"].values())


def _traffic_inputs(ctx: Context) -> dict[str, Any]:
    plan: RunConfig = ctx.plan
    return {
        "champions": champion_versions(ctx.settings),
        "dataset_hash": ctx.output("ingest")["dataset_hash"],
        # What the replay sends depends on these only (see finmlops.serving.traffic).
        "traffic": [plan.traffic_start, plan.traffic_end, ctx.settings.seed, plan.traffic.per],
    }


def _traffic(ctx: Context) -> Outcome:
    plan: RunConfig = ctx.plan
    summary = serve_and_replay(
        ctx.settings,
        _universe(ctx),
        start=plan.traffic_start,
        end=plan.traffic_end,
        seed=ctx.settings.seed,
        label=plan.label,
        per=plan.traffic.per,
    )
    summary.provenance = stamp(data_hash=ctx.output("ingest")["dataset_hash"], config=_traffic_inputs(ctx))
    path = write_json_atomic(ctx.settings.results_dir / "traffic.json", summary.model_dump(mode="json"))
    log = summary.request_log
    arms = ", ".join(f"{a} {n}" for a, n in sorted(summary.arms.items()))
    p50 = summary.latency_ms.p50 if summary.latency_ms else float("nan")
    what = (
        f"day requests ok ({summary.rows_scored} rows scored, {len(summary.rows_dropped)} left out)"
        if summary.per == "day"
        else "infers ok"
    )
    return Outcome(
        figure=f"{summary.ok}/{summary.requests} {what} ({arms}), feedback {summary.feedback_ok}, p50 {p50:.1f} ms, "
        f"days {summary.first_day}..{summary.last_day}",
        files=[path, log],
        # The log's digest makes the A/B and drift steps rerun whenever new traffic was logged.
        data={"experiment": summary.experiment, "request_log": str(log), "log_sha256": file_sha256(log)},
    )


def _abtest(ctx: Context) -> Outcome:
    experiment = ctx.output("traffic")["experiment"]
    result = run_abtest(ctx.settings, experiment, log_path=Path(ctx.output("traffic")["request_log"]))
    decision = result.decision
    diffs = "; ".join(f"{c.arm} - {c.control} {_difference(c)}" for c in result.comparisons)
    return Outcome(
        figure=f"{decision.action.upper()}: {diffs or decision.reason} (always-valid 95% CS; not applied)",
        files=[ctx.settings.results_dir / f"abtest_{experiment}.json"],
    )


def _difference(comparison: ArmComparison) -> str:
    """``+0.012 [-0.03, +0.05]``; the sequence has no interval before the arm's minimum outcomes."""
    low, high = comparison.ci
    interval = "no CS yet" if low is None or high is None else f"[{low:+.3f}, {high:+.3f}]"
    difference = "–" if comparison.difference is None else f"{comparison.difference:+.3f}"
    return f"{difference} {interval} on {comparison.outcomes} outcomes"


def _drift(ctx: Context) -> Outcome:
    result = run_drift(
        ctx.settings, model=DRIFT_MODEL, current="log", log_path=Path(ctx.output("traffic")["request_log"])
    )
    prediction = result.prediction
    return Outcome(
        figure=f"{result.n_drifted} of {len(result.features)} features drift (served inputs vs training "
        f"range of {DRIFT_MODEL})" + (f"; prediction PSI {prediction.psi:.3f}" if prediction else ""),
        files=[ctx.settings.results_dir / "drift.json"],
    )


def _importance_inputs(ctx: Context) -> dict[str, Any]:
    plan: RunConfig = ctx.plan
    return {
        "dataset_hash": ctx.output("ingest")["dataset_hash"],
        "variant": ctx.output("train")["best_deep"],
        "test_years": plan.test_years[-plan.importance.folds :],
        "epochs": plan.epochs,
        "repeats": plan.importance.repeats,
        "label": plan.label.model_dump(),
        "seed": ctx.settings.seed,
        "threads": ctx.settings.threads,
    }


def _importance(ctx: Context) -> Outcome:
    """Permutation importance of the best deep variant on the last test folds: ``finmlops explain --global``'s
    function (one refit per fold), so the report has an importance section."""

    inputs = _importance_inputs(ctx)
    from finmlops.monitoring.explain import run_global_importance  # deferred: onnxruntime

    result = run_global_importance(
        ctx.settings, inputs["variant"], test_years=inputs["test_years"], epochs=inputs["epochs"],
        n_repeats=inputs["repeats"], log=lambda text: ctx.log(f"[importance] {text}"), universe=_universe(ctx),
    )  # fmt: skip
    top = result.features[0]
    se = top.accuracy_drop_se
    return Outcome(
        figure=f"{inputs['variant']} on {len(result.folds)} folds: top feature {top.feature} accuracy drop "
        f"{top.accuracy_drop:+.4f}" + (f" ± {se:.4f}" if se is not None else ""),
        files=[Path(str(result.path))],
    )


def _report_inputs(ctx: Context) -> dict[str, Any]:
    """Every result file the report may read (``audit`` and ``explain --global`` results included) and the
    request log it summarises, by content."""
    results = ctx.settings.results_dir
    files = (
        sorted(p for p in results.iterdir() if p.is_file() and not p.name.startswith(".")) if results.is_dir() else []
    )
    return {
        "results": {p.name: file_sha256(p) for p in files},
        "request_log": ctx.output("traffic").get("log_sha256"),
    }


def _report(ctx: Context) -> Outcome:
    # Imported here, not at the top, on purpose: a broken or missing report module fails this step by name, after
    # every earlier step's results are written, instead of every finmlops command at import.
    from finmlops.report.page import build_report

    path = Path(build_report(ctx.settings))
    return Outcome(figure=str(path), files=[path], data={"path": str(path)})


def build_steps() -> list[Step]:
    """The ten steps in order, with the steps each runs after; each one's code identity is its action's import
    closure (:func:`finmlops.workflow.engine.code_closure`)."""
    plan_of: Callable[[Context], RunConfig] = lambda ctx: ctx.plan  # noqa: E731
    return [
        Step(
            "ingest",
            "ingest the universe (bundled snapshot or CSV folder)",
            (),
            lambda ctx: {
                "tickers": plan_of(ctx).tickers,
                "start": plan_of(ctx).universe.start,
                "end": plan_of(ctx).universe.end,
                "snapshot": _source_digest(ctx),
            },
            _ingest,
            _ingest_valid,
        ),
        Step(
            "features",
            "compute feature sets",
            ("ingest",),
            lambda ctx: {"dataset_hash": ctx.output("ingest")["dataset_hash"], "sets": _feature_sets(ctx.plan)},
            _features,
        ),
        Step("train", "train + evaluate walk-forward", ("features",), _train_inputs, _train),
        Step(
            "backtest",
            "backtest net of costs",
            ("train",),
            lambda ctx: {
                "predictions": ctx.output("train")["predictions_sha256"],
                "costs": ctx.plan.costs.model_dump(),
                "strategies": ctx.plan.strategies,
            },
            _backtest,
        ),
        Step("register", "register final models, champion", ("train",), _register_inputs, _register, _register_valid),
        Step("traffic", "serve + replay A/B traffic", ("register",), _traffic_inputs, _traffic),
        Step(
            "abtest",
            "A/B analysis",
            ("traffic",),
            lambda ctx: {"log": ctx.output("traffic")["request_log"], "traffic": ctx.output("traffic")},
            _abtest,
        ),
        Step(
            "drift",
            "drift of served inputs",
            ("traffic",),
            lambda ctx: {"traffic": ctx.output("traffic"), "model": DRIFT_MODEL},
            _drift,
        ),
        Step("importance", "permutation importance", ("train",), _importance_inputs, _importance),
        Step("report", "report", ("backtest", "abtest", "drift", "importance"), _report_inputs, _report),
    ]


def run_pipeline(
    settings: Settings,
    config: RunConfig | None = None,
    *,
    quick: bool = False,
    force: bool = False,
    steps: Sequence[str] = (),
    dry_run: bool = False,
    progress: bool = False,
    log: Callable[[str], None] = lambda _: None,
    on_step: Callable[[StepReport], None] = lambda _: None,
    executor: ExecutorConfig | None = None,
) -> RunResult:
    """Run the ten steps of ``config`` (default: ``configs/default.yaml``, or ``configs/quick.yaml`` with
    ``quick``); returns the summary. The resolved config is written to ``<results>/run_config.yaml`` before any
    step runs.

    Raises :class:`~finmlops.workflow.engine.StepFailed` naming the first failing step; the steps before it keep
    their outputs and records. ``steps``: names rerun even when their inputs are unchanged (``--step``; a
    ``ValueError`` names an unknown one); every other step runs or is skipped as usual. ``progress`` shows the
    walk-forward's progress bar on stderr. ``executor`` (``--executor``) replaces the config's ``executor`` and
    ``ray`` sections; it changes where the fits run, not the predictions, so it does not rerun the train step.
    """

    started = time.perf_counter()
    git_commit(Path(__file__).parent)  # the commit this run's code came from, before anything is committed meanwhile
    pipeline = build_steps()
    unknown = sorted(set(steps) - {s.name for s in pipeline})
    if unknown:
        raise ValueError(f"unknown step(s) {', '.join(unknown)}; the steps are {', '.join(s.name for s in pipeline)}")
    config = (config or shipped_config("quick" if quick else "default")).resolve()
    if config.steps is not None:
        pipeline = [s for s in pipeline if s.name in config.steps]
        for s in pipeline:
            missing = [a for a in s.after if a not in config.steps]
            if missing:
                raise ValueError(f"steps: {s.name} needs {', '.join(missing)}; add it to the run config's steps")
        unlisted = sorted(set(steps) - set(config.steps))
        if unlisted:
            raise ValueError(
                f"--step {', '.join(unlisted)}: not among the run config's steps ({', '.join(config.steps)})"
            )
    if executor is not None:
        config = config.model_copy(update={"executor": executor.kind, "ray": executor.ray})
    for difference in settings_differences(settings, config):
        log(f"note: the run config declares {difference.split(':')[0]}; it is used ({difference})")
    settings = run_settings(settings, config)
    if not dry_run:
        write_resolved(config, settings.results_dir)
    ctx = Context(settings, config, log)
    ctx.cache["progress"] = progress
    reports = run_steps(
        pipeline, ctx, RunState(settings.home), force=force, rerun=set(steps), dry_run=dry_run, on_step=on_step
    )
    report = ctx.outputs.get("report", {}).get("path")
    champions = {v: {k: e[k] for k in ("name", "champion", "decision", "detail")} for v, e in
                 ctx.outputs.get("register", {}).get("models", {}).items()}  # fmt: skip
    return RunResult(config, settings.home, reports, report, champions, time.perf_counter() - started)


__all__ = [
    "RunConfig",
    "RunResult",
    "StepFailed",
    "build_steps",
    "run_pipeline",
    "run_settings",
    "settings_differences",
]
