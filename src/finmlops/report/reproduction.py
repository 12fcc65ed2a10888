"""A reproduction page beside the papers: Fischer & Krauss (2018) and Krauss, Do & Huck (2017) on this run's data.

``finmlops reproduce fischer-krauss --results <home>/results --out docs/reproductions/fischer-krauss.md`` reads a
finished run's own files and fits nothing:

- ``predictions.parquet``: the walk-forward predictions (``date, ticker, fold, model, prob_up, y_true, ret_next``),
  ``ret_next`` the label's traded return;
- ``evaluation.json``: its provenance (data hash, git commit, versions, the label) and the predictions' SHA-256;
- ``run_config.yaml``: the resolved run config; ``backtest.json`` when present (its ``fk_long_short`` books).

Per model and per period (default 2001-2009 and 2010-2021, each cut to the dates the predictions cover) it computes
F&K's daily long top-k / short bottom-k book (``finmlops.evaluation.strategies.fk_weights`` through
``finmlops.evaluation.backtest.book_path``: 1 dollar long, 1 dollar short, k = 10, 5 bps per half-turn): the mean
daily return and the annualised Sharpe ratio before and after costs, each with a circular block-bootstrap CI over
dates, the long and short legs' mean daily returns before costs, and the signal measures of
``finmlops.evaluation.signal`` (mean IC, Rank IC, ICIR) on the same dates, plus accuracy against 0.5 when the run's
label is the balanced ``cross_sectional`` one. Units: returns are fractions per trading day (the page prints
percent), Sharpe is annualised with 252 / horizon periods a year, risk-free rate 0.

Wording: a book has an *edge* in a period only when its mean daily return's CI lies above 0 and the two-sided
null-centred bootstrap p-value is below 0.05; a CI that includes 0 is "no edge measured", never an edge.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel

from finmlops import __version__
from finmlops.evaluation import results
from finmlops.evaluation.backtest import PERIODS_PER_YEAR, BacktestConfig, before_costs, book_path, priced_rows
from finmlops.evaluation.metrics import prepare
from finmlops.evaluation.signal import SignalMeasures, signal_measures
from finmlops.evaluation.strategies import FK_STRATEGY, StrategySkipped, fk_weights
from finmlops.evaluation.workspace import load_predictions
from finmlops.provenance import file_sha256, git_commit, write_text_atomic
from finmlops.stats.bootstrap import BootstrapConfig, interval, paired_test
from finmlops.stats.comparison import format_interval, format_number

PAPERS = ("fischer-krauss",)
PAPER_MODELS: tuple[str, ...] = ("fk_lstm", "kdh_dnn", "kdh_gbt", "kdh_rf", "kdh_ensemble")
NOT_IN_RUN = "not in this run"
K = 10
COST_BPS = 5.0
ALPHA = 0.05


class ReproductionError(ValueError):
    """The results folder lacks a file the page needs, or a period is malformed; the message names it."""


@dataclass(frozen=True)
class Period:
    """Calendar years ``first`` to ``last``, both included, of decision dates t."""

    first: int
    last: int

    @property
    def name(self) -> str:
        return f"{self.first}-{self.last}"


DEFAULT_PERIODS: tuple[Period, ...] = (Period(2001, 2009), Period(2010, 2021))


def parse_period(text: str) -> Period:
    """``"2001-2009"`` -> ``Period(2001, 2009)``; anything else is a :class:`ReproductionError`."""
    match = re.fullmatch(r"\s*(\d{4})\s*-\s*(\d{4})\s*", text)
    if not match or int(match[1]) > int(match[2]):
        raise ReproductionError(f"period {text!r}: expected FIRST-LAST years, e.g. 2001-2009, first <= last")
    return Period(int(match[1]), int(match[2]))


# --- the run's files ----------------------------------------------------------------------------------------------


class RunRecord(BaseModel):
    """What the page reads of a run besides its predictions: where it came from, and how it was scored."""

    results_dir: str
    data_hash: str | None
    git_commit: str | None
    finmlops_version: str | None
    evaluated_at: str | None
    predictions_sha256_recorded: str | None
    label: dict[str, Any]
    bootstrap: dict[str, Any]
    run_config: dict[str, Any] | None
    run_config_text: str | None
    run_config_sha256: str | None
    backtest_fk: dict[str, dict[str, Any]]  # model -> backtest.json's fk_long_short entry (whole test span)
    backtest_strategies: list[str] | None


def read_if_written(path: Path) -> dict[str, Any] | None:
    """One result JSON of the run (``evaluation.json``, ``backtest.json``) as a dict, None when absent. The one
    place these files are read: swap in the typed readers (``load_evaluation``) here."""
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReproductionError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from None


def read_run(results_dir: Path) -> RunRecord:
    """The :class:`RunRecord` of ``results_dir``; a missing ``evaluation.json`` is a :class:`ReproductionError`."""
    evaluation = read_if_written(results_dir / "evaluation.json")
    if evaluation is None:
        raise ReproductionError(f"{results_dir / 'evaluation.json'}: missing; run `finmlops run` (or evaluate) first")
    backtest = read_if_written(results_dir / "backtest.json") or {}
    prov = evaluation.get("provenance", {})
    config_path = results_dir / "run_config.yaml"
    config_text = config_path.read_text() if config_path.exists() else None
    try:
        run_config = yaml.safe_load(config_text) if config_text else None
    except yaml.YAMLError as exc:
        raise ReproductionError(f"{config_path}: not valid YAML ({exc})".replace("\n", " ")) from None
    label = (run_config or {}).get("label") or prov.get("config", {}).get("label") or {}
    fk = {m: by_s[FK_STRATEGY] for m, by_s in backtest.get("results", {}).items() if FK_STRATEGY in by_s}
    return RunRecord(
        results_dir=str(results_dir),
        data_hash=prov.get("data_hash"),
        git_commit=prov.get("git_commit"),
        finmlops_version=prov.get("versions", {}).get("finmlops"),
        evaluated_at=prov.get("created_at"),
        predictions_sha256_recorded=evaluation.get("predictions", {}).get("sha256"),
        label={"kind": "direction", "horizon": 1, **label},
        bootstrap=evaluation.get("bootstrap", {}),
        run_config=run_config,
        run_config_text=config_text,
        run_config_sha256=file_sha256(config_path) if config_path.exists() else None,
        backtest_fk=fk,
        backtest_strategies=backtest.get("config", {}).get("strategies") if backtest else None,
    )


# --- the measures -------------------------------------------------------------------------------------------------


class Estimate(BaseModel):
    """A point estimate and its block-bootstrap CI; ``p_value`` (two-sided, H0: 0) where a test applies."""

    value: float
    ci_low: float
    ci_high: float
    p_value: float | None = None


Verdict = Literal["edge", "loss", "no edge measured", "undefined"]


def verdict(mean: Estimate, alpha: float = ALPHA) -> Verdict:
    """``edge`` only when the CI lies above 0 and p < ``alpha``; ``loss`` when it lies below 0 and p < ``alpha``;
    otherwise (the CI includes 0, or the test does not reject) ``no edge measured``."""
    values = (mean.value, mean.ci_low, mean.ci_high, mean.p_value)
    if any(v is None or not math.isfinite(v) for v in values):
        return "undefined"
    assert mean.p_value is not None
    if mean.ci_low > 0 and mean.p_value < alpha:
        return "edge"
    if mean.ci_high < 0 and mean.p_value < alpha:
        return "loss"
    return "no edge measured"


class Book(BaseModel):
    """One F&K book over a period's dates: the mean daily return and annualised Sharpe, fractions per day."""

    mean_daily: Estimate
    sharpe: Estimate
    verdict: Verdict


class Cell(BaseModel):
    """One model x period. ``status`` is ``ok`` or why there are no figures (``not in this run: ...``)."""

    model: str
    period: str
    status: str
    first_date: str | None = None
    last_date: str | None = None
    n_dates: int = 0
    tickers_min: int = 0
    tickers_max: int = 0
    flat_days: int = 0
    constant_days: int = 0  # dates on which every ticker has the same score (the book takes them in ticker order)
    turnover_daily: float | None = None
    before: Book | None = None
    after: Book | None = None
    long_leg: Estimate | None = None
    short_leg: Estimate | None = None
    signal: SignalMeasures | None = None
    accuracy: Estimate | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class Reproduction(BaseModel):
    paper: str
    k: int
    cost_bps: float
    periods: list[str]
    models: list[str]
    cells: list[Cell]
    run: RunRecord
    predictions_sha256: str
    covered: tuple[str, str]
    n_tickers: int
    boot: dict[str, Any]
    n_tests: int

    def cell(self, model: str, period: str) -> Cell:
        return next(c for c in self.cells if c.model == model and c.period == period)


def mean_estimate(x: np.ndarray, boot: BootstrapConfig) -> Estimate:
    """Mean of a daily series ``[n]`` with its block-bootstrap CI and null-centred two-sided p of mean = 0."""
    test = paired_test(x, np.arange(len(x)), boot)
    return Estimate(value=test.difference, ci_low=test.ci_low, ci_high=test.ci_high, p_value=test.p_value)


def sharpe_estimate(x: np.ndarray, boot: BootstrapConfig, periods: float) -> Estimate:
    """Annualised Sharpe ratio mean / std (ddof 1) x sqrt(``periods``) of ``x`` ``[n]``, CI from the same date
    resamples (each resample's weighted mean and frequency-weighted sample variance)."""
    n = len(x)
    root = math.sqrt(periods)
    std = float(np.std(x, ddof=1)) if n > 1 else float("nan")
    point = float(np.mean(x)) / std * root if std > 0 else float("nan")
    w = boot.weights(n)
    mean = w @ x / n
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (w @ (x * x) - n * mean**2) / (n - 1)
        draws = mean / np.sqrt(np.where(var > 0, var, np.nan)) * root
    lo, hi = interval(draws, point, boot)
    return Estimate(value=point, ci_low=lo, ci_high=hi)


def _book(x: np.ndarray, boot: BootstrapConfig, periods: float) -> Book:
    mean = mean_estimate(x, boot)
    return Book(mean_daily=mean, sharpe=sharpe_estimate(x, boot, periods), verdict=verdict(mean))


def _ic_pooled(ic: np.ndarray, boot: BootstrapConfig) -> dict[str, results.Estimate]:
    """Mean and ICIR (mean / sample std) of a daily IC series with block-bootstrap CIs, the fields of the pooled
    metrics that :func:`finmlops.evaluation.signal.signal_measures` reads. Computed on the IC series alone (not on every
    metric of every row), so that a universe of 400 tickers over 20 years stays cheap."""
    ok = np.isfinite(ic)
    x = ic[ok]
    nan = results.Estimate(value=float("nan"), ci_low=float("nan"), ci_high=float("nan"))
    if x.size < 3:
        return {"mean": nan, "ir": nan}
    n = x.size
    w = boot.weights(n)
    mean = w @ x / n
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (w @ (x * x) - n * mean**2) / (n - 1)
        ir = mean / np.sqrt(np.where(var > 0, var, np.nan))
    point_mean = float(x.mean())
    std = float(x.std(ddof=1))
    point_ir = point_mean / std if std > 0 else float("nan")
    out = {}
    for name, point, draws in (("mean", point_mean, mean), ("ir", point_ir, ir)):
        lo, hi = interval(draws, point, boot)
        out[name] = results.Estimate(value=point, ci_low=lo, ci_high=hi)
    return out


def _signal(rows: pd.DataFrame, boot: BootstrapConfig, balanced: bool) -> tuple[SignalMeasures, Estimate | None]:
    """Signal measures of one model's period rows and, on the balanced label, accuracy [CI] (prob_up > 0.5)."""
    p = prepare(rows)
    ic, rank_ic = _ic_pooled(p.ic, boot), _ic_pooled(p.rank_ic, boot)
    pooled = SimpleNamespace(ic=ic["mean"], icir=ic["ir"], rank_ic=rank_ic["mean"], rank_icir=rank_ic["ir"])
    correct = ((p.prob > 0.5) == (p.y == 1)).astype(float)
    measures = signal_measures(pooled, p.ic, p.rank_ic, correct, p.date_idx, boot)
    if not balanced:
        return measures, None
    test = paired_test(correct - 0.5, p.date_idx, boot)
    accuracy = Estimate(
        value=test.difference + 0.5, ci_low=test.ci_low + 0.5, ci_high=test.ci_high + 0.5, p_value=test.p_value
    )
    return measures, accuracy


def _cell(
    model: str, period: Period, rows: pd.DataFrame, *, k: int, cost_bps: float, horizon: int, balanced: bool,
    boot: BootstrapConfig,
) -> Cell:  # fmt: skip
    """One model's figures over one period (``rows``: its predictions on the period's dates)."""
    if rows.empty:
        return Cell(model=model, period=period.name, status=f"{NOT_IN_RUN}: no predictions in {period.name}")
    rows, earned = priced_rows(rows, horizon)
    counts = rows.groupby("date")["ticker"].size()
    constant = int((rows.groupby("date")["prob_up"].nunique() <= 1).sum())
    if constant == len(counts):
        # fk_weights would break the ties by ticker order: a book of the alphabet, not of the model.
        return Cell(
            model=model, period=period.name, status="no book: the score is constant on every date (nothing to rank)"
        )
    try:
        daily = book_path(rows, earned, FK_STRATEGY, BacktestConfig(cost_bps=cost_bps, fk_k=k))
        weights, flat = fk_weights(rows, k)
    except StrategySkipped:
        return Cell(
            model=model, period=period.name,
            status=f"{NOT_IN_RUN}: k = {k} needs {2 * k} tickers a date, this run has at most {int(counts.max())}",
        )  # fmt: skip
    periods = PERIODS_PER_YEAR / horizon
    ret = earned.reindex_like(weights).fillna(0.0)
    long_leg = (weights.clip(lower=0.0) * ret).sum(axis=1).to_numpy()
    short_leg = (weights.clip(upper=0.0) * ret).sum(axis=1).to_numpy()
    signal, accuracy = _signal(rows, boot, balanced)
    return Cell(
        model=model,
        period=period.name,
        status="ok",
        first_date=f"{daily.index[0]:%Y-%m-%d}",
        last_date=f"{daily.index[-1]:%Y-%m-%d}",
        n_dates=len(daily),
        tickers_min=int(counts.min()),
        tickers_max=int(counts.max()),
        flat_days=flat,
        constant_days=constant,
        turnover_daily=float(daily["turnover"].mean()),
        before=_book(before_costs(daily)["net"].to_numpy(dtype=float), boot, periods),
        after=_book(daily["net"].to_numpy(dtype=float), boot, periods),
        long_leg=mean_estimate(long_leg, boot),
        short_leg=mean_estimate(short_leg, boot),
        signal=signal,
        accuracy=accuracy,
    )


def reproduce_fischer_krauss(
    results_dir: Path,
    *,
    periods: Sequence[Period] = DEFAULT_PERIODS,
    models: Sequence[str] | None = None,
    k: int = K,
    cost_bps: float = COST_BPS,
    boot: BootstrapConfig | None = None,
) -> Reproduction:
    """Every model x period of the run in ``results_dir`` (module docstring). ``models`` None: the papers' models
    (:data:`PAPER_MODELS`, each "not in this run" when absent) and then every other model of the run. ``boot``
    None: the run's own bootstrap settings from ``evaluation.json``."""
    results_dir = Path(results_dir)
    run = read_run(results_dir)
    try:
        preds, sha = load_predictions(results_dir)
    except FileNotFoundError as exc:
        raise ReproductionError(str(exc)) from None
    if boot is None:
        b = run.bootstrap
        boot = BootstrapConfig(
            n_boot=int(b.get("n_boot", 1000)), block_len=int(b.get("block_len", 10)), seed=int(b.get("seed", 42)),
            level=float(b.get("level", 0.95)),
        )  # fmt: skip
    present = list(dict.fromkeys(preds["model"]))
    if models is None:
        models = [*PAPER_MODELS, *(m for m in present if m not in PAPER_MODELS)]
    horizon = int(run.label.get("horizon", 1))
    balanced = run.label.get("kind") == "cross_sectional"
    years = preds["date"].dt.year
    cells = []
    for model in models:
        for period in periods:
            if model not in present:
                cells.append(Cell(model=model, period=period.name, status=NOT_IN_RUN))
                continue
            mask = (preds["model"] == model) & years.between(period.first, period.last)
            cells.append(
                _cell(model, period, preds.loc[mask], k=k, cost_bps=cost_bps, horizon=horizon, balanced=balanced,
                      boot=boot)
            )  # fmt: skip
    return Reproduction(
        paper="fischer-krauss",
        k=k,
        cost_bps=cost_bps,
        periods=[p.name for p in periods],
        models=list(models),
        cells=cells,
        run=run,
        predictions_sha256=sha,
        covered=(f"{preds['date'].min():%Y-%m-%d}", f"{preds['date'].max():%Y-%m-%d}"),
        n_tickers=int(preds["ticker"].nunique()),
        boot={"n_boot": boot.n_boot, "block_len": boot.block_len, "seed": boot.seed, "level": boot.level},
        n_tests=sum(c.ok for c in cells),
    )


# --- the page -----------------------------------------------------------------------------------------------------


def pct(x: float | None, digits: int = 3) -> str:
    """A daily fraction as signed percent: 0.0046 -> ``+0.460%``; a dash when undefined."""
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:+.{digits}f}%"


def num(x: float | None, digits: int = 2) -> str:
    return format_number(x, f"+.{digits}f")


def p_text(p: float | None) -> str:
    return "–" if p is None else (f"p < {0.001:.3f}" if p < 0.001 else f"p = {p:.3f}")


def ci_pct(e: Estimate | None) -> str:
    return "–" if e is None else f"{pct(e.value)} [{pct(e.ci_low)}, {pct(e.ci_high)}]"


def ci_num(e: Estimate | None, digits: int = 2) -> str:
    return "–" if e is None else format_interval(e.value, e.ci_low, e.ci_high, f"+.{digits}f")


def _listed(cells: Sequence[Cell], which: Literal["before", "after"]) -> str:
    """``model in period, mean [CI] (p)`` of each cell's ``which`` book, joined by semicolons."""
    books = [(c, getattr(c, which)) for c in cells]
    return "; ".join(
        f"{c.model} in {c.period}, {ci_pct(b.mean_daily)} ({p_text(b.mean_daily.p_value)})" for c, b in books
    )


def _borderline(book: Book | None) -> bool:
    """A mean whose CI excludes 0 but whose test does not reject (or the reverse): not counted as an edge."""
    if book is None or book.verdict in ("edge", "loss", "undefined"):
        return False
    return book.mean_daily.ci_low > 0 or book.mean_daily.ci_high < 0


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _headline(rep: Reproduction, level: str) -> list[str]:
    """The answer to "does any edge survive costs?", from the verdicts alone."""
    ok = [c for c in rep.cells if c.ok]
    if not ok:
        return ["**Not measurable from this run**: no model x period has a book (the tables say why)."]
    edges = [c for c in ok if c.after and c.after.verdict == "edge"]
    gross = [c for c in ok if c.before and c.before.verdict == "edge"]
    rule = f"a {level} CI above 0 and p < {ALPHA:g}"
    if edges:
        text = (
            f"**Yes, in {len(edges)} of {len(ok)} model x period books** ({rule}), after costs: "
            f"{_listed(edges, 'after')}. With {len(ok)} books tried, compare p with {ALPHA:g} / {len(ok)} = "
            f"{ALPHA / len(ok):.4f} (Bonferroni) before reading one as more than luck."
        )
    else:
        text = f"**No.** None of the {len(ok)} model x period books has an edge after costs ({rule})."
    if gross:
        strict = [c for c in gross if c.before and (c.before.mean_daily.p_value or 1.0) * len(ok) < ALPHA]
        names = ", ".join(f"{c.model} in {c.period}" for c in strict)
        survive = f"{_count(len(strict), 'survives', 'survive')} ({names})" if strict else "none survives"
        text += (
            f" Before costs, edges in: {_listed(gross, 'before')}; {survive} a Bonferroni correction over the "
            f"{len(ok)} books (p < {ALPHA / len(ok):.4f})."
        )
    else:
        text += " Before costs, none has an edge either."
    for which in ("before", "after"):
        border = [c for c in ok if _borderline(getattr(c, which))]
        if border:
            text += (
                f" Not counted, as the interval excludes 0 but the test does not reject ({which} costs): "
                f"{_listed(border, which)}."
            )
    return [text]


def _in_words(book: Book, costs: str, n_tests: int) -> str:
    m = book.mean_daily
    if book.verdict == "edge":
        assert m.p_value is not None
        strict = m.p_value * n_tests < ALPHA
        more = (
            f"also after a Bonferroni correction over the page's {n_tests} model x period cells"
            if strict
            else f"not after a Bonferroni correction over the page's {n_tests} model x period cells"
        )
        return f"edge {costs}: mean daily return above 0 ({p_text(m.p_value)}; {more})"
    if book.verdict == "loss":
        return f"loses {costs}: mean daily return below 0 ({p_text(m.p_value)})"
    if book.verdict == "no edge measured" and _borderline(book):
        return f"no edge measured {costs}: the CI excludes 0 but the test does not reject ({p_text(m.p_value)})"
    if book.verdict == "no edge measured":
        return f"no edge measured {costs}: the CI of the mean daily return includes 0 ({p_text(m.p_value)})"
    return f"undefined {costs}"


def _provenance(rep: Reproduction) -> list[str]:
    run = rep.run
    cfg = run.run_config or {}
    universe = cfg.get("universe", {})
    match = (
        "matches"
        if run.predictions_sha256_recorded == rep.predictions_sha256
        else f"DIFFERS from the {run.predictions_sha256_recorded} that evaluation.json records"
    )
    lines = [
        "## Where these numbers come from",
        "",
        f"- Results folder: `{run.results_dir}` (predictions, `evaluation.json`, `run_config.yaml`"
        f"{', `backtest.json`' if run.backtest_strategies is not None else ''}); nothing is refitted.",
        f"- Run config: `run_config.yaml`, SHA-256 `{run.run_config_sha256 or 'absent: no run_config.yaml'}`"
        + (
            f"; name `{cfg.get('name')}`, universe `{universe.get('source')}` "
            f"({len(universe.get('tickers') or [])} tickers, {universe.get('start')} to {universe.get('end')}), "
            f"test years {', '.join(str(y) for y in cfg.get('test_years', []))}, seed {cfg.get('seed')}, "
            f"epochs {cfg.get('epochs')}, models {', '.join(v['name'] for v in cfg.get('variants', []))} and "
            f"baselines {', '.join(cfg.get('baselines', []))}."
            if cfg
            else "."
        ),
        f"- Label: `{json.dumps(run.label, sort_keys=True)}`.",
        f"- Data hash (the store's version): `{run.data_hash}`.",
        f"- Code version that made the predictions: git `{run.git_commit}`, finmlops {run.finmlops_version}, "
        f"evaluated {run.evaluated_at}.",
        f"- Predictions: SHA-256 `{rep.predictions_sha256}` ({match}); {rep.n_tickers} tickers, decision dates "
        f"{rep.covered[0]} to {rep.covered[1]}.",
        f"- Page generated by finmlops {__version__} at git `{git_commit(Path(__file__).parent)}` with "
        f"`finmlops reproduce fischer-krauss --results {run.results_dir}` (k = {rep.k}, {rep.cost_bps:g} bps per "
        f"half-turn, {rep.boot['n_boot']} block-bootstrap resamples of {rep.boot['block_len']}-day blocks, seed "
        f"{rep.boot['seed']}, {100 * rep.boot['level']:g}% intervals).",
        "",
    ]
    if run.run_config_text:
        lines += [
            "<details><summary>The run's resolved config (run_config.yaml; `finmlops run --config` on it reruns the "
            "run)</summary>",
            "",
            "```yaml",
            run.run_config_text.rstrip("\n"),
            "```",
            "",
            "</details>",
            "",
        ]
    return lines


def render_markdown(rep: Reproduction) -> str:
    """The reproduction page (Markdown) of :func:`reproduce_fischer_krauss`'s result."""
    level = f"{100 * rep.boot['level']:g}%"
    out = [
        "# Fischer & Krauss (2018), side by side with this run",
        "",
        "<!-- Generated by `finmlops reproduce fischer-krauss`; do not edit by hand, rerun it. -->",
        "",
        f"The papers' daily long-short book on this run's walk-forward predictions: each trading day, long the {rep.k} "
        f"stocks with the highest score and short the {rep.k} with the lowest, 1 dollar each side, equal weights, "
        f"rebalanced daily, {rep.cost_bps:g} bps per half-turn (a full rotation of both legs is 4 half-turns, "
        f"{4 * rep.cost_bps:g} bps a day). Every figure is measured from the run's saved files; brackets are "
        f"{level} circular block-bootstrap intervals over dates; p is the two-sided bootstrap p-value of a zero mean.",
        "",
        "## Does any edge survive costs?",
        "",
    ]
    out += _headline(rep, level)
    missing = [m for m in PAPER_MODELS if not any(c.model == m and c.ok for c in rep.cells)]
    if missing:
        out.append(
            f"\nThe papers' models {', '.join(missing)} have no book in this run (the tables say why), so it does "
            "not test them; the verdict covers the models it has."
        )
    out += [
        "",
        "## The papers' published figures",
        "",
        "| source | model | period | k | costs | mean daily return | Sharpe (annualised) |",
        "|---|---|---|---|---|---|---|",
        "| Fischer & Krauss (2018) | LSTM | 1992-2009 | 10 | before | 0.46% | 5.8 |",
        '| Fischer & Krauss (2018) | LSTM | 2010 on | 10 | after | "fluctuating around zero after transaction '
        'costs" | – |',
        "| Krauss, Do & Huck (2017) | ensemble (DNN, GBT, RF) | their out-of-sample span from 1992 | 10 | before | "
        "above 0.45% | – |",
        "",
        "Both papers trade the S&P 500's constituents month by month (no survivorship bias), from 1992; this run "
        f"trades a fixed list of today's survivors from {rep.covered[0]} (next section).",
        "",
        "## This run",
        "",
        f"| model | period | dates | tickers a day | before costs: mean daily [CI] | Sharpe [CI] | after "
        f"{rep.cost_bps:g} bps: mean daily [CI] | Sharpe [CI] | after costs, in words |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in rep.cells:
        if not c.ok:
            out.append(f"| {c.model} | {c.period} | {c.status} | | | | | | |")
            continue
        assert c.before and c.after
        out.append(
            f"| {c.model} | {c.period} | {c.first_date} to {c.last_date} ({c.n_dates}) | {c.tickers_min}-"
            f"{c.tickers_max} | {ci_pct(c.before.mean_daily)} | {ci_num(c.before.sharpe)} | "
            f"{ci_pct(c.after.mean_daily)} | {ci_num(c.after.sharpe)} | "
            f"{_in_words(c.after, 'after costs', rep.n_tests)} |"
        )
    out += [
        "",
        "A period is cut to the dates the predictions cover (the `dates` column); a model or period without "
        "predictions says so.",
        "",
        "### Legs, turnover and the signal",
        "",
        "| model | period | long leg, mean daily [CI] | short leg, mean daily [CI] | turnover a day | flat days | "
        "mean IC [CI] | mean Rank IC [CI] | ICIR | Rank ICIR | IC vs 0 | accuracy vs 0.5 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in rep.cells:
        if not c.ok:
            out.append(f"| {c.model} | {c.period} | {c.status} | | | | | | | | | |")
            continue
        s = c.signal
        assert s is not None
        acc = (
            f"{c.accuracy.value:.4f} [{c.accuracy.ci_low:.4f}, {c.accuracy.ci_high:.4f}]: {s.accuracy_vs_half.sentence}"
            if c.accuracy
            else f"{NOT_IN_RUN}: the label is `{rep.run.label.get('kind')}`, not the balanced `cross_sectional`"
        )
        tied = f" (+{c.constant_days} with a constant score)" if c.constant_days else ""
        out.append(
            f"| {c.model} | {c.period} | {ci_pct(c.long_leg)} | {ci_pct(c.short_leg)} | {c.turnover_daily:.2f} | "
            f"{c.flat_days}{tied} | {ci_num(Estimate(**s.ic.model_dump()), 4)} | "
            f"{ci_num(Estimate(**s.rank_ic.model_dump()), 4)} | {num(s.icir.value, 3)} | "
            f"{num(s.rank_icir.value, 3)} | {s.ic_vs_zero.sentence} | {acc} |"
        )
    out += [
        "",
        "The long leg is the mean return of the longs, the short leg minus the mean return of the shorts (both "
        "before costs; they add up to the book's gross return). Turnover is in units of capital a day (4 = both "
        f"legs fully rotated). Flat days had fewer than {2 * rep.k} scored tickers. IC and Rank IC are the daily "
        "Pearson and Spearman correlations of the score with the traded return (`finmlops.evaluation.signal`), "
        "ICIR = mean / std of the daily IC, not annualised.",
        "",
    ]
    if rep.run.backtest_fk:
        out += [
            "### The run's own backtest (`backtest.json`, the whole test span)",
            "",
            "| model | Sharpe before costs | Sharpe after costs | deflated Sharpe |",
            "|---|---|---|---|",
        ]
        for m, r in sorted(rep.run.backtest_fk.items()):
            out.append(
                f"| {m} | {num((r.get('before_costs') or {}).get('sharpe'))} | {num(r.get('sharpe'))} | "
                f"{num(r.get('deflated_sharpe'))} |"
            )
        out.append("")
    else:
        listed = ", ".join(rep.run.backtest_strategies or []) or "no backtest.json"
        out += [f"The run's `backtest.json` has no `{FK_STRATEGY}` book ({listed}); the figures above are this "
                "page's own, from the predictions.", ""]  # fmt: skip
    out += _survivorship(rep) + _provenance(rep)
    return "\n".join(out)


def _survivorship(rep: Reproduction) -> list[str]:
    return [
        "## Survivorship bias: what it does to the comparison, and in which direction",
        "",
        "The S&P 500 set (`../shared/data/sp500`, its PROVENANCE.md) holds only the 443 names that were in the index "
        f"in April 2021. Every stock this run trades on a date from {rep.covered[0]} to {rep.covered[1]} is therefore "
        "known, with hindsight, to "
        "have survived to 2021 and to have grown or stayed large enough to be in the index then. Names that failed, "
        "were delisted, were acquired or fell out of the index before 2021 are absent. Fischer & Krauss and Krauss, "
        "Do & Huck used the constituents as of each month instead, which has no such bias. So:",
        "",
        "- **The long leg is biased upwards: read its figures as an upper bound.** Whatever the model buys is drawn "
        "from stocks known to do well enough to be in the 2021 index; the ones that went on to fail, be delisted or "
        "shrink out of the index, whose losses a point-in-time long leg would have borne, are not there to be "
        "bought. The bias is worst for a book that buys recent losers (short-term reversal, which Fischer & Krauss "
        "find their LSTM's picks to be): in a survivor-only list a stock that fell is one known to recover enough.",
        "- **The short leg is biased the other way (a lower bound, as far as the bias goes).** Every stock it can "
        "short also survived and, on average, rose over the sample: shorting known survivors pays their drift, and "
        "the collapses a short leg profits from most are missing.",
        "- **The long-short spread has no guaranteed direction**: it is the sum of the two, and which bias is larger "
        "depends on how strongly each leg tilts to distressed names. The legs' table above shows each one's "
        "figure, so a reader can see which dominates here. The bias is larger in earlier years (more years before "
        "the 2021 list, more names missing, and a smaller universe of future index members) than in later ones.",
        "- The cross-sectional median (the label of `cross_sectional`) is taken over survivors too, so the "
        "accuracy and the IC are measured within a survivor cross-section, not the one the papers ranked.",
        "",
        "Hence a figure here above the papers' is no evidence of a better model, and a figure below them is no "
        "evidence of a worse one by itself: the universes differ, and the universe here is also smaller "
        f"({rep.n_tickers} tickers in this run, against about 500 a day in the papers).",
        "",
    ]


def write_reproduction(
    results_dir: Path, out: Path, *, periods: Sequence[Period] = DEFAULT_PERIODS, k: int = K,
    cost_bps: float = COST_BPS, boot: BootstrapConfig | None = None,
) -> Reproduction:  # fmt: skip
    """Compute the reproduction of ``results_dir`` and write its page to ``out`` (atomically)."""
    rep = reproduce_fischer_krauss(results_dir, periods=periods, k=k, cost_bps=cost_bps, boot=boot)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(Path(out), render_markdown(rep))
    return rep
