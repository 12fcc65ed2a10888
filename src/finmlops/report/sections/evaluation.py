"""Walk-forward evaluation (``results/evaluation.json``): pooled metrics with CIs and the paired test of every model
against each baseline, worded by ``finmlops.stats.describe_comparison``; accuracy and ROC AUC per fold with CIs."""

from __future__ import annotations

from html import escape

from finmlops.evaluation.results import (
    BaselineTest,
    Estimate,
    EvaluationResult,
    load_evaluation,
    pooled_cells,
    pooled_header,
)
from finmlops.report.base import Section, comparison, empty, note, num, table
from finmlops.report.charts import Interval, colors, interval_chart, legend
from finmlops.report.inputs import read_if_written
from finmlops.settings import Settings

TITLE = "Walk-forward evaluation"


def load(settings: Settings) -> EvaluationResult | None:
    """``evaluation.json`` as the evaluation wrote it, or None when it has not been written."""
    return read_if_written(load_evaluation, settings.results_dir)


def _test_cell(test: BaselineTest, baseline: str) -> str:
    interval = f"CI of the difference [{num(test.ci_low, '+.3f')}, {num(test.ci_high, '+.3f')}]"
    return f"{comparison(test.comparison('accuracy', baseline))}; {interval}"


def render(ev: EvaluationResult) -> str:
    """The table, the per-fold interval charts and their legend."""
    level = f"{ev.bootstrap.level:.0%}"
    header = ["model", "rows", *pooled_header(ev.bootstrap.level)]
    rows = [
        [name + (" (baseline)" if m.is_baseline else ""), str(m.n_rows), *pooled_cells(m.pooled)]
        for name, m in ev.models.items()
    ]
    tests = [
        [escape(name), _test_cell(m.vs_baselines[b], b)]
        for name, m in ev.models.items()
        for b in ev.baselines
        if b in m.vs_baselines
    ]
    palette = colors(list(ev.models))
    folds = sorted({f for m in ev.models.values() for f in m.folds})
    charts = []
    for metric, label in (("accuracy", "accuracy"), ("roc_auc", "ROC AUC")):
        values: dict[tuple[str, str], Interval] = {}
        for name, m in ev.models.items():
            for group, e in [*m.folds.items(), ("pooled", m.pooled)]:
                est: Estimate = getattr(e, metric)
                if est.defined:
                    values[(group, name)] = Interval(est.value, est.ci_low, est.ci_high)
        charts.append(
            interval_chart(
                [*folds, "pooled"],
                list(palette.items()),
                values,
                title=f"{label} per test fold, {level} CI",
                y_label=label,
                reference=(0.5, "0.5 (coin flip)"),
            )
        )
    boot = ev.bootstrap
    body = table(header, rows)
    body += note(
        f"CIs: circular block bootstrap over dates, {boot.n_boot} resamples of {boot.block_len}-day blocks, "
        f"seed {boot.seed}."
    )
    if tests:
        body += "<h3>Paired tests against the baselines</h3>" + table(
            ["model", "comparison"], tests, raw=True, text=True
        )
        body += note(
            "Model minus baseline accuracy on the same rows (paired block bootstrap), its two-sided p and the verdict "
            "at 5%: better or worse only when the test rejects, in the direction of the difference."
        )
    return body + "".join(charts) + legend([(n, c, False) for n, c in palette.items()])


def build(settings: Settings) -> Section:
    ev = load(settings)
    if ev is None:
        return empty("evaluation", TITLE, "finmlops evaluate", "walk-forward evaluation")
    return Section("evaluation", TITLE, render(ev), (str(settings.results_dir / "evaluation.json"),))
