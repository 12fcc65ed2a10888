"""The retrain rule of ``finmlops live`` (``retrain_trigger``): the schedule counts trading days since the last
refit, and a refit due while a canary runs waits for it to resolve, then starts (deferred, never skipped)."""

from __future__ import annotations

from datetime import date
from itertools import pairwise

from finmlops.workflow.daily import LoopState, Pending, retrain_trigger
from finmlops.workflow.live_config import DecayConfig, RetrainConfig


def _walk(retrain: RetrainConfig, canary_days: int, days: int = 200) -> tuple[list[int], list[int]]:
    """The loop's bookkeeping over ``days`` trading days: a refit started at the end of day i is collected on
    i + lag_days (its model goes to shadow) and its canary resolves ``canary_days`` days later. Returns the days
    refits started and the days a due refit waited."""
    state, refits, waited, resolve = LoopState(), [], [], None
    for i in range(days):
        state.day_index = i
        if state.pending is not None and i >= state.pending.due:
            state.pending, state.challenger, resolve = None, 2, i + canary_days
        if state.challenger is not None and resolve is not None and i >= resolve:
            state.challenger = None  # promoted or rolled back during the day, before the retrain phase
        trigger = retrain_trigger(retrain, state, drift_alarm=False)
        if trigger.waiting:
            waited.append(i)
        if trigger.reason:
            refits.append(i)
            state.pending = Pending(id=f"refit-{i}", day=date(2022, 1, 3), due=i + retrain.lag_days, reason="x")
            state.last_retrain = i
    return refits, waited


def test_the_schedule_counts_trading_days_since_the_last_refit() -> None:
    monthly = RetrainConfig(every_days=21, lag_days=1)
    refits, waited = _walk(monthly, canary_days=5)
    assert refits[0] == 20  # the bootstrap fit counts as day -1: 21 trading days later
    assert set(b - a for a, b in pairwise(refits)) == {21} and not waited


def test_a_refit_due_during_a_canary_waits_for_it_then_starts() -> None:
    monthly = RetrainConfig(every_days=21, lag_days=1)
    refits, waited = _walk(monthly, canary_days=30)  # the canary outlasts the schedule
    gaps = set(b - a for a, b in pairwise(refits))
    assert gaps == {31}, refits  # lag 1 + 30 canary days: each due refit starts the day its canary resolves
    # It waited on the days from its due day (21 after a refit) to the canary's end (31 after it), each time.
    assert waited == [d for r in refits for d in range(r + 21, r + 31) if d < 200]
    # Deferred, not skipped: 6 refits in 200 days; the former rule (refit on days 20, 41, 62, ... unless a canary
    # ran that day) made 5: days 20, 62, 104, 146 and 188.
    assert refits == [20, 51, 82, 113, 144, 175]


def test_drift_and_decay_triggers_respect_the_cooldown_and_the_canary() -> None:
    retrain = RetrainConfig(every_days=None, on_drift=True, on_decay=DecayConfig(window_days=5, below=0.45),
                            cooldown_days=10)  # fmt: skip
    state = LoopState(day_index=8, last_retrain=0)
    assert retrain_trigger(retrain, state, drift_alarm=True).reason is None  # 8 days: inside the cooldown
    state.day_index = 11
    assert retrain_trigger(retrain, state, drift_alarm=True).reason == "drift alarm"
    state.champion_hits = [[10, 4]] * 5
    assert "live accuracy 0.400" in str(retrain_trigger(retrain, state, drift_alarm=False).reason)
    state.challenger = 3
    busy = retrain_trigger(retrain, state, drift_alarm=True)
    assert busy.reason is None and "waits for the canary of v3" in str(busy.waiting)
    assert retrain_trigger(RetrainConfig(every_days=None), LoopState(day_index=500), True).reason is None  # static
