"""The tracked stage services that `finmlops ingest` and `finmlops run`'s ingest step both call: the stage's work,
then one call of the injected tracker with what the stage did (real snapshot, real store)."""

from __future__ import annotations

from datetime import date
from typing import Any

from finmlops.settings import Settings
from finmlops.workflow.services import IngestOutcome, ingest_stage, track_evaluation


def test_ingest_stage_tracks_what_it_stored(settings: Settings) -> None:
    calls: list[tuple[str, str, dict[str, Any]]] = []

    def tracker(what: str, function: str, **kwargs: Any) -> str:
        calls.append((what, function, kwargs))
        return "run-1"

    outcome = ingest_stage(settings, "snapshot", ["AAPL", "MSFT"], date(2022, 1, 3), date(2022, 3, 31), tracker=tracker)
    assert isinstance(outcome, IngestOutcome) and outcome.mlflow_run == "run-1"
    assert outcome.report.changed and sorted(t.ticker for t in outcome.report.tickers) == ["AAPL", "MSFT"]
    [(what, function, kwargs)] = calls
    assert (what, function) == ("ingestion", "log_ingestion")
    assert kwargs["dataset_hash"] == outcome.report.dataset_hash
    assert kwargs["n_rows"] == sum(t.rows for t in outcome.report.tickers) > 100  # ~60 trading days x 2 tickers
    # Untracked: the same work, no run; a re-ingest with nothing new leaves the store unchanged.
    again = ingest_stage(settings, "snapshot", ["AAPL", "MSFT"], date(2022, 1, 3), date(2022, 3, 31))
    assert again.mlflow_run is None and not again.report.changed and len(calls) == 1


def test_track_evaluation_without_tracker_is_untracked() -> None:
    assert track_evaluation({"models": {}}, None) is None
    seen: list[str] = []
    assert track_evaluation({"models": {}}, lambda what, function, **kw: seen.append(function) or "r") == "r"
    assert seen == ["log_evaluation_result"]
