"""The audited alias history: every move is a registry tag, so who held champion on a day survives a restart."""

from __future__ import annotations

import json
from datetime import date

import mlflow
import pytest
from typer.testing import CliRunner

from finmlops.settings import Settings
from finmlops.tracking import configure_tracking
from finmlops.tracking.registry import (
    ALIAS_EVENT_PREFIX,
    HoldersOn,
    LiveEvidence,
    PromotionRefused,
    alias_events,
    alias_history,
    holders_on,
    live_decision,
    move_alias,
    promote,
    promote_live,
)

NAME = "lightweight-predictor"


@pytest.fixture
def registry(settings: Settings) -> mlflow.MlflowClient:
    """A real sqlite MLflow registry with three versions of one model (no artifacts: the history needs none)."""
    configure_tracking(settings)
    client = mlflow.MlflowClient()
    client.create_registered_model(NAME)
    for _ in range(3):
        client.create_model_version(NAME, source=str(settings.home / "none"), run_id=None)
    return client


def test_history_answers_every_day_and_survives_a_new_client(registry: mlflow.MlflowClient) -> None:
    move_alias(NAME, "champion", 1, action="force", reason="bootstrap", day=date(2021, 1, 4), event_id="d1-champion")
    move_alias(NAME, "challenger", 2, action="challenger", reason="scheduled retrain", day=date(2021, 2, 1))
    evidence = LiveEvidence(difference=0.01, ci=(-0.05, 0.07), p_value=0.8, days=20, outcomes=200, tested=True)
    promote_live(NAME, 2, evidence, margin=0.005, day=date(2021, 3, 1), event_id="d3-promote")
    move_alias(NAME, "challenger", None, action="retire", reason="promoted", day=date(2021, 3, 1))
    # A new client reads only the database: what the registry stored is all there is.
    mlflow.set_tracking_uri(mlflow.get_tracking_uri())
    on = holders_on(NAME, date(2021, 2, 15))
    assert on["champion"] is not None and on["champion"].version == 1
    assert on["challenger"] is not None and on["challenger"].version == 2
    later = holders_on(NAME, date(2021, 6, 1))
    assert later["champion"] is not None and later["champion"].version == 2
    assert later["champion"].event.evidence["days"] == 20
    assert later["champion"].event.evidence["rule"] == "live-sequential"
    assert later["challenger"] is not None and later["challenger"].version is None  # removed on promotion
    assert holders_on(NAME, date(2020, 12, 31)) == {"champion": None, "challenger": None}
    periods = alias_history(NAME, "champion")
    assert [(p.version, p.start, p.end) for p in periods] == [
        (1, date(2021, 1, 4), date(2021, 2, 28)),
        (2, date(2021, 3, 1), None),
    ]
    assert {k: str(v) for k, v in registry.get_registered_model(NAME).aliases.items()} == {"champion": "2"}
    assert registry.get_model_version(NAME, "2").tags["promotion.champion.rule"] == "live-sequential"


def test_a_move_with_the_same_id_is_not_repeated(registry: mlflow.MlflowClient) -> None:
    first = move_alias(NAME, "champion", 1, action="force", reason="x", day=date(2021, 1, 4), event_id="once")
    # A crash after the event was written, before the alias moved: the same call completes it, no second event.
    registry.delete_registered_model_alias(NAME, "champion")
    again = move_alias(NAME, "champion", 3, action="force", reason="y", day=date(2021, 1, 5), event_id="once")
    assert again == first and again.version == 1
    assert {k: str(v) for k, v in registry.get_registered_model(NAME).aliases.items()} == {"champion": "1"}
    tags = [k for k in registry.get_registered_model(NAME).tags if k.startswith(ALIAS_EVENT_PREFIX)]
    assert len(tags) == 1 and json.loads(registry.get_registered_model(NAME).tags[tags[0]])["reason"] == "x"


def test_forced_promote_is_in_the_history(registry: mlflow.MlflowClient) -> None:
    promote(NAME, 1, "champion", force=True, reason="first model")
    (event,) = alias_events(NAME)
    assert event.action == "force" and event.reason == "first model" and event.version == 1 and event.previous is None


def test_live_rule() -> None:
    worse = LiveEvidence(difference=-0.08, ci=(-0.15, -0.01), p_value=0.01, days=30, outcomes=300, tested=True)
    assert live_decision(worse, 0.005) == "rollback"
    early = LiveEvidence(difference=0.05, ci=None, p_value=1.0, days=5, outcomes=50, tested=False)
    assert live_decision(early, 0.005) == "wait"
    slightly = LiveEvidence(difference=-0.02, ci=(-0.1, 0.06), p_value=1.0, days=30, outcomes=300, tested=True)
    assert live_decision(slightly, 0.005) == "wait"
    with pytest.raises(PromotionRefused, match="wait, not promote"):
        promote_live(NAME, 1, slightly, margin=0.005, day=date(2021, 1, 1), event_id="x")


def test_models_history_command(registry: mlflow.MlflowClient) -> None:
    from finmlops.cli import app

    move_alias(NAME, "champion", 1, action="force", reason="bootstrap", day=date(2021, 1, 4))
    move_alias(NAME, "champion", 2, action="rollback", reason="back", day=date(2021, 1, 20))
    runner = CliRunner()
    result = runner.invoke(app, ["models", "history", "--model", NAME, "--on", "2021-01-10", "--json"])
    assert result.exit_code == 0, result.output
    payload = HoldersOn.model_validate_json(result.output)
    assert payload.holders is not None and payload.holders == payload.models[NAME] and payload.day == date(2021, 1, 10)
    champion = payload.holders["champion"]
    assert champion is not None and champion.version == 1 and payload.holders["challenger"] is None
    assert champion.why == "forced by " + champion.event.by + ": bootstrap"
    result = runner.invoke(app, ["models", "history", "--model", NAME])
    assert result.exit_code == 0 and "2021-01-04" in result.output and "bootstrap" in result.output
    bad = runner.invoke(app, ["models", "history", "--model", "nope-predictor"])
    assert bad.exit_code == 1 and "no registered model 'nope-predictor'" in bad.output
    # The plain listing still works.
    assert runner.invoke(app, ["models"]).exit_code == 0
