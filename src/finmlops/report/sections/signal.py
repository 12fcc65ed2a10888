"""Signal: IC and Rank IC (``results/evaluation.json``'s ``signal``, issue 12 §4): per model the mean daily IC
(Pearson) and Rank IC (Spearman) of the score against the next traded return, ICIR and Rank ICIR, each with its
block-bootstrap CI over dates, the tests of mean IC = 0, and accuracy against a coin flip (0.5), which is the test
that matters on a balanced label. Read from the typed evaluation; nothing is recomputed."""

from __future__ import annotations

from html import escape

from finmlops.evaluation.results import Estimate, EvaluationResult, load_evaluation
from finmlops.report.base import Section, comparison, empty, note, num, table
from finmlops.report.inputs import read_if_written
from finmlops.settings import Settings

TITLE = "Signal: IC and Rank IC"


def interval(e: Estimate, spec: str = ".4f") -> str:
    """``value [low, high]``, or a dash when undefined."""
    if not e.defined:
        return "–"
    return f"{num(e.value, spec)} [{num(e.ci_low, spec)}, {num(e.ci_high, spec)}]"


def edge(e: Estimate) -> str:
    """In words, whether the interval says anything about the sign: a CI that includes 0 is not an edge."""
    if not e.defined:
        return "undefined"
    if e.contains(0.0):
        return "CI includes 0: no edge shown"
    return "CI above 0" if e.ci_low > 0 else "CI below 0 (inverse signal)"


def render(ev: EvaluationResult) -> str:
    level = f"{ev.bootstrap.level:.0%}"
    header = ["model", f"IC [{level} CI]", "IC", "IC vs 0", f"Rank IC [{level} CI]", "Rank IC", "Rank IC vs 0"]
    header += [f"ICIR [{level} CI]", f"Rank ICIR [{level} CI]", "dates", "accuracy vs 0.5"]
    rows = []
    for name, m in ev.models.items():
        s = m.signal
        if s is None:
            continue
        rows.append(
            [
                escape(name + (" (baseline)" if m.is_baseline else "")),
                escape(interval(s.ic)),
                escape(edge(s.ic)),
                comparison(s.ic_vs_zero),
                escape(interval(s.rank_ic)),
                escape(edge(s.rank_ic)),
                comparison(s.rank_ic_vs_zero),
                escape(interval(s.icir, ".3f")),
                escape(interval(s.rank_icir, ".3f")),
                str(s.n_ic_dates),
                comparison(s.accuracy_vs_half),
            ]
        )
    if not rows:
        return note("evaluation.json has no signal measures (written by an older version): rerun `finmlops evaluate`.")
    boot = ev.bootstrap
    label = ev.label
    balanced = label.kind != "direction"
    return table(header, rows, raw=True) + note(
        "IC: per-date Pearson correlation across tickers of prob_up with the next traded return (the label's "
        "return); Rank IC: Spearman. ICIR = mean / std of the daily series, unannualised (Qlib's definition). "
        f"CIs: circular block bootstrap over dates, {boot.n_boot} resamples of {boot.block_len}-day blocks. "
        "A CI that includes 0 is not an edge; better or worse only where the two-sided test rejects at 5%. "
        + (
            f"The label is {label.kind}, balanced by construction: accuracy against 0.5 is the fair test."
            if balanced
            else "The label is direction, not balanced: accuracy against 0.5 is not the majority-class test "
            "(see the paired tests in the walk-forward section)."
        )
    )


def build(settings: Settings) -> Section:
    path = settings.results_dir / "evaluation.json"
    ev = read_if_written(load_evaluation, settings.results_dir)
    if ev is None:
        return empty("signal", TITLE, "finmlops evaluate", "walk-forward evaluation")
    return Section("signal", TITLE, render(ev), (str(path),))
