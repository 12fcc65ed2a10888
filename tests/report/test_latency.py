"""Requests that failed before a model was chosen are the row "unrouted" with their status codes: no blank row,
no blank legend key."""

from __future__ import annotations

import re

from finmlops.report.sections import latency
from finmlops.settings import Settings


def test_unrouted_requests_are_named_with_their_errors(workspace: Settings) -> None:
    body = latency.build(workspace).body
    assert "<tr><td>unrouted (status 404 x7)</td><td>7</td><td>7 (100.0%)</td>" in body
    assert "<tr><td></td>" not in body
    keys = re.findall(r"</svg>([^<]*)</span>", body.split('class="legend"', 1)[1])
    assert keys and all(k.strip() for k in keys)
    assert keys == ["baseline-predictor", "enhanced-predictor"]  # an unrouted request has no latency to draw
