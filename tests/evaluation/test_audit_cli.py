"""`finmlops audit` picks the deep variants to audit: lightweight by default, --variant repeatable, --all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from finmlops.cli import app
from finmlops.evaluation import workspace as report
from finmlops.evaluation.audit import AuditResult, load_audit
from finmlops.models import VARIANTS


@pytest.mark.parametrize(
    ("args", "variants"),
    [
        ([], ["lightweight"]),
        (["--variant", "baseline", "--variant", "enhanced", "--variant", "baseline"], ["baseline", "enhanced"]),
        (["--all"], list(VARIANTS)),
    ],
)
def test_audit_variant_selection(monkeypatch: pytest.MonkeyPatch, args: list[str], variants: list[str]) -> None:
    # Only the selection is under test here; the slow test below runs the real audit.
    seen: dict[str, Any] = {}

    def fake_audit(settings: Any, **kwargs: Any) -> AuditResult:
        seen.update(kwargs)
        return AuditResult(passed=True, bayes_accuracy=0.6, checks=[])

    monkeypatch.setattr(report, "run_audit_workspace", fake_audit)
    out = CliRunner().invoke(app, ["audit", "--quick", *args])
    assert out.exit_code == 0, out.output
    assert seen["variants"] == variants
    assert len(VARIANTS) == 5


def test_audit_rejects_bad_variant_choices() -> None:
    runner = CliRunner()
    both = runner.invoke(app, ["audit", "--all", "--variant", "lightweight"])
    assert both.exit_code == 2 and "either --variant or --all" in both.stderr
    unknown = runner.invoke(app, ["audit", "--variant", "yolo"])
    assert unknown.exit_code == 2 and "'yolo' is not one of" in unknown.stderr  # Typer names the allowed values


@pytest.mark.slow
def test_quick_audit_of_two_variants_checks_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real pipeline with two deep variants (minutes: every scenario trains both)."""
    monkeypatch.setenv("FINMLOPS_HOME", str(tmp_path))
    args = ["audit", "--quick", "--variant", "lightweight", "--variant", "baseline", "--epochs", "2", "--json"]
    out = CliRunner().invoke(app, args)
    result = AuditResult.model_validate_json(out.stdout)
    assert out.exit_code == 0, [c for c in result.checks if not c.passed]
    for scenario in ("random_walk", "shuffled", "permuted_labels", "planted"):
        models = {c.model for c in result.checks if c.scenario == scenario}
        assert {"lightweight", "baseline", "majority", "momentum", "logistic", "lightgbm"} == models
    # Bonferroni over 3*2*6 + 2*6 + 2 = 50 intervals.
    assert result.ci_level == pytest.approx(1 - 0.05 / 50)
    assert load_audit(tmp_path / "results").provenance["config"]["variants"] == [
        "lightweight",
        "baseline",
    ]
