"""Several live setups side by side over the same days: a static model, scheduled retraining, drift-triggered.

Each setup lives in its own workspace (``finmlops live`` with its config); :func:`compare_live` reads their
journals and measures, per setup, with 95% circular block-bootstrap intervals over days (blocks of 10 trading days,
so that the days' dependence is kept):

- the served accuracy (every outcome of the answers actually served, canary shares included);
- the champion's mean daily IC (Spearman of ``prob_up`` and the forward return across tickers);
- the served book's annualised Sharpe ratio (long the tickers whose served answer says up, equal weight, gross of
  costs) and its total return;
- retrains, promotions, rollbacks and drift alarms;
- wrong promotions in hindsight: for each promotion, the new champion and the one it replaced are both scored on the
  following ``hindsight_days`` trading days (from the history store, which knows the future); a promotion is wrong
  when the new one was less accurate there;
- the refits' CPU seconds (the compute spent).

The result is written to ``<home>/results/live_comparison.json`` (the report's live section reads it).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from finmlops.data import DataStore
from finmlops.features import compute_features, make_target, make_windows
from finmlops.provenance import stamp, write_json_atomic
from finmlops.settings import Settings
from finmlops.workflow.daily import LivePaths, journal_days, live_settings, live_timeline
from finmlops.workflow.live_config import LiveConfig

COMPARISON_FILE = "live_comparison.json"
HINDSIGHT_DAYS = 63  # a quarter of trading days after each promotion
N_BOOT, BLOCK_LEN = 1000, 10


class Estimate(BaseModel):
    value: float | None
    ci_low: float | None
    ci_high: float | None


class Hindsight(BaseModel):
    """One promotion judged on the ``days`` that followed: accuracy of the new champion and of the one replaced."""

    day: date
    new: int
    old: int
    days: int
    new_accuracy: float | None
    old_accuracy: float | None

    @property
    def wrong(self) -> bool:
        return self.new_accuracy is not None and self.old_accuracy is not None and self.new_accuracy < self.old_accuracy


class SetupResult(BaseModel):
    """One setup's figures over the compared days."""

    name: str
    workspace: str
    days: int
    first: date | None
    last: date | None
    served_accuracy: Estimate
    champion_ic: Estimate
    sharpe: Estimate
    total_return: float | None
    outcomes: int
    retrains: int
    promotions: int
    rollbacks: int
    drift_alarms: int
    wrong_promotions: int
    hindsight: list[Hindsight]
    fit_cpu_seconds: float
    timeline: str


class LiveComparison(BaseModel):
    setups: list[SetupResult]
    hindsight_days: int
    provenance: dict[str, Any]


def _weights(n: int, seed: int) -> np.ndarray:
    from finmlops.stats.bootstrap import block_bootstrap_weights  # deferred: scipy

    return block_bootstrap_weights(n, n_boot=N_BOOT, block_len=min(BLOCK_LEN, max(n, 1)), seed=seed)


def _ratio(num: np.ndarray, den: np.ndarray, seed: int) -> Estimate:
    if den.sum() <= 0:
        return Estimate(value=None, ci_low=None, ci_high=None)
    w = _weights(len(num), seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        samples = (w @ num) / (w @ den)
    low, high = np.nanpercentile(samples, [2.5, 97.5])
    return Estimate(value=float(num.sum() / den.sum()), ci_low=float(low), ci_high=float(high))


def _sharpe(returns: np.ndarray, seed: int) -> Estimate:
    if len(returns) < 3 or returns.std() == 0:
        return Estimate(value=None, ci_low=None, ci_high=None)
    w = _weights(len(returns), seed)
    mean = (w @ returns) / w.sum(axis=1)
    var = (w @ returns**2) / w.sum(axis=1) - mean**2
    with np.errstate(invalid="ignore", divide="ignore"):
        samples = mean / np.sqrt(var) * np.sqrt(252)
    low, high = np.nanpercentile(samples, [2.5, 97.5])
    return Estimate(value=float(returns.mean() / returns.std() * np.sqrt(252)), ci_low=float(low), ci_high=float(high))


def _model_of(paths: LivePaths, version: int) -> Any:
    """The fitted ``DeepModel`` of a registered version, from the refit folder its journal names."""
    import torch  # deferred: torch; the refit saved it with torch.save

    for record in journal_days(paths):
        collect = record.phases.get("collect", {})
        if collect.get("version") == version:
            return torch.load(paths.retrains / collect["refit"] / "model.pt", weights_only=False)
    boot = sorted(paths.retrains.glob("bootstrap-*"))
    if version == 1 and boot:
        return torch.load(boot[0] / "model.pt", weights_only=False)
    raise FileNotFoundError(f"no refit folder of v{version} in {paths.retrains}")


def hindsight(paths: LivePaths, config: LiveConfig, days: int = HINDSIGHT_DAYS) -> list[Hindsight]:
    """Every promotion of a workspace judged on the ``days`` trading days after it (see the module docstring)."""

    events = []
    for record in journal_days(paths):
        rollout = record.phases.get("rollout", {})
        if rollout.get("decision") == "promote":
            old = record.phases["score"]["champion"]
            new = record.state.champion
            events.append((record.day, int(new), int(old)))
    if not events:
        return []
    universe = DataStore(paths.history).read(config.universe.tickers)
    variant = config.variant()
    target = make_target(universe, config.label)
    windows = make_windows(compute_features(universe, variant.feature_set), target, variant.seq_len)
    windows = windows.subset(np.isfinite(windows.y))
    calendar = np.unique(windows.dates)
    out = []
    for day, new, old in events:
        after = calendar[calendar > np.datetime64(day)][:days]
        subset = windows.subset(np.isin(windows.dates, after))
        accuracy: dict[int, float | None] = {}
        for version in (new, old):
            if len(subset) == 0:
                accuracy[version] = None
                continue
            prob = _model_of(paths, version).predict_proba(subset)
            accuracy[version] = float(((prob > 0.5) == (subset.y == 1)).mean())
        out.append(
            Hindsight(
                day=day, new=new, old=old, days=len(after), new_accuracy=accuracy[new], old_accuracy=accuracy[old]
            )
        )
    return out


def summarize(settings: Settings, config: LiveConfig, seed: int = 0) -> SetupResult:
    """One setup's figures from its workspace's journal (it must have lived first: ``finmlops live``)."""
    paths = LivePaths(live_settings(settings, config))
    timeline = live_timeline(paths)
    days = timeline.days
    n = np.array([d.served_n for d in days], dtype=float)
    correct = np.array([d.served_correct for d in days], dtype=float)
    ics = np.array([d.champion_ic for d in days if d.champion_ic is not None], dtype=float)
    returns = np.array([d.book_return for d in days if d.book_return is not None and d.served_n], dtype=float)
    judged = hindsight(paths, config)
    path = write_json_atomic(paths.results / "live_timeline.json", timeline.model_dump(mode="json"))
    return SetupResult(
        name=config.name, workspace=config.workspace, days=len(days), first=days[0].day if days else None,
        last=days[-1].day if days else None, served_accuracy=_ratio(correct, n, seed),
        champion_ic=_ratio(ics, np.ones_like(ics), seed + 1), sharpe=_sharpe(returns, seed + 2),
        total_return=float(np.prod(1 + returns) - 1) if len(returns) else None, outcomes=int(n.sum()),
        retrains=timeline.totals["retrains"], promotions=timeline.totals["promotions"],
        rollbacks=timeline.totals["rollbacks"], drift_alarms=timeline.totals["drift_alarms"],
        wrong_promotions=sum(h.wrong for h in judged), hindsight=judged,
        fit_cpu_seconds=timeline.totals["fit_cpu_seconds"], timeline=str(path),
    )  # fmt: skip


def compare_live(settings: Settings, configs: list[LiveConfig], *, out: Path | None = None) -> LiveComparison:
    """Summarise each lived setup and write the comparison to ``<home>/results/live_comparison.json``."""
    setups = [summarize(settings, c) for c in configs]
    spans = {(s.first, s.last) for s in setups}
    comparison = LiveComparison(
        setups=setups, hindsight_days=HINDSIGHT_DAYS,
        provenance=stamp(data_hash=None, config={"setups": [c.model_dump(mode="json") for c in configs],
                                                 "same_days": len(spans) == 1}),
    )  # fmt: skip
    write_json_atomic(out or settings.results_dir / COMPARISON_FILE, comparison.model_dump(mode="json"))
    return comparison


def comparison_frame(comparison: LiveComparison) -> pd.DataFrame:
    """The comparison as one row per setup (for printing)."""

    def ci(e: Estimate, spec: str = ".3f") -> str:
        if e.value is None:
            return "-"
        return f"{e.value:{spec}} [{e.ci_low:{spec}}, {e.ci_high:{spec}}]"

    return pd.DataFrame(
        [
            {
                "setup": s.name,
                "days": s.days,
                "served accuracy": ci(s.served_accuracy),
                "IC": ci(s.champion_ic),
                "Sharpe": ci(s.sharpe, ".2f"),
                "retrains": s.retrains,
                "promotions": s.promotions,
                "rollbacks": s.rollbacks,
                "wrong promotions": s.wrong_promotions,
                "refit CPU s": round(s.fit_cpu_seconds, 1),
            }
            for s in comparison.setups
        ]
    )
