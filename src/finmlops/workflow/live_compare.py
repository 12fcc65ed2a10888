"""Several live setups side by side over the same days: a static model, scheduled retraining, drift-triggered.

Each setup lives in its own workspace (``finmlops live`` with its config); :func:`compare_live` reads their
journals and measures, per setup, with 95% circular block-bootstrap intervals over days (blocks of 10 trading days,
so that the days' dependence is kept):

- the served accuracy (every outcome of the answers actually served, canary shares included), beside the accuracy
  of always answering "up" on the same outcomes and the paired test of the difference (by day, two-sided);
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

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from finmlops.data import DataStore
from finmlops.evaluation.results import Estimate
from finmlops.features import compute_features, make_target, make_windows
from finmlops.monitoring.live_timeline import Hindsight, LiveComparison, SetupResult
from finmlops.provenance import stamp, write_json_atomic
from finmlops.settings import Settings
from finmlops.stats import describe_comparison
from finmlops.stats.bootstrap import BootstrapConfig, block_bootstrap_weights, paired_test_of_dates
from finmlops.stats.comparison import format_interval
from finmlops.workflow.daily import LivePaths, journal_days, live_settings, live_timeline
from finmlops.workflow.live_config import LiveConfig

COMPARISON_FILE = "live_comparison.json"
HINDSIGHT_DAYS = 63  # a quarter of trading days after each promotion
N_BOOT, BLOCK_LEN = 1000, 10


def _weights(n: int, seed: int) -> np.ndarray:
    return block_bootstrap_weights(n, n_boot=N_BOOT, block_len=min(BLOCK_LEN, max(n, 1)), seed=seed)


UNDEFINED = Estimate(value=float("nan"), ci_low=float("nan"), ci_high=float("nan"))


def _ratio(num: np.ndarray, den: np.ndarray, seed: int) -> Estimate:
    """``sum(num) / sum(den)`` over days ``[n_days]``, with its 95% block-bootstrap interval over days."""
    if den.sum() <= 0:
        return UNDEFINED
    w = _weights(len(num), seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        samples = (w @ num) / (w @ den)
    low, high = np.nanpercentile(samples, [2.5, 97.5])
    return Estimate(value=float(num.sum() / den.sum()), ci_low=float(low), ci_high=float(high))


def _sharpe(returns: np.ndarray, seed: int) -> Estimate:
    if len(returns) < 3 or returns.std() == 0:
        return UNDEFINED
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
        collect = record.phases.collect
        if collect is not None and collect.version == version and collect.refit is not None:
            return torch.load(paths.retrains / collect.refit / "model.pt", weights_only=False)
    boot = sorted(paths.retrains.glob("bootstrap-*"))
    if version == 1 and boot:
        return torch.load(boot[0] / "model.pt", weights_only=False)
    raise FileNotFoundError(f"no refit folder of v{version} in {paths.retrains}")


def hindsight(paths: LivePaths, config: LiveConfig, days: int = HINDSIGHT_DAYS) -> list[Hindsight]:
    """Every promotion of a workspace judged on the ``days`` trading days after it (see the module docstring)."""

    events = []
    for record in journal_days(paths):
        rollout, score = record.phases.rollout, record.phases.score
        if rollout is not None and rollout.decision == "promote" and score is not None:
            old = score.champion
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
    always_up = vs_always_up = None
    if n.sum() > 0 and all(d.served_up is not None for d in days):
        up = np.array([d.served_up for d in days], dtype=float)
        always_up = _ratio(up, n, seed + 3)
        boot = BootstrapConfig(n_boot=N_BOOT, block_len=min(BLOCK_LEN, len(days)), seed=seed + 4)
        vs_always_up = paired_test_of_dates(correct - up, n, boot)
    return SetupResult(
        name=config.name, workspace=config.workspace, days=len(days), first=days[0].day if days else None,
        last=days[-1].day if days else None, served_accuracy=_ratio(correct, n, seed),
        always_up=always_up, vs_always_up=vs_always_up,
        champion_ic=_ratio(ics, np.ones_like(ics), seed + 1), sharpe=_sharpe(returns, seed + 2),
        total_return=float(np.prod(1 + returns) - 1) if len(returns) else None, outcomes=int(n.sum()),
        retrains=timeline.totals.retrains, promotions=timeline.totals.promotions,
        rollbacks=timeline.totals.rollbacks, drift_alarms=timeline.totals.drift_alarms,
        wrong_promotions=sum(h.wrong for h in judged), hindsight=judged,
        fit_cpu_seconds=timeline.totals.fit_cpu_seconds, timeline=str(path),
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

    def ci(e: Estimate | None, spec: str = ".3f") -> str:
        return "–" if e is None else format_interval(e.value, e.ci_low, e.ci_high, spec)

    def against(s: SetupResult) -> str:
        c = s.against_always_up
        return "-" if c is None else describe_comparison(c)

    return pd.DataFrame(
        [
            {
                "setup": s.name,
                "days": s.days,
                "served accuracy": ci(s.served_accuracy),
                "always up": ci(s.always_up),
                "vs always up": against(s),
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
