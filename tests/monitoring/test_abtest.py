"""The A/B analysis (the test's calibration is in tests/stats/test_sequential.py): per-arm summaries, outcomes on
the day they became known, the direction at the first crossing; ``finmlops abtest analyze`` on a real SQLite
request log, with ``--apply`` moving the champion alias in a real MLflow registry."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from finmlops.cli import app
from finmlops.monitoring.abtest import AbTest, analyze
from finmlops.serving.requestlog import FeedbackRecord, RequestLog, RequestRecord, read_feedback, read_requests

DAY = 86400.0


# --- a real request log ---------------------------------------------------------------------------------------------


def write_log(
    path: Path,
    accuracy: dict[str, float],
    *,
    days: int = 30,
    per_day: int = 300,
    seed: int = 0,
    experiment: str = "exp",
    models: dict[str, tuple[str, str]] | None = None,
) -> dict[str, tuple[str, str]]:
    """An experiment (``exp``) whose arms (``accuracy`` keys, in order: control first with 70% of traffic) serve
    baseline-predictor versions 1, 2, ... (or ``models``: arm -> (model, version)); outcomes arrive one day after
    each request. Plus a shadow copy and a request of another experiment, which the analysis must ignore. Returns
    arm -> (model, version)."""
    rng = np.random.default_rng(seed)
    arms = list(accuracy)
    versions = models or {arm: ("baseline-predictor", str(i + 1)) for i, arm in enumerate(arms)}
    weights = np.array([0.7, *[0.3 / (len(arms) - 1)] * (len(arms) - 1)])
    start = (time.time() // DAY - days - 1) * DAY  # a UTC midnight: requests fill `days` whole days
    log = RequestLog(path)
    for i in range(days * per_day):
        ts = start + i * DAY / per_day
        arm = arms[rng.choice(len(arms), p=weights)]
        outcome = int(rng.random() < 0.5)
        correct = rng.random() < accuracy[arm]
        up = outcome if correct else 1 - outcome
        failed = rng.random() < 0.01
        model, version = versions[arm]
        log.append(
            RequestRecord(
                id=f"q{i}",
                model=model,
                ts=ts,
                experiment=experiment,
                arm=arm,
                model_version=version,
                shadow=0,
                inputs_digest=None,
                prob_up=None if failed else 0.4 + 0.2 * up,
                latency_ms=float(rng.gamma(2, 2)),
                status=500 if failed else 200,
            )
        )
        log.append(FeedbackRecord(id=f"q{i}", ts=ts + DAY, outcome=outcome))
    log.append(RequestRecord("q0", "enhanced-predictor", start, experiment, arms[0], "7", 1, None, 0.9, 1.0, 200))
    log.append(RequestRecord("o1", "enhanced-predictor", start, "other", "x", "1", 0, None, 0.9, 1.0, 200))
    log.close()
    return versions


def test_analysis_of_a_request_log(tmp_path: Path) -> None:
    path = tmp_path / "requests.db"
    write_log(path, {"control": 0.52, "challenger": 0.62})
    result = analyze(read_requests(path), read_feedback(path), "exp")
    assert result.control == "control" and list(result.arms) == ["control", "challenger"]
    control, challenger = result.arms["control"], result.arms["challenger"]
    assert control.requests + challenger.requests == 9000
    assert control.requests > 2 * challenger.requests
    assert control.errors > 0 and control.outcomes == control.requests - control.errors
    for arm, truth in (("control", 0.52), ("challenger", 0.62)):
        low, high = result.arms[arm].accuracy_ci95
        assert low < truth < high
    assert control.models == ["baseline-predictor v1"]
    assert 0 < control.latency_ms.p50 < control.latency_ms.p95 < control.latency_ms.p99
    assert result.decision.action == "promote" and result.decision.arm == "challenger"
    days = result.timeline
    assert len(days) == 31 and days[-1].requests["control"] == control.requests
    assert days[0].outcomes["control"] == 0  # the first day's outcomes arrive the next day
    shares = [d.traffic_share["challenger"] for d in days if d.traffic_share["challenger"] is not None]
    assert 0.25 < np.mean(shares) < 0.35
    p_values = [d.tests["challenger"].p_value for d in days]
    assert p_values == sorted(p_values, reverse=True)  # always-valid p-values never rise
    assert all(d.tests["challenger"].boundary == pytest.approx(math.log(20)) for d in days)
    assert AbTest.model_validate_json(result.model_dump_json()) == result  # the file's JSON reads back the same


def test_equal_arms_continue_and_worse_rolls_back(tmp_path: Path) -> None:
    write_log(tmp_path / "aa.db", {"control": 0.53, "challenger": 0.53}, seed=5)
    same = analyze(read_requests(tmp_path / "aa.db"), read_feedback(tmp_path / "aa.db"), "exp")
    assert same.decision.action == "continue" and same.decision.arm is None
    write_log(tmp_path / "worse.db", {"control": 0.60, "challenger": 0.48}, seed=6)
    worse = analyze(read_requests(tmp_path / "worse.db"), read_feedback(tmp_path / "worse.db"), "exp")
    assert worse.decision.action == "rollback" and worse.decision.arm == "control"
    with pytest.raises(ValueError, match=r"no served requests of experiment 'nope'.*'exp', 'other'"):
        analyze(read_requests(tmp_path / "aa.db"), read_feedback(tmp_path / "aa.db"), "nope")
    with pytest.raises(ValueError, match="--control 'x' is not an arm"):
        analyze(read_requests(tmp_path / "aa.db"), read_feedback(tmp_path / "aa.db"), "exp", control="x")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("FINMLOPS_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return home


def test_cli_analyze_and_apply(home: Path, tmp_path: Path) -> None:
    import mlflow

    from finmlops.settings import Settings

    write_log(home / "serving" / "requests.db", {"control": 0.52, "challenger": 0.62}, days=20)
    result = CliRunner().invoke(app, ["abtest", "analyze", "--experiment", "exp", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["decision"]["action"] == "promote" and "applied" not in payload
    saved = json.loads((home / "results" / "abtest_exp.json").read_text())
    assert saved["timeline"] == payload["timeline"] and saved["provenance"]["config"]["experiment"] == "exp"
    text = CliRunner().invoke(app, ["abtest", "analyze", "--experiment", "exp"])
    assert text.exit_code == 0 and "decision: PROMOTE" in text.stdout

    uri = Settings(home=home).tracking_uri
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("baseline-predictor")
    for _ in range(2):
        client.create_model_version("baseline-predictor", source=str(tmp_path), run_id=None)
    client.set_registered_model_alias("baseline-predictor", "champion", "1")
    applied = CliRunner().invoke(app, ["abtest", "analyze", "--experiment", "exp", "--apply", "--json"])
    assert applied.exit_code == 0, applied.output
    assert json.loads(applied.stdout)["applied"]["changed"] is True
    assert str(client.get_registered_model("baseline-predictor").aliases["champion"]) == "2"
    tags = client.get_model_version("baseline-predictor", "2").tags
    assert tags["abtest.exp.decision"] == "promote" and "beats control" in tags["abtest.exp.reason"]
    again = CliRunner().invoke(app, ["abtest", "analyze", "--experiment", "exp", "--apply", "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["applied"]["changed"] is False

    missing = CliRunner().invoke(app, ["abtest", "analyze", "--experiment", "nope"])
    assert missing.exit_code == 1 and "no served requests of experiment 'nope'" in missing.output
    assert CliRunner().invoke(app, ["abtest", "analyze", "--experiment", "exp", "--alpha", "2"]).exit_code == 2


def test_apply_routes_the_experiment_when_arms_are_different_models(home: Path, tmp_path: Path) -> None:
    """The platform's own A/B test: baseline-predictor 70 / enhanced-predictor 30, each served @champion. Both
    champions already point at the winning versions, so --apply must change the experiment the server routes by:
    live through the admin API (with the admin token) and in the serving config file."""
    import mlflow
    import yaml
    from finmlops_testing.serving import AB, Client, ab_config, tiny_onnx, v2_body

    from finmlops.serving.app import ServingApp
    from finmlops.serving.config import load_config, parse_config
    from finmlops.serving.server import running_server
    from finmlops.settings import Settings

    arms = {"baseline-predictor": 0.52, "enhanced-predictor": 0.62}
    models = {arm: (arm, "1") for arm in arms}
    write_log(home / "serving" / "requests.db", arms, days=20, experiment=AB, models=models)
    uri = Settings(home=home).tracking_uri
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    for name in arms:
        client.create_registered_model(name)
        client.create_model_version(name, source=str(tmp_path), run_id=None)
        client.set_registered_model_alias(name, "champion", "1")
    config = ab_config(tiny_onnx(tmp_path / "b.onnx", 10, 35), tiny_onnx(tmp_path / "e.onnx", 10, 35, bias=1.0))
    config["auth"] = {"admin_tokens": {"ops": "s3cret-admin-token-0123"}}
    config_file = tmp_path / "serving.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    analyze_ab = ["abtest", "analyze", "--experiment", AB, "--apply", "--json"]

    with running_server(ServingApp(parse_config(config), registry=None, request_log=None)) as base:
        nowhere = CliRunner().invoke(app, analyze_ab)
        assert nowhere.exit_code == 1 and "serve different models" in nowhere.output and "--server" in nowhere.output
        denied = CliRunner().invoke(app, [*analyze_ab, "--server", base, "--token", "wrong"])
        assert denied.exit_code == 1 and "HTTP 401" in denied.output
        result = CliRunner().invoke(
            app, [*analyze_ab, "--server", base, "--token", "s3cret-admin-token-0123", "--config", config_file]
        )
        assert result.exit_code == 0, result.output
        applied = json.loads(result.stdout)["applied"]
        assert applied["mode"] == "routing" and applied["arm"] == "enhanced-predictor" and applied["changed"]
        weights = {"baseline-predictor": 0.0, "enhanced-predictor": 100.0}
        assert applied["server"]["weights_before"] == {"baseline-predictor": 70.0, "enhanced-predictor": 30.0}
        assert applied["server"]["weights"] == weights and applied["config"]["weights"] == weights
        # The live server now answers every request of the experiment (and of the endpoint it took over) with
        # the winner.
        http = Client(base)
        x = np.zeros((1, 10, 35), dtype=np.float32)
        answered = set()
        for _ in range(40):
            status, body, _ = http.request("POST", "/v2/models/baseline-predictor/infer", v2_body(x))
            assert status == 200, body
            answered.add(body["model_name"])
        assert answered == {"enhanced-predictor"}
        again = CliRunner().invoke(
            app, [*analyze_ab, "--server", base, "--token", "s3cret-admin-token-0123", "--config", config_file]
        )
        assert again.exit_code == 0 and json.loads(again.stdout)["applied"]["changed"] is False
        text = CliRunner().invoke(
            app, [*analyze_ab[:-1], "--server", base, "--token", "s3cret-admin-token-0123", "--config", config_file]
        )
        # Weights as people read them, not a dict repr (issue 15.7).
        same = "baseline-predictor 0.0, enhanced-predictor 100.0"
        assert f"experiment weights {same} -> {same} (already so)" in text.stdout and "{" not in text.stdout
    experiment = load_config(config_file).experiments[0]  # the rewritten file is still a valid serving config
    assert {c["name"]: c["weight"] for c in experiment["candidates"]} == {
        "baseline-predictor": 0,
        "enhanced-predictor": 100,
    }
    assert experiment["default"] == "baseline-predictor"
    # The aliases did not move (they were already right); the winner's version is tagged with why.
    assert all(str(client.get_registered_model(n).aliases["champion"]) == "1" for n in arms)
    assert client.get_model_version("enhanced-predictor", "1").tags[f"abtest.{AB}.decision"] == "promote"


def test_missing_log_is_a_clear_error(home: Path) -> None:
    result = CliRunner().invoke(app, ["abtest", "analyze", "--experiment", "exp"])
    assert result.exit_code == 1 and "requests.db" in result.output and "Traceback" not in result.output


def test_feedback_outcomes_are_checked(tmp_path: Path) -> None:
    requests = pd.DataFrame(
        {
            "id": ["a"], "model": ["m"], "ts": [0.0], "experiment": ["exp"], "arm": ["x"], "model_version": ["1"],
            "shadow": [0], "prob_up": [0.7], "latency_ms": [1.0], "status": [200],
        }
    )  # fmt: skip
    with pytest.raises(ValueError, match="feedback row id=a: outcome must be 0 or 1"):
        analyze(requests, pd.DataFrame({"id": ["a"], "ts": [1.0], "outcome": [3]}), "exp")


def _daily_log(days: list[dict[str, tuple[int, int]]], *, as_of: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Request and feedback frames of experiment ``exp`` from per-day ``{arm: (outcomes, correct)}``: noon
    requests with feedback an hour later (so labelled the same UTC day), or with ``as_of`` the day's date (a
    replay: the outcome of trading day d becomes known on the next trading day, whatever the wall clock says)."""
    requests, feedback = [], []
    for day, arms in enumerate(days):
        for arm, (n, k) in arms.items():
            for j in range(n):
                rid, ts = f"{arm}-{day}-{j}", day * DAY + 12 * 3600.0
                up = j < k  # outcome 1 always: the first k predictions say up (correct), the rest down
                date = str((pd.Timestamp("2023-01-02") + pd.offsets.BDay(day)).date()) if as_of else None
                requests.append((rid, arm, ts, "exp", arm, "1", 0, 0.9 if up else 0.1, 1.0, 200, date))
                feedback.append((rid, ts + 3600.0, 1))
    columns = [
        "id", "model", "ts", "experiment", "arm", "model_version", "shadow", "prob_up", "latency_ms", "status", "as_of",
    ]  # fmt: skip
    return pd.DataFrame(requests, columns=columns), pd.DataFrame(feedback, columns=["id", "ts", "outcome"])


def _noisy(control: float, challenger: float, days: int, seed: int, n: int = 400) -> list[dict[str, tuple[int, int]]]:
    """``days`` days of ``n`` outcomes per arm at the given accuracies (binomial day to day)."""
    rng = np.random.default_rng(seed)
    return [
        {"control": (n, int(rng.binomial(n, control))), "challenger": (n, int(rng.binomial(n, challenger)))}
        for _ in range(days)
    ]


def test_the_direction_is_the_one_at_the_first_crossing() -> None:
    """The challenger is clearly worse for 5 days (the boundary is crossed at a negative difference), then clearly
    better, so the last look's difference is positive. The always-valid p-value is a running minimum and stays
    below alpha; pairing it with the last difference would promote a challenger that crossed as the worse arm."""
    requests, feedback = _daily_log(_noisy(0.6, 0.4, 5, seed=1) + _noisy(0.5, 0.9, 20, seed=2))
    result = analyze(requests, feedback, "exp", control="control", min_days=3)
    (comparison,) = result.comparisons
    assert comparison.difference > 0.05 and comparison.p_value < 0.05  # the last look reads as "better"
    assert comparison.crossed.date == "1970-01-03" and comparison.crossed.difference < -0.15
    assert result.decision.action == "rollback" and result.decision.arm == "control"
    assert f"crossed on 1970-01-03 at {comparison.crossed.difference:+.4f}" in result.decision.reason
    # Crossed while better: promote, and the reason says where it crossed.
    requests, feedback = _daily_log(_noisy(0.5, 0.9, 4, seed=3))
    promoted = analyze(requests, feedback, "exp", control="control", min_days=3)
    assert promoted.decision.action == "promote" and promoted.comparisons[0].crossed.difference > 0


def test_outcomes_count_on_the_day_they_became_known() -> None:
    """A replay's requests carry their trading day (``as_of``); the outcome of day d is known one trading day
    later (``outcome_lag``), so a look on day d holds only the outcomes of the days before it, and the crossing
    date is a day on which the deciding outcomes were known."""
    requests, feedback = _daily_log(_noisy(0.6, 0.4, 6, seed=4), as_of=True)
    result = analyze(requests, feedback, "exp", control="control", min_days=3)
    days = result.timeline
    assert days[0].date == "2023-01-02" and days[0].outcomes == {"control": 0, "challenger": 0}
    assert [d.outcomes["control"] for d in days] == [400 * i for i in range(7)]
    assert days[-1].date == "2023-01-10"  # the last day's outcomes are known the next business day
    # Three days of outcomes are first known on the fourth trading day, 2023-01-05.
    assert result.comparisons[0].crossed.date == "2023-01-05"
    two_days = analyze(requests, feedback, "exp", control="control", min_days=3, outcome_lag=2)
    assert two_days.comparisons[0].crossed.date == "2023-01-06"
