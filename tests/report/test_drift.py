"""The drift chart plots PSI and is coloured by PSI: a column that drifted by its test alone is not a red bar
under the chart's own PSI lines; the table and a note say why it drifted."""

from __future__ import annotations

from typing import Any

from finmlops.monitoring.drift import DriftResult, DriftThresholds
from finmlops.report.sections.drift import ALERT_COLOR, CALM_COLOR, MODERATE_COLOR, render
from finmlops.settings import Settings


def _column(name: str, psi: float, *, psi_alert: bool, test_alert: bool) -> dict[str, Any]:
    return {
        "column": name, "n_reference": 2000, "n_current": 300, "psi": psi, "ks_statistic": 0.1, "ks_p_value": 0.2,
        "wasserstein_norm": 0.15 if test_alert else 0.02, "test": "wasserstein", "psi_alert": psi_alert,
        "test_alert": test_alert, "reference_mean": 0.0, "current_mean": 0.1,
    }  # fmt: skip


def _bar_fill(svg: str, label: str) -> str:
    row = svg.split(f">{label}</text>", 1)[1]
    return row.split('fill="', 1)[1].split('"', 1)[0]


def test_bars_are_coloured_by_the_psi_they_plot() -> None:
    drift = DriftResult.model_validate({
        "thresholds": DriftThresholds().model_dump(), "n_reference": 2000, "n_current": 300,
        "features": [
            _column("by_test_only", 0.03, psi_alert=False, test_alert=True),
            _column("moderate", 0.15, psi_alert=False, test_alert=False),
            _column("shifted", 0.35, psi_alert=True, test_alert=True),
        ],
    })  # fmt: skip
    html = render(drift)
    assert _bar_fill(html, "by_test_only") == CALM_COLOR  # PSI 0.03 is below both lines
    assert _bar_fill(html, "moderate") == MODERATE_COLOR
    assert _bar_fill(html, "shifted") == ALERT_COLOR
    assert "2 of 3 features drifted" in html
    assert (
        "<td>by_test_only</td><td>0.030</td><td>0.2</td><td>0.150</td><td>wasserstein</td><td>wasserstein test</td>"
        in html
    )
    assert "<td>PSI and wasserstein test</td>" in html
    assert "1 column(s) drifted by their statistical test alone" in html and "by_test_only." in html


def test_the_workspace_drift_section_has_no_red_bar_below_the_alert_line(workspace: Settings) -> None:
    from finmlops.report.sections import drift

    section = drift.build(workspace)
    report = DriftResult.model_validate_json((workspace.results_dir / "drift.json").read_text())
    for c in report.features:
        assert (_bar_fill(section.body, c.column) == ALERT_COLOR) == (c.psi > report.thresholds.psi), c.column
