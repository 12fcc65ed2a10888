"""Alert rules: valid for promtool, each alert fires on the failure it names and stays quiet otherwise, and the
generated PrometheusRule matches the rules file."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from finmlops_testing.prometheus import assert_rules_fire, promtool

from finmlops.deploy.release import DeployError
from finmlops.deploy.rules import ALERT_RULES, PROMETHEUS_RULE, load_alert_rules, prometheus_rule, sync_rule

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / ALERT_RULES
SERVER_METRICS = {
    "finmlops_requests_total",
    "finmlops_request_latency_seconds_bucket",
    "finmlops_predictions_total",
    "finmlops_feedback_accuracy",
    "finmlops_feedback_total",
    "finmlops_traffic_share",
    "finmlops_feature_psi",
    "finmlops_model_info",
    "finmlops_baseline_accuracy",
    "finmlops_request_log_write_errors_total",
    "finmlops_request_log_dropped_rows_total",
    "up",
}
REQUIRED_ALERTS = {
    "FinmlopsAccuracyBelowBaseline",
    "FinmlopsLatencyP99High",
    "FinmlopsErrorRateHigh",
    "FinmlopsFeatureDrift",
    "FinmlopsExperimentArmStarved",
    "FinmlopsScrapeTargetDown",
    "FinmlopsRequestLogFailing",
    "FinmlopsRequestLogDroppingRows",
}
PROMQL_WORDS = {"sum", "by", "on", "and", "rate", "increase", "histogram_quantile", "group_left", "le"}


def alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in load_alert_rules(RULES) for r in g["rules"] if "alert" in r}


def test_required_alerts_exist_with_durations_and_severity() -> None:
    found = alerts()
    assert set(found) >= REQUIRED_ALERTS
    for name, rule in found.items():
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{name} needs a for: duration"
        assert rule["labels"]["severity"] in {"warning", "critical"}, name


def test_rules_use_only_the_server_metrics() -> None:
    for name, rule in alerts().items():
        expr = re.sub(r'\{[^}]*\}|"[^"]*"|\[[^\]]*\]', "", rule["expr"])
        used = set(re.findall(r"[a-zA-Z_][a-zA-Z0-9_]*", expr)) - PROMQL_WORDS
        assert used <= SERVER_METRICS | {"model", "experiment", "arm", "instance"}, f"{name}: {used - SERVER_METRICS}"


def test_prometheus_rule_is_in_sync_with_the_rules_file() -> None:
    assert not sync_rule(RULES, REPO / PROMETHEUS_RULE, check=True), "run `finmlops deploy rules`"
    generated = yaml.safe_load((REPO / PROMETHEUS_RULE).read_text())
    assert generated["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def test_sync_rewrites_a_stale_rule_and_reports_it(tmp_path: Path) -> None:
    out = tmp_path / "prometheusrule.yaml"
    out.write_text("stale\n")
    assert sync_rule(RULES, out, check=True) and out.read_text() == "stale\n"
    assert sync_rule(RULES, out) and not sync_rule(RULES, out, check=True)
    assert yaml.safe_load(out.read_text()) == prometheus_rule(load_alert_rules(RULES))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("groups: []\n", "non-empty list under 'groups'"),
        ("groups:\n  - rules: []\n", "groups[0] needs a name"),
        ("groups:\n  - name: g\n    rules:\n      - alert: A\n", "groups[0].rules[0] needs expr"),
        ("groups: [\n", "cannot read the rules file"),
    ],
)
def test_bad_rules_files_are_rejected_by_location(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(DeployError, match=re.escape(message)) as info:
        load_alert_rules(path)
    assert str(path) in str(info.value)


def test_promtool_accepts_the_rules() -> None:
    run = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def _alert(name: str, at: str, *expected: dict[str, str]) -> dict[str, Any]:
    severity = alerts()[name]["labels"]
    return {"eval_time": at, "alertname": name, "exp_alerts": [{"exp_labels": {**severity, **e}} for e in expected]}


def test_each_alert_fires_on_its_failure_only(tmp_path: Path) -> None:
    """promtool unit tests over synthetic series: the failing model/arm/target alerts, the healthy one does not."""
    promtool()  # skips here, without promtool, before the series are built
    # Annotations are templates checked by `promtool check rules`; without them the expected alerts are just labels.
    groups = load_alert_rules(RULES)
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": groups}))
    ok, bad = {"model": "baseline-predictor"}, {"model": "enhanced-predictor"}
    few = {"model": "advanced-predictor"}
    series = [
        _series("finmlops_feedback_accuracy", bad, "0.50x90"),
        _series("finmlops_baseline_accuracy", bad, "0.53x90"),
        _series("finmlops_feedback_total", bad, "300x90"),
        _series("finmlops_feedback_accuracy", ok, "0.56x90"),
        _series("finmlops_baseline_accuracy", ok, "0.53x90"),
        _series("finmlops_feedback_total", ok, "300x90"),
        _series("finmlops_feedback_accuracy", few, "0.40x90"),  # too few labelled predictions to judge
        _series("finmlops_baseline_accuracy", few, "0.53x90"),
        _series("finmlops_feedback_total", few, "100x90"),
        _series("finmlops_feature_psi", {**bad, "feature": "rsi_14"}, "0.3x90"),
        _series("finmlops_feature_psi", {**bad, "feature": "macd"}, "0.1x90"),
        # Slow model: every request between 100 and 500 ms; fast model: all under 50 ms.
        *[
            _series("finmlops_request_latency_seconds_bucket", {**bad, "le": le}, v)
            for le, v in (("0.05", "0x90"), ("0.1", "0x90"), ("0.5", "0+10x90"), ("+Inf", "0+10x90"))
        ],
        *[
            _series("finmlops_request_latency_seconds_bucket", {**ok, "le": le}, "0+10x90")
            for le in ("0.05", "0.1", "0.5", "+Inf")
        ],
        # 2% server errors on the bad model, 0.5% on the good one; no arm label (not in an experiment).
        _series("finmlops_requests_total", {**bad, "status": "500"}, "0+2x90"),
        _series("finmlops_requests_total", {**bad, "status": "200"}, "0+98x90"),
        _series("finmlops_requests_total", {**ok, "status": "500"}, "0+1x90"),
        _series("finmlops_requests_total", {**ok, "status": "200"}, "0+199x90"),
        # Experiment "ab": the enhanced arm gets 1% instead of its 30%; experiment "cd" splits 70/30 as configured.
        _series("finmlops_requests_total", {**ok, "experiment": "ab", "arm": "baseline", "status": "200"}, "0+99x90"),
        _series("finmlops_requests_total", {**bad, "experiment": "ab", "arm": "enhanced", "status": "200"}, "0+1x90"),
        _series("finmlops_requests_total", {**ok, "experiment": "cd", "arm": "baseline", "status": "200"}, "0+70x90"),
        _series("finmlops_requests_total", {**bad, "experiment": "cd", "arm": "enhanced", "status": "200"}, "0+30x90"),
        # Experiment "ef": the enhanced arm never gets a request; the server exports its counter at 0 from the start.
        _series("finmlops_requests_total", {**ok, "experiment": "ef", "arm": "baseline", "status": "200"}, "0+50x90"),
        _series("finmlops_requests_total", {**bad, "experiment": "ef", "arm": "enhanced", "status": "200"}, "0x90"),
        _series("up", {"job": "finmlops-server", "instance": "10.0.0.7:8080"}, "0x90"),
        _series("up", {"job": "finmlops-server", "instance": "10.0.0.8:8080"}, "1x90"),
        # Pod .7's disk fills at minute 10: a write error a minute, rows dropped from minute 20; pod .8 is healthy.
        _series("finmlops_request_log_write_errors_total", {"instance": "10.0.0.7:8080"}, "0x10 1+1x80"),
        _series("finmlops_request_log_dropped_rows_total", {"instance": "10.0.0.7:8080"}, "0x20 50+50x70"),
        _series("finmlops_request_log_write_errors_total", {"instance": "10.0.0.8:8080"}, "0x90"),
        _series("finmlops_request_log_dropped_rows_total", {"instance": "10.0.0.8:8080"}, "0x90"),
    ]
    tests = [
        _alert("FinmlopsAccuracyBelowBaseline", "30m"),  # not yet for 1h
        _alert("FinmlopsAccuracyBelowBaseline", "65m", bad),
        _alert("FinmlopsFeatureDrift", "35m", {**bad, "feature": "rsi_14"}),
        _alert("FinmlopsLatencyP99High", "20m", bad),
        _alert("FinmlopsErrorRateHigh", "15m", bad),
        _alert(
            "FinmlopsExperimentArmStarved",
            "70m",
            {"experiment": "ab", "arm": "enhanced"},
            {"experiment": "ef", "arm": "enhanced"},
        ),
        _alert("FinmlopsScrapeTargetDown", "3m"),
        _alert("FinmlopsScrapeTargetDown", "10m", {"job": "finmlops-server", "instance": "10.0.0.7:8080"}),
        _alert("FinmlopsRequestLogFailing", "9m"),
        _alert("FinmlopsRequestLogFailing", "20m", {"instance": "10.0.0.7:8080"}),
        _alert("FinmlopsRequestLogDroppingRows", "19m"),
        _alert("FinmlopsRequestLogDroppingRows", "25m", {"instance": "10.0.0.7:8080"}),
    ]
    assert_rules_fire(rules, series, tests, tmp_path)
