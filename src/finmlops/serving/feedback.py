"""Feedback bookkeeping: which model answered which request, and how often it was right.

The server registers every scored prediction (served and shadow) under its request id; ``POST /v2/feedback`` then
calls :meth:`FeedbackLedger.record` with the realised outcome. Each id counts once. The ledger keeps running
accuracy per model, the majority-class rate on the same feedback (the baseline an honest model must beat), and feeds
the served arm's outcome to its experiment (for bandits).

Memory is bounded: the last ``max_ids`` ids stay in memory; older ones are looked up through ``lookup`` (the server
passes a reader of its request log) and ``already_counted`` (whether the log already holds feedback for an id).
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from finmlops.serving.experiments import ExperimentSet, UnknownExperiment


class UnknownRequestId(KeyError):
    """Feedback names a request id the server never served (or no longer knows): HTTP 404."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown request id"


def row_ids(request_id: str, rows: int) -> list[str]:
    """The feedback id of each row of a scored request: the request id for a batch of 1, ``<id>/<row>`` otherwise."""
    return [request_id] if rows == 1 else [f"{request_id}/{i}" for i in range(rows)]


class Prediction(NamedTuple):
    """One model's answer to one request, as registered by the server (or read back from its request log). A
    NamedTuple: a day request registers hundreds at once, and a frozen dataclass costs a microsecond more each."""

    id: str
    model: str
    prob_up: float
    shadow: bool = False
    arm: str | None = None
    experiment: str | None = None


@dataclass(frozen=True, slots=True)
class Scored:
    """A prediction with its outcome: ``correct`` when ``prob_up > threshold`` agrees with the outcome."""

    model: str
    prob_up: float
    correct: bool
    shadow: bool
    arm: str | None = None
    experiment: str | None = None


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    """What :meth:`FeedbackLedger.record` did. ``counted`` is False for a repeat (nothing changed)."""

    id: str
    outcome: int
    counted: bool
    served: Scored | None
    shadows: tuple[Scored, ...] = ()


@dataclass(slots=True)
class ModelStats:
    """Running feedback tallies for one model; accuracy and the majority-class rate are on the same outcomes."""

    n: int = 0
    correct: int = 0
    ups: int = 0

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else math.nan

    @property
    def baseline_accuracy(self) -> float:
        """Accuracy of always predicting the majority class of these outcomes."""
        return max(self.ups, self.n - self.ups) / self.n if self.n else math.nan

    def interval(self, z: float = 1.959964) -> tuple[float, float]:
        """Wilson score interval of the accuracy (95 % by default); (nan, nan) before any feedback."""
        if not self.n:
            return math.nan, math.nan
        p, n = self.accuracy, self.n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return max(0.0, centre - half), min(1.0, centre + half)

    def as_dict(self) -> dict[str, float | int | list[float]]:
        low, high = self.interval()
        return {
            "n": self.n,
            "correct": self.correct,
            "accuracy": self.accuracy,
            "accuracy_ci95": [low, high],
            "baseline_accuracy": self.baseline_accuracy,
        }


@dataclass(slots=True)
class _Entry:
    served: Prediction | None = None
    shadows: dict[str, Prediction] = field(default_factory=dict)
    outcome: int | None = None


Lookup = Callable[[str], Iterable[Prediction]]


class FeedbackLedger:
    """Request id -> predictions, one outcome per id, running accuracy per model. Thread-safe.

    ``max_ids``: ids kept in memory (oldest evicted first). ``lookup(id)``: the logged predictions of an evicted id
    (served and shadow rows; empty when unknown). ``already_counted(id)``: whether feedback for an evicted id is
    already stored. ``experiments``: outcomes of served predictions go to their experiment's ``record_outcome``.
    ``threshold``: ``prob_up`` above it predicts "up", as in the offline metrics.
    """

    def __init__(
        self,
        *,
        max_ids: int = 200_000,
        lookup: Lookup | None = None,
        already_counted: Callable[[str], bool] | None = None,
        experiments: ExperimentSet | None = None,
        threshold: float = 0.5,
    ):
        if max_ids < 1:
            raise ValueError(f"max_ids must be at least 1, got {max_ids}")
        self.max_ids = max_ids
        self.lookup = lookup
        self.already_counted = already_counted
        self.experiments = experiments
        self.threshold = threshold
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._stats: dict[str, ModelStats] = {}
        self._lock = threading.Lock()
        self.repeats = 0

    def __len__(self) -> int:
        return len(self._entries)

    def register(self, prediction: Prediction) -> None:
        """Remember one model's answer to a request (served or shadow; they may arrive in any order)."""
        self.register_all((prediction,))

    def register_all(self, predictions: Iterable[Prediction]) -> None:
        """:meth:`register` each of ``predictions`` (the rows of one batch), under one hold of the lock."""
        with self._lock:
            for prediction in predictions:
                entry = self._entries.get(prediction.id)
                if entry is None:
                    entry = self._remember(prediction.id, _Entry())
                if prediction.shadow:
                    entry.shadows[prediction.model] = prediction
                else:
                    entry.served = prediction

    def _remember(self, request_id: str, entry: _Entry) -> _Entry:
        self._entries[request_id] = entry
        if len(self._entries) > self.max_ids:
            self._entries.popitem(last=False)
        return entry

    def _entry_from_log(self, request_id: str) -> _Entry | None:
        rows = list(self.lookup(request_id)) if self.lookup else []
        if not rows:
            return None
        entry = _Entry()
        for row in rows:
            if row.shadow:
                entry.shadows[row.model] = row
            else:
                entry.served = row
        if self.already_counted is not None and self.already_counted(request_id):
            entry.outcome = -1  # counted before it was evicted; the value itself is not needed again
        return entry

    def _score(self, p: Prediction, outcome: int) -> Scored:
        correct = (p.prob_up > self.threshold) == bool(outcome)
        stats = self._stats.setdefault(p.model, ModelStats())
        stats.n += 1
        stats.correct += correct
        stats.ups += outcome
        return Scored(p.model, p.prob_up, correct, p.shadow, p.arm, p.experiment)

    def record(self, request_id: str, outcome: int) -> FeedbackResult:
        """Count the realised ``outcome`` (1 up, 0 down) for a request: once per id.

        Raises :class:`UnknownRequestId` for an id with no registered or logged prediction, ``ValueError`` for an
        outcome other than 0 or 1. A repeat returns ``counted=False`` and changes nothing.
        """
        if isinstance(outcome, bool) or outcome not in (0, 1):
            raise ValueError(f"outcome must be 0 (down) or 1 (up), got {outcome!r}")
        with self._lock:
            entry = self._entries.get(request_id)
            if entry is None:
                entry = self._entry_from_log(request_id)
                if entry is None:
                    raise UnknownRequestId(f"no prediction with id {request_id!r}")
                # Back in memory, so a quick repeat is caught even before the log has stored this outcome.
                self._remember(request_id, entry)
            if entry.outcome is not None:
                self.repeats += 1
                return FeedbackResult(request_id, outcome, False, None)
            entry.outcome = outcome
            served = self._score(entry.served, outcome) if entry.served else None
            shadows = tuple(self._score(p, outcome) for p in entry.shadows.values())
        if served is not None and served.experiment and served.arm and self.experiments is not None:
            # An experiment removed since still leaves the outcome counted for the model.
            with contextlib.suppress(UnknownExperiment):
                self.experiments.get(served.experiment).record_outcome(served.arm, served.correct)
        return FeedbackResult(request_id, outcome, True, served, shadows)

    def stats(self) -> dict[str, ModelStats]:
        """Per model (served and shadow alike): feedback count, accuracy and majority-class rate. A copy."""
        with self._lock:
            return {m: ModelStats(s.n, s.correct, s.ups) for m, s in self._stats.items()}
