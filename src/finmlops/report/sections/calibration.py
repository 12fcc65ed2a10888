"""Calibration and confusion: the reliability diagram per model (``evaluation.json``) and 2x2 confusion matrices,
counts of ``prob_up > 0.5`` against ``y_true`` in ``predictions.parquet`` (drawn only when it is the file that
``evaluation.json`` scored)."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

import numpy as np
import pandas as pd

from finmlops.evaluation.results import EvaluationResult
from finmlops.provenance import file_sha256
from finmlops.report.base import Section, empty, note, num
from finmlops.report.charts import Series, colors, legend, line_chart, num_ticks
from finmlops.report.sections.evaluation import load
from finmlops.settings import Settings

TITLE = "Calibration and confusion"


@dataclass(frozen=True)
class Confusion:
    """One model's counts: ``cells[actual][predicted]`` with 0 = down, 1 = up."""

    model: str
    cells: list[list[int]]


def confusion_counts(preds: pd.DataFrame) -> list[Confusion]:
    """Per model (sorted), actual direction against predicted (``prob_up > 0.5``), from columns ``model, prob_up,
    y_true``."""
    out = []
    for model, rows in preds.groupby("model", sort=True):
        pred_up = rows["prob_up"].to_numpy() > 0.5
        true_up = rows["y_true"].to_numpy() == 1
        cells = [[int(np.sum((true_up == t) & (pred_up == p))) for p in (False, True)] for t in (False, True)]
        out.append(Confusion(str(model), cells))
    return out


def render_confusion(matrices: list[Confusion]) -> str:
    """One 2x2 table per model: counts and row shares, shaded by share."""
    cards = []
    for m in matrices:
        body = ""
        for label, (down, up) in zip(("actual down", "actual up"), m.cells, strict=True):
            total = max(down + up, 1)
            cells = "".join(
                f'<td style="background:rgba(78,121,167,{n / total:.2f})">{n}<br><small>{n / total:.1%}</small></td>'
                for n in (down, up)
            )
            body += f"<tr><th>{label}</th>{cells}</tr>"
        cards.append(
            f'<div class="card"><b>{escape(m.model)}</b><table class="confusion"><thead><tr><th></th>'
            f"<th>pred. down</th><th>pred. up</th></tr></thead><tbody>{body}</tbody></table></div>"
        )
    return f'<div class="cards">{"".join(cards)}</div>'


def render_reliability(ev: EvaluationResult) -> str:
    """The reliability diagram of every model with calibration bins; empty when none has."""
    palette = colors(list(ev.models))
    series, xs = [], []
    for name, m in ev.models.items():
        cal = m.calibration
        if cal is None or not cal.mean_predicted:
            continue
        xs += cal.mean_predicted
        label = f"{name} (ECE {num(cal.ece, '.3f')})"
        series.append(Series(label, cal.mean_predicted, list(cal.observed_up), palette[name], markers=True))
    if not series:
        return ""
    lo, hi = min(xs), max(xs)
    diagonal = Series("perfect calibration", [lo, hi], [lo, hi], "#888", dash=True)
    body = line_chart(
        [diagonal, *series],
        title="reliability: observed share of up days per predicted-probability bin",
        y_label="observed up share",
        x_ticks=num_ticks(lo, hi),
    )
    body += legend([(s.label, s.color, s.dash) for s in (diagonal, *series)])
    return body + note("Bins of width 0.1 in P(up); only bins with predictions are drawn. x: mean predicted P(up).")


def build(settings: Settings) -> Section:
    ev_path, pred_path = settings.results_dir / "evaluation.json", settings.results_dir / "predictions.parquet"
    ev = load(settings)
    if ev is None:
        return empty("calibration", TITLE, "finmlops evaluate", "evaluation")
    body = render_reliability(ev)
    sources = [str(ev_path)]
    if pred_path.exists():
        sources.append(str(pred_path))
        if ev.predictions is None or file_sha256(pred_path) != ev.predictions.sha256:
            body += note(f"{pred_path} changed after evaluation.json was written: confusion matrices not drawn.")
        else:
            preds = pd.read_parquet(pred_path, columns=["model", "prob_up", "y_true"])
            body += "<h3>Confusion at P(up) &gt; 0.5</h3>" + render_confusion(confusion_counts(preds))
    else:
        body += note(f"{pred_path} is missing: run `finmlops evaluate` for the confusion matrices.")
    return Section("calibration", TITLE, body, tuple(sources))
