"""Leakage audit (``results/audit.json``): every check, passed or failed, with the accuracy interval that decided
it: "not above Bayes 0.600" passes beside an accuracy of 0.615 because the interval's lower bound is at or below
0.600, and the page prints that interval and its level (Bonferroni-corrected over the audit's checks). The file is
read as ``finmlops.evaluation.audit.AuditResult``, the model ``finmlops audit`` writes."""

from __future__ import annotations

from html import escape

from finmlops.evaluation.audit import AUDIT_FILE, AuditResult, Check
from finmlops.evaluation.results import defined
from finmlops.report.base import Section, empty, read_model, table
from finmlops.settings import Settings

TITLE = "Leakage audit"


def percent(level: float) -> str:
    """A confidence level as a percentage without trailing zeros: 0.95 -> 95%, 0.99833 -> 99.833%."""
    return f"{level * 100:.3f}".rstrip("0").rstrip(".") + "%"


def badge(ok: bool) -> str:
    return '<span class="pass">PASS</span>' if ok else '<span class="fail">FAIL</span>'


def evidence(check: Check, level: float | None, bayes: float | None) -> str:
    """The accuracy CI behind a check and, for checks against the Bayes rate, where that rate falls: inside the
    CI (not above it, and recovered), below its lower bound (above Bayes: leakage) or above its upper bound."""
    acc = check.metrics.accuracy
    if acc is None or not (defined(acc.value) and defined(acc.ci_low) and defined(acc.ci_high)):
        return "–"
    name = f"{percent(level)} CI" if level is not None else "CI"
    text = f"accuracy {acc.value:.4f}, {name} [{acc.ci_low:.4f}, {acc.ci_high:.4f}]"
    if bayes is not None and "Bayes" in check.check:
        if acc.ci_low > bayes:
            where = f"lower bound {acc.ci_low:.4f} > Bayes {bayes:.3f}: above it"
        elif acc.ci_high < bayes:
            where = f"upper bound {acc.ci_high:.4f} < Bayes {bayes:.3f}: below it"
        else:
            where = f"Bayes {bayes:.3f} inside: not above it"
        text += f"; {where}"
    return text


def render(audit: AuditResult) -> str:
    rows = [
        [
            escape(c.scenario),
            escape(c.model),
            escape(c.check),
            badge(c.passed),
            escape(evidence(c, audit.ci_level, audit.bayes_accuracy)),
            escape(c.detail),
        ]
        for c in audit.checks
    ]
    failed = sum(not c.passed for c in audit.checks)
    bayes = f"{audit.bayes_accuracy:.3f}"
    level = (
        f" Every interval is at level {percent(audit.ci_level)}, Bonferroni over the checks." if audit.ci_level else ""
    )
    summary = (
        f"<p>{badge(audit.passed)} {len(audit.checks) - failed} of {len(audit.checks)} checks passed; Bayes accuracy "
        f"of the planted market {bayes}.{escape(level)}</p>"
    )
    header = ["scenario", "model", "check", "result", "evidence (accuracy CI)", "detail"]
    return summary + table(header, rows, raw=True, text=True)


def build(settings: Settings) -> Section:
    path = settings.results_dir / AUDIT_FILE
    audit = read_model(path, AuditResult)
    if audit is None:
        return empty("audit", TITLE, "finmlops audit --quick", "leakage audit")
    return Section("audit", TITLE, render(audit), (str(path),))
