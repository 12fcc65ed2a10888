"""Drift on real snapshot features: a planted shift is flagged and nothing else; the online SlidingDrift gives the
batch PSI exactly; the logged model carries its drift reference; ``finmlops drift`` end to end."""

from __future__ import annotations

import json
import shutil
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from finmlops.cli import app
from finmlops.data import load_snapshot
from finmlops.features import compute_features
from finmlops.monitoring.drift import DriftThresholds, drift_report
from finmlops.stats.drift import SlidingDrift, bin_counts, psi, quantile_edges, reference_profile

SHIFTED = "rsi_14"


@pytest.fixture(scope="module")
def windows() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Basic features of the 10 snapshot tickers over 2015-2019, split into two windows by interleaved calendar
    months (odd = reference, even = current): the same market regime, so no feature should drift."""
    frame = compute_features(load_snapshot(None, date(2015, 1, 1), date(2019, 12, 31)), "basic").dropna()
    odd = frame.index.get_level_values("date").month % 2 == 1
    return frame[odd], frame[~odd]


def planted(reference: pd.DataFrame, current: pd.DataFrame, sd: float = 1.0) -> pd.DataFrame:
    """``current`` with ``SHIFTED`` moved up by ``sd`` reference standard deviations."""
    return current.assign(**{SHIFTED: current[SHIFTED] + sd * reference[SHIFTED].std()})


def test_unshifted_windows_do_not_alert(windows: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    reference, current = windows
    report = drift_report(reference, current)
    assert len(reference) > 1000 and {f.test for f in report.features} == {"wasserstein"}
    assert report.n_drifted == 0, report.drifted_features
    assert max(f.psi for f in report.features) < 0.05


def test_a_planted_shift_is_flagged_and_nothing_else(windows: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    reference, current = windows
    report = drift_report(reference, planted(reference, current))
    assert report.drifted_features == [SHIFTED]
    (shifted,) = (f for f in report.features if f.column == SHIFTED)
    assert shifted.psi_alert and shifted.test_alert and shifted.psi > 0.2 and shifted.wasserstein_norm > 0.5
    assert shifted.current_mean > shifted.reference_mean
    # A thresholds object changes the verdict: a PSI bar above the measured value leaves only the Wasserstein alert.
    lenient = drift_report(reference, planted(reference, current), DriftThresholds(psi=shifted.psi + 1))
    (again,) = (f for f in lenient.features if f.column == SHIFTED)
    assert not again.psi_alert and again.test_alert and again.drifted


def test_small_references_use_the_ks_test(windows: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    reference, current = windows
    rng = np.random.default_rng(0)
    ref = reference.iloc[rng.choice(len(reference), 800, replace=False)]
    cur = current.iloc[rng.choice(len(current), 800, replace=False)]
    report = drift_report(ref, planted(ref, cur))
    assert {f.test for f in report.features} == {"ks"}
    (shifted,) = (f for f in report.features if f.column == SHIFTED)
    assert shifted.test_alert and shifted.ks_p_value < 1e-10
    # Per-feature KS at 0.05 on 16 features has family-wise false alarms; the others' p-values are not tiny.
    assert min(f.ks_p_value for f in report.features if f.column != SHIFTED) > 1e-3


def test_prediction_drift_is_reported_apart_from_features(windows: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    reference, current = windows
    rng = np.random.default_rng(1)
    ref = reference.assign(prob_up=rng.beta(20, 20, len(reference)))
    cur = current.assign(prob_up=rng.beta(26, 14, len(current)))  # a model suddenly bullish
    report = drift_report(ref, cur)
    assert "prob_up" not in [f.column for f in report.features]
    assert report.prediction is not None and report.prediction.drifted and report.n_drifted == 0


def test_psi_definition_and_empty_bins() -> None:
    assert psi(np.array([5, 5]), np.array([50, 50])) == 0.0
    expected = (0.9 - 0.5) * np.log(0.9 / 0.5) + (0.1 - 0.5) * np.log(0.1 / 0.5)
    assert psi(np.array([0.5, 0.5]), np.array([0.9, 0.1])) == pytest.approx(expected)
    # An empty current bin counts as 1e-4, not as zero: finite and large.
    assert psi(np.array([0.5, 0.5]), np.array([1.0, 0.0])) == pytest.approx(
        0.5 * np.log(1 / 0.5) + (1e-4 - 0.5) * np.log(1e-4 / 0.5)
    )
    assert np.isnan(psi(np.array([1.0]), np.array([0.0])))
    edges = quantile_edges(np.arange(100.0))
    assert len(edges) == 9 and bin_counts(np.arange(100.0), edges).tolist() == [10] * 10
    assert bin_counts(np.array([np.nan, 0.0]), edges).sum() == 1


def test_sliding_drift_equals_the_batch_psi(windows: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    reference, current = windows
    current = planted(reference, current, sd=0.3)
    names = list(reference.columns)
    profile = json.loads(json.dumps(reference_profile(reference.to_numpy(), names)))  # as read from disk
    last = current.iloc[-500:]
    online = SlidingDrift(profile, window=500)
    for row in current.iloc[:-500].to_numpy()[-700:]:  # fill and overflow the ring first: they must leave
        online.update(row)
    for row in last.to_numpy():
        online.update(row)
    assert online.n == 500
    batch = {f.column: f.psi for f in drift_report(reference, last).features}
    assert online.psi() == batch  # bit-for-bit: same bins, same counts, same function
    assert batch[SHIFTED] > batch["return_1d"]
    row = last.to_numpy()[0].copy()
    row[0] = np.nan
    online.update(row)  # a NaN feature is skipped, the others still count
    assert online.n == 500 and np.isfinite(online.psi()[names[0]])
    with pytest.raises(ValueError, match="expected 16 features"):
        online.update(np.zeros(3))


def test_bad_inputs_name_the_problem(windows: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    reference, current = windows
    with pytest.raises(ValueError, match="lacks column\\(s\\) rsi_14"):
        drift_report(reference, current.drop(columns=[SHIFTED]))
    with pytest.raises(ValueError, match="reference feature 'b': no finite values"):
        reference_profile(np.array([[1.0, np.nan], [2.0, np.nan]]), ["a", "b"])
    profile = reference_profile(reference.to_numpy(), list(reference.columns))
    profile["features"]["sma_5"]["proportions"] = [1.0]
    with pytest.raises(ValueError, match="feature 'sma_5'"):
        SlidingDrift(profile)


# --- the model's drift reference and the CLI ------------------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace holding the bundled snapshot in its data store."""
    home = tmp_path / "home"
    monkeypatch.setenv("FINMLOPS_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["ingest", "--start", "2016-01-01", "--end", "2019-12-31"])
    assert result.exit_code == 0, result.output
    return home


def test_drift_cli_with_a_reference_parquet(workspace: Path, windows: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    reference, _ = windows
    path = workspace.parent / "reference.parquet"
    reference[reference.index.get_level_values("date") < "2019-01-01"].to_parquet(path)
    result = CliRunner().invoke(app, ["drift", "--reference", str(path), "--window", "120", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert len(payload["features"]) == 16 and payload["prediction"] is None
    assert payload["current"].endswith("2019-12-31") and payload["provenance"]["data_hash"]
    saved = json.loads((workspace / "results" / "drift.json").read_text())
    assert saved["n_drifted"] == payload["n_drifted"] == len(payload["drifted_features"])
    text = CliRunner().invoke(app, ["drift", "--reference", str(path)])
    assert text.exit_code == 0 and "features alert" in text.stdout
    # Every threshold is an option, recorded in the result; a bar nothing reaches silences every alert.
    loose = ["--psi", "50", "--ks-p", "1e-9", "--wasserstein", "50", "--bins", "5"]
    tuned = CliRunner().invoke(app, ["drift", "--reference", str(path), "--window", "120", *loose, "--json"])
    assert tuned.exit_code == 0, tuned.output
    tuned_payload = json.loads(tuned.stdout)
    assert tuned_payload["thresholds"] | {"ks_max_reference_rows": None} == {
        "psi": 50.0, "ks_p_value": 1e-9, "wasserstein": 50.0, "n_bins": 5, "ks_max_reference_rows": None
    }  # fmt: skip
    assert tuned_payload["n_drifted"] == 0 and not any(f["drifted"] for f in tuned_payload["features"])
    psi_of = lambda p: [f["psi"] for f in p["features"]]  # noqa: E731
    assert psi_of(tuned_payload) != psi_of(payload)  # 5 bins, not 10
    assert CliRunner().invoke(app, ["drift", "--reference", str(path), "--ks-p", "1.5"]).exit_code == 2
    bad = CliRunner().invoke(app, ["drift", "--reference", str(workspace / "missing.parquet")])
    assert bad.exit_code == 1 and "missing.parquet" in bad.output and "Traceback" not in bad.output
    assert CliRunner().invoke(app, ["drift", "--current", "log", "--reference", str(path)]).exit_code == 1
    assert CliRunner().invoke(app, ["drift"]).exit_code == 2


def test_logged_model_carries_its_drift_reference_and_drift_uses_the_request_log(
    workspace: Path, tmp_path: Path
) -> None:
    """Train nothing: a random small network logged with MLflow (sqlite), its profile, export, and `drift --model`
    against the store and against a real request log."""
    import mlflow
    import torch

    from finmlops.contract import DRIFT_REFERENCE_FILE, locate_model
    from finmlops.features import FeatureScaler, make_target, make_windows
    from finmlops.models import build_network, get_variant
    from finmlops.serving.requestlog import RequestLog, RequestRecord
    from finmlops.settings import Settings
    from finmlops.tracking import TrainedNetwork, export_model, log_training_run
    from finmlops.tracking.packaging import fetch_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    universe = load_snapshot(None, date(2016, 1, 1), date(2019, 12, 31))
    features = compute_features(universe, "basic")
    all_windows = make_windows(features, make_target(universe), seq_len=10)
    train = all_windows.subset(all_windows.dates < np.datetime64("2019-01-01"))
    network = build_network(get_variant("baseline", hidden_size=8), 16).eval()
    settings = Settings(home=workspace)
    log_training_run(
        settings, variant="baseline", params={}, feature_set="basic", feature_names=list(train.feature_names),
        data_hash="d" * 64, register=True,
        predictions=pd.DataFrame(
            {
                "date": train.dates, "ticker": train.tickers, "fold": 0, "model": "baseline", "prob_up": 0.5,
                "y_true": train.y, "ret_next": 0.0,
            }
        ),
        trained=TrainedNetwork(
            network, FeatureScaler().fit(train.X), train.X, train_start=str(train.dates.min())[:10],
            train_end=str(train.dates.max())[:10],
        ),
    )  # fmt: skip
    model_dir = fetch_model("baseline-predictor", tmp_path / "fetched")
    profile = locate_model(model_dir).drift_reference
    assert profile is not None and list(profile["features"]) == list(train.feature_names)
    assert (model_dir / "artifacts" / DRIFT_REFERENCE_FILE).is_file()  # where the server looks in an MLflow folder
    assert profile["features"]["rsi_14"]["n"] == len(train)
    triton = export_model("baseline-predictor", "triton", tmp_path / "triton")
    assert locate_model(triton).drift_reference == profile and (triton / DRIFT_REFERENCE_FILE).is_file()
    mlflow.MlflowClient().set_registered_model_alias("baseline-predictor", "champion", "1")

    result = CliRunner().invoke(app, ["drift", "--model", "baseline-predictor@champion", "--window", "200", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    # Every window of the training date range is scored, also those whose label is undefined (a flat day).
    unlabelled = make_windows(features, pd.Series(0.0, index=features.index), seq_len=10)
    in_range = (unlabelled.dates >= train.dates.min()) & (unlabelled.dates <= train.dates.max())
    assert payload["prediction"]["column"] == "prob_up" and payload["prediction"]["n_reference"] == in_range.sum()
    assert payload["reference"].startswith("training range 2016-")

    recent = all_windows.subset(all_windows.dates >= np.datetime64("2019-06-01"))
    log = RequestLog(workspace / "serving" / "requests.db")
    for i in range(len(recent)):
        last = recent.X[i, -1].copy()
        last[14] += 30.0  # rsi_14 of the served inputs is far off
        log.append(
            RequestRecord(
                id=f"r{i}",
                model="baseline-predictor",
                ts=time.time(),
                experiment=None,
                arm=None,
                model_version="1",
                shadow=0,
                inputs_digest=None,
                prob_up=0.5,
                latency_ms=1.0,
                status=200,
                last_features=last.astype(np.float32).tobytes(),
            )
        )
    log.close()
    result = CliRunner().invoke(
        app, ["drift", "--model", "baseline-predictor@champion", "--current", "log", "--window", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert "rsi_14" in payload["drifted_features"] and payload["n_current"] == len(recent)
    shutil.rmtree(tmp_path / "fetched", ignore_errors=True)
