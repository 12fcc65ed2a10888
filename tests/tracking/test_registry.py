"""Registry and promotion: the paired test (the evaluation's), refusals, promotions and the recorded --force."""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from finmlops.cli import app
from finmlops.evaluation.metrics import evaluate_predictions
from finmlops.settings import Settings
from finmlops.stats.bootstrap import BootstrapConfig
from finmlops.tracking import (
    PromotionRefused,
    TrainedNetwork,
    accuracy_test,
    log_training_run,
    promote,
    registered_name,
)

NAME = "baseline-predictor"


def test_bootstrap_p_value_tracks_the_evidence() -> None:
    rng = np.random.default_rng(0)
    dates = np.repeat(pd.bdate_range("2020-01-01", periods=400).to_numpy(), 5)
    reference = (rng.random(len(dates)) < 0.52).astype(float)
    better = np.where(rng.random(len(dates)) < 0.15, 1.0, reference)  # flips ~7% of the misses to hits
    strong = accuracy_test(better, reference, dates, margin=0.005, reference="r")
    assert strong.difference > 0.05 and strong.p_value_greater < 0.01 and strong.significant
    assert strong.n_rows == 2000 and strong.n_dates == 400 and strong.block_len == BootstrapConfig().block_len
    assert strong.rule_comparison.verdict == "better" and strong.rule_comparison.side == "greater"
    same = accuracy_test(reference, reference, dates, margin=0.005, reference="r")
    assert same.difference == 0 and same.p_value_greater == 1.0 and not same.significant
    # A real but small edge does not clear a margin above it.
    assert not accuracy_test(better, reference, dates, margin=0.2, reference="r").significant


def test_evidence_says_what_was_measured() -> None:
    """A single held-out split is a test-split accuracy; walk-forward is said only of walk-forward folds."""
    from finmlops.tracking import describe_evidence
    from finmlops.tracking.registry import split_of

    dates = pd.to_datetime(["2023-01-03", "2023-06-30", "2023-12-29"])
    assert split_of(pd.DataFrame({"date": dates, "fold": "holdout"})) == "test split, 2023-01-03..2023-12-29"
    folds = pd.DataFrame(
        {"date": pd.to_datetime(["2014-01-02", "2015-06-01", "2023-12-29"]), "fold": [2014, 2015, 2023]}
    )
    assert split_of(folds) == "walk-forward, 3 folds, 2014-01-02..2023-12-29"
    test = {"evidence": "test split, 2023-01-03..2023-12-29", "test_accuracy": "0.504000", "test_rows": "5270"}
    assert describe_evidence(test) == "test-split accuracy 0.5040 on 5270 rows (2023-01-03..2023-12-29)"
    wf = {"evidence": "walk-forward, 10 folds, 2014-01-02..2023-12-29", "wf_accuracy": "0.52", "wf_rows": "25150"}
    assert describe_evidence(wf) == "walk-forward accuracy 0.5200 on 25150 rows (10 folds, 2014-01-02..2023-12-29)"
    # Tagged before the split was recorded: whether it was walk-forward is unknown, so it is not claimed.
    assert describe_evidence({"wf_accuracy": "0.504", "wf_rows": "5270"}) == (
        "accuracy 0.5040 on 5270 rows (split not recorded)"
    )
    assert describe_evidence({}) == "no accuracy recorded"


def test_registered_names() -> None:
    assert registered_name("transformer") == "transformer-predictor"
    with pytest.raises(KeyError, match="unknown variant 'huge'"):
        registered_name("huge")


@pytest.fixture
def versions(settings: Settings, trained: Any, predictions: Callable[..., pd.DataFrame]) -> Callable[[float], int]:
    """Log and register a baseline-predictor version whose walk-forward calls are right with probability ``acc``."""

    def make(accuracy: float) -> int:
        run_id = log_training_run(
            settings, variant="baseline", params={}, feature_set="basic",
            feature_names=list(trained.windows.feature_names), data_hash="f" * 64,
            predictions=pd.concat(
                [
                    predictions(trained.windows, "baseline", accuracy, seed=int(accuracy * 1000)),
                    predictions(trained.windows, "majority", 0.5, seed=7),
                ]
            ),
            trained=TrainedNetwork(trained.network, trained.scaler, trained.windows.X[:8]), register=True,
        )  # fmt: skip
        (version,) = mlflow.MlflowClient().search_model_versions(f"run_id = '{run_id}'")
        return int(version.version)

    return make


def test_promotion_rules(versions: Callable[[float], int], trained: Any) -> None:
    coin = versions(0.5)
    client = mlflow.MlflowClient()
    tags = client.get_model_version(NAME, str(coin)).tags
    assert tags["wf_rows"] == str(len(trained.windows.y)) and abs(float(tags["wf_accuracy"]) - 0.5) < 0.05
    with pytest.raises(PromotionRefused, match=r"does not beat majority class"):
        promote(NAME, coin, "champion")
    assert "champion" not in client.get_registered_model(NAME).aliases

    good = versions(0.65)
    decision = promote(NAME, good, "champion")
    assert decision.p_value < 0.05 and decision.difference > 0.005 and not decision.forced
    assert decision.summary.startswith("better than majority class (") and "(accuracy +0." in decision.summary
    assert "greater p" in decision.summary
    assert int(client.get_registered_model(NAME).aliases["champion"]) == good

    slightly = versions(0.655)  # about as good as the champion: no significant gain
    with pytest.raises(PromotionRefused, match=rf"does not beat {NAME} v{good}"):
        promote(NAME, slightly, "champion")
    with pytest.raises(PromotionRefused, match="already holds"):
        promote(NAME, good, "champion")

    with pytest.raises(ValueError, match="needs a --reason"):
        promote(NAME, coin, "champion", force=True)
    forced = promote(NAME, coin, "champion", force=True, reason="rollback drill")
    assert forced.forced and int(client.get_registered_model(NAME).aliases["champion"]) == coin
    tags = client.get_model_version(NAME, str(coin)).tags
    assert tags["promotion.champion.reason"] == "rollback drill" and tags["promotion.champion.replaced"] == str(good)
    assert tags["promotion.champion.forced_by"] and tags["promotion.champion.forced_at"]
    with pytest.raises(ValueError, match="unknown alias"):
        promote(NAME, good, "production")


def test_promote_and_the_evaluation_agree_on_the_same_pair(versions: Callable[[float], int]) -> None:
    """The same two versions' walk-forward rows: ``promote`` (margin 0) reports exactly the one-sided p that
    evaluation.json's ``vs_baselines`` records for that pair, from the same bootstrap, and both word it alike."""
    from finmlops.tracking.registry import version_predictions

    holder, candidate = versions(0.55), versions(0.6)
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(NAME, "champion", str(holder))
    boot = BootstrapConfig(n_boot=400, block_len=7, seed=3)
    rows = {
        name: version_predictions(client.get_model_version(NAME, str(v))).assign(model=name)
        for name, v in (("candidate", candidate), ("holder", holder))
    }
    frame = pd.concat(rows.values()).assign(fold=0, ret_next=0.0)
    evaluated = evaluate_predictions(frame, baselines=["holder"], boot=boot).models["candidate"].vs_baselines
    decision = promote(NAME, candidate, "champion", margin=0.0, boot=boot)
    test = evaluated["holder"]
    # promote and evaluation.json run the same test: every figure of the pair agrees.
    assert decision.p_value_greater == test.p_value_greater < 0.05
    assert decision.difference == pytest.approx(test.difference)
    assert (decision.ci_low, decision.ci_high, decision.p_value) == (test.ci_low, test.ci_high, test.p_value)
    assert decision.summary.startswith("better than")
    assert test.comparison("accuracy", "holder").side == "two-sided"
    assert test.p_value < 0.05  # and the two-sided test says "better" too


def test_cli_register_promote_models(versions: Callable[[float], int]) -> None:
    versions(0.5)
    runner = CliRunner()
    registered = runner.invoke(app, ["register", "--variant", "baseline", "--json"])
    assert registered.exit_code == 0, registered.output
    new = json.loads(registered.stdout)
    assert new["version"] == 2 and new["name"] == NAME and "wf_accuracy" in new
    assert new["evidence"].startswith("walk-forward, 1 fold, ")
    refused = runner.invoke(app, ["promote", "--model", NAME, "--version", "2", "--alias", "challenger"])
    assert refused.exit_code == 1 and "promotion refused" in refused.output and "p =" in refused.output
    assert "evidence: v2's walk-forward accuracy 0.5" in " ".join(refused.output.split())
    forced = runner.invoke(
        app, ["promote", "--model", NAME, "--version", "2", "--alias", "challenger", "--force", "--reason", "demo"]
    )
    assert forced.exit_code == 0, forced.output
    table = runner.invoke(app, ["models"])
    assert table.exit_code == 0 and table.output.count("walk-forward accuracy 0.5") == 2, table.output
    assert "…" not in table.output and "None" not in table.output  # piped: whole cells, never cut to 80 columns
    listing = runner.invoke(app, ["models", "--json"])
    (model,) = json.loads(listing.stdout)
    # The `models` table's promotion column: the recorded test in words, or who forced it and why.
    from finmlops.tracking.registry import promotion_comparisons

    assert promotion_comparisons(model["versions"][0]["tags"]) == {"challenger": f"forced by {getpass.getuser()}: demo"}
    refused_tags = {k.replace("forced_by", "x"): v for k, v in model["versions"][0]["tags"].items()}
    assert promotion_comparisons(refused_tags)["challenger"].startswith("not different from majority class")
    assert model["aliases"] == {"challenger": 2} and [v["version"] for v in model["versions"]] == [2, 1]
    assert runner.invoke(app, ["register", "--variant", "huge"]).exit_code == 2


def test_a_tuning_winner_is_refused_on_its_selection_evidence(versions: Callable[[float], int]) -> None:
    """Its walk-forward rows are the ones it was selected on: even a large edge there is no valid evidence."""
    tuned = versions(0.7)  # would clear the majority-class bar by far
    client = mlflow.MlflowClient()
    client.set_model_version_tag(NAME, str(tuned), "finmlops.evidence", "selection")  # as tune.register_best does
    with pytest.raises(PromotionRefused, match=r"selected on.*biased.*later data.*--force --reason"):
        promote(NAME, tuned, "champion")
    runner = CliRunner()
    refused = runner.invoke(app, ["promote", "--model", NAME, "--version", str(tuned)])
    assert refused.exit_code == 1 and "promotion refused" in refused.output and "Traceback" not in refused.output
    assert client.get_registered_model(NAME).aliases == {}
    forced = runner.invoke(
        app, ["promote", "--model", NAME, "--version", str(tuned), "--force", "--reason", "judged on 2024 by hand"]
    )
    assert forced.exit_code == 0, forced.output
    assert client.get_model_version(NAME, str(tuned)).tags["promotion.champion.reason"] == "judged on 2024 by hand"
    assert int(client.get_registered_model(NAME).aliases["champion"]) == tuned
