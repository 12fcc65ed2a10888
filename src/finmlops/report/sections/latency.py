"""Serving latency (``serving/requests.db``): requests, errors and p50/p95/p99/max per model, and the latency
distribution of successful requests in log-spaced bins.

A request that failed before a model was chosen (a wrong path, a bad body) is logged with an empty model name; it
is the row "unrouted", with its status codes, never a blank row or a blank legend entry."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from finmlops.report.base import Section, empty, note, num, table
from finmlops.report.charts import Series, colors, legend, line_chart
from finmlops.serving.requestlog import read_requests
from finmlops.settings import Settings

TITLE = "Serving latency"
UNROUTED = "unrouted"


@dataclass(frozen=True)
class ModelLatency:
    """One model's served requests: ``statuses`` counts every non-200 status; ``latency_ms`` of the successes."""

    name: str
    requests: int
    statuses: dict[int, int]
    latency_ms: np.ndarray

    @property
    def errors(self) -> int:
        return sum(self.statuses.values())

    @property
    def label(self) -> str:
        """The name, or for unrouted requests "unrouted" with their errors (e.g. ``unrouted (status 404 x70)``)."""
        if self.name:
            return self.name
        codes = ", ".join(f"status {s} x{n}" for s, n in sorted(self.statuses.items()))
        return f"{UNROUTED} ({codes})" if codes else UNROUTED


def per_model(served: pd.DataFrame) -> list[ModelLatency]:
    """Per model name (sorted; unrouted first) of the served (non-shadow) request rows."""
    out = []
    for name, rows in served.groupby("model", sort=True):
        ok = rows[(rows["status"] == 200) & rows["latency_ms"].gt(0)]
        failed = Counter(int(s) for s in rows.loc[rows["status"] != 200, "status"])
        out.append(ModelLatency(str(name), len(rows), dict(failed), ok["latency_ms"].to_numpy(dtype=float)))
    return out


def render(models: list[ModelLatency]) -> str:
    rows = []
    for m in models:
        q = np.percentile(m.latency_ms, [50, 95, 99]) if m.latency_ms.size else [float("nan")] * 3
        rows.append(
            [
                m.label,
                str(m.requests),
                f"{m.errors} ({m.errors / m.requests:.1%})",
                *(num(float(v), ".2f") for v in q),
                num(float(m.latency_ms.max()) if m.latency_ms.size else None, ".2f"),
            ]
        )
    body = table(["model", "requests", "errors", "p50 ms", "p95 ms", "p99 ms", "max ms"], rows)
    timed = [m for m in models if m.latency_ms.size]
    if not timed:
        return body
    every = np.concatenate([m.latency_ms for m in timed])
    lo, hi = float(np.log10(every.min())), float(np.log10(every.max()))
    edges = np.linspace(lo, hi + 1e-9, 31) if hi > lo else np.array([lo - 0.05, lo + 0.05])
    centers = (edges[:-1] + edges[1:]) / 2
    palette = colors([m.label for m in timed])
    series = []
    for m in timed:
        share = np.histogram(np.log10(m.latency_ms), bins=edges)[0] / m.latency_ms.size
        series.append(Series(m.label, list(centers), [float(s) for s in share], palette[m.label], markers=True))
    decades = [
        (float(e), f"{10**e:.3g} ms")
        for e in np.arange(math.floor(lo), math.ceil(hi) + 1)
        for e in (e, e + math.log10(2), e + math.log10(5))
        if lo <= e <= hi
    ]
    body += line_chart(
        series,
        title="latency distribution of successful served requests (log-spaced bins)",
        y_label="share of requests",
        x_ticks=decades or [(lo, f"{10**lo:.3g} ms")],
    )
    # Only the drawn series: a model whose every request failed has no line, so no key either.
    return body + legend([(s.label, s.color, False) for s in series])


def build(settings: Settings) -> Section:
    path = settings.home / "serving" / "requests.db"
    if not path.exists():
        return empty(
            "latency", TITLE, "finmlops serve", "serving request log", " and send it requests (e.g. finmlops traffic)"
        )
    log = read_requests(path)
    served = log[log["shadow"] == 0]
    if served.empty:
        return Section("latency", TITLE, note(f"{path} holds no served requests yet."), (str(path),))
    body = render(per_model(served))
    first, last = (
        datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds") for t in (log["ts"].min(), log["ts"].max())
    )
    body += note(
        f"Server-side latency (request start to response) of {len(served)} served requests, {first} to {last}. "
        f"{UNROUTED}: requests that failed before a model was chosen (no such model or path, a malformed body)."
    )
    return Section("latency", TITLE, body, (str(path),))
