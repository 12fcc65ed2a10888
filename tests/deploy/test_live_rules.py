"""The live loop's alerts: promtool accepts them, each fires on its failure and stays quiet otherwise; the gauges
they read are the ones the loop writes."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml
from finmlops_testing.prometheus import assert_rules_fire, promtool

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "monitoring" / "prometheus" / "live-rules.yaml"
DAY = 86400


def test_promtool_accepts_the_live_rules() -> None:
    run = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_rules_read_only_gauges_the_loop_writes() -> None:
    import re

    source = (REPO / "src" / "finmlops" / "workflow" / "daily.py").read_text()
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            for metric in re.findall(r"finmlops_live_[a-z_]+", rule["expr"]):
                assert f'"{metric}"' in source, f"{rule['alert']} reads {metric}, which the loop does not write"


def _alert(name: str, at: str, severity: str, *setups: str) -> dict[str, Any]:
    return {
        "eval_time": at,
        "alertname": name,
        "exp_alerts": [{"exp_labels": {"severity": severity, "setup": s}} for s in setups],
    }


def test_each_live_alert_fires_on_its_failure_only(tmp_path: Path) -> None:
    """Time 0 is Thursday 1970-01-01 00:00 UTC. Setup "ok" finishes a day every 24 h; "late"
    finishes one at 0 h and none after; "stuck" keeps its canary at one step; "flaky" rolls back twice in a week.
    Samples every minute (an hourly one would go stale between samples)."""
    promtool()  # skips here, without promtool, before the series are built
    groups = yaml.safe_load(RULES.read_text())["groups"]
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": groups}))
    minutes = 6 * 24 * 60
    # "ok": each day's success at midnight, so the newest is at most 24 h old; one "v x n" run per day (n + 1 samples).
    ok_success = " ".join(f"{d * DAY}x1439" for d in range(6))
    series = [
        {"series": 'finmlops_live_last_success_timestamp_seconds{setup="ok"}', "values": ok_success},
        {"series": 'finmlops_live_last_success_timestamp_seconds{setup="late"}', "values": f"0x{minutes}"},
        {"series": 'finmlops_live_canary_step_days{setup="ok"}', "values": f"3x{minutes}"},
        {"series": 'finmlops_live_canary_step_days{setup="stuck"}', "values": f"16x{minutes}"},
        {"series": 'finmlops_live_rollbacks_total{setup="ok"}', "values": f"0x2879 1x{minutes - 2880}"},
        {"series": 'finmlops_live_rollbacks_total{setup="flaky"}', "values": f"0x1439 1x1439 2x{minutes - 2880}"},
    ]
    tests = [
        # Thursday 27 h: not yet 28 h since the last success.
        _alert("FinmlopsLiveMissedDay", "27h", "critical"),
        # Friday 30 h + 30 min "for": "late" missed Thursday's run.
        _alert("FinmlopsLiveMissedDay", "31h", "critical", "late"),
        # Saturday (day 2, from 48 h) and Sunday: quiet although "late" has not run since Thursday.
        _alert("FinmlopsLiveMissedDay", "60h", "critical"),
        _alert("FinmlopsLiveMissedDay", "90h", "critical"),
        # Monday before 23:00 (96 h + 22 h) is not missed yet; Tuesday it is.
        _alert("FinmlopsLiveMissedDay", "118h", "critical"),
        _alert("FinmlopsLiveMissedDay", "125h", "critical", "late"),
        _alert("FinmlopsLiveCanaryStuck", "30m", "warning"),
        _alert("FinmlopsLiveCanaryStuck", "2h", "warning", "stuck"),
        _alert("FinmlopsLiveRepeatedRollbacks", "30h", "warning"),
        _alert("FinmlopsLiveRepeatedRollbacks", "50h", "warning", "flaky"),
    ]
    assert_rules_fire(rules, series, tests, tmp_path)
