"""How a comparison is worded: the signed difference, the side of the test and a verdict that cannot read as a win
when the model is worse.

A two-sided p-value below ``alpha`` says the two differ; the sign of the difference says in which direction. So
"0.520 vs majority 0.526 (p = 0.025)" is worded "worse than majority, -0.006, two-sided p = 0.025", never as a
result in the model's favour.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel

Side = Literal["two-sided", "greater", "less"]
Verdict = Literal["better", "worse", "not different", "undefined"]


class Comparison(BaseModel):
    """One model-versus-reference comparison: ``difference`` is model minus reference (e.g. accuracy, as a
    fraction), ``p_value`` the test's p for the stated ``side`` (``greater``: H1 is model > reference)."""

    metric: str
    reference: str
    difference: float | None
    p_value: float | None
    side: Side = "two-sided"
    alpha: float = 0.05

    @property
    def verdict(self) -> Verdict:
        """``better``/``worse`` only when the test rejects at ``alpha`` in that direction; a one-sided test says
        nothing about the other direction (it is ``not different`` there)."""
        if self.difference is None or self.p_value is None or math.isnan(self.difference) or math.isnan(self.p_value):
            return "undefined"
        if self.p_value >= self.alpha or self.difference == 0:
            return "not different"
        direction: Verdict = "better" if self.difference > 0 else "worse"
        if (self.side == "greater" and direction == "worse") or (self.side == "less" and direction == "better"):
            return "not different"
        return direction

    @property
    def sentence(self) -> str:
        return describe_comparison(self)


def describe_comparison(comparison: Comparison, digits: int = 3) -> str:
    """E.g. ``worse than majority (accuracy -0.006, two-sided p = 0.025)`` or ``not different from momentum
    (accuracy +0.004, two-sided p = 0.41)``; ``undefined`` names what is missing."""
    c = comparison
    if c.verdict == "undefined":
        return f"no test against {c.reference} ({c.metric} difference undefined)"
    head = {
        "better": f"better than {c.reference}",
        "worse": f"worse than {c.reference}",
        "not different": f"not different from {c.reference}",
    }[c.verdict]
    assert c.difference is not None and c.p_value is not None  # verdict is not undefined
    p_text = f"p < {10**-digits:.{digits}f}" if c.p_value < 10**-digits else f"p = {c.p_value:.{digits}f}"
    return f"{head} ({c.metric} {c.difference:+.{digits}f}, {c.side} {p_text})"


def format_number(value: float | None, spec: str) -> str:
    """``value`` formatted with ``spec`` (``"+.3f"``), or a dash when it is undefined (None or NaN)."""
    return "–" if value is None or not math.isfinite(value) else format(value, spec)


def format_interval(value: float | None, low: float | None, high: float | None, spec: str = ".3f") -> str:
    """``value [low, high]`` with ``spec``, or a dash when the value is undefined."""
    if value is None or not math.isfinite(value):
        return "–"
    return f"{format_number(value, spec)} [{format_number(low, spec)}, {format_number(high, spec)}]"
