"""The model registry: one registered model per variant, ``champion``/``challenger`` aliases, and the promotion rule.

Promotion rule: a candidate version takes an alias only if its pooled walk-forward accuracy beats the current
holder's on the SAME ``(date, ticker)`` rows by more than ``margin``, with significance: the evaluation's paired test
(``finmlops.stats.bootstrap.paired_test``: circular block bootstrap over dates, null-centred) of H0: difference <=
``margin`` gives the one-sided p (``p_value_greater``), and p must be < ``alpha``. With the same bootstrap settings
(``boot``, by default the evaluation's) and ``margin`` 0 it is the ``p_value_greater`` that ``evaluation.json``
records for the same pair, so ``promote`` and the evaluation cannot disagree.
When nobody holds the alias, the reference is the majority class of those rows' outcomes (the best constant
predictor in hindsight, so a conservative bar). ``force`` skips the test and is recorded as tags on the version.

A version tagged ``finmlops.evidence=selection`` (a ``finmlops tune`` winner) carries as evidence the walk-forward
predictions its hyperparameters were chosen on: a test on those rows is biased upward and its p-value invalid, so
``promote`` refuses it unless forced.
"""

from __future__ import annotations

import getpass
import json
import re
import tempfile
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any, Literal

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from pydantic import BaseModel, ConfigDict, Field

from finmlops.models import VARIANTS
from finmlops.provenance import Result
from finmlops.stats import Comparison, describe_comparison
from finmlops.stats.bootstrap import BootstrapConfig, PairedTest, paired_test

ALIASES: tuple[str, ...] = ("champion", "challenger")
PREDICTIONS_ARTIFACT = "walk_forward/predictions.parquet"
EVIDENCE_TAG = "finmlops.evidence"  # "selection": its predictions are the rows it was selected on
# On a training run: what its logged predictions are ("walk-forward, 10 folds, <first>..<last>" or "test split, ...").
SPLIT_TAG = "finmlops.predictions_split"
ALPHA = 0.05


class PromotionRefused(RuntimeError):
    """The candidate did not beat the alias holder (or the majority baseline) by the margin with significance."""


def registered_name(variant: str) -> str:
    """``<variant>-predictor``, e.g. ``baseline-predictor``; raises ``KeyError`` naming the known variants."""
    if variant not in VARIANTS:
        raise KeyError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    return f"{variant}-predictor"


class AccuracyTest(PairedTest):
    """The promotion rule's test: candidate minus reference pooled accuracy on the same rows, the evaluation's
    :class:`~finmlops.stats.bootstrap.PairedTest` (so ``promote`` and ``evaluation.json`` agree on a pair) with the
    two accuracies and what the reference is. The rule reads ``p_value_greater``, the one-sided p of
    H0: difference <= ``margin``."""

    reference: str
    candidate_accuracy: float
    reference_accuracy: float

    @property
    def significant(self) -> bool:
        return self.difference > self.margin and self.p_value_greater < ALPHA

    @property
    def rule_comparison(self) -> Comparison:
        """The one-sided comparison the rule decides on, as ``describe_comparison`` words it."""
        return self.comparison("accuracy", self.reference, side="greater")


def accuracy_test(
    candidate_correct: np.ndarray,
    reference_correct: np.ndarray,
    dates: np.ndarray,
    *,
    margin: float,
    reference: str,
    boot: BootstrapConfig | None = None,
) -> AccuracyTest:
    """One-sided test of H0: acc(candidate) - acc(reference) <= ``margin`` on the same rows: ``[n]`` 0/1 arrays
    (row correct) and the row's decision date, through the evaluation's ``paired_test`` with ``boot`` (default
    ``BootstrapConfig()``, the evaluation's default)."""
    if len(dates) == 0:
        raise ValueError("no shared rows to compare")
    _, date_idx = np.unique(np.asarray(dates), return_inverse=True)
    boot = boot or BootstrapConfig()
    diff = candidate_correct.astype(float) - reference_correct.astype(float)
    test = paired_test(diff, date_idx, boot, margin=margin)
    return AccuracyTest(
        **test.model_dump(), reference=reference, candidate_accuracy=float(candidate_correct.mean()),
        reference_accuracy=float(reference_correct.mean()),
    )  # fmt: skip


def _client() -> mlflow.MlflowClient:
    return mlflow.MlflowClient()


def version_predictions(version: ModelVersion) -> pd.DataFrame:
    """The version's own walk-forward test rows: ``date``, ``ticker``, ``prob_up``, ``y_true`` from its run."""
    variant = version.name.removesuffix("-predictor")
    label = f"{version.name} v{version.version}"
    if not version.run_id:
        raise PromotionRefused(f"{label} has no training run, so no walk-forward predictions to compare")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=version.run_id, artifact_path=PREDICTIONS_ARTIFACT, dst_path=tmp
            )
        except (MlflowException, OSError) as exc:
            raise PromotionRefused(f"{label}: run {version.run_id} has no {PREDICTIONS_ARTIFACT} ({exc})") from None
        frame = pd.read_parquet(path)
    rows = frame[frame["model"] == variant] if "model" in frame else frame
    if rows.empty:
        raise PromotionRefused(f"{label}: {PREDICTIONS_ARTIFACT} has no rows of model {variant!r}")
    return rows[["date", "ticker", "prob_up", "y_true"]]


def _correct(rows: pd.DataFrame, prob: str = "prob_up") -> np.ndarray:
    return ((rows[prob].to_numpy() > 0.5) == (rows["y_true"].to_numpy() == 1)).astype(float)


def compare(
    candidate: ModelVersion, holder: ModelVersion | None, margin: float, boot: BootstrapConfig | None = None
) -> AccuracyTest:
    """The paired test of ``candidate`` against ``holder``, or against the majority class when ``holder`` is None."""
    rows = version_predictions(candidate)
    if holder is None:
        majority = float(rows["y_true"].mean() >= 0.5)
        reference_correct = (rows["y_true"].to_numpy() == majority).astype(float)
        return accuracy_test(
            _correct(rows), reference_correct, rows["date"].to_numpy(), margin=margin,
            reference=f"majority class ({int(majority)})", boot=boot,
        )  # fmt: skip
    shared = rows.merge(version_predictions(holder), on=["date", "ticker"], suffixes=("", "_ref"))
    if shared.empty:
        raise PromotionRefused(
            f"{candidate.name} v{candidate.version} and v{holder.version} share no walk-forward rows; "
            "retrain both on the same data to compare them"
        )
    return accuracy_test(
        _correct(shared), _correct(shared, "prob_up_ref"), shared["date"].to_numpy(), margin=margin,
        reference=f"{holder.name} v{holder.version}", boot=boot,
    )  # fmt: skip


def alias_holder(name: str, alias: str) -> ModelVersion | None:
    """The version of ``name`` holding ``alias``, or None."""
    model = _client().get_registered_model(name)
    return _client().get_model_version(name, model.aliases[alias]) if alias in model.aliases else None


class ForcedPromotion(Result):
    """A promotion without the test: ``forced_by`` (user) at ``forced_at`` (UTC, ISO 8601) for ``reason``, replacing
    version ``replaced`` (``"none"``: nobody held the alias)."""

    name: str
    version: int
    alias: str
    forced: Literal[True] = True
    forced_by: str
    forced_at: str
    reason: str
    replaced: str


class TestedPromotion(AccuracyTest):
    """A promotion that passed the rule: the :class:`AccuracyTest`'s figures (accuracies and ``difference`` are
    fractions; ``p_value_greater`` the rule's one-sided p) and its ``summary`` in words."""

    name: str
    version: int
    alias: str
    forced: Literal[False] = False
    summary: str


Promotion = ForcedPromotion | TestedPromotion
"""What :func:`promote` decided."""


def promote(
    name: str,
    version: int,
    alias: str,
    *,
    margin: float = 0.005,
    force: bool = False,
    reason: str | None = None,
    boot: BootstrapConfig | None = None,
    seed: int | None = None,
) -> Promotion:
    """Give ``alias`` to ``name`` version ``version`` if it passes the promotion rule (module docstring).

    ``boot``: the bootstrap of the test (default the evaluation's default); ``seed`` overrides its seed. Raises
    ``PromotionRefused`` with the measured numbers when it does not. ``force`` needs a ``reason`` and records who,
    when and why as ``promotion.<alias>.*`` tags on the version. Returns what was decided, with ``summary`` the
    comparison in words (``describe_comparison``).
    """
    if alias not in ALIASES:
        raise ValueError(f"unknown alias {alias!r}; use one of {', '.join(ALIASES)}")
    client = _client()
    try:
        candidate = client.get_model_version(name, str(version))
    except MlflowException:
        raise ValueError(f"registered model {name!r} has no version {version}") from None
    holder = alias_holder(name, alias)
    if holder is not None and str(holder.version) == str(candidate.version):
        raise PromotionRefused(f"{name} v{version} already holds {alias!r}")
    if candidate.tags.get(EVIDENCE_TAG) == "selection" and not force:
        raise PromotionRefused(
            f"{name} v{version} is a tuning winner ({EVIDENCE_TAG}=selection): its walk-forward predictions are the "
            "rows its hyperparameters were selected on, so a test on them is biased and its p-value invalid. Judge "
            "it on later data (e.g. train the tuned configuration with `finmlops train` on a store extended past "
            "the tuning folds and promote that version), or pass --force --reason to record an override"
        )
    prefix = f"promotion.{alias}"
    if force:
        if not reason:
            raise ValueError("--force needs a --reason, recorded with the promotion")
        tags = {"forced_by": getpass.getuser(), "forced_at": datetime.now(UTC).isoformat(timespec="seconds")}
        tags |= {"reason": reason, "replaced": str(holder.version) if holder else "none"}
        for key, value in tags.items():
            client.set_model_version_tag(name, str(version), f"{prefix}.{key}", value)
        move_alias(name, alias, int(version), action="force", reason=reason)
        return ForcedPromotion(name=name, version=version, alias=alias, **tags)
    boot = boot or BootstrapConfig()
    test = compare(candidate, holder, margin, boot if seed is None else replace(boot, seed=seed))
    # The tags and the alias event keep the rule's one-sided p under the name p_value, as before.
    recorded = {"reference": test.reference, "difference": test.difference, "p_value": test.p_value_greater}
    recorded |= {"n_rows": test.n_rows, "n_dates": test.n_dates}
    for key, value in recorded.items():
        client.set_model_version_tag(name, str(version), f"{prefix}.{key}", str(value))
    summary = describe_comparison(test.rule_comparison)
    if not test.significant:
        raise PromotionRefused(
            f"{name} v{version} does not beat {test.reference} by more than the margin {margin}: accuracy "
            f"{test.candidate_accuracy:.4f} vs {test.reference_accuracy:.4f}, {summary}"
            f" (need difference > {margin} and p < {ALPHA}) on {test.n_rows} rows over {test.n_dates} dates"
        )
    evidence: dict[str, Any] = {**recorded, "margin": test.margin, "rule": "walk-forward"}
    move_alias(name, alias, int(version), action="promote", reason=summary, evidence=evidence)
    return TestedPromotion(name=name, version=version, alias=alias, **test.model_dump(), summary=summary)


def promotion_comparisons(tags: dict[str, str]) -> dict[str, str]:
    """Per alias, the promotion test recorded on a version's tags (``promotion.<alias>.*``), in words
    (``describe_comparison``, one-sided); a forced promotion says so. Aliases without a recorded test are left out."""
    out: dict[str, str] = {}
    for alias in ALIASES:
        prefix = f"promotion.{alias}"
        if f"{prefix}.forced_by" in tags:
            out[alias] = f"forced by {tags[f'{prefix}.forced_by']}: {tags.get(f'{prefix}.reason', '')}"
        elif f"{prefix}.p_value" in tags:
            comparison = Comparison(
                metric="accuracy", reference=tags.get(f"{prefix}.reference", "the holder"),
                difference=float(tags[f"{prefix}.difference"]), p_value=float(tags[f"{prefix}.p_value"]),
                side="greater", alpha=ALPHA,
            )  # fmt: skip
            out[alias] = describe_comparison(comparison)
    return out


def split_of(predictions: pd.DataFrame) -> str:
    """What a predictions frame (``date``, ``fold``) measures: ``"test split, <first>..<last>"`` for one held-out
    block (``fold`` "holdout"), else ``"walk-forward, <k> folds, <first>..<last>"``."""
    dates = pd.to_datetime(predictions["date"])
    span = f"{dates.min().date()}..{dates.max().date()}"
    folds = predictions["fold"].astype(str).unique() if "fold" in predictions else []
    if len(folds) == 1 and folds[0] == "holdout":
        return f"test split, {span}"
    return f"walk-forward, {len(folds)} fold{'s' if len(folds) != 1 else ''}, {span}"


def tag_version(name: str, version: str) -> dict[str, str]:
    """Store the accuracy of the version's logged predictions, what they are, their row and date counts and the
    data hash on a model version (as tags): ``wf_accuracy``/``wf_rows``/``wf_dates`` for walk-forward predictions,
    ``test_accuracy``/``test_rows``/``test_dates`` for one held-out test split, ``evidence`` saying which (with the
    folds and dates), so that nothing calls a single split walk-forward."""
    client = _client()
    model_version = client.get_model_version(name, version)
    rows = version_predictions(model_version)
    run = client.get_run(model_version.run_id)
    evidence = run.data.tags.get(SPLIT_TAG, "split not recorded")
    prefix = "wf" if evidence.startswith("walk-forward") else "test" if evidence.startswith("test split") else "eval"
    tags = {
        "evidence": evidence,
        f"{prefix}_accuracy": f"{_correct(rows).mean():.6f}",
        f"{prefix}_rows": str(len(rows)),
        f"{prefix}_dates": str(rows["date"].nunique()),
        "data_hash": run.data.tags.get("finmlops.data_hash", "unknown"),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    return tags


def register_variant(variant: str, run_id: str | None = None) -> ModelVersion:
    """Register the model of ``run_id`` (default: the newest finished training run of ``variant`` that logged one)
    as a new version of ``<variant>-predictor``, tagged with the accuracy of its logged predictions (see
    :func:`tag_version`)."""
    name = registered_name(variant)
    if run_id is None:
        runs = mlflow.search_runs(
            experiment_names=["training"], output_format="list", max_results=1,
            filter_string=f"tags.`finmlops.variant` = '{variant}' and attributes.status = 'FINISHED' "
            "and tags.`finmlops.model_uri` != ''",
            order_by=["attributes.start_time DESC"],
        )  # fmt: skip
        if not runs:
            raise ValueError(f"no finished training run of variant {variant!r} with a logged model; train it first")
        run_id = runs[0].info.run_id
    uri = _client().get_run(run_id).data.tags.get("finmlops.model_uri")
    if not uri:
        raise ValueError(f"run {run_id} logged no model (no finmlops.model_uri tag)")
    version = mlflow.register_model(uri, name)
    tag_version(name, version.version)
    return _client().get_model_version(name, version.version)


class Challenger(Result):
    """``model`` version ``version`` now holds ``challenger``; ``champion`` is the champion's version (None: none)."""

    model: str
    version: int
    alias: Literal["challenger"] = "challenger"
    champion: int | None


def mark_challenger(run_id: str) -> Challenger:
    """Give ``challenger`` to the version registered from ``run_id`` (the newest when several).

    No test here: a challenger is only a candidate, served beside the champion until ``promote`` decides.
    """
    client = _client()
    versions = client.search_model_versions(f"run_id = '{run_id}'")
    if not versions:
        raise ValueError(f"run {run_id} registered no model version")
    version = max(versions, key=lambda v: int(v.version))
    client.set_model_version_tag(version.name, str(version.version), "promotion.challenger.reason", "newest training")
    move_alias(version.name, "challenger", int(version.version), action="challenger", reason="newest training")
    holder = alias_holder(version.name, "champion")
    return Challenger(
        model=version.name, version=int(version.version), champion=int(holder.version) if holder is not None else None
    )


def describe_evidence(tags: dict[str, str]) -> str:
    """One line on a version's recorded accuracy and what it was measured on, from :func:`tag_version`'s tags:
    ``"walk-forward accuracy 0.5200 on 25150 rows (10 folds, 2014-01-02..2023-12-29)"``,
    ``"test-split accuracy 0.5040 on 5270 rows (2023-01-03..2023-12-29)"``."""
    evidence = tags.get("evidence")
    # Tagged before the split was recorded (wf_* on every version then): walk-forward or one test split, unknown.
    where = evidence.partition(", ")[2] if evidence else "split not recorded"
    for prefix, label in (("wf", "walk-forward accuracy"), ("test", "test-split accuracy"), ("eval", "accuracy")):
        if f"{prefix}_accuracy" in tags:
            label = label if evidence else "accuracy"
            accuracy = float(tags[f"{prefix}_accuracy"])
            return f"{label} {accuracy:.4f} on {tags.get(f'{prefix}_rows', '?')} rows ({where or evidence})"
    return "no accuracy recorded"


def evidence_of(name: str, version: int | str) -> str:
    """:func:`describe_evidence` of one registered version (what the promotion rule tests it on)."""
    return describe_evidence(dict(_client().get_model_version(name, str(version)).tags))


class RegisteredVersion(Result):
    """One version of a registered model: the ``aliases`` it holds, its MLflow ``run_id``, ``created`` (UTC,
    ISO 8601 to the second) and its ``tags`` (the evidence, data hash and promotion tests)."""

    version: int
    aliases: list[str]
    run_id: str | None
    created: str
    tags: dict[str, str]


class RegisteredModel(Result):
    """A registered ``*-predictor``: its ``aliases`` (alias -> version) and its ``versions``, newest first."""

    name: str
    aliases: dict[str, int]
    versions: list[RegisteredVersion]


def list_models() -> list[RegisteredModel]:
    """Every registered ``*-predictor`` with its versions (newest first), aliases and stored metrics."""
    client = _client()
    listing = []
    for model in client.search_registered_models(filter_string="name LIKE '%-predictor'"):
        by_version: dict[str, list[str]] = {}
        for alias, version in model.aliases.items():
            by_version.setdefault(str(version), []).append(alias)
        versions = sorted(client.search_model_versions(f"name = '{model.name}'"), key=lambda v: -int(v.version))
        listing.append(
            RegisteredModel(
                name=model.name,
                aliases={alias: int(v) for alias, v in model.aliases.items()},
                versions=[
                    RegisteredVersion(
                        version=int(v.version),
                        aliases=sorted(by_version.get(str(v.version), [])),
                        run_id=v.run_id,
                        created=datetime.fromtimestamp(v.creation_timestamp / 1000, UTC).isoformat(timespec="seconds"),
                        tags=dict(v.tags),
                    )
                    for v in versions
                ],
            )
        )
    return listing


# --- the audited alias history -----------------------------------------------------------------------------------
#
# MLflow keeps only where an alias points now. Every alias move made through this module (``promote``,
# ``mark_challenger``, ``move_alias``: ``finmlops promote``, ``finmlops run``, ``finmlops live``) first writes one
# event as a tag of the registered model, ``finmlops.alias_event.<id>`` = JSON, and then moves the alias. The tags
# live in the registry's database, so ``alias_history`` reconstructs who held which alias on every day after any
# restart. An event written and not yet applied (a crash in between) is completed by the same call with the same
# ``event_id``, never duplicated.

ALIAS_EVENT_PREFIX = "finmlops.alias_event."
AliasAction = Literal["promote", "force", "challenger", "rollback", "retire"]
_EVENT_ID = re.compile(r"[^A-Za-z0-9_.\-]")


class AliasEvent(BaseModel):
    """One audited alias move: ``alias`` went to ``version`` (None: the alias was removed) on ``day`` (the
    trading day it takes effect; the wall-clock date for a manual promotion), replacing ``previous``.
    ``evidence`` holds the test the move was decided on (or is empty for a forced one, whose ``reason`` says why)."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    alias: str
    version: int | None
    previous: int | None
    day: date
    at: str = Field(description="UTC time the event was recorded, ISO 8601.")
    by: str
    action: AliasAction
    reason: str
    evidence: dict[str, Any] = Field(default_factory=dict)


class AliasPeriod(BaseModel):
    """``version`` held ``alias`` from ``start`` to ``end`` (inclusive; None: still holds it), set by ``event``."""

    model_config = ConfigDict(frozen=True)

    alias: str
    version: int | None
    start: date
    end: date | None
    event: AliasEvent


def _registered(client: mlflow.MlflowClient, name: str) -> Any:
    try:
        return client.get_registered_model(name)
    except MlflowException:
        raise ValueError(f"no registered model {name!r}") from None


def move_alias(
    name: str,
    alias: str,
    version: int | None,
    *,
    action: AliasAction,
    reason: str,
    evidence: dict[str, Any] | None = None,
    day: date | None = None,
    event_id: str | None = None,
) -> AliasEvent:
    """Record an :class:`AliasEvent` on ``name``, then give ``alias`` to ``version`` (None: delete the alias).

    ``event_id`` makes the move idempotent: when an event of that id exists it is the one returned, and the alias is
    only set if the crash came between the two writes. ``day`` defaults to today's UTC date.
    """
    if alias not in ALIASES:
        raise ValueError(f"unknown alias {alias!r}; use one of {', '.join(ALIASES)}")
    client = _client()
    model = _registered(client, name)
    now = datetime.now(UTC)
    key = _EVENT_ID.sub("_", event_id) if event_id else f"{now.strftime('%Y%m%dT%H%M%S%f')}-{alias}"
    existing = model.tags.get(ALIAS_EVENT_PREFIX + key)
    if existing is not None:
        event = AliasEvent.model_validate({**json.loads(existing), "id": key, "name": name})
    else:
        held = model.aliases.get(alias)
        event = AliasEvent(
            id=key, name=name, alias=alias, version=version, previous=int(held) if held is not None else None,
            day=day or now.date(), at=now.isoformat(timespec="microseconds"), by=getpass.getuser(), action=action,
            reason=reason, evidence=evidence or {},
        )  # fmt: skip
        body = event.model_dump(mode="json", exclude={"id", "name"})
        client.set_registered_model_tag(name, ALIAS_EVENT_PREFIX + key, json.dumps(body, sort_keys=True))
    current = _registered(client, name).aliases.get(alias)
    if event.version is None:
        if current is not None:
            client.delete_registered_model_alias(name, alias)
    elif str(current) != str(event.version):
        client.set_registered_model_alias(name, alias, str(event.version))
    return event


def alias_events(name: str) -> list[AliasEvent]:
    """Every recorded alias event of ``name``, in the order they took effect (day, then recording time)."""
    model = _registered(_client(), name)
    events = [
        AliasEvent.model_validate({**json.loads(value), "id": key.removeprefix(ALIAS_EVENT_PREFIX), "name": name})
        for key, value in model.tags.items()
        if key.startswith(ALIAS_EVENT_PREFIX)
    ]
    return sorted(events, key=lambda e: (e.day, e.at, e.id))


def alias_history(name: str, alias: str | None = None) -> list[AliasPeriod]:
    """The periods each alias (or only ``alias``) was held, oldest first, from :func:`alias_events`. Several moves
    on one day leave only the last as that day's holder; a period ends the day before the next move."""
    periods: list[AliasPeriod] = []
    for which in [alias] if alias else list(ALIASES):
        events = [e for e in alias_events(name) if e.alias == which]
        last_per_day = {e.day: e for e in events}  # dict keeps the last event of each day, in day order
        ordered = list(last_per_day.values())
        for i, event in enumerate(ordered):
            end = None
            if i + 1 < len(ordered):
                end = date.fromordinal(ordered[i + 1].day.toordinal() - 1)
            periods.append(AliasPeriod(alias=which, version=event.version, start=event.day, end=end, event=event))
    return sorted(periods, key=lambda p: (p.start, p.alias))


def holders_on(name: str, day: date) -> dict[str, AliasPeriod | None]:
    """Per alias, the period covering ``day`` (its version and why), or None when nobody held it then (or its
    moves predate the audit log)."""
    out: dict[str, AliasPeriod | None] = {}
    for alias in ALIASES:
        covering = [p for p in alias_history(name, alias) if p.start <= day and (p.end is None or day <= p.end)]
        out[alias] = covering[-1] if covering else None
    return out


def describe_event(event: AliasEvent) -> str:
    """Why a move happened, in one line: the forced reason, or the evidence's test in words."""
    evidence = event.evidence
    if event.action == "force":
        return f"forced by {event.by}: {event.reason}"
    if "difference" in evidence and "p_value" in evidence:
        ci = evidence.get("ci")
        interval = f" [{ci[0]:+.4f}, {ci[1]:+.4f}]" if isinstance(ci, list) and None not in ci else ""
        days = f" over {evidence['days']} days" if "days" in evidence else ""
        return (
            f"{event.action}: {evidence.get('rule', 'test')} difference {float(evidence['difference']):+.4f}"
            f"{interval}, p = {float(evidence['p_value']):.3g}{days}; {event.reason}"
        )
    return f"{event.action}: {event.reason}"


class ExplainedPeriod(AliasPeriod):
    """An :class:`AliasPeriod` with ``why`` it began, in words (:func:`describe_event`)."""

    why: str

    @classmethod
    def of(cls, period: AliasPeriod) -> ExplainedPeriod:
        return cls(**dict(period), why=describe_event(period.event))


class HoldersOn(Result):
    """Who held each alias of each model in ``models`` (name -> alias -> period, None: nobody or before the audit
    log) on ``day``; ``holders`` repeats the one model's entry when only one was asked for (else None)."""

    day: date
    models: dict[str, dict[str, ExplainedPeriod | None]]
    holders: dict[str, ExplainedPeriod | None] | None = None


def explained_history(name: str) -> list[ExplainedPeriod]:
    """:func:`alias_history` of ``name`` with each period's reason."""
    return [ExplainedPeriod.of(p) for p in alias_history(name)]


def explained_holders(names: list[str], day: date) -> HoldersOn:
    """:func:`holders_on` ``day`` of every model in ``names``, with each period's reason."""
    models = {
        name: {a: None if p is None else ExplainedPeriod.of(p) for a, p in holders_on(name, day).items()}
        for name in names
    }
    return HoldersOn(day=day, models=models, holders=models[names[0]] if len(names) == 1 else None)


# --- the live promotion rule ---------------------------------------------------------------------------------------


class LiveEvidence(BaseModel):
    """The always-valid sequential test of a canary (``finmlops.stats.sequential.daily_msprt``, the trading day as
    the unit) on the live outcomes since the challenger went to shadow: ``difference`` = accuracy(challenger) -
    accuracy(champion) over ``days`` days and ``outcomes`` labelled outcomes per arm, its always-valid 95%
    confidence sequence ``ci`` (None before the test may be read) and always-valid p-value."""

    model_config = ConfigDict(frozen=True)

    rule: str = "live-sequential"
    difference: float
    ci: tuple[float, float] | None
    p_value: float
    days: int
    outcomes: int
    tested: bool


def live_decision(evidence: LiveEvidence, margin: float) -> Literal["promote", "rollback", "wait"]:
    """The live rule, Flagger's: roll back as soon as the test says the challenger is worse (its confidence
    sequence lies below 0); promote once the test may be read and the challenger is not worse by more than
    ``margin`` in point estimate (a non-inferiority call, not a proof of superiority); else wait."""
    if evidence.tested and evidence.ci is not None and evidence.ci[1] < 0:
        return "rollback"
    if evidence.tested and evidence.difference >= -margin:
        return "promote"
    return "wait"


def promote_live(
    name: str, version: int, evidence: LiveEvidence, *, margin: float, day: date, event_id: str
) -> AliasEvent:
    """Give ``champion`` to ``name`` v``version`` by :func:`live_decision` on live ``evidence``; the evidence is
    recorded on the version (``promotion.champion.*``) and in the alias event. Raises ``PromotionRefused`` naming
    the numbers otherwise."""
    decision = live_decision(evidence, margin)
    if decision != "promote":
        raise PromotionRefused(
            f"{name} v{version}: live difference {evidence.difference:+.4f} over {evidence.days} days "
            f"({evidence.outcomes} outcomes per arm), tested={evidence.tested}: {decision}, not promote"
        )
    client = _client()
    for key in ("difference", "p_value", "days", "outcomes", "rule"):
        client.set_model_version_tag(name, str(version), f"promotion.champion.{key}", str(getattr(evidence, key)))
    client.set_model_version_tag(name, str(version), "promotion.champion.reference", "live champion")
    body = evidence.model_dump(mode="json")
    reason = f"live canary not worse than the champion by more than {margin} (always-valid test, day as unit)"
    return move_alias(name, "champion", version, action="promote", reason=reason, evidence=body, day=day,
                      event_id=event_id)  # fmt: skip
