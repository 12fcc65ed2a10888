"""Drift (``results/drift.json``): PSI per feature and of the prediction, and the per-column tests.

The chart plots PSI, so its colours say what PSI says: red above the alert threshold, orange above 0.1 (moderate),
blue below. A column can also drift by its statistical test (KS or normalised Wasserstein) with a small PSI; the
table's "drifted by" column names the reason, and a note counts those columns, so a bar is never red under the
chart's own lines."""

from __future__ import annotations

from html import escape

from finmlops.monitoring.drift import ColumnDrift, DriftResult
from finmlops.report.base import Section, empty, note, num, read_model, table
from finmlops.report.charts import PALETTE, hbar_chart
from finmlops.settings import Settings

TITLE = "Drift"
MODERATE_PSI = 0.1
ALERT_COLOR, MODERATE_COLOR, CALM_COLOR = "#e15759", "#f28e2b", PALETTE[0]
PREDICTION_LABEL = "prob_up (prediction)"


def psi_color(psi: float, alert: float) -> str:
    """The bar colour of a PSI value: red above ``alert``, orange above 0.1, blue otherwise."""
    if psi > alert:
        return ALERT_COLOR
    return MODERATE_COLOR if psi > MODERATE_PSI else CALM_COLOR


def drifted_by(c: ColumnDrift) -> str:
    reasons = (["PSI"] if c.psi_alert else []) + ([f"{c.test} test"] if c.test_alert else [])
    return " and ".join(reasons) or "no"


def render(drift: DriftResult) -> str:
    named = sorted(((c.column, c) for c in drift.features), key=lambda nc: -nc[1].psi)
    if drift.prediction is not None:
        named = [(PREDICTION_LABEL, drift.prediction), *named]
    limit = drift.thresholds.psi
    chart = hbar_chart(
        [(name, c.psi, None, psi_color(c.psi, limit)) for name, c in named],
        title=f"population stability index per column (red: PSI above {limit:g}; orange: above {MODERATE_PSI:g})",
        x_label="PSI",
        thresholds=[(MODERATE_PSI, f"{MODERATE_PSI:g} moderate"), (limit, f"{limit:g} alert")],
    )
    rows = [
        [name, num(c.psi, ".3f"), num(c.ks_p_value, ".3g"), num(c.wasserstein_norm, ".3f"), c.test, drifted_by(c)]
        for name, c in named
    ]
    by_test_only = [name for name, c in named if c.test_alert and not c.psi_alert]
    body = (
        f"<p>{drift.n_drifted} of {len(drift.features)} features drifted. Reference: {escape(str(drift.reference))} "
        f"({drift.n_reference} rows); current: {escape(str(drift.current))} ({drift.n_current} rows).</p>"
    )
    body += "".join(note(n) for n in drift.notes)
    body += chart
    if by_test_only:
        body += note(
            f"{len(by_test_only)} column(s) drifted by their statistical test alone, with PSI at or below {limit:g} "
            f"(blue or orange bars): {', '.join(by_test_only)}. The test decides by KS p < "
            f"{drift.thresholds.ks_p_value:g} (references up to {drift.thresholds.ks_max_reference_rows} rows) or "
            f"normalised Wasserstein >= {drift.thresholds.wasserstein:g}."
        )
    return body + table(["column", "PSI", "KS p", "Wasserstein (norm.)", "test", "drifted by"], rows)


def build(settings: Settings) -> Section:
    path = settings.results_dir / "drift.json"
    drift = read_model(path, DriftResult)
    if drift is None:
        return empty("drift", TITLE, "finmlops drift --model NAME@champion", "drift report")
    return Section("drift", TITLE, render(drift), (str(path),))
