"""Explanations: IG completeness and closed form, ONNX finite-difference IG against Captum, permutation importance
on a synthetic set with one informative feature, the torch-free server path and the CLI on a tiny trained model."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from finmlops.cli import app
from finmlops.contract.explain import (
    QUADRATURES,
    ExplanationPayload,
    explain_payload,
    integrated_gradients_onnx,
    path_weights,
)
from finmlops.data import DataStore, load_snapshot
from finmlops.features import FeatureScaler
from finmlops.models import build_network, get_variant
from finmlops.monitoring.explain import (
    FoldImportance,
    GlobalImportance,
    PooledAccuracy,
    _pool_folds,
    integrated_gradients_torch,
    load_importance,
    permutation_importance,
)
from finmlops.settings import Settings
from finmlops.tracking.onnx_export import export_onnx

SEQ, N_FEATURES = 6, 5
# Features on wildly different scales (returns next to share volumes): the unscaled attributions must cope.
SCALES = np.array([1e-3, 1e-1, 1.0, 50.0, 1e6])
# ONNX (float32, central differences) vs Captum (float64 autograd), same quadrature: max |difference| allowed.
ABS_TOL, REL_TOL = 1e-5, 1e-3


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def synthetic_windows(n: int, seed: int) -> np.ndarray:
    """Unscaled windows ``[n, SEQ, N_FEATURES]`` float32 with per-feature scales ``SCALES`` and nonzero means."""
    rng = np.random.default_rng(seed)
    return ((rng.normal(size=(n, SEQ, N_FEATURES)) + 1.0) * SCALES).astype(np.float32)


class LinearLogit(nn.Module):
    """Logit = w . flatten(window) + c, so IG of sigmoid(logit) has a closed form."""

    def __init__(self, weights: np.ndarray, bias: float) -> None:
        super().__init__()
        self.linear = nn.Linear(weights.size, 1)
        with torch.no_grad():
            self.linear.weight.copy_(torch.as_tensor(weights.reshape(1, -1), dtype=torch.float32))
            self.linear.bias.fill_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1)).squeeze(-1)


def session_for(network: nn.Module, scaler: FeatureScaler, windows: np.ndarray, path: Path) -> ort.InferenceSession:
    """``network`` exported with the tracking stage's ``export_onnx`` (scaler and sigmoid folded in), loaded."""
    export_onnx(network.eval(), scaler, windows, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def assert_close_to_captum(onnx_attr: np.ndarray, captum_attr: np.ndarray) -> None:
    bound = ABS_TOL + REL_TOL * np.abs(captum_attr).max()
    assert np.abs(onnx_attr - captum_attr).max() <= bound


def test_path_weights_are_captums() -> None:
    from captum.attr._utils.approximation_methods import approximation_parameters

    for method in QUADRATURES:
        step_sizes, alphas = approximation_parameters(method)
        ours_alphas, ours_weights = path_weights(7, method)  # type: ignore[arg-type]
        np.testing.assert_allclose(ours_alphas, alphas(7), atol=1e-7)
        np.testing.assert_allclose(ours_weights, step_sizes(7), atol=1e-7)
    with pytest.raises(ValueError, match="unknown quadrature"):
        path_weights(5, "simpson")  # type: ignore[arg-type]


def test_ig_of_a_linear_logit_has_the_closed_form_in_unscaled_units(tmp_path: Path) -> None:
    windows = synthetic_windows(64, seed=1)
    scaler = FeatureScaler().fit(windows)
    w = np.random.default_rng(2).normal(size=(SEQ, N_FEATURES)) * 0.4
    network = LinearLogit(w, bias=0.3)
    x, baseline = windows[0].astype(np.float64), scaler.mean_
    # f(alpha) = sigmoid(c + alpha z) along the path, z = w . s with s the scaled displacement, so
    # attribution_ij = w_ij s_ij (sigmoid(c + z) - sigmoid(c)) / z exactly.
    s = (x - baseline) / scaler.scale_
    z = float((w * s).sum())
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    expected = w * s * (sigmoid(0.3 + z) - sigmoid(0.3)) / z

    attributions, delta, prob, base_prob = integrated_gradients_torch(network, scaler, x, baseline, steps=50)
    np.testing.assert_allclose(attributions, expected, rtol=1e-6, atol=1e-12)
    assert prob == pytest.approx(sigmoid(0.3 + z)) and base_prob == pytest.approx(sigmoid(0.3))
    assert abs(delta) < 1e-9

    session = session_for(network, scaler, windows, tmp_path / "linear.onnx")
    assert_close_to_captum(integrated_gradients_onnx(session, x, baseline, 50), expected)


def test_captum_ig_is_complete_on_a_small_lstm_and_the_delta_exposes_a_coarse_path() -> None:
    windows = synthetic_windows(64, seed=3)
    scaler = FeatureScaler().fit(windows)
    torch.manual_seed(0)
    network = build_network(get_variant("baseline", hidden_size=8), N_FEATURES).eval()
    x = windows[5].astype(np.float64) + 2.5 * SCALES  # far from the mean, so f(x) - f(baseline) is not tiny
    attributions, delta, prob, base_prob = integrated_gradients_torch(network, scaler, x, scaler.mean_, steps=50)
    assert attributions.shape == (SEQ, N_FEATURES)
    assert abs(prob - base_prob) > 1e-3
    assert attributions.sum() == pytest.approx(prob - base_prob, abs=1e-6)
    assert delta == pytest.approx(attributions.sum() - (prob - base_prob), abs=1e-12)
    _, coarse_delta, *_ = integrated_gradients_torch(network, scaler, x, scaler.mean_, steps=3, method="riemann_left")
    assert abs(coarse_delta) > 100 * abs(delta)


@pytest.mark.parametrize("variant", ["baseline", "transformer"])
def test_onnx_ig_matches_captum_on_the_exported_network(variant: str, tmp_path: Path) -> None:
    windows = synthetic_windows(64, seed=4)
    scaler = FeatureScaler().fit(windows)
    torch.manual_seed(1)
    small = {"hidden_size": 8} if variant == "baseline" else {"hidden_size": 16, "n_heads": 2, "ff_size": 16}
    network = build_network(get_variant(variant, seq_len=SEQ, **small), N_FEATURES).eval()
    session = session_for(network, scaler, windows, tmp_path / "model.onnx")
    x = windows[7].astype(np.float64) + 1.5 * SCALES
    x[:, 1] = scaler.mean_[1]  # no displacement: exactly zero attribution
    for steps, method in ((50, "gausslegendre"), (20, "riemann_trapezoid")):
        captum, *_ = integrated_gradients_torch(network, scaler, x, scaler.mean_, steps, method=method)
        ours = integrated_gradients_onnx(session, x, scaler.mean_, steps, method=method, chunk=64)
        assert_close_to_captum(ours, captum)
        assert np.all(ours[:, 1] == 0.0)
    assert np.abs(captum).max() > 1e-3


def test_explain_payload_ranks_features_checks_shape_and_defaults_to_the_window_mean(tmp_path: Path) -> None:
    windows = synthetic_windows(64, seed=5)
    scaler = FeatureScaler().fit(windows)
    torch.manual_seed(2)
    session = session_for(
        build_network(get_variant("baseline", hidden_size=8), N_FEATURES), scaler, windows, tmp_path / "m.onnx"
    )
    card = type("Card", (), {"variant": "baseline", "feature_names": list("abcde"), "seq_len": SEQ})()
    x = windows[9:10]  # one V2 request window [1, seq, f]
    payload = explain_payload(session, card, x, top=3, steps=20, matrix=True)
    assert payload["baseline"] == "window_mean" and payload["model"] == "baseline" and payload["seconds"] > 0
    assert ExplanationPayload.model_validate(payload).to_json() == payload  # the wire body is the model's JSON
    totals = np.asarray(payload["attributions"]).sum(axis=0)
    assert [f["feature"] for f in payload["top_features"]] == [
        card.feature_names[i] for i in np.argsort(-abs(totals))[:3]
    ]
    assert [d["day"] for d in payload["days"]] == ["t-5", "t-4", "t-3", "t-2", "t-1", "t"]
    assert payload["sum_attributions"] == pytest.approx(payload["prob_up"] - payload["baseline_prob_up"], abs=1e-4)
    # The window-mean baseline holds each feature at its average over the window's days.
    top = [card.feature_names.index(f["feature"]) for f in payload["top_features"]]
    np.testing.assert_allclose([f["baseline"] for f in payload["top_features"]], x[0][:, top].mean(axis=0), rtol=1e-6)
    custom = explain_payload(session, card, x[0], baseline=scaler.mean_, baseline_kind="training_mean", steps=20)
    assert custom["baseline"] == "training_mean" and "attributions" not in custom
    with pytest.raises(ValueError, match=r"shape \[1, 6, 5\], got \[1, 6, 4\]"):
        explain_payload(session, card, x[:, :, :4])


def test_the_server_path_never_imports_torch(tmp_path: Path) -> None:
    windows = synthetic_windows(16, seed=6)
    scaler = FeatureScaler().fit(windows)
    session_for(build_network(get_variant("baseline", hidden_size=4), N_FEATURES), scaler, windows, tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", windows[:1])
    code = (
        "import sys, json, numpy as np, onnxruntime as ort\n"
        "from finmlops.contract.explain import explain_payload\n"
        f"s = ort.InferenceSession({str(tmp_path / 'm.onnx')!r}, providers=['CPUExecutionProvider'])\n"
        f"card = type('C', (), {{'variant': 'v', 'feature_names': list('abcde'), 'seq_len': {SEQ}}})()\n"
        f"p = explain_payload(s, card, np.load({str(tmp_path / 'x.npy')!r}), steps=8)\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'captum': 'captum' in sys.modules, 'n': len(p['days'])}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout) == {"torch": False, "captum": False, "n": SEQ}


def informative_set(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows ``[n, 5, 6]`` of noise whose label is the sign of feature 2 over the last two days (plus noise)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5, 6)).astype(np.float32)
    y = (x[:, -2:, 2].sum(axis=1) + 0.5 * rng.normal(size=n) > 0).astype(np.float32)
    return x, y


def test_permutation_importance_finds_the_one_informative_feature() -> None:
    from sklearn.linear_model import LogisticRegression

    x_train, y_train = informative_set(3000, seed=7)
    x_test, y_test = informative_set(2000, seed=8)
    model = LogisticRegression(max_iter=1000).fit(x_train.reshape(len(x_train), -1), y_train)

    def predict(x: np.ndarray) -> np.ndarray:
        return model.predict_proba(x.reshape(len(x), -1))[:, 1]

    names = [f"x{j}" for j in range(6)]
    table = permutation_importance(predict, x_test, y_test, n_repeats=5, seed=0, feature_names=names)
    assert list(table.index) == names and table.attrs["n"] == 2000 and table.attrs["accuracy"] > 0.8
    assert table.loc["x2", "accuracy_drop_mean"] > 0.25 and table.loc["x2", "auc_drop_mean"] > 0.25
    others = table.drop(index="x2")
    assert (others["accuracy_drop_mean"].abs() < 0.02).all() and (others["auc_drop_mean"].abs() < 0.01).all()
    assert table["accuracy_drop_mean"].idxmax() == "x2" and (table["accuracy_drop_std"] > 0).any()
    again = permutation_importance(predict, x_test, y_test, n_repeats=5, seed=0, feature_names=names)
    pd.testing.assert_frame_equal(table, again)


def test_pooled_importance_weights_folds_by_rows_and_round_trips_through_json(tmp_path: Path) -> None:
    def fold(name: str, n: int, a: float, b: float) -> FoldImportance:
        drop = {"accuracy_drop_std": 0.01, "auc_drop_mean": float("nan"), "auc_drop_std": 0.0}
        features = {"a": {"accuracy_drop_mean": a, **drop}, "b": {"accuracy_drop_mean": b, **drop}}
        return FoldImportance(fold=name, n=n, accuracy=0.5, auc=float("nan"), seconds=1.0, features=features)

    folds = [fold("2019", 100, 0.02, -0.01), fold("2020", 300, 0.06, 0.0)]
    pooled = _pool_folds(folds, ["b", "a"])
    assert [f.feature for f in pooled] == ["a", "b"] and pooled[0].accuracy_drop == pytest.approx(0.05)
    assert pooled[0].accuracy_drop_se == pytest.approx(0.02) and pooled[0].folds_positive == 2
    assert _pool_folds(folds[:1], ["a"])[0].accuracy_drop_se is None  # one fold: no spread across models
    result = GlobalImportance(
        variant="baseline", feature_set="basic", seq_len=10, test_years=[2019, 2020], epochs=1, n_repeats=2, seed=1,
        pooled=PooledAccuracy(n=400, accuracy=0.5, accuracy_se=0.025), features=pooled, folds=folds,
    )  # fmt: skip
    path = tmp_path / "importance_baseline.json"
    path.write_text(result.model_dump_json())
    back = load_importance(path)
    assert json.loads(path.read_text())["folds"][0]["auc"] is None and np.isnan(back.folds[0].auc)
    assert back.features[0].accuracy_drop == pooled[0].accuracy_drop and back.label == result.label


def test_permutation_moves_a_features_whole_series_and_leaves_the_rest() -> None:
    x, y = informative_set(50, seed=9)
    seen: list[np.ndarray] = []

    def recording(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.copy())
        return np.full(len(batch), 0.5)

    permutation_importance(recording, x, y, n_repeats=2, seed=1)
    assert len(seen) == 1 + 2 * 6 and np.array_equal(seen[0], x)
    for call, batch in enumerate(seen[1:]):
        j = call % 6
        others = [k for k in range(6) if k != j]
        assert np.array_equal(batch[:, :, others], x[:, :, others])
        # Every window received some window's complete series of feature j, and the windows' order changed.
        order = [int(np.flatnonzero((x[:, :, j] == row).all(axis=1))[0]) for row in batch[:, :, j]]
        assert sorted(order) == list(range(50)) and order != list(range(50))
    with pytest.raises(ValueError, match="labels"):
        permutation_importance(recording, x, y[:10])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A store of 3 tickers (2016-2019) and a 1-epoch baseline model trained on it, registered as
    baseline-predictor v1 (as `finmlops train` does)."""
    from finmlops.tracking.runs import log_trained_variant
    from finmlops.training import run_training

    home = tmp_path_factory.mktemp("explain-home")
    # A module fixture is set up before the per-test environment cleanup: pin the registry to this home, whatever
    # MLFLOW_TRACKING_URI an earlier test's mlflow.set_tracking_uri left in the environment.
    settings = Settings(home=home, threads=1, seed=5, mlflow_tracking_uri=None)
    universe = load_snapshot(["AAPL", "JPM", "XOM"], start=date(2016, 1, 1), end=date(2019, 12, 31))
    DataStore(settings.data_dir).write(universe, "snapshot")
    register = lambda **kw: log_trained_variant(settings, **kw)  # noqa: E731
    run_training(settings, "baseline", epochs=1, device="cpu", verbosity="silent", on_trained=register)
    return settings


def test_cli_explains_one_prediction(workspace: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINMLOPS_HOME", str(workspace.home))
    runner = CliRunner()
    result = runner.invoke(app, ["explain", "--variant", "baseline", "--ticker", "jpm", "--date", "2019-06-14",
                                 "--top", "3", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = ExplanationPayload.model_validate_json(result.stdout)
    assert payload.to_json() == json.loads(result.stdout)  # the same keys, no unset ones printed as null
    assert (payload.ticker, payload.date, payload.baseline) == ("JPM", "2019-06-14", "training_mean")
    assert len(payload.top_features) == 3 and len(payload.days) == 10
    assert payload.days[0].day == "2019-06-03" and payload.days[-1].day == "2019-06-14"
    assert abs(payload.convergence_delta) < 1e-6 and payload.method == "integrated_gradients"
    assert payload.model_data_hash == payload.store_data_hash and payload.model_dir is not None
    latest = runner.invoke(app, ["explain", "--variant", "baseline"])
    assert latest.exit_code == 0, latest.output
    assert "AAPL 2019-12-31" in latest.stdout and "completeness" in latest.stdout
    holiday = runner.invoke(app, ["explain", "--variant", "baseline", "--date", "2019-12-25"])
    assert holiday.exit_code == 1 and "no complete 10-day window ending on 2019-12-25" in holiday.output
    untrained = runner.invoke(app, ["explain", "--variant", "enhanced"])
    assert untrained.exit_code == 1 and "run `finmlops train` first" in untrained.output
    assert runner.invoke(app, ["explain", "--variant", "gpt"]).exit_code == 2


def test_cli_explains_a_registered_model(workspace: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--model NAME/VERSION` (what `finmlops run` leaves: registered ONNX models, no models/<variant>/ folder):
    the ONNX IG of the registered export of the same network agrees with Captum on the trained model."""
    monkeypatch.setenv("FINMLOPS_HOME", str(workspace.home))
    runner = CliRunner()
    where = ["--ticker", "jpm", "--date", "2019-06-14", "--top", "16", "--json"]
    torch_ig = json.loads(runner.invoke(app, ["explain", "--variant", "baseline", *where]).stdout)
    result = runner.invoke(app, ["explain", "--model", "baseline-predictor/1", *where])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert (payload["ticker"], payload["date"], payload["baseline"]) == ("JPM", "2019-06-14", "training_mean")
    assert payload["model_uri"] == "models:/baseline-predictor/1" and payload["variant"] == "baseline"
    assert payload["engine"] == "onnxruntime-central-differences"
    assert [d["day"] for d in payload["days"]] == [d["day"] for d in torch_ig["days"]]
    assert payload["prob_up"] == pytest.approx(torch_ig["prob_up"], abs=1e-5)  # the same network, exported
    assert abs(payload["convergence_delta"]) < 1e-4
    # The baselines differ slightly (the scaler's mean over every window day vs the drift reference's mean over
    # training windows' last days), so the attributions agree closely, not exactly.
    onnx_attr = {f["feature"]: f["attribution"] for f in payload["top_features"]}
    torch_attr = {f["feature"]: f["attribution"] for f in torch_ig["top_features"]}
    assert set(onnx_attr) == set(torch_attr)
    assert np.corrcoef([onnx_attr[k] for k in torch_attr], list(torch_attr.values()))[0, 1] > 0.9
    alias = runner.invoke(app, ["explain", "--model", "baseline-predictor@nope"])
    assert alias.exit_code == 1 and "baseline-predictor@nope" in alias.output and "Traceback" not in alias.output
    assert runner.invoke(app, ["explain"]).exit_code == 2
    assert runner.invoke(app, ["explain", "--model", "baseline-predictor/1", "--variant", "baseline"]).exit_code == 2


def test_cli_global_importance_reproduces_the_walk_forward_runner(
    workspace: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finmlops.training import walk_forward_predictions

    monkeypatch.setenv("FINMLOPS_HOME", str(workspace.home))
    monkeypatch.setenv("FINMLOPS_THREADS", "1")
    args = ["explain", "--variant", "baseline", "--global", "--folds", "2019", "--epochs", "1", "--repeats", "2"]
    result = CliRunner().invoke(app, [*args, "--seed", "5", "--json"])
    assert result.exit_code == 0, result.output
    path = workspace.results_dir / "importance_baseline.json"
    saved = load_importance(path)
    assert GlobalImportance.model_validate_json(result.stdout) == saved.model_copy(update={"path": str(path)})
    assert "path" not in json.loads(path.read_text())  # where it was written is not part of the file
    assert saved.provenance["data_hash"] == DataStore(workspace.data_dir).dataset_hash
    assert saved.provenance["seed"] == 5 and saved.test_years == [2019]
    assert {f.feature for f in saved.features} == set(json.loads(
        (workspace.models_dir / "baseline" / "config.json").read_text())["feature_names"])  # fmt: skip
    # The refit per fold is the runner's fit: same windows, same unpermuted accuracy.
    runner = walk_forward_predictions(
        DataStore(workspace.data_dir).read(), variants=["baseline"], baselines=(), test_years=[2019], epochs=1,
        seed=5, threads=1, device="auto", progress=False,
    )  # fmt: skip
    fold = saved.folds[0]
    assert fold.n == len(runner)
    assert fold.accuracy == pytest.approx(float(np.mean((runner["prob_up"] > 0.5) == (runner["y_true"] == 1))))
    table = CliRunner().invoke(app, [*args, "--seed", "5", "--top", "4"])
    assert table.exit_code == 0 and "permutation importance on 1 walk-forward test folds" in table.stdout
