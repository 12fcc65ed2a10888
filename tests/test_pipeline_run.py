"""``finmlops run``: the step engine (skips by input hash, reruns dependants, fails fast, dry runs) on small real
steps, and the whole platform end to end with ``--quick`` in a temporary workspace."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from finmlops.cli import app
from finmlops.workflow.engine import Context, Outcome, RunState, Step, StepFailed, run_steps
from finmlops.workflow.live import ReplayResult

# --- the engine on three small file-writing steps: a -> b -> c ------------------------------------------------------


def _write(ctx: Context, name: str, text: str) -> Outcome:
    ctx.cache.setdefault("executed", []).append(name)
    if ctx.plan.get(f"fail_{name}"):
        raise RuntimeError(f"{name} broke")
    path = ctx.settings / f"{name}.txt"
    path.write_text(text)
    return Outcome(figure=f"{name}={text}", files=[path], data={"text": text})


def _steps() -> list[Step]:
    return [
        Step("a", "A", (), lambda ctx: {"x": ctx.plan["x"]}, lambda ctx: _write(ctx, "a", str(ctx.plan["x"]))),
        Step(
            "b", "B", ("a",),
            lambda ctx: {"a": ctx.output("a"), "y": ctx.plan["y"]},
            lambda ctx: _write(ctx, "b", ctx.output("a")["text"] + "+" + str(ctx.plan["y"])),
        ),
        Step(
            "c", "C", ("b",),
            lambda ctx: {"b": ctx.output("b")},
            lambda ctx: _write(ctx, "c", ctx.output("b")["text"].upper()),
        ),
    ]  # fmt: skip


def _run(home: Path, **plan: Any) -> tuple[dict[str, str], list[str], dict[str, str]]:
    """Run the three steps; returns each step's status, the steps executed and each step's detail."""
    ctx = Context(home, {"x": 1, "y": 2} | plan)
    reports = run_steps(
        _steps(), ctx, RunState(home), force=plan.get("force", False), rerun=plan.get("rerun", ()),
        dry_run=plan.get("dry", False),
    )  # fmt: skip
    return {r.step: r.status for r in reports}, ctx.cache.get("executed", []), {r.step: r.detail for r in reports}


def test_second_run_skips_and_a_changed_setting_reruns_its_step_and_dependants_only(tmp_path: Path) -> None:
    assert _run(tmp_path)[:2] == ({"a": "ran", "b": "ran", "c": "ran"}, ["a", "b", "c"])
    assert _run(tmp_path)[:2] == ({"a": "skipped", "b": "skipped", "c": "skipped"}, [])
    status, executed, detail = _run(tmp_path, y=3)
    assert (status, executed) == ({"a": "skipped", "b": "ran", "c": "ran"}, ["b", "c"])
    assert detail["b"] == "changed: input y" and detail["c"] == "changed: input b"
    assert (tmp_path / "c.txt").read_text() == "1+3"
    assert _run(tmp_path, y=3)[1] == []
    assert _run(tmp_path, y=3, force=True)[1] == ["a", "b", "c"]
    state = json.loads((tmp_path / "run_state.json").read_text())
    assert set(state["steps"]) == {"a", "b", "c"} and state["steps"]["c"]["data"] == {"text": "1+3"}


def test_rerun_names_steps_that_run_with_unchanged_inputs(tmp_path: Path) -> None:
    """`--step b`: b reruns although nothing changed; c reruns only if b's outputs changed (they did not)."""
    _run(tmp_path)
    status, executed, detail = _run(tmp_path, rerun={"b"})
    assert executed == ["b"] and status == {"a": "skipped", "b": "ran", "c": "skipped"} and detail["b"] == "--step"
    # With other inputs changed too, they run as usual: a --step never hides a stale step.
    status, executed, _ = _run(tmp_path, y=4, rerun={"a"})
    assert executed == ["a", "b", "c"]
    assert _run(tmp_path, y=4, rerun={"c"}, dry=True)[0] == {"a": "would skip", "b": "would skip", "c": "would run"}


def test_a_changed_or_missing_output_reruns_the_step(tmp_path: Path) -> None:
    _run(tmp_path)
    (tmp_path / "b.txt").write_text("edited by hand")
    status, executed, detail = _run(tmp_path)
    assert executed == ["b"] and status["c"] == "skipped"  # b rewrote the same content, so c's inputs are unchanged
    # A whole sentence: what changed and since when (issue 15.7: it used to end at "changed since").
    assert re.fullmatch(
        r"output .*b\.txt changed since the step wrote it at \d{4}-\d\d-\d\dT[\d:]+\+00:00", detail["b"]
    )
    (tmp_path / "a.txt").unlink()
    assert _run(tmp_path)[1] == ["a"]


def test_a_failing_step_is_named_stops_the_run_and_keeps_earlier_steps(tmp_path: Path) -> None:
    _run(tmp_path)
    with pytest.raises(StepFailed, match=r"step 'b' failed: RuntimeError: b broke") as failed:
        _run(tmp_path, y=5, fail_b=True)
    assert failed.value.step == "b"
    state = json.loads((tmp_path / "run_state.json").read_text())
    assert set(state["steps"]) == {"a", "c"}  # b's record is gone, so the next run redoes it
    assert (tmp_path / "b.txt").read_text() == "1+2"  # the failed step wrote nothing
    status, executed, _ = _run(tmp_path, y=5)
    assert executed == ["b", "c"] and status["a"] == "skipped"


def test_dry_run_executes_nothing_and_says_what_would_run(tmp_path: Path) -> None:
    status, executed, _ = _run(tmp_path, dry=True)
    assert executed == [] and set(status.values()) == {"would run"} and not (tmp_path / "run_state.json").exists()
    _run(tmp_path)
    status, executed, detail = _run(tmp_path, y=9, dry=True)
    assert executed == [] and status == {"a": "would skip", "b": "would run", "c": "would run"}
    assert (detail["b"], detail["c"]) == ("changed: input y", "after b")


def test_a_report_module_that_cannot_be_imported_fails_the_report_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken installation is a failure, not a silently missing report."""
    import importlib.util
    import sys
    import types

    from finmlops.settings import Settings
    from finmlops.workflow.steps import build_steps

    report = next(s for s in build_steps() if s.name == "report")
    # The module is found (its source hashes as usual) but lacks build_report: `from ... import` raises ImportError.
    name = "finmlops.report.page"
    broken = types.ModuleType(name)
    broken.__spec__ = importlib.util.find_spec(name)
    monkeypatch.setitem(sys.modules, name, broken)
    ctx = Context(Settings(home=tmp_path), plan=None)
    ctx.outputs |= {"traffic": {"log_sha256": "0" * 64}}
    with pytest.raises(StepFailed, match=r"step 'report' failed: ImportError: cannot import name 'build_report'"):
        run_steps([report], ctx, RunState(tmp_path))
    assert not (tmp_path / "run_state.json").exists()


# --- end to end: finmlops run --quick in a temporary workspace ------------------------------------------------------

ENV_CLEARED = ("TICKERS", "INGESTION_START_DATE", "INGESTION_END_DATE", "RAW_DATA_DIR", "MLFLOW_TRACKING_URI")


def _env(home: Path, **extra: str) -> dict[str, str | None]:
    env: dict[str, str | None] = dict.fromkeys(ENV_CLEARED)
    env |= {"FINMLOPS_SEED": None, "FINMLOPS_TICKERS": None, "FINMLOPS_MLFLOW_TRACKING_URI": None}
    env |= {
        "FINMLOPS_HOME": str(home),
        "FINMLOPS_CONFIG": str(home / "absent.yaml"),
        "FINMLOPS_THREADS": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    return env | extra


def _invoke(home: Path, *args: str, config: Path | None = None, **env: str) -> tuple[int, Any, str]:
    """``finmlops run --quick ARGS``, or ``finmlops run --config CONFIG ARGS``."""
    which = ["--config", str(config)] if config else ["--quick"]
    result = CliRunner().invoke(app, ["run", *which, *args], env=_env(home, **env))
    payload = json.loads(result.stdout) if result.exit_code == 0 and "--json" in args else None
    return result.exit_code, payload, result.stderr


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any], float]]:
    """One ``finmlops run --quick --json`` in a fresh workspace: (home, summary, seconds)."""
    home = tmp_path_factory.mktemp("finmlops-run")
    started = time.perf_counter()
    code, payload, stderr = _invoke(home, "--json")
    assert code == 0, stderr[-3000:]
    yield home, payload, time.perf_counter() - started


def _registry(home: Path) -> Any:
    import mlflow

    uri = f"sqlite:///{home / 'quick' / 'mlflow.db'}"
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_quick_run_takes_a_fresh_workspace_to_a_report(quick: tuple[Path, dict[str, Any], float]) -> None:
    home, payload, _ = quick
    status = {s["step"]: s["status"] for s in payload["steps"]}
    expected = [
        "ingest", "features", "train", "backtest", "register", "traffic", "abtest", "drift", "importance", "report"
    ]  # fmt: skip
    assert list(status) == expected
    assert all(status[s] == "ran" for s in expected)
    assert payload["home"] == str(home / "quick") and payload["plan"]["test_years"] == [2022, 2023]
    assert Path(payload["report"]).is_file() and Path(payload["report"]).parent == home / "quick"
    # The importance step fills the report's importance section (it was empty: no step wrote importance_*.json).
    recorded = json.loads((home / "quick" / "run_state.json").read_text())["steps"]
    best = recorded["train"]["data"]["best_deep"]
    importance = json.loads((home / "quick" / "results" / f"importance_{best}.json").read_text())
    assert importance["test_years"] == [2022, 2023] and importance["n_repeats"] == 2 and importance["features"]
    # On the run's own universe (its tickers and dates), not whatever else the store holds.
    assert importance["provenance"]["data_hash"] == recorded["ingest"]["data"]["dataset_hash"]
    html = Path(payload["report"]).read_text()
    assert "explain --variant NAME --global" not in html and importance["features"][0]["feature"] in html
    results = home / "quick" / "results"
    evaluation = json.loads((results / "evaluation.json").read_text())
    assert set(evaluation["models"]) == {"baseline", "enhanced", "majority", "momentum", "logistic", "lightgbm"}
    assert {"backtest.json", "traffic.json", "drift.json", "abtest_financial-ab-test-experiment.json"} <= {
        p.name for p in results.iterdir()
    }


def test_quick_run_registers_final_models_and_records_how_champion_was_set(
    quick: tuple[Path, dict[str, Any], float],
) -> None:
    home, payload, _ = quick
    client = _registry(home)
    state = json.loads((home / "quick" / "run_state.json").read_text())
    for variant in ("baseline", "enhanced"):
        entry = state["steps"]["register"]["data"]["models"][variant]
        assert payload["champions"][variant]["decision"] == entry["decision"]
        version = client.get_model_version_by_alias(f"{variant}-predictor", "champion")
        assert int(version.version) == entry["champion"] == entry["version"] == 1
        tags = version.tags
        if entry["decision"] == "bootstrapped":  # the rule refused: a forced promotion, recorded on the version
            assert tags["promotion.champion.reason"].startswith("bootstrap by `finmlops run`")
            assert "promotion.champion.forced_by" in tags and float(tags["promotion.champion.p_value"]) >= 0.0
        else:
            assert entry["decision"] == "promoted" and float(tags["promotion.champion.p_value"]) < 0.05
        # The final model is the walk-forward's last-fold model: same dates, seed and epochs, same predictions.
        assert entry["train_end"] < "2023-01-01" and entry["max_abs_diff_last_fold"] < 1e-4


def test_quick_run_tracks_ingestion_evaluation_and_backtest_like_the_commands(
    quick: tuple[Path, dict[str, Any], float],
) -> None:
    """The run's data, walk-forward and backtest steps log the MLflow runs their standalone commands log."""
    home, _, _ = quick
    client = _registry(home)
    steps = json.loads((home / "quick" / "run_state.json").read_text())["steps"]
    ingestion = client.get_run(steps["ingest"]["data"]["mlflow_run"])
    assert client.get_experiment(ingestion.info.experiment_id).name == "ingestion"
    assert ingestion.data.tags["finmlops.data_hash"] == steps["ingest"]["data"]["dataset_hash"]
    evaluation = client.get_run(steps["train"]["data"]["mlflow_run"])
    backtest = client.get_run(steps["backtest"]["data"]["mlflow_run"])
    sha = steps["train"]["data"]["predictions_sha256"]
    for run in (evaluation, backtest):
        assert client.get_experiment(run.info.experiment_id).name == "evaluation"
        assert run.data.tags["finmlops.predictions_sha256"] == sha
    assert 0.0 < evaluation.data.metrics["majority/accuracy"] < 1.0 and "buy_hold/sharpe" in backtest.data.metrics


def test_quick_run_served_both_arms_with_feedback(quick: tuple[Path, dict[str, Any], float]) -> None:
    home, _, _ = quick
    traffic = ReplayResult.model_validate_json((home / "quick" / "results" / "traffic.json").read_text())
    assert traffic.requests > 0 and traffic.ok == traffic.requests
    assert set(traffic.arms) == {"baseline-predictor", "enhanced-predictor"}
    assert traffic.arms["baseline-predictor"] > traffic.arms["enhanced-predictor"] > 0  # 70/30
    assert traffic.feedback_ok > 0 and traffic.first_day is not None
    assert traffic.first_day >= date(2023, 1, 1)  # out of sample for the final models
    # The whole last test year, one request per ticker per trading day (issue 15.4).
    assert traffic.first_day == date(2023, 1, 3) and traffic.last_day == date(2023, 12, 29) and traffic.data_exhausted
    assert traffic.requests == traffic.days * 3 and traffic.requests_per_day == 3
    assert traffic.request_log.is_file() and traffic.provenance["data_hash"]
    abtest = json.loads((home / "quick" / "results" / "abtest_financial-ab-test-experiment.json").read_text())
    assert sum(a["requests"] for a in abtest["arms"].values()) == traffic.ok


def test_second_quick_run_skips_every_step(quick: tuple[Path, dict[str, Any], float]) -> None:
    home, _, _ = quick
    versions_before = len(_registry(home).search_model_versions("name LIKE '%-predictor'"))
    code, payload, stderr = _invoke(home, "--json")
    assert code == 0, stderr[-3000:]
    *steps, report = payload["steps"]
    assert {s["status"] for s in steps} == {"skipped"} and report["status"] == "skipped"
    assert len(_registry(home).search_model_versions("name LIKE '%-predictor'")) == versions_before


def _quick_config(tmp: Path, **changes: Any) -> Path:
    """configs/quick.yaml with top-level ``changes``, written to ``tmp``."""
    import yaml

    from finmlops.workflow.config import shipped_config

    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(shipped_config("quick").model_dump(mode="json") | changes))
    return path


def test_a_new_seed_would_rerun_training_and_its_dependants_only(
    quick: tuple[Path, dict[str, Any], float], tmp_path: Path
) -> None:
    home, _, _ = quick
    state_file = home / "quick" / "run_state.json"
    before = state_file.read_bytes()
    code, payload, stderr = _invoke(home, "--dry-run", "--json", config=_quick_config(tmp_path, seed=7))
    assert code == 0, stderr[-3000:]
    status = {s["step"]: s["status"] for s in payload["steps"]}
    assert status["ingest"] == status["features"] == "would skip"
    assert {k: v for k, v in status.items() if k not in ("ingest", "features")} == dict.fromkeys(
        ["train", "backtest", "register", "traffic", "abtest", "drift", "importance", "report"], "would run"
    )
    assert "input seed" in next(s["detail"] for s in payload["steps"] if s["step"] == "train")
    assert state_file.read_bytes() == before


def test_step_reruns_one_step_with_unchanged_inputs(quick: tuple[Path, dict[str, Any], float]) -> None:
    home, _, _ = quick
    report = home / "quick" / "report.html"
    before = report.stat().st_mtime_ns
    code, payload, stderr = _invoke(home, "--step", "report", "--json")
    assert code == 0, stderr[-3000:]
    status = {s["step"]: s["status"] for s in payload["steps"]}
    assert status.pop("report") == "ran" and set(status.values()) == {"skipped"}
    assert report.stat().st_mtime_ns > before
    code, _, stderr = _invoke(home, "--step", "nope")
    assert code == 1 and "unknown step(s) nope" in stderr and "ingest, features" in stderr


@pytest.mark.slow
def test_a_new_seed_reruns_training_not_the_data_steps(
    quick: tuple[Path, dict[str, Any], float], tmp_path: Path
) -> None:
    home, _, _ = quick
    code, payload, stderr = _invoke(home, "--json", config=_quick_config(tmp_path, seed=7))
    assert code == 0, stderr[-3000:]
    status = {s["step"]: s["status"] for s in payload["steps"]}
    assert status["ingest"] == status["features"] == "skipped"
    assert status["train"] == status["backtest"] == status["register"] == "ran"
    code, payload, _ = _invoke(home, "--json", config=_quick_config(tmp_path, seed=7))
    assert code == 0 and {s["status"] for s in payload["steps"]} == {"skipped"}


@pytest.mark.slow
def test_the_written_config_reproduces_the_predictions_in_a_fresh_workspace(
    quick: tuple[Path, dict[str, Any], float], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Qlib's qrun promise: the resolved config a run wrote is enough to get the same predictions' SHA-256."""
    home, _, _ = quick
    written = home / "quick" / "results" / "run_config.yaml"
    fresh = tmp_path_factory.mktemp("replayed")
    code, _, stderr = _invoke(fresh, "--json", config=written)
    assert code == 0, stderr[-3000:]

    def predictions_sha(root: Path) -> str:
        return json.loads((root / "quick" / "run_state.json").read_text())["steps"]["train"]["data"][
            "predictions_sha256"
        ]

    assert predictions_sha(fresh) == predictions_sha(home)
    assert (fresh / "quick" / "results" / "run_config.yaml").read_text() == written.read_text()


def test_a_failing_step_is_named_with_exit_code_1(tmp_path: Path) -> None:
    from finmlops.workflow.config import shipped_config

    universe = shipped_config("quick").universe.model_dump(mode="json") | {"tickers": ["AAPL", "ZZZZ"]}
    code, _, stderr = _invoke(tmp_path, config=_quick_config(tmp_path, universe=universe))
    assert code == 1
    assert "step 'ingest' failed" in stderr and "ZZZZ" in stderr
    assert [p.name for p in (tmp_path / "quick" / "results").iterdir()] == ["run_config.yaml"]


def test_a_run_config_runs_only_its_steps_and_each_needs_its_inputs(tmp_path: Path) -> None:
    code, _, stderr = _invoke(tmp_path, "--dry-run", config=_quick_config(tmp_path, steps=["ingest", "train"]))
    assert code == 1 and "steps: train needs features; add it to the run config's steps" in stderr
    assert not (tmp_path / "quick" / "run_state.json").exists()
    result = CliRunner().invoke(
        app, ["run", "--config", str(_quick_config(tmp_path, steps=["ingest", "features"]))], env=_env(tmp_path)
    )
    assert result.exit_code == 0, result.stderr[-3000:]
    state = json.loads((tmp_path / "quick" / "run_state.json").read_text())
    assert set(state["steps"]) == {"ingest", "features"}
    assert "report: none (the run config's steps are ingest, features)" in result.stdout
    code, _, stderr = _invoke(tmp_path, "--step", "train", config=_quick_config(tmp_path, steps=["ingest"]))
    assert code == 1 and "--step train: not among the run config's steps (ingest)" in stderr


def test_a_run_without_the_majority_baseline_compares_its_best_model_with_a_coin_flip(tmp_path: Path) -> None:
    """configs/sp500-fk.yaml's baselines are random and reversal: its train step failed on a missing 'majority'."""
    config = _quick_config(
        tmp_path, steps=["ingest", "features", "train"], baselines=["random"], variants=[{"name": "lightweight"}],
        epochs=1, test_years=[2023], register_variants=None, importance={"folds": 1, "repeats": 1},
    )  # fmt: skip
    code, _, stderr = _invoke(tmp_path, config=config)
    assert code == 0, stderr[-3000:]
    figure = json.loads((tmp_path / "quick" / "run_state.json").read_text())["steps"]["train"]["figure"]
    assert re.search(r"^1 folds, 2 models; best deep lightweight accuracy .*a coin flip \(0\.5\)", figure), figure
