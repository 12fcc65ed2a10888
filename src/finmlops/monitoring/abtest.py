"""A/B analysis of a serving experiment from the request log: per-arm accuracy (Wilson 95% CI) and latency, and an
always-valid sequential test of each challenger's accuracy difference against the control arm.

The test is ``finmlops.stats.sequential.daily_msprt``: the mixture sequential probability ratio test (mSPRT) of
Johari et al. with the trading day as its unit (one look per day, a cluster-robust variance by day), because the
outcomes of one day are correlated. An outcome counts on the day it became known: for a request for trading day d
(its ``as_of``) that is ``outcome_lag`` trading days later (the label's horizon), else the UTC day of its feedback.
Decision rule (``decide``): promote when a challenger's always-valid p < alpha / (arms - 1) with theta_hat > 0 at
the look where p first fell below that, roll back when it did so with theta_hat < 0, otherwise continue.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field

from finmlops.provenance import stamp, write_text_atomic
from finmlops.serving.experiments import merge_patch
from finmlops.serving.experiments import parse_config as parse_experiment
from finmlops.serving.requestlog import read_feedback, read_requests
from finmlops.stats.sequential import ALPHA, MIN_DAYS, MIN_OUTCOMES, TAU, daily_msprt, wilson_interval

if TYPE_CHECKING:
    from finmlops.settings import Settings

Action = Literal["promote", "rollback", "continue"]


# --- the request log -------------------------------------------------------------------------------------------------


class AbModel(BaseModel):
    """Base of the A/B result models: frozen, and keys beyond the declared fields are kept."""

    model_config = ConfigDict(extra="allow", frozen=True)


def _num(x: float) -> float | None:
    """``x`` as a float, None where it is undefined: NaN (an arm without outcomes yet) or infinite (a confidence
    sequence before its first look); null in the file."""
    return float(x) if np.isfinite(x) else None


class Latency(AbModel):
    """Served latency percentiles in milliseconds (None without answered requests)."""

    p50: float | None
    p95: float | None
    p99: float | None


class Arm(AbModel):
    """One arm: the model versions it served, its served requests, failed ones, labelled outcomes (``correct`` of
    them right), accuracy with its Wilson 95% CI (None without outcomes) and latency."""

    models: list[str]
    requests: int
    errors: int
    outcomes: int
    correct: int | None = None
    accuracy: float | None
    accuracy_ci95: tuple[float | None, float | None]
    latency_ms: Latency


class Crossed(AbModel):
    """The look where the always-valid p-value first fell below the level, and the difference there."""

    date: str
    difference: float


class ArmComparison(AbModel):
    """Challenger minus control accuracy at the last look, its always-valid CS and p, and the first crossing."""

    arm: str
    control: str
    difference: float | None
    ci: tuple[float | None, float | None]
    log_lambda: float | None
    boundary: float | None
    p_value: float | None
    days: int | None = None
    outcomes: int | None = None
    crossed: Crossed | None = None

    @property
    def crossing_difference(self) -> float:
        """The difference at the first look below the level (``crossed``); the last look's without a crossing."""
        return float(self.crossed.difference if self.crossed else self.difference)  # type: ignore[arg-type]

    @property
    def crossing_note(self) -> str:
        return f"; crossed on {self.crossed.date} at {self.crossed.difference:+.4f}" if self.crossed else ""


class Decision(AbModel):
    """What to do (``promote`` the challenger ``arm``, ``rollback`` to the control ``arm``, ``continue``), why, the
    rule and the per-challenger level alpha / k."""

    action: Action
    arm: str | None = None
    rule: str
    reason: str
    level: float


class DayTest(AbModel):
    """One challenger at one daily look: accuracy difference to the control, the mSPRT log Lambda and its boundary,
    the confidence sequence, the always-valid (running-minimum) p-value and the days with outcomes so far."""

    difference: float | None = None
    log_lambda: float | None
    boundary: float | None
    ci: tuple[float | None, float | None] = (None, None)
    p_value: float | None = None
    days: int | None = None


class Day(AbModel):
    """One daily look: cumulative requests, that day's traffic share, cumulative outcomes and accuracy per arm
    (None before any), and each challenger's :class:`DayTest`."""

    date: str
    requests: dict[str, int] = Field(default_factory=dict)
    traffic_share: dict[str, float | None]
    outcomes: dict[str, int] = Field(default_factory=dict)
    accuracy: dict[str, float | None]
    tests: dict[str, DayTest] = Field(default_factory=dict)


class RouteChange(AbModel):
    """An experiment's candidate weights before and after routing its traffic to the winner, and whether they
    changed."""

    changed: bool
    weights_before: dict[str, float]
    weights: dict[str, float]


class ServerRoute(RouteChange):
    """The change through a running server's admin API (``url``), with the traffic shares it reported after."""

    url: str
    traffic_share: dict[str, float | None] | None = None

    @property
    def where(self) -> str:
        return self.url


class ConfigRoute(RouteChange):
    """The change in the serving config file ``path`` (effective at the server's next start)."""

    path: str

    @property
    def where(self) -> str:
        return self.path


class Applied(AbModel):
    """What ``--apply`` did: nothing for a ``continue`` (``reason``); otherwise the winner ``arm``, its registered
    ``model`` and ``version``, the tags set on it, and either the ``champion`` alias move (``mode: alias``,
    ``previous_champion``) or the routing change on the ``server`` and/or in the ``config`` (``mode: routing``)."""

    changed: bool
    reason: str | None = None
    mode: Literal["alias", "routing"] | None = None
    arm: str | None = None
    model: str | None = None
    version: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    previous_champion: str | None = None
    server: ServerRoute | None = None
    config: ConfigRoute | None = None


class AdminState(AbModel):
    """``GET``/``PUT /admin/experiments/{name}``'s answer: the experiment's serving config (its serving.yaml
    mapping) and the traffic shares the server measured."""

    config: dict[str, Any]
    traffic_share: dict[str, float | None] | None = None


class RoutingPatch(AbModel):
    """The JSON merge patch of an experiment's serving config that sends all its traffic to one arm: strategy
    ``weighted`` (``bandit`` and ``context`` null: removed), every candidate's mapping with its new ``weight``."""

    strategy: Literal["weighted"] = "weighted"
    bandit: None = None
    context: None = None
    candidates: list[dict[str, Any]]

    @property
    def weights(self) -> dict[str, float]:
        return {c["name"]: float(c["weight"]) for c in self.candidates}


class AbConfig(AbModel):
    log: str | None = None


class AbProvenance(AbModel):
    config: AbConfig = AbConfig()


class AbTest(AbModel):
    """:func:`run_abtest`'s result and ``results/abtest_<experiment>.json``: per-arm summaries, each challenger's
    always-valid comparison with the control, the decision, the per-day timeline, what ``--apply`` changed
    (``applied``) and the provenance. Keys beyond the fields are kept (``extra="allow"``), so the JSON a command
    prints is the whole file."""

    experiment: str
    control: str
    alpha: float
    tau: float
    min_outcomes: int | None = None
    min_days: int | None = None
    outcome_lag: int | None = None
    method: str | None = None
    arms: dict[str, Arm]
    comparisons: list[ArmComparison]
    decision: Decision
    timeline: list[Day]
    applied: Applied | None = None
    provenance: AbProvenance = AbProvenance()


def served_rows(requests: pd.DataFrame, feedback: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """The experiment's served (non-shadow) requests with their outcome: the request columns plus ``outcome``,
    ``feedback_ts`` (NaN when no feedback yet) and ``correct`` (prediction > 0.5 matches the outcome; NaN when
    unlabelled or failed). Raises ``ValueError`` naming the experiments in the log when there are no rows."""
    rows = requests[(requests["experiment"] == experiment) & (requests["shadow"] == 0)]
    if rows.empty:
        known = sorted(str(e) for e in requests["experiment"].dropna().unique())
        raise ValueError(f"no served requests of experiment {experiment!r} in the log (experiments: {known or 'none'})")
    outcomes = feedback.rename(columns={"ts": "feedback_ts"}).drop_duplicates("id")
    rows = rows.merge(outcomes, on="id", how="left")
    bad = rows["outcome"].notna() & ~rows["outcome"].isin([0, 1])
    if bad.any():
        raise ValueError(f"feedback row id={rows.loc[bad, 'id'].iloc[0]}: outcome must be 0 or 1")
    answered = rows["status"] == 200
    # The log is append-only: an id sent twice has two rows, and its outcome belongs to the latest answered one.
    latest = answered & ~rows["id"].where(answered).duplicated(keep="last")
    labelled = rows["outcome"].notna() & rows["prob_up"].notna() & latest
    rows["correct"] = np.where(labelled, (rows["prob_up"] > 0.5) == (rows["outcome"] == 1), np.nan)
    return rows


def arm_summary(rows: pd.DataFrame) -> Arm:
    """Requests, error share, labelled outcomes, accuracy with its Wilson 95% CI, and latency p50/p95/p99 (ms)."""
    labelled = rows["correct"].dropna()
    n, k = len(labelled), int(labelled.sum())
    low, high = wilson_interval(k, n)
    latency = rows["latency_ms"].dropna().to_numpy()
    p50, p95, p99 = np.percentile(latency, [50, 95, 99]) if latency.size else (np.nan,) * 3
    return Arm(
        models=sorted({f"{m} v{v}" for m, v in zip(rows["model"], rows["model_version"], strict=True)}),
        requests=len(rows), errors=int((rows["status"] != 200).sum()), outcomes=n, correct=k,
        accuracy=k / n if n else None, accuracy_ci95=(_num(low), _num(high)),
        latency_ms=Latency(p50=_num(p50), p95=_num(p95), p99=_num(p99)),
    )  # fmt: skip


def _day(ts: pd.Series) -> pd.Series:
    return pd.to_datetime(ts, unit="s", utc=True).dt.strftime("%Y-%m-%d")


def known_day(as_of: pd.Series, calendar: Sequence[str], lag: int) -> pd.Series:
    """The trading day ``lag`` trading days after each ``as_of`` day (ISO strings): the next days of ``calendar``
    (the sorted trading days of the log), business days past its end; NaN where ``as_of`` is NaN."""
    days = list(calendar)
    position = {d: i for i, d in enumerate(days)}

    def shift(day: Any) -> Any:
        if not isinstance(day, str):
            return np.nan
        i = position[day] + lag
        if i < len(days):
            return days[i]
        return (pd.Timestamp(days[-1]) + pd.offsets.BDay(i - len(days) + 1)).strftime("%Y-%m-%d")

    return as_of.map(shift)


def timeline(
    rows: pd.DataFrame,
    control: str,
    challengers: Sequence[str],
    *,
    alpha: float,
    tau: float,
    min_outcomes: int,
    min_days: int = MIN_DAYS,
    outcome_lag: int = 1,
) -> list[Day]:
    """One entry per day (a daily look): cumulative requests and that day's traffic share per arm, cumulative
    labelled outcomes and accuracy per arm, and per challenger the day-unit mSPRT statistic, its boundary, the
    confidence sequence and the always-valid (running-minimum) p-value.

    A request's day is its ``as_of`` (the trading day the client said it was for: a replay sends its simulated
    day, so months replayed in seconds still give one look per trading day); its outcome counts on the day it
    became known, ``outcome_lag`` trading days later. Without ``as_of`` the request counts on the UTC day of ``ts``
    and its outcome on that of ``feedback_ts``."""
    arms = [control, *challengers]
    as_of = rows["as_of"] if "as_of" in rows else pd.Series(None, index=rows.index, dtype=object)
    rows = rows.assign(day=as_of.fillna(_day(rows["ts"])))
    requests = rows.pivot_table(index="day", columns="arm", values="id", aggfunc="count")
    labelled = rows[rows["correct"].notna()]
    calendar = sorted(as_of.dropna().unique())
    known = known_day(as_of[labelled.index], calendar, outcome_lag)
    by_feedback = labelled.assign(day=known.fillna(_day(labelled["feedback_ts"])))
    n = by_feedback.pivot_table(index="day", columns="arm", values="correct", aggfunc="count")
    s = by_feedback.pivot_table(index="day", columns="arm", values="correct", aggfunc="sum")
    days = sorted(set(requests.index) | set(n.index))
    requests, n, s = (f.reindex(index=days, columns=arms).fillna(0) for f in (requests, n, s))
    cum_requests, cum_n, cum_s = requests.cumsum(), n.cumsum(), s.cumsum()
    tests = {
        arm: daily_msprt(
            n[control].to_numpy(),
            s[control].to_numpy(),
            n[arm].to_numpy(),
            s[arm].to_numpy(),
            tau=tau,
            alpha=alpha,
            min_outcomes=min_outcomes,
            min_days=min_days,
        )
        for arm in challengers
    }
    out = []
    for i, day in enumerate(days):
        total = float(requests.iloc[i].sum())
        day_tests = {}
        for arm, test in tests.items():
            diff, half = float(test["difference"][i]), float(test["half_width"][i])
            day_tests[arm] = DayTest(
                difference=_num(diff), log_lambda=_num(test["log_lambda"][i]), boundary=_num(test["boundary"][i]),
                ci=(_num(diff - half), _num(diff + half)), p_value=_num(np.min(test["p_value"][: i + 1])),
                days=int(test["days"][i]),
            )  # fmt: skip
        out.append(Day(
            date=day,
            requests={a: int(cum_requests[a].iloc[i]) for a in arms},
            traffic_share={a: float(requests[a].iloc[i] / total) if total else None for a in arms},
            outcomes={a: int(cum_n[a].iloc[i]) for a in arms},
            accuracy={a: float(cum_s[a].iloc[i] / cum_n[a].iloc[i]) if cum_n[a].iloc[i] else None for a in arms},
            tests=day_tests,
        ))  # fmt: skip
    return out


def decide(comparisons: Sequence[ArmComparison], alpha: float) -> Decision:
    """The decision: promote the challenger with the largest significantly positive difference; else roll back
    when every challenger is significantly worse than the control; else continue. "Significantly" means the
    always-valid p-value < alpha / (number of challengers) (Bonferroni over challengers); the direction is the
    sign of the difference at the first look that crossed that level (``crossed``), not at the last look: a
    boundary crossed while the challenger was worse stays a rollback even if the difference later turns."""
    level = alpha / max(1, len(comparisons))
    significant = [c for c in comparisons if c.p_value is not None and c.p_value < level]
    better = [c for c in significant if c.crossing_difference > 0]
    worse = [c for c in significant if c.crossing_difference < 0]
    rule = (
        f"promote if a challenger's always-valid mSPRT p < {level:.4g} with a positive accuracy difference; roll "
        f"back if every challenger's p < {level:.4g} with a negative difference; otherwise continue"
    )
    if better:
        best = max(better, key=lambda c: c.crossing_difference)
        action: Action = "promote"
        arm, reason = (
            best.arm,
            (
                f"{best.arm} beats {best.control} by {best.difference:+.4f} accuracy (always-valid p = "
                f"{best.p_value:.4g} < {level:.4g}{best.crossing_note})"
            ),
        )
    elif comparisons and len(worse) == len(comparisons):
        action, arm = "rollback", comparisons[0].control
        reason = "every challenger is significantly worse: " + "; ".join(
            f"{c.arm} {c.difference:+.4f} (p = {c.p_value:.4g}{c.crossing_note})" for c in worse
        )
    else:
        action, arm = "continue", None
        reason = "no challenger is significantly different from the control yet" if comparisons else "one arm only"
    return Decision(action=action, arm=arm, rule=rule, reason=reason, level=level)


def analyze(
    requests: pd.DataFrame,
    feedback: pd.DataFrame,
    experiment: str,
    *,
    control: str | None = None,
    alpha: float = ALPHA,
    tau: float = TAU,
    min_outcomes: int = MIN_OUTCOMES,
    min_days: int = MIN_DAYS,
    outcome_lag: int = 1,
) -> AbTest:
    """The full analysis of ``experiment`` from request-log frames (``read_requests``, ``read_feedback``).

    ``control`` defaults to the arm with the most served requests (the incumbent usually keeps most traffic; ties
    go to the first name). Returns arms, comparisons, the decision and the daily timeline (no provenance yet).
    """
    if not 0 < alpha < 1 or tau <= 0:
        raise ValueError(f"need 0 < alpha < 1 and tau > 0, got alpha={alpha}, tau={tau}")
    rows = served_rows(requests, feedback, experiment)
    if rows["arm"].isna().any():
        raise ValueError(f"request id={rows.loc[rows['arm'].isna(), 'id'].iloc[0]}: experiment row without an arm")
    counts = rows["arm"].value_counts()
    if control is None:
        control = sorted(counts.index, key=lambda a: (-counts[a], a))[0]
    elif control not in counts:
        raise ValueError(f"--control {control!r} is not an arm of {experiment!r} (arms: {sorted(counts.index)})")
    challengers = sorted(a for a in counts.index if a != control)
    arms = {arm: arm_summary(rows[rows["arm"] == arm]) for arm in [control, *challengers]}
    # Bonferroni over challengers: each boundary and confidence sequence is at alpha / k.
    level = alpha / max(1, len(challengers))
    days = timeline(
        rows, control, challengers, alpha=level, tau=tau, min_outcomes=min_outcomes, min_days=min_days,
        outcome_lag=outcome_lag,
    )  # fmt: skip
    comparisons = []
    for arm in challengers:
        last = days[-1].tests[arm]
        # The always-valid p-value is a running minimum: once below the level it stays there, while the difference
        # keeps moving. The direction is the difference's sign at the look where the boundary was first crossed.
        first = next((d for d in days if (p := d.tests[arm].p_value) is not None and p < level), None)
        crossed = None if first is None else Crossed(date=first.date, difference=first.tests[arm].difference)
        comparisons.append(ArmComparison(
            arm=arm, control=control, **last.model_dump(), outcomes=days[-1].outcomes[arm], crossed=crossed
        ))  # fmt: skip
    return AbTest(
        experiment=experiment, control=control, alpha=alpha, tau=tau, min_outcomes=min_outcomes, min_days=min_days,
        outcome_lag=outcome_lag,
        method=(
            "mSPRT, normal mixture (Johari et al. 2017), the trading day as unit: one look per day, cluster-robust "
            "variance by day, outcomes on the day they became known"
        ),
        arms=arms, comparisons=comparisons, decision=decide(comparisons, alpha), timeline=days,
    )  # fmt: skip


# --- applying the decision -------------------------------------------------------------------------------------------


def arm_version(rows: pd.DataFrame, arm: str) -> tuple[str, str]:
    """``(registered model name, version)`` an arm served; raises ``ValueError`` if it served several."""
    pairs = rows.loc[rows["arm"] == arm, ["model", "model_version"]].drop_duplicates()
    if len(pairs) != 1 or pairs["model_version"].isna().any():
        raise ValueError(f"arm {arm!r} served {len(pairs)} model versions; --apply needs exactly one")
    model, version = (str(v) for v in pairs.iloc[0])
    return (model if model.endswith("-predictor") else f"{model}-predictor"), version


def apply_decision(
    result: AbTest,
    rows: pd.DataFrame,
    client: Any,
    *,
    server: str | None = None,
    token: str | None = None,
    config_path: Path | None = None,
) -> Applied:
    """Act on the decision where the serving side follows it; a ``continue`` decision changes nothing.

    The winner is the challenger (promote) or the control (roll back). When every arm serves a version of ONE
    registered model, the ``champion`` alias moves to the winner's version (``mode: alias``). When the arms are
    different models (baseline-predictor vs enhanced-predictor, each served ``@champion``), moving an alias changes
    nothing, so the experiment itself is changed (``mode: routing``): every arm but the winner gets weight 0
    (strategy ``weighted``), through the running server's ``PUT /admin/experiments/{name}`` (``server``, bearer
    ``token``) and/or in the serving config file ``config_path``; one of them is required. Either way the winner's
    model version is tagged ``abtest.<experiment>.*`` with why (``client``: an ``mlflow.MlflowClient``).
    """
    decision, experiment = result.decision, result.experiment
    if decision.action == "continue" or decision.arm is None:
        return Applied(changed=False, reason="decision is continue: the registry is left as it is")
    models = {arm: arm_version(rows, arm) for arm in result.arms}
    name, version = models[decision.arm]
    routing = len({m for m, _ in models.values()}) > 1
    if routing and server is None and config_path is None:
        served = ", ".join(sorted({m for m, _ in models.values()}))
        raise ValueError(
            f"the arms of {experiment!r} serve different models ({served}): "
            "the champion alias does not change what the server routes to; give --server URL (and --token) "
            "and/or --config serving.yaml to send the experiment's traffic to the winner"
        )
    tags = {"decision": decision.action, "reason": decision.reason, "rule": decision.rule}
    for key, value in tags.items():
        client.set_model_version_tag(name, version, f"abtest.{experiment}.{key}", value[:5000])
    done = {"arm": decision.arm, "model": name, "version": version, "tags": tags}
    if not routing:
        previous = client.get_registered_model(name).aliases.get("champion")
        changed = str(previous) != version
        if changed:
            client.set_registered_model_alias(name, "champion", version)
        previous = None if previous is None else str(previous)
        return Applied(mode="alias", changed=changed, previous_champion=previous, **done)
    routes: dict[str, RouteChange] = {}  # only where it was routed: the file has no "server": null
    if server is not None:
        routes["server"] = _route_on_server(server, token, experiment, decision.arm)
    if config_path is not None:
        routes["config"] = _route_in_config(Path(config_path), experiment, decision.arm)
    changed = any(r.changed for r in routes.values())
    return Applied(mode="routing", changed=changed, **done, **routes)


def route_all_to(config: dict[str, Any], winner: str) -> RoutingPatch:
    """The JSON merge patch of an experiment ``config`` (its serving.yaml mapping) that sends all of its traffic to
    arm ``winner``: strategy ``weighted``, weight 100 for the winner and 0 for every other candidate. Shadows and
    the mirror are kept; ``default`` too (it names the endpoint the experiment takes over, not an arm's share)."""
    candidates = config.get("candidates") or []
    names = [c.get("name") for c in candidates]
    if winner not in names:
        raise ValueError(f"experiment {config.get('name')!r}: {winner!r} is not a candidate (candidates: {names})")
    weights = [{**c, "weight": 100 if c["name"] == winner else 0} for c in candidates]
    return RoutingPatch(candidates=weights)


def _shares(config: dict[str, Any]) -> dict[str, float]:
    """Each candidate's configured weight (a weighted experiment's relative share)."""
    return {c["name"]: float(c.get("weight", 1.0)) for c in config.get("candidates") or []}


def _admin(server: str, token: str | None, experiment: str, patch: RoutingPatch | None = None) -> AdminState:
    """GET (or with ``patch``, PUT) ``<server>/admin/experiments/<experiment>``; an HTTP error is a ValueError with
    the server's message, an unreachable server an OSError."""

    url = f"{server.rstrip('/')}/admin/experiments/{quote(experiment, safe='')}"
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    body = None if patch is None else patch.model_dump_json().encode()
    request = urllib.request.Request(url, data=body, headers=headers, method="GET" if patch is None else "PUT")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return AdminState.model_validate_json(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:500]
        raise ValueError(f"{request.method} {url}: HTTP {exc.code}: {detail}") from None


def _route_on_server(server: str, token: str | None, experiment: str, winner: str) -> ServerRoute:
    """Send the live experiment's traffic to ``winner`` through the server's admin API (no request when it already
    does). Returns the weights before and after, and the server's traffic shares after."""
    state = _admin(server, token, experiment)
    current = state.config
    patch = route_all_to(current, winner)
    before = _shares(current)
    changed = before != patch.weights or current.get("strategy", "weighted") != "weighted"
    if changed:
        state = _admin(server, token, experiment, patch)
    return ServerRoute(
        url=server, changed=changed, weights_before=before, weights=_shares(state.config),
        traffic_share=state.traffic_share,
    )  # fmt: skip


def _route_in_config(path: Path, experiment: str, winner: str) -> ConfigRoute:
    """Send ``experiment``'s traffic to ``winner`` in the serving config file (validated, written atomically; YAML
    comments are not kept). Takes effect when the server next starts with that file."""

    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: cannot parse: {exc}") from None
    entries = raw.get("experiments") if isinstance(raw, dict) else None
    matches = [i for i, e in enumerate(entries or []) if isinstance(e, dict) and e.get("name") == experiment]
    if not matches:
        raise ValueError(f"{path}: no experiment {experiment!r} under 'experiments'")
    i = matches[0]
    current = entries[i]
    patch = route_all_to(current, winner)
    before, after = _shares(current), patch.weights
    changed = before != after or current.get("strategy", "weighted") != "weighted"
    if changed:
        entries[i] = merge_patch(current, patch.model_dump())
        parse_experiment(entries[i], f" in {path}")  # refuse to write an experiment the server would reject
        write_text_atomic(path, yaml.safe_dump(raw, sort_keys=False))
    return ConfigRoute(path=str(path), changed=changed, weights_before=before, weights=after)


def run_abtest(
    settings: Settings,
    experiment: str,
    *,
    alpha: float = ALPHA,
    tau: float = TAU,
    control: str | None = None,
    apply: bool = False,
    server: str | None = None,
    token: str | None = None,
    config_path: Path | None = None,
    log_path: Path | None = None,
) -> AbTest:
    """Analyse ``experiment`` from ``<home>/serving/requests.db`` (or ``log_path``), optionally apply the decision
    (:func:`apply_decision`: the registry alias, or the experiment's routing on ``server`` and/or in
    ``config_path``), and write ``results/abtest_<experiment>.json`` (stamped). Returns it typed."""

    path = log_path or settings.home / "serving" / "requests.db"
    requests, feedback = read_requests(path), read_feedback(path)
    # The outcome of trading day d is known at the close of d + horizon.
    result = analyze(
        requests, feedback, experiment, control=control, alpha=alpha, tau=tau, outcome_lag=settings.horizon
    )
    update: dict[str, Any] = {}
    if apply:
        import mlflow  # deferred: mlflow

        from finmlops.tracking.backend import configure_tracking  # deferred: mlflow, pydantic_settings

        uri = configure_tracking(settings)
        rows = served_rows(requests, feedback, experiment)
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        update["applied"] = apply_decision(result, rows, client, server=server, token=token, config_path=config_path)
    config = {"experiment": experiment, "alpha": alpha, "tau": tau, "control": control, "log": str(path)}
    update["provenance"] = AbProvenance.model_validate(stamp(data_hash=None, config=config))
    # Validated again so that "applied" and "provenance" count as set: the file omits "applied" unless applied.
    result = AbTest.model_validate(result.model_dump(exclude_unset=True) | update)
    text = result.model_dump_json(indent=2, exclude_unset=True)
    write_text_atomic(settings.results_dir / f"abtest_{experiment}.json", text + "\n")
    return result
