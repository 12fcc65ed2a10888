"""FeedbackLedger: unknown ids, repeats counted once, accuracy vs the majority class, shadows, eviction, bandits."""

from __future__ import annotations

import math
import threading

import pytest

from finmlops.serving.experiments import ExperimentSet
from finmlops.serving.feedback import FeedbackLedger, ModelStats, Prediction, UnknownRequestId


def test_unknown_id_raises_and_bad_outcome_is_refused() -> None:
    ledger = FeedbackLedger()
    with pytest.raises(UnknownRequestId, match="no prediction with id 'nope'"):
        ledger.record("nope", 1)
    ledger.register(Prediction("r1", "m", 0.7))
    for bad in (2, -1, True, 0.5):
        with pytest.raises(ValueError, match="outcome must be 0"):
            ledger.record("r1", bad)  # type: ignore[arg-type]
    assert ledger.stats() == {}


def test_repeat_is_reported_and_counted_once() -> None:
    ledger = FeedbackLedger()
    ledger.register(Prediction("r1", "m", 0.7))
    first = ledger.record("r1", 1)
    assert first.counted and first.served is not None and first.served.correct
    again = ledger.record("r1", 0)  # a different outcome for the same id changes nothing either
    assert not again.counted and again.served is None
    assert ledger.repeats == 1
    assert ledger.stats()["m"].n == 1 and ledger.stats()["m"].correct == 1


def test_accuracy_and_majority_class_rate_on_the_same_feedback() -> None:
    ledger = FeedbackLedger()
    # Outcomes: 7 up, 3 down. The model always says up (prob 0.6): 7/10 correct, equal to the majority rate.
    # The second model says down on the first 4 (3 of which are the downs).
    outcomes = [0, 0, 0, 1, 1, 1, 1, 1, 1, 1]
    for i, outcome in enumerate(outcomes):
        ledger.register(Prediction(f"a{i}", "always-up", 0.6))
        ledger.register(Prediction(f"b{i}", "better", 0.2 if i < 4 else 0.9))
        ledger.record(f"a{i}", outcome)
        ledger.record(f"b{i}", outcome)
    stats = ledger.stats()
    assert stats["always-up"].accuracy == pytest.approx(0.7)
    assert stats["always-up"].baseline_accuracy == pytest.approx(0.7)
    assert stats["better"].accuracy == pytest.approx(0.9)
    low, high = stats["better"].interval()
    assert low < 0.9 < high and high - low > 0.2  # ten outcomes leave a wide interval
    assert stats["better"].as_dict()["n"] == 10


def test_threshold_boundary_predicts_down_as_in_the_offline_metrics() -> None:
    ledger = FeedbackLedger(threshold=0.5)
    ledger.register(Prediction("r", "m", 0.5))
    ledger.register(Prediction("s", "m", 0.5000001))
    assert ledger.record("r", 0).served.correct  # type: ignore[union-attr]
    assert ledger.record("s", 1).served.correct  # type: ignore[union-attr]


def test_shadows_are_scored_from_their_own_predictions() -> None:
    ledger = FeedbackLedger()
    # The shadow's answer may be registered before the served one (it is scored off the response path).
    ledger.register(Prediction("r1", "challenger", 0.8, shadow=True))
    ledger.register(Prediction("r1", "champion", 0.3, arm="champion", experiment="e"))
    result = ledger.record("r1", 1)
    assert result.served is not None and result.served.model == "champion" and not result.served.correct
    assert [(s.model, s.correct, s.shadow) for s in result.shadows] == [("challenger", True, True)]
    stats = ledger.stats()
    assert stats["champion"].accuracy == 0.0 and stats["challenger"].accuracy == 1.0


def test_memory_is_bounded_and_evicted_ids_come_from_the_log() -> None:
    log: dict[str, list[Prediction]] = {}
    stored_feedback: set[str] = set()
    ledger = FeedbackLedger(max_ids=3, lookup=lambda i: log.get(i, []), already_counted=stored_feedback.__contains__)
    for i in range(10):
        p = Prediction(f"r{i}", "m", 0.9)
        log[p.id] = [p]
        ledger.register(p)
    assert len(ledger) == 3
    assert ledger.record("r0", 1).counted  # evicted: found through lookup
    assert not ledger.record("r0", 1).counted  # and remembered again, so the repeat is caught
    stored_feedback.add("r1")  # the log already holds feedback for r1 (counted before a restart, say)
    assert not ledger.record("r1", 1).counted
    with pytest.raises(UnknownRequestId):
        ledger.record("r99", 1)
    assert ledger.stats()["m"].n == 1


def test_served_outcomes_feed_the_experiment_bandit() -> None:
    experiments = ExperimentSet.from_yaml(
        [
            {
                "name": "e",
                "strategy": "bandit",
                "candidates": [{"name": "a"}, {"name": "b"}],
                "bandit": {"seed": 0, "refresh_every": 1, "min_share": 0.1},
            }
        ]
    )
    ledger = FeedbackLedger(experiments=experiments)
    for i in range(80):
        ledger.register(Prediction(f"a{i}", "a", 0.9, arm="a", experiment="e"))
        ledger.register(Prediction(f"b{i}", "b", 0.9, arm="b", experiment="e"))
        ledger.register(Prediction(f"b{i}", "a", 0.9, shadow=True))  # shadow outcomes are not bandit feedback
        ledger.record(f"a{i}", 1)
        ledger.record(f"b{i}", 0)
    experiment = experiments.get("e")
    assert experiment.posteriors()["a"]["outcomes"] == 80
    assert experiment.traffic_share()["a"] == pytest.approx(0.9, abs=0.01)
    ledger.register(Prediction("gone", "a", 0.9, arm="a", experiment="removed"))
    assert ledger.record("gone", 1).counted  # an unknown experiment does not lose the model's outcome


def test_concurrent_records_count_each_id_once() -> None:
    ledger = FeedbackLedger()
    for i in range(500):
        ledger.register(Prediction(f"r{i}", "m", 0.9))
    counted: list[bool] = []

    def worker() -> None:
        counted.extend(ledger.record(f"r{i}", 1).counted for i in range(500))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counted) == 500 and ledger.repeats == 1500
    assert ledger.stats()["m"].n == 500


def test_empty_stats_are_nan_not_zero() -> None:
    empty = ModelStats()
    assert math.isnan(empty.accuracy) and math.isnan(empty.baseline_accuracy)
    assert all(math.isnan(x) for x in empty.interval())
    with pytest.raises(ValueError, match="max_ids"):
        FeedbackLedger(max_ids=0)
