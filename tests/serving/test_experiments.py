"""Experiments: split proportions, sticky keys across processes, shadows, the bandit, contextual routing, config."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from scipy import stats

from finmlops.serving.experiments import (
    DEFAULT_EXPERIMENT,
    Experiment,
    ExperimentConfigError,
    ExperimentSet,
    Route,
    UnknownExperiment,
    parse_config,
    seldon_route_value,
    stable_unit,
)


def _experiment(**config: object) -> Experiment:
    raw = {"name": "exp", "candidates": [{"name": "a", "weight": 3}, {"name": "b", "weight": 1}], **config}
    return Experiment(parse_config(raw))


def _chi_square_p(counts: Counter[str], shares: dict[str, float]) -> float:
    total = sum(counts.values())
    observed = [counts[arm] for arm in shares]
    expected = [share * total for share in shares.values()]
    return float(stats.chisquare(observed, expected).pvalue)


def test_weighted_split_converges_to_normalised_weights() -> None:
    # Weights 5/3/2 (not summing to 100) normalise to 0.5/0.3/0.2.
    experiment = Experiment(
        parse_config(
            {
                "name": "three",
                "candidates": [{"name": "a", "weight": 5}, {"name": "b", "weight": 3}, {"name": "c", "weight": 2}],
            }
        )
    )
    assert experiment.traffic_share() == pytest.approx({"a": 0.5, "b": 0.3, "c": 0.2})
    counts = Counter(experiment.route({}).arm for _ in range(30_000))
    assert _chi_square_p(counts, {"a": 0.5, "b": 0.3, "c": 0.2}) > 1e-3
    # A wrong hypothesis is rejected by the same test on the same counts: the test has power.
    assert _chi_square_p(counts, {"a": 0.45, "b": 0.35, "c": 0.2}) < 1e-6


def test_default_builder_is_the_original_70_30_split() -> None:
    experiments = ExperimentSet.default()
    experiment = experiments.get(DEFAULT_EXPERIMENT)
    assert experiment.config.default == "baseline-predictor"
    assert experiment.traffic_share() == pytest.approx({"baseline-predictor": 0.7, "enhanced-predictor": 0.3})
    assert experiments.from_header(f"{DEFAULT_EXPERIMENT}.experiment") is experiment
    assert experiments.from_header(DEFAULT_EXPERIMENT) is None
    assert experiments.for_model("baseline-predictor") is experiment
    counts = Counter(experiment.route({}).arm for _ in range(20_000))
    assert _chi_square_p(counts, {"baseline-predictor": 0.7, "enhanced-predictor": 0.3}) > 1e-3


def test_request_id_routes_the_same_in_every_experiment_object_and_splits_by_weight() -> None:
    """Without a sticky key the draw is a hash of the request id, so a replay is routed the same on a new server."""
    ids = [f"s0-2023{d:04d}-T{t}" for d in range(101, 1301) for t in range(5)]
    first = [_experiment().route({}, request_id=rid).arm for rid in ids]
    again = _experiment()
    assert [again.route({}, request_id=rid).arm for rid in reversed(ids)] == first[::-1]
    assert _chi_square_p(Counter(first), {"a": 0.75, "b": 0.25}) > 1e-3
    # The replay's seed names its ids: another seed, another but equally weighted assignment.
    other = [_experiment().route({}, request_id=rid.replace("s0-", "s1-")).arm for rid in ids]
    assert other != first and _chi_square_p(Counter(other), {"a": 0.75, "b": 0.25}) > 1e-3
    # A sticky key still wins over the request id.
    sticky = _experiment(sticky_header="x-user-id")
    assert len({sticky.route({"x-user-id": "alice"}, request_id=rid).arm for rid in ids[:200]}) == 1


def test_sticky_key_maps_to_one_arm_and_keys_split_by_weight() -> None:
    experiment = _experiment(sticky_header="X-User-Id")
    for key in ("alice", "bob", "carol"):
        arms = {experiment.route({"x-user-id": key}).arm for _ in range(50)}
        assert len(arms) == 1
    counts = Counter(experiment.route({"x-user-id": f"user-{i}"}).arm for i in range(20_000))
    assert _chi_square_p(counts, {"a": 0.75, "b": 0.25}) > 1e-3


def test_sticky_hash_is_stable_across_processes() -> None:
    keys = [f"user-{i}" for i in range(200)]
    here = [_experiment(sticky_header="x-user-id").route({"x-user-id": k}).arm for k in keys]
    code = (
        "from finmlops.serving.experiments import Experiment, parse_config\n"
        "e = Experiment(parse_config({'name': 'exp', 'sticky_header': 'x-user-id',"
        " 'candidates': [{'name': 'a', 'weight': 3}, {'name': 'b', 'weight': 1}]}))\n"
        f"print(','.join(e.route({{'x-user-id': k}}).arm for k in {keys!r}))\n"
    )
    # A different hash seed in the child would change hash(): the routing must not depend on it.
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "123"}
    )
    assert child.stdout.strip().split(",") == here
    assert 0.6 < here.count("a") / len(here) < 0.9


def test_stable_unit_depends_on_experiment_name() -> None:
    keys = [f"k{i}" for i in range(1000)]
    same = sum((stable_unit(k, "one") < 0.5) == (stable_unit(k, "two") < 0.5) for k in keys)
    assert 400 < same < 600  # independent assignments across experiments, not a shared bucket
    assert all(0.0 <= stable_unit(k, "one") < 1.0 for k in keys)


def test_shadows_and_mirror_get_copies_but_never_answer() -> None:
    experiment = _experiment(shadows=["c"], mirror={"name": "d", "percent": 100})
    route = experiment.route({})
    assert route.shadows == ("c", "d")
    assert route.model in {"a", "b"}
    assert experiment.models == ("a", "b", "c", "d")


def test_partial_mirror_copies_that_share_of_requests() -> None:
    experiment = _experiment(mirror={"name": "m", "percent": 20})
    mirrored = sum("m" in experiment.route({}).shadows for _ in range(20_000))
    assert stats.binomtest(mirrored, 20_000, 0.2).pvalue > 1e-3


def test_seldon_route_header_pins_the_arm() -> None:
    experiment = _experiment()
    pinned = seldon_route_value("b", 3)
    assert pinned == ":b_3:"
    assert {experiment.route({"x-seldon-route": pinned}).arm for _ in range(100)} == {"b"}
    # An arm of another experiment is ignored: the normal split applies.
    assert len({experiment.route({"x-seldon-route": ":zzz_1:"}).arm for _ in range(200)}) == 2


def test_candidate_model_reference_is_what_gets_scored() -> None:
    experiment = _experiment(candidates=[{"name": "champion", "model": "baseline-predictor@champion", "weight": 1}])
    assert experiment.route({}) == Route("champion", "baseline-predictor@champion", ())
    assert experiment.record_outcome("baseline-predictor@champion", True)
    assert experiment.posteriors()["champion"]["correct"] == 1


def _simulate_bandit(experiment: Experiment, accuracy: dict[str, float], steps: int, seed: int) -> Counter[str]:
    import random

    rng = random.Random(seed)
    counts: Counter[str] = Counter()
    for _ in range(steps):
        arm = experiment.route({}).arm
        counts[arm] += 1
        experiment.record_outcome(arm, rng.random() < accuracy[arm])
    return counts


def test_bandit_moves_traffic_to_the_better_arm_and_keeps_the_floor() -> None:
    experiment = _experiment(
        strategy="bandit",
        candidates=[{"name": "weak"}, {"name": "strong"}, {"name": "mid"}],
        bandit={"min_share": 0.05, "seed": 7, "refresh_every": 5, "draws": 500},
    )
    start = experiment.traffic_share()
    assert start == pytest.approx({"weak": 1 / 3, "strong": 1 / 3, "mid": 1 / 3}, abs=0.05)
    counts = _simulate_bandit(experiment, {"weak": 0.40, "strong": 0.65, "mid": 0.50}, steps=4000, seed=1)
    shares = experiment.traffic_share()
    assert shares["strong"] > 0.8
    assert min(shares.values()) >= 0.05 - 1e-12
    assert sum(shares.values()) == pytest.approx(1.0)
    assert counts["strong"] > counts["mid"] > 0 and counts["weak"] > 0
    assert experiment.refreshes == 4000 // 5
    # Floor in routing, not just on paper: the weak arm still gets about its 5 %.
    routed = Counter(experiment.route({}).arm for _ in range(20_000))
    assert stats.binomtest(routed["weak"], 20_000, shares["weak"]).pvalue > 1e-3


def test_bandit_is_reproducible_with_a_seed() -> None:
    config = {"strategy": "bandit", "bandit": {"seed": 3, "refresh_every": 1, "draws": 200}}
    a, b = _experiment(**config), _experiment(**config)
    _simulate_bandit(a, {"a": 0.6, "b": 0.4}, 300, seed=5)
    _simulate_bandit(b, {"a": 0.6, "b": 0.4}, 300, seed=5)
    assert a.traffic_share() == b.traffic_share()


def test_contextual_routes_by_header_then_parameter_then_default() -> None:
    experiment = _experiment(
        strategy="contextual",
        default="a",
        context={"header": "X-Volatility-Regime", "parameter": "regime", "routes": {"High": "b", "low": "a"}},
    )
    assert experiment.route({"x-volatility-regime": "high"}).arm == "b"
    assert experiment.route({"x-volatility-regime": " HIGH "}).arm == "b"
    assert experiment.route({}, {"regime": "high"}).arm == "b"
    assert experiment.route({"x-volatility-regime": "low"}, {"regime": "high"}).arm == "a"  # header wins
    assert experiment.route({}, {"regime": "sideways"}).arm == "a"
    assert experiment.route({}).arm == "a"
    assert experiment.traffic_share() == pytest.approx({"a": 0.5, "b": 0.5})


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"candidates": [{"name": "a", "weight": 0}, {"name": "b", "weight": 0}]}, "weights are all zero"),
        ({"candidates": [{"name": "a", "weight": -1}]}, "candidates.0.weight: Input should be greater than"),
        ({"candidates": []}, "candidates: List should have at least 1 item"),
        ({"default": "zzz"}, "default: 'zzz' is not a candidate"),
        ({"candidates": [{"name": "a"}, {"name": "a"}]}, "duplicate candidate names"),
        ({"strategy": "bandit", "bandit": {"min_share": 0.6}}, "bandit.min_share: 0.6 x 2 arms exceeds 1"),
        ({"strategy": "contextual"}, "context: strategy 'contextual' needs a context section"),
        ({"strategy": "contextual", "context": {"header": "x", "routes": {"hi": "q"}}}, "['q'] are not candidates"),
        ({"context": {"header": "x", "routes": {"hi": "a"}}}, "only valid with strategy 'contextual'"),
        (
            {
                "strategy": "contextual",
                "sticky_header": "x-user-id",
                "default": "a",
                "context": {"header": "x", "routes": {"hi": "b"}},
            },
            "sticky_header: strategy 'contextual' routes by the context value and never reads it",
        ),
        ({"strategy": "round-robin"}, "strategy: Input should be 'weighted', 'bandit' or 'contextual'"),
        ({"mirror": {"name": "m", "percent": 150}}, "mirror.percent: Input should be less than or equal to 100"),
        ({"weights": [1, 2]}, "weights: Extra inputs are not permitted"),
    ],
)
def test_config_errors_name_the_experiment_and_field(config: dict[str, object], message: str) -> None:
    raw = {"name": "bad-exp", "candidates": [{"name": "a"}, {"name": "b"}], **config}
    with pytest.raises(ExperimentConfigError) as info:
        parse_config(raw)
    assert str(info.value).startswith("experiment 'bad-exp': ")
    assert message in str(info.value)


def test_from_yaml_file_reads_experiments_and_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "serving.yaml"
    path.write_text(
        "models: {ignored: here}\n"
        "experiments:\n"
        "  - name: ab\n"
        "    default: a\n"
        "    candidates: [{name: a, weight: 70}, {name: b, weight: 30}]\n"
        "  - name: ctx\n"
        "    strategy: contextual\n"
        "    candidates: [{name: a}, {name: b}]\n"
        "    context: {parameter: regime, routes: {high: b}, default: a}\n"
    )
    experiments = ExperimentSet.from_yaml(path)
    assert experiments.names() == ["ab", "ctx"]
    assert experiments.models() == ["a", "b"]
    path.write_text("experiments:\n  - name: ab\n    candidates: [{name: a, weight: nope}]\n")
    with pytest.raises(ExperimentConfigError, match=r"serving\.yaml: experiment 'ab': candidates\.0\.weight"):
        ExperimentSet.from_yaml(path)
    path.write_text("experiments:\n  - {name: ab, candidates: [{name: a}]}\n  - {name: ab, candidates: [{name: a}]}\n")
    with pytest.raises(ExperimentConfigError, match="'ab': defined twice"):
        ExperimentSet.from_yaml(path)
    with pytest.raises(ExperimentConfigError, match="cannot read experiments"):
        ExperimentSet.from_yaml(tmp_path / "missing.yaml")


def test_from_yaml_accepts_a_mapping_by_name() -> None:
    experiments = ExperimentSet.from_yaml({"experiments": {"ab": {"candidates": [{"name": "x"}]}}})
    assert experiments.get("ab").route({}) == Route("x", "x", ())
    with pytest.raises(UnknownExperiment, match="no experiment 'zz'; configured: ab"):
        experiments.get("zz")


def test_update_validates_swaps_and_returns_the_new_state() -> None:
    experiments = ExperimentSet.default()
    old = experiments.get(DEFAULT_EXPERIMENT)
    old.record_outcome("enhanced-predictor", True)
    new = experiments.update(
        DEFAULT_EXPERIMENT,
        {"candidates": [{"name": "baseline-predictor", "weight": 1}, {"name": "enhanced-predictor", "weight": 1}]},
        who="alice",
    )
    assert experiments.get(DEFAULT_EXPERIMENT) is new
    assert new.traffic_share() == pytest.approx({"baseline-predictor": 0.5, "enhanced-predictor": 0.5})
    assert new.updated_by == "alice"
    assert new.posteriors()["enhanced-predictor"]["correct"] == 1  # counts carried over
    state = new.describe()
    assert state["config"]["default"] == "baseline-predictor"  # untouched keys kept (merge patch)
    assert state["updated_by"] == "alice"

    # Merge-patch: None deletes a key; nested mappings merge.
    assert experiments.update(DEFAULT_EXPERIMENT, {"default": None}, who="bob").config.default is None

    for patch, message in [
        ({"candidates": [{"name": "a", "weight": -5}]}, "candidates.0.weight"),
        ({"name": "other"}, "name: cannot be changed"),
        ({"strategy": "bandit", "bandit": {"min_share": 0.9}}, "bandit.min_share"),
    ]:
        with pytest.raises(ExperimentConfigError, match=message):
            experiments.update(DEFAULT_EXPERIMENT, patch, who="mallory")

    def serves_only_known_models(experiment: Experiment) -> None:
        unknown = set(experiment.models) - {"baseline-predictor", "enhanced-predictor"}
        if unknown:
            raise LookupError(f"not served: {sorted(unknown)}")

    with pytest.raises(LookupError, match=r"not served: \['ghost'\]"):
        experiments.update(DEFAULT_EXPERIMENT, {"shadows": ["ghost"]}, who="eve", check=serves_only_known_models)
    assert experiments.get(DEFAULT_EXPERIMENT).updated_by == "bob"  # a refused patch changes nothing
    with pytest.raises(UnknownExperiment):
        experiments.update("nope", {}, who="x")


def test_update_to_bandit_starts_from_the_counts_so_far() -> None:
    experiments = ExperimentSet.from_yaml([{"name": "e", "candidates": [{"name": "a"}, {"name": "b"}]}])
    for _ in range(60):
        experiments.get("e").record_outcome("a", True)
        experiments.get("e").record_outcome("b", False)
    bandit = experiments.update("e", {"strategy": "bandit", "bandit": {"seed": 0, "min_share": 0.1}}, who="ops")
    assert bandit.traffic_share() == pytest.approx({"a": 0.9, "b": 0.1}, abs=0.01)
