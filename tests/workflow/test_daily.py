"""``finmlops live``: the config, the feeds, the label, the canary split, and a few real days through the CLI (a
real store, MLflow registry, V2 server on 127.0.0.1 and refit process), answered day by day by `models history`."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from finmlops.cli import app
from finmlops.data import DataStore, ingest
from finmlops.data.frames import validate_batch
from finmlops.settings import Settings
from finmlops.tracking.registry import HoldersOn
from finmlops.workflow.config import RunConfigError
from finmlops.workflow.daily import ReplayFeed, label_outcomes, served_by_challenger
from finmlops.workflow.live_compare import summarize
from finmlops.workflow.live_config import SHIPPED_LIVE, parse_live_config, shipped_live_config


def test_shipped_live_configs_parse_and_differ_only_in_their_trigger() -> None:
    configs = {name: shipped_live_config(name) for name in SHIPPED_LIVE}
    assert configs["live"].retrain.every_days == 21 and configs["live-quarterly"].retrain.every_days == 63
    assert configs["live-static"].retrain.every_days is None and not configs["live-static"].retrain.on_drift
    assert configs["live-drift"].retrain.on_drift and configs["live-drift"].retrain.every_days is None
    workspaces = [c.workspace for c in configs.values()]
    assert len(set(workspaces)) == len(workspaces)  # each setup lives in its own workspace


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ("rollout: {steps: [10, 50]}", "rollout.steps"),
        ("model: {variant: huge}", "unknown 'huge'"),
        ("model: {params: {hidden_size: 0}}", "model.params"),
        ("retrain: {every_days: 0}", "retrain.every_days"),
    ],
)
def test_bad_live_configs_name_the_field(patch: str, message: str) -> None:
    text = "name: x\nuniverse: {tickers: [AAPL], history_start: 2021-01-01}\n" + patch + "\n"
    with pytest.raises(RunConfigError, match=message) as info:
        parse_live_config(text, "bad.yaml")
    assert "bad.yaml" in str(info.value)


def test_replay_feed_bars_go_through_the_yahoo_normaliser_and_the_ingest_checks(tmp_path: Path) -> None:
    history = DataStore(tmp_path / "history")
    ingest(history, "snapshot", ["AAPL", "MSFT"])
    feed = ReplayFeed(tmp_path / "history", ["AAPL", "MSFT"])
    day = date(2022, 3, 1)
    raws = feed.bars(day)
    assert [r.source for r in raws] == ["yahoo:AAPL", "yahoo:MSFT"]
    universe, _, _ = validate_batch(raws, day, day)
    stored = history.read(["AAPL"])["AAPL"].loc["2022-03-01"]
    assert universe["AAPL"].iloc[0].to_dict() == pytest.approx(stored.to_dict())
    assert date(2022, 3, 1) in feed.trading_days(date(2022, 2, 28), date(2022, 3, 2))
    assert date(2022, 3, 5) not in feed.trading_days(date(2022, 3, 1), date(2022, 3, 8))  # a Saturday


def test_label_outcomes_follow_the_config_label(tmp_path: Path) -> None:
    store = DataStore(tmp_path / "s")
    ingest(store, "snapshot", ["AAPL"])
    universe = store.read(["AAPL"], date(2022, 1, 1), date(2022, 1, 31))
    config = shipped_live_config("live-tiny")
    out = label_outcomes(universe, date(2022, 1, 3), config)["AAPL"]
    adj = universe["AAPL"]["adj_close"]
    # The LabelSpec's traded return: entered at the close of t+1, held one day (close t+1 -> close t+2).
    assert out.return_ == pytest.approx(adj.iloc[2] / adj.iloc[1] - 1)
    assert out.outcome == int(adj.iloc[2] > adj.iloc[1])
    banded = config.model_copy(update={"label": config.label.model_copy(update={"threshold": 0.5})})
    assert label_outcomes(universe, date(2022, 1, 3), banded)["AAPL"].outcome is None  # in the dead band
    assert label_outcomes(universe, date(2022, 1, 28), config)["AAPL"].outcome is None  # the future is unknown


def test_canary_split_is_stable_and_near_its_share() -> None:
    days = [date(2022, 1, 1).fromordinal(date(2022, 1, 1).toordinal() + i) for i in range(400)]
    picks = np.array([served_by_challenger(d, t, 0.1) for d in days for t in ("AAPL", "MSFT", "JPM")])
    assert 0.07 < picks.mean() < 0.13
    assert served_by_challenger(days[0], "AAPL", 0.5) == served_by_challenger(days[0], "AAPL", 0.5)
    assert not any(served_by_challenger(d, "AAPL", 0.0) for d in days)


@pytest.mark.slow
def test_live_days_through_the_cli_and_the_history_of_every_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FINMLOPS_HOME", str(tmp_path))
    runner = CliRunner()
    args = ["live", "--from", "2022-01-03", "--to", "2022-01-12", "--config", "live-tiny", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lived = json.loads(result.stdout)
    assert len(lived["days"]) == 8 and lived["skipped"] == 0
    again = json.loads(runner.invoke(app, args).stdout)
    assert again["days"] == [] and again["skipped"] == 8  # idempotent by day
    monkeypatch.setenv("FINMLOPS_HOME", str(tmp_path / "live" / "tiny"))
    for day in lived["days"]:
        answer = runner.invoke(app, ["models", "history", "--model", "lightweight-predictor", "--on", day["day"],
                                     "--json"])  # fmt: skip
        holders = HoldersOn.model_validate_json(answer.stdout).holders
        assert holders is not None and (champion := holders["champion"]) is not None, day
        assert champion.version == day["champion"], day
        challenger = holders["challenger"]
        assert (challenger.version if challenger else None) == day["challenger"], day
    # The comparison's always-up reference counts the up outcomes among the served ones, day by day.
    summary = summarize(Settings(home=tmp_path), shipped_live_config("live-tiny"))
    timeline = json.loads(Path(summary.timeline).read_text())["days"]
    n, correct = sum(d["served_n"] for d in timeline), sum(d["served_correct"] for d in timeline)
    up = sum(d["served_up"] for d in timeline)
    assert all(0 <= d["served_up"] <= d["served_n"] for d in timeline) and n > 0
    assert summary.always_up is not None and summary.always_up.value == pytest.approx(up / n)
    assert summary.vs_always_up is not None and summary.vs_always_up.n_rows == n
    assert summary.vs_always_up.difference == pytest.approx((correct - up) / n)
    prom = (tmp_path / "live" / "tiny" / "metrics" / "finmlops_live.prom").read_text()
    assert 'finmlops_live_retrains_total{setup="tiny"} 1' in prom
    bad = runner.invoke(app, ["live", "--from", "2022-01-12", "--to", "2022-01-03"])
    assert bad.exit_code == 2 and "before --from" in bad.output
