"""Typed results of the evaluation and the backtest: what ``evaluation.json`` and ``backtest.json`` hold.

``evaluate_predictions`` returns an :class:`Evaluation`, ``run_evaluation`` an :class:`EvaluationResult` (the same
with its provenance, its predictions file and the walk-forward's row report), ``run_backtest`` a :class:`Backtest`
and ``run_backtest_workspace`` a :class:`BacktestResult`. Each file is written with ``model_dump_json`` and read
back with ``model_validate`` by one reader, :func:`load_evaluation` and :func:`load_backtest`; the CLI, the workflow,
the tracking and the report use these models' attributes, never string keys.

Units: metrics and returns are fractions (0.52, not 52 %), Sharpe ratios are annualised unless named ``_daily``
(per period), costs are fractions of the capital. Undefined figures (an AUC of a constant forecast, a Sharpe of a
book that never trades) are NaN in memory and ``null`` in the files; :data:`Real` reads ``null`` back as NaN, so a
figure is always a float.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError, model_validator

from finmlops.features.target import LabelSpec
from finmlops.provenance import Real, Result, write_text_atomic
from finmlops.stats import Comparison
from finmlops.stats.bootstrap import PairedTest
from finmlops.stats.comparison import format_interval, format_number

EVALUATION_FILE = "evaluation.json"
BACKTEST_FILE = "backtest.json"


def defined(value: float | None) -> bool:
    """Whether ``value`` is a finite number (not None, NaN or infinite)."""
    return value is not None and math.isfinite(value)


class Estimate(Result):
    """A point estimate with its block-bootstrap interval (NaN where undefined)."""

    value: Real
    ci_low: Real
    ci_high: Real

    @property
    def defined(self) -> bool:
        return defined(self.value)

    def contains(self, x: float) -> bool:
        """Whether ``x`` lies inside the interval (False when the interval is undefined)."""
        return bool(self.ci_low <= x <= self.ci_high)

    def scaled(self, factor: float) -> Estimate:
        return Estimate(value=self.value * factor, ci_low=self.ci_low * factor, ci_high=self.ci_high * factor)


# --- evaluation.json -------------------------------------------------------------------------------------------


class Metrics(Result):
    """Every metric of ``finmlops.evaluation.metrics.METRICS`` with its interval; ``ic``/``rank_ic`` are means of
    the per-date series, ``icir``/``rank_icir`` mean / std (unannualised)."""

    accuracy: Estimate
    balanced_accuracy: Estimate
    roc_auc: Estimate
    log_loss: Estimate
    brier: Estimate
    f1: Estimate
    mcc: Estimate
    up_share: Estimate
    ic: Estimate
    rank_ic: Estimate
    icir: Estimate
    rank_icir: Estimate

    def values(self) -> dict[str, float]:
        """``{metric: point estimate}``, e.g. for MLflow."""
        return {name: getattr(self, name).value for name in type(self).model_fields if name != "n_rows"}


def pooled_header(level: float) -> list[str]:
    """The column names of :func:`pooled_cells`, with the CI ``level`` (0.95)."""
    return [f"accuracy [{level:.0%} CI]", "balanced acc.", f"ROC AUC [{level:.0%} CI]", "log loss", "Brier", "MCC",
            "up share", "IC [CI]", "rank IC", "ICIR"]  # fmt: skip


def pooled_cells(m: Metrics) -> list[str]:
    """One model's pooled metrics as the evaluation's tables print them (markdown and the report's HTML): the
    point estimates, accuracy, ROC AUC and IC with their intervals, a dash where undefined."""

    def with_ci(e: Estimate, undefined: str = "–") -> str:
        return format_interval(e.value, e.ci_low, e.ci_high) if e.defined else undefined

    return [
        with_ci(m.accuracy),
        format_number(m.balanced_accuracy.value, ".3f"),
        with_ci(m.roc_auc, undefined="n/a"),  # a forecast constant within every fold (majority) ranks nothing
        format_number(m.log_loss.value, ".4f"),
        format_number(m.brier.value, ".4f"),
        format_number(m.mcc.value, "+.3f"),
        format_number(m.up_share.value, ".2f"),
        with_ci(m.ic),
        format_number(m.rank_ic.value, "+.4f"),
        format_number(m.icir.value, "+.3f"),
    ]


class FoldMetrics(Metrics):
    """One test fold's metrics, and its row count."""

    n_rows: int


class McNemar(Result):
    """Exact McNemar test on paired correctness: discordant counts and the two-sided p (assumes independent rows)."""

    only_model_correct: int
    only_baseline_correct: int
    p_value: Real


class BaselineTest(PairedTest):
    """Accuracy of a model minus a baseline's on the same ``(date, ticker)`` rows: the paired block bootstrap's
    :class:`~finmlops.stats.bootstrap.PairedTest` (difference, CI, null-centred two-sided ``p_value`` and one-sided
    ``p_value_greater``, "model better"), and McNemar. Files written before the two were one model name the
    difference ``accuracy_diff`` and the two-sided p ``p_value_bootstrap``; they are read as well."""

    difference: Real
    ci_low: Real
    ci_high: Real
    p_value: Real
    p_value_greater: Real = float("nan")
    margin: float = 0.0
    n_rows: int = 0
    n_dates: int = 0
    n_boot: int = 0
    block_len: int = 0
    mcnemar: McNemar | None = None

    @model_validator(mode="before")
    @classmethod
    def _earlier_names(cls, data: Any) -> Any:
        if isinstance(data, dict) and "accuracy_diff" in data and "difference" not in data:
            data = {**data, "difference": data["accuracy_diff"], "p_value": data.get("p_value_bootstrap")}
        return data


class TickerMetrics(Result):
    """Point estimates on one ticker's rows; ``base_rate_up`` is its share of up labels."""

    n: int
    accuracy: Real
    roc_auc: Real
    up_share: Real
    base_rate_up: Real


class Calibration(Result):
    """Reliability bins: equal-width ``edges`` on [0, 1]; per non-empty bin its index, count, mean predicted P(up)
    and observed up share; the expected calibration error."""

    edges: list[float] = Field(default_factory=list)
    bin: list[int] = Field(default_factory=list)
    count: list[int] = Field(default_factory=list)
    mean_predicted: list[float] = Field(default_factory=list)
    observed_up: list[float] = Field(default_factory=list)
    ece: Real = float("nan")


class SignalMeasures(Result):
    """One model's signal measures (``finmlops.evaluation.signal``); ``ic``/``rank_ic`` are means of the daily
    series, ``n_ic_dates`` the dates with a defined IC. Each ``*_vs_*`` is a :class:`Comparison` (difference,
    two-sided p)."""

    ic: Estimate
    rank_ic: Estimate
    icir: Estimate
    rank_icir: Estimate
    icir_annualised: Estimate
    rank_icir_annualised: Estimate
    n_ic_dates: int
    ic_vs_zero: Comparison
    rank_ic_vs_zero: Comparison
    accuracy: Real
    accuracy_vs_half: Comparison
    icir_definition: str = "mean / std of the daily IC (sample std), unannualised as in Qlib; annualised x sqrt(252)"


class ModelEvaluation(Result):
    """One model's (or baseline's) walk-forward scores: pooled over all test folds and per fold, its paired tests
    against each baseline (keyed by baseline), its signal measures, per-ticker figures and calibration."""

    is_baseline: bool
    n_rows: int
    n_dates: int = 0
    pooled: Metrics
    signal: SignalMeasures | None = None
    folds: dict[str, FoldMetrics]
    vs_baselines: dict[str, BaselineTest] = Field(default_factory=dict)
    per_ticker: dict[str, TickerMetrics] = Field(default_factory=dict)
    calibration: Calibration | None = None


class BootstrapSettings(Result):
    """The block bootstrap behind every interval and test: resamples, block length (days), seed, CI level."""

    n_boot: int
    block_len: int
    seed: int
    level: float


class Evaluation(Result):
    """:func:`~finmlops.evaluation.metrics.evaluate_predictions`'s result: every model in the predictions frame's
    order, and which of them are the baselines the paired tests compare with."""

    bootstrap: BootstrapSettings
    baselines: list[str] = Field(default_factory=list)
    models: dict[str, ModelEvaluation]

    @property
    def deep_models(self) -> list[str]:
        return [name for name, m in self.models.items() if not m.is_baseline]


class Provenance(Result):
    """The ``provenance`` block of ``finmlops.provenance.stamp``: data hash, the run's config, seed, code and
    software versions, when and where."""

    data_hash: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = None
    git_commit: str | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    created_at: str | None = None
    host: str | None = None


class FileRef(Result):
    """A file written beside the result, by name, with its SHA-256."""

    file: str
    sha256: str


class FitTime(Result):
    """The wall-clock seconds of one walk-forward fit (varies between identical runs)."""

    fold: str
    model: str | None = None
    seconds: float


class FoldRows(Result):
    """One fold of the walk-forward's row report: the ``rows`` every model scored, the rows each model lost to
    that intersection, and why."""

    fold: str
    rows: int
    dropped: dict[str, int] = Field(default_factory=dict)
    reason: str = ""


class WalkForwardReport(Result):
    """The walk-forward's ``row_report`` (per fold) and the fit times."""

    row_report: list[FoldRows] = Field(default_factory=list)
    fit_seconds: list[FitTime] = Field(default_factory=list)


class EvaluationResult(Evaluation):
    """``evaluation.json``: the :class:`Evaluation` with its provenance, the predictions file it scored (SHA-256)
    and the walk-forward's report."""

    provenance: Provenance
    predictions: FileRef | None = None
    walk_forward: WalkForwardReport = Field(default_factory=WalkForwardReport)

    @property
    def label(self) -> LabelSpec:
        """The label the predictions were made with (files written before it was recorded: the default)."""
        return LabelSpec.model_validate(self.provenance.config.get("label") or {})


# --- backtest.json ---------------------------------------------------------------------------------------------


class Performance(Result):
    """``finmlops.evaluation.backtest.performance`` of one daily path: a period is a trading day at horizon 1;
    ``annual_*`` and ``sharpe``/``sortino`` are annualised, ``sharpe_daily`` is per period (the DSR's), returns and
    ``max_drawdown`` (negative) are fractions, ``turnover_*`` units of capital traded, ``costs_paid`` in units of
    the starting capital."""

    days: int
    total_return: Real
    annual_return: Real
    annual_volatility: Real
    sharpe: Real
    sharpe_daily: Real = float("nan")
    sortino: Real
    max_drawdown: Real
    turnover_daily: Real = float("nan")
    turnover_annual: Real
    costs_total: Real = float("nan")
    costs_paid: Real = float("nan")
    hit_rate: Real
    exposure: Real
    skew: Real = float("nan")
    kurtosis: Real = float("nan")


class BookPerformance(Performance):
    """One model x strategy book, net of costs, with the same path before costs, a note (flat days, forced
    sales) and its deflated Sharpe ratio over every configuration tried."""

    before_costs: Performance | None = None
    note: str = ""
    deflated_sharpe: Real = float("nan")


class TopkDropoutSettings(Result):
    topk: int
    n_drop: int
    open_cost: float
    close_cost: float
    risk_degree: float


class BacktestSettings(Result):
    """The backtest's configuration as run (``BacktestConfig`` with the label's execution and the periods a
    year)."""

    strategies: list[str]
    cost_bps: float
    slippage_bps: float
    execution: str | None = None
    top_k: int
    capital: float = 100_000.0
    fk_k: int = 10
    topk_dropout: TopkDropoutSettings | None = None
    label: LabelSpec | None = None
    periods_per_year: float = 252.0


class Trials(Result):
    """The deflated Sharpe ratio's trial count: this run's books, earlier configurations on the same predictions
    (``prior``, which includes the ``tuning`` trials) and their ``total``, the variance of their per-period Sharpe
    ratios and the best per-period Sharpe expected by luck among ``total`` unskilled tries."""

    this_run: int
    prior: int
    total: int
    sharpe_daily_variance: Real = float("nan")
    expected_max_sharpe_daily: Real
    tuning: int = 0


class BookMoney(Result):
    """One book in money: end value of the capital, profit against buy-and-hold, costs paid, DSR above 0.95."""

    end_value: Real
    excess_vs_buy_hold: Real = float("nan")
    costs_paid: Real = float("nan")
    dsr_above_0_95: bool = False


class Assumptions(Result):
    """What the money figures rest on."""

    cost_bps_per_unit_turnover: float
    slippage_bps_per_unit_turnover: float
    execution: str
    timing: str
    top_k: int
    trading_days: int
    risk_free_rate: float = 0.0
    rebalancing: str = ""
    not_modelled: list[str] = Field(default_factory=list)


class Business(Result):
    """Money terms of every book (keyed ``model/strategy``) from the backtest alone, with their assumptions."""

    capital: float
    buy_hold_end_value: Real
    assumptions: Assumptions | None = None
    by_config: dict[str, BookMoney] = Field(default_factory=dict)


class Backtest(Result):
    """:func:`~finmlops.evaluation.backtest.run_backtest`'s result: the equal-weight benchmark, every model x
    strategy book (``results[model][strategy]``), the strategies skipped and why, the trials and the money terms."""

    config: BacktestSettings
    benchmark: Performance
    results: dict[str, dict[str, BookPerformance]]
    skipped: dict[str, str] = Field(default_factory=dict)
    trials: Trials
    business: Business

    def books(self) -> list[tuple[str, str, BookPerformance]]:
        """Every ``(model, strategy, performance)`` in the file's order."""
        return [(m, s, p) for m, by_s in self.results.items() for s, p in by_s.items()]


class BacktestResult(Backtest):
    """``backtest.json``: the :class:`Backtest` with its provenance (its config names the predictions' SHA-256),
    the label's timing in words and the saved daily paths (``backtest_paths.parquet``, by SHA-256)."""

    provenance: Provenance
    timing: str = ""
    paths: FileRef | None = None

    @property
    def predictions_sha256(self) -> str | None:
        sha = self.provenance.config.get("predictions_sha256")
        return None if sha is None else str(sha)


# --- reading and writing ---------------------------------------------------------------------------------------


class ResultFileError(ValueError):
    """A result file exists but does not follow its model; the message names the file and the first bad field."""


R = TypeVar("R", bound=BaseModel)


def write_result(path: Path, result: BaseModel, exclude: set[str] | None = None) -> Path:
    """Write ``result`` as indented JSON (``model_dump_json``; NaN as null, the fields ``exclude`` left out)
    atomically to ``path``."""
    return write_text_atomic(path, result.model_dump_json(indent=2, exclude=exclude) + "\n")


def read_result(path: Path, model: type[R]) -> R:
    """``path`` validated as ``model``. ``FileNotFoundError`` when it is absent; :class:`ResultFileError` naming the
    file and the first field that does not follow the schema (or the JSON error) otherwise."""
    text = path.read_text()
    try:
        return model.model_validate(json.loads(text))
    except json.JSONDecodeError as exc:
        raise ResultFileError(f"{path}: not valid JSON ({exc})") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the top level"
        raise ResultFileError(
            f"{path}: does not follow its schema ({where}: {first['msg']}); rerun the command that writes it"
        ) from exc


def load_evaluation(results_dir: Path) -> EvaluationResult:
    """``results_dir/evaluation.json``; a ``FileNotFoundError`` naming the command that writes it when absent."""
    path = results_dir / EVALUATION_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no evaluation; run `finmlops evaluate` first")
    return read_result(path, EvaluationResult)


def load_backtest(results_dir: Path) -> BacktestResult:
    """``results_dir/backtest.json``; a ``FileNotFoundError`` naming the command that writes it when absent."""
    path = results_dir / BACKTEST_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no backtest; run `finmlops backtest` first")
    return read_result(path, BacktestResult)
