"""``finmlops live``: the platform living day by day, with retraining, canary promotion and rollback.

Each trading day runs these phases, in order, each recorded in the day's journal (``<live>/journal/<day>.json``,
written atomically after every phase) before the next starts:

1. ``ingest``: the day's bars arrive from the feed (the replay feed serves the history store's rows as a yfinance
   download; the Yahoo feed is yfinance itself) and go through the ingest path (``validate_batch``, then the
   versioned store's merge of new dates, a no-op for a day already stored).
2. ``collect``: a refit started ``retrain.lag_days`` ago (in its own process) is logged to MLflow, registered and
   given ``challenger``: it goes to shadow.
3. ``score``: the running V2 server (``finmlops.serving.server.running_server``, real HTTP on 127.0.0.1) scores
   the next day for every ticker: one raw-OHLCV request per model per day (``[n_tickers, T]``), the champion's and,
   when there is one, the challenger's; the request log records both. The challenger's answer is served for the
   tickers of its canary share (a stable hash of day and ticker), the champion's for the others.
4. ``feedback``: the outcomes of the day ``label.reach`` trading days back (horizon + 1: the label's trade
   enters at t+1) are now known; each scored row gets its ``/v2/feedback``; per model the day's hits, IC and
   the served book's return are recorded.
5. ``rollout``: the always-valid test (``daily_msprt``, the day as the unit) on the challenger's and the
   champion's outcomes since the challenger went to shadow; it rolls back, moves to the next canary step after
   ``rollout.step_days``, or after the last step promotes through the registry's live rule. Every move is an
   audited alias event (``finmlops.tracking.registry.move_alias``), whose id makes it happen once.
6. ``drift``: PSI of the champion's features over the last ``drift.window_days`` days against its training
   window; above the thresholds an alarm is recorded (and logged).
7. ``retrain``: on schedule, on a drift alarm or on a decaying live accuracy, a refit on the window up to today
   starts in another process.

Kill the loop at any point and run it again: a finished day is never redone, and a phase cut short redoes only
what did not happen (the store merges, logged requests are read back instead of sent again, the server counts
each feedback id once, registrations and alias moves are found by their ids). ``tests/workflow/test_daily_crash``
kills it in every phase and compares the request log, the registry and the store with an uninterrupted run.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar, cast
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from finmlops.data import DataSourceError, DataStore, ingest
from finmlops.data.frames import validate_batch
from finmlops.data.snapshot import read_snapshot
from finmlops.data.yahoo import fetch_yahoo, normalise_yahoo
from finmlops.features import compute_features, forward_return, make_target, market_returns
from finmlops.monitoring.live_timeline import Timeline, TimelineDay, TimelineTotals
from finmlops.provenance import Real, file_sha256, write_json_atomic, write_text_atomic
from finmlops.serving.config import ModelSource, ServerOptions, ServingConfig
from finmlops.serving.experiments import stable_unit
from finmlops.settings import Settings
from finmlops.workflow.live_config import LiveConfig, RetrainConfig
from finmlops.workflow.retrain import RetrainResult, RetrainSpec, read_result

log = logging.getLogger("finmlops.live")

PHASES: tuple[str, ...] = ("ingest", "collect", "score", "feedback", "rollout", "drift", "retrain")
# Test hook: called with (day, phase) after a phase's effects and before its journal entry is written, so that a
# test can kill the loop in every phase (tests/workflow/test_daily_crash.py). None in production.
phase_hook: Callable[[date, str], None] | None = None


class LiveError(RuntimeError):
    """The loop cannot go on (no bars for a day, a failed refit, the server refusing); the message says why."""


# --- where things live -----------------------------------------------------------------------------------------------


class LivePaths:
    """The live workspace: ``history`` (the replay feed's store), ``data`` (the live store, the settings'
    ``data_dir``), ``journal/``, ``retrains/``, ``drift/``, ``serving/requests.db``, ``results/``."""

    def __init__(self, settings: Settings) -> None:
        self.home = settings.home
        self.history = settings.home / "history"
        self.data = settings.data_dir
        self.journal = settings.home / "journal"
        self.retrains = settings.home / "retrains"
        self.drift = settings.home / "drift"
        self.requests = settings.home / "serving" / "requests.db"
        self.results = settings.results_dir

    def day_file(self, day: date) -> Path:
        return self.journal / f"{day.isoformat()}.json"


def live_settings(settings: Settings, config: LiveConfig) -> Settings:
    """The settings the loop's stage functions read: home ``<home>/<workspace>`` (its own store, registry and
    request log), the config's tickers, label and seed."""
    home = settings.home / config.workspace
    home.mkdir(parents=True, exist_ok=True)
    update = {
        "home": home, "tickers": list(config.universe.tickers), "seed": config.seed,
        "horizon": config.label.horizon, "threshold": config.label.threshold, "execution": config.label.execution,
    }  # fmt: skip
    if settings.mlflow_tracking_uri is None:
        return settings.model_copy(update=update)
    # A shared tracking server would mix several setups' registries: the loop keeps its own sqlite one.
    return settings.model_copy(update=update | {"mlflow_tracking_uri": None})


# --- the label: the one place the outcome is defined -------------------------------------------------------------


class Outcome(BaseModel):
    """One ticker's outcome of a decision day: ``outcome`` 1 up, 0 down, None when unknown or in the dead band;
    ``return_`` (``return`` in the journal) the traded return as a fraction, NaN (``null``) when unknown."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    outcome: int | None
    return_: Real = Field(alias="return")


def label_outcomes(universe: Mapping[str, pd.DataFrame], day: date, config: LiveConfig) -> dict[str, Outcome]:
    """Per ticker, the outcome of decision ``day`` under the config's label (``LabelSpec``: the traded return from
    the execution price of t+1 over ``horizon`` days; 1 up, 0 down, None when unknown or in the dead band) and that
    traded return (NaN when unknown). It is known at the close of ``day`` + ``label.reach`` trading days."""

    target = make_target(universe, config.label)
    returns = forward_return(universe, config.label)
    stamp = pd.Timestamp(day)
    out: dict[str, Outcome] = {}
    for ticker in sorted(universe):
        y = target.get((stamp, ticker), np.nan)
        r = returns.get((stamp, ticker), np.nan)
        out[ticker] = Outcome(outcome=None if not np.isfinite(y) else int(y), return_=float(r))
    return out


# --- feeds --------------------------------------------------------------------------------------------------------


class ReplayFeed:
    """The history store's bars served one day at a time, shaped as a yfinance download (``auto_adjust=False``,
    (Price, Ticker) columns) and read back through the Yahoo normaliser, so that the live ingest path is the one a
    real day takes."""

    name = "replay"

    def __init__(self, history: Path, tickers: Sequence[str]) -> None:
        self.store = DataStore(history)
        self.tickers = list(tickers)
        self._frames: dict[str, pd.DataFrame] | None = None

    def frames(self) -> dict[str, pd.DataFrame]:
        if self._frames is None:
            self._frames = self.store.read(self.tickers)
        return self._frames

    def trading_days(self, start: date, end: date) -> list[date]:
        """Days in ``start``..``end`` on which every ticker traded."""
        frames = self.frames()
        common = sorted(set.intersection(*(set(f.index) for f in frames.values())))
        return [d.date() for d in common if start <= d.date() <= end]

    def bars(self, day: date) -> list[Any]:
        raws = []
        for ticker, frame in self.frames().items():
            row = frame.loc[[pd.Timestamp(day)]]
            names = {"open": "Open", "high": "High", "low": "Low", "close": "Close", "adj_close": "Adj Close"}
            yahoo = pd.DataFrame({names.get(c, "Volume"): row[c].to_numpy() for c in (*names, "volume")})
            yahoo.index = pd.DatetimeIndex(row.index, name="Date")
            yahoo.columns = pd.MultiIndex.from_product([list(yahoo.columns), [ticker]], names=["Price", "Ticker"])
            raws.append(normalise_yahoo(yahoo, ticker))
        return raws


class YahooFeed:
    """yfinance, for ``finmlops live --today``. Offline (as in a sandbox) yfinance returns an empty frame; the
    loop then stops with a :class:`LiveError` that says so."""

    name = "yahoo"

    def __init__(self, tickers: Sequence[str], retries: int = 2) -> None:
        self.tickers = list(tickers)
        self.retries = retries
        self._fetched: dict[date, list[Any]] = {}

    def bars(self, day: date) -> list[Any]:
        if day in self._fetched:
            return self._fetched[day]
        try:
            self._fetched[day] = fetch_yahoo(self.tickers, day, day, retries=self.retries, backoff_s=1.0)
            return self._fetched[day]
        except DataSourceError as exc:
            raise LiveError(
                f"the yahoo feed has no bars for {day} ({exc}); offline, rate-limited, or not a trading day: "
                "nothing was ingested, rerun later"
            ) from None


# --- the journal and the loop's state ---------------------------------------------------------------------------


class Pending(BaseModel):
    """A refit running (or to run) in its own process: started after ``day``, collected on ``due`` (an index of
    the loop's trading days)."""

    id: str
    day: date
    due: int
    reason: str


class LoopState(BaseModel):
    """What carries from one day to the next; the journal of each finished day holds it as it ended.

    ``canary``: per day since the challenger went to shadow, ``[n_champion, correct_champion, n_challenger,
    correct_challenger]``."""

    day_index: int = 0
    champion: int | None = None
    champion_window: tuple[date, date] | None = None
    challenger: int | None = None
    challenger_window: tuple[date, date] | None = None
    challenger_reason: str = ""
    step: int = 0
    step_days: int = 0
    canary: list[list[int]] = Field(default_factory=list)
    pending: Pending | None = None
    last_retrain: int | None = None
    scored: list[date] = Field(default_factory=list)
    champion_hits: list[list[int]] = Field(default_factory=list)  # [n, correct] of the champion's recent days
    retrains: int = 0
    promotions: int = 0
    rollbacks: int = 0


# --- the phases' results: what each phase of a day journals (older journals' keys read back unchanged) ----------


class Phase(BaseModel):
    """Base of a phase's result: ``events`` the day's notable moves it made, in words (the CLI and timeline's)."""

    model_config = ConfigDict(extra="ignore")

    events: list[str] = Field(default_factory=list)


class IngestPhase(Phase):
    """The day's bars: rows added to the live store, the store's version after, whether it changed, the
    validation's warnings."""

    added_rows: int = 0
    store_version: int | None = None
    changed: bool = False
    warnings: list[str] = Field(default_factory=list)


class CollectPhase(Phase):
    """The refit collected today (all None when none was due): its registered ``version``, refit id, why it was
    started, its wall and CPU seconds."""

    version: int | None = None
    refit: str | None = None
    reason: str | None = None
    fit_seconds: float | None = None
    fit_cpu_seconds: float = 0.0


class ScorePhase(Phase):
    """The day's scoring: the champion and challenger versions, the challenger's canary share (a fraction), the
    tickers (sorted), per version (as a string) each ticker's ``prob_up`` in ticker order, and per ticker the
    version whose answer was served."""

    champion: int
    challenger: int | None = None
    share: float = 0.0
    tickers: list[str] = Field(default_factory=list)
    probs: dict[str, list[float]] = Field(default_factory=dict)
    served: dict[str, int] = Field(default_factory=dict)


class ModelHits(BaseModel):
    """One model's outcomes of a decision day: ``n`` known, ``correct`` of them, the Spearman IC of its
    ``prob_up`` against the traded returns (None with under 3 returns or undefined)."""

    n: int = 0
    correct: int = 0
    ic: float | None = None


class ServedBook(BaseModel):
    """The served answers of a decision day: ``n`` known outcomes, ``correct`` of them, and the equal-weight long
    book of the tickers served as up (a fraction, gross of costs; 0 without a long)."""

    n: int = 0
    correct: int = 0
    book_return: float = 0.0


class FeedbackPhase(Phase):
    """The outcomes that became known today, of decision day ``decided`` (all empty before the first): the
    feedback posted, per version (a string) its hits, the served book and per ticker the outcome (None in journals
    written before outcomes were kept)."""

    decided: date | None = None
    posted: int = 0
    models: dict[str, ModelHits] = Field(default_factory=dict)
    served: ServedBook | None = None
    outcomes: dict[str, Outcome] | None = None


class RolloutPhase(Phase):
    """The canary's move today (``decision`` None without a challenger): the canary step (percent) it is at, the
    always-valid test's evidence (``LiveEvidence``'s JSON, as the registry's audit events hold it) and why a
    promotion waits (``detail``)."""

    decision: Literal["rollback", "hold", "advance", "wait", "promote"] | None = None
    step: int | None = None
    evidence: dict[str, Any] | None = None
    detail: str | None = None


class DriftPhase(Phase):
    """The champion's window drift today (``WindowDrift``): per feature PSI and PSI / its typical PSI, the largest
    scaled PSI, the threshold, the features above it and the alarm."""

    psi: dict[str, float] = Field(default_factory=dict)
    scaled: dict[str, float] = Field(default_factory=dict)
    statistic: float | None = None
    threshold: float | None = None
    drifted: list[str] = Field(default_factory=list)
    alarm: bool = False


class RetrainPhase(Phase):
    """The refit started today (``refit`` id and ``reason``), or why a due one ``waiting`` (all None when none is
    due)."""

    waiting: str | None = None
    refit: str | None = None
    reason: str | None = None


class DayPhases(BaseModel):
    """Each finished phase's result of one day, None until it has run (the journal's ``phases``)."""

    model_config = ConfigDict(extra="forbid")

    ingest: IngestPhase | None = None
    collect: CollectPhase | None = None
    score: ScorePhase | None = None
    feedback: FeedbackPhase | None = None
    rollout: RolloutPhase | None = None
    drift: DriftPhase | None = None
    retrain: RetrainPhase | None = None

    def events(self) -> list[str]:
        """The day's events, phase by phase."""
        return [e for name in PHASES if (phase := getattr(self, name)) is not None for e in phase.events]


P = TypeVar("P", bound=BaseModel)


class DayRecord(BaseModel):
    """One day's journal: each finished phase's result, the state the day ended in, ``done`` once complete."""

    model_config = ConfigDict(extra="forbid")

    day: date
    index: int
    phases: DayPhases = Field(default_factory=DayPhases)
    state: LoopState
    done: bool = False


def read_day(paths: LivePaths, day: date) -> DayRecord | None:
    path = paths.day_file(day)
    return DayRecord.model_validate_json(path.read_text()) if path.exists() else None


def journal_days(paths: LivePaths) -> list[DayRecord]:
    """Every journalled day, in order."""
    if not paths.journal.is_dir():
        return []
    return [DayRecord.model_validate_json(p.read_text()) for p in sorted(paths.journal.glob("????-??-??.json"))]


def _write_day(paths: LivePaths, record: DayRecord) -> None:
    write_json_atomic(paths.day_file(record.day), record.model_dump(mode="json", exclude={"phases": _unrun(record)}))


def _unrun(record: DayRecord) -> set[str]:
    """The phases not yet run, left out of the journal (as before the phases were typed)."""
    return {name for name in PHASES if getattr(record.phases, name) is None}


# --- results ---------------------------------------------------------------------------------------------------------


class DaySummary(BaseModel):
    """One finished day, for the CLI and the timeline."""

    day: date
    champion: int | None
    challenger: int | None
    canary_share: float
    seconds: dict[str, float]
    events: list[str]


class LiveResult(BaseModel):
    """What ``finmlops live`` did: the days it ran now (``skipped``: already done before), where it lives."""

    name: str
    home: str
    feed: str
    days: list[DaySummary]
    skipped: int
    champion: int | None
    challenger: int | None
    seconds: float
    phase_seconds: dict[str, float]


# --- the server --------------------------------------------------------------------------------------------------


class _Client:
    """Keep-alive JSON over HTTP to the in-process server."""

    def __init__(self, url: str, timeout: float = 120.0) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        data = json.dumps(body).encode()
        try:
            self.conn.request("POST", path, body=data, headers={"content-type": "application/json"})
            response = self.conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # The server closed the idle keep-alive connection (a long phase in between, e.g. a drift
            # calibration): the request did not reach it; send it again on a new connection.
            self.conn.close()
            self.conn.connect()
            self.conn.request("POST", path, body=data, headers={"content-type": "application/json"})
            response = self.conn.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, {"error": raw.decode(errors="replace")[:300]}

    def close(self) -> None:
        self.conn.close()


class Server:
    """The V2 server of the loop, serving exactly the versions asked for (champion, challenger), restarted only
    when that set changes; alias hot reload off (the loop moves the aliases itself)."""

    def __init__(self, settings: Settings, paths: LivePaths, name: str) -> None:
        self.settings, self.paths, self.name = settings, paths, name
        self.versions: tuple[int, ...] = ()
        self._stack: Any = None
        self.app: Any = None
        self.client: _Client | None = None
        self.starts = 0

    def serve(self, versions: Sequence[int]) -> _Client:
        wanted = tuple(sorted(set(versions)))
        if wanted == self.versions and self.client is not None:
            return self.client
        self.close()

        from finmlops.serving.server import build_app, running_server  # deferred: onnxruntime, prometheus_client

        options = ServerOptions(reload_interval_s=0.0, max_batch_size=256, request_log=self.paths.requests)
        sources = [ModelSource(name=self.name, source=f"models:/{self.name}/{v}") for v in wanted]
        config = ServingConfig(models=sources, server=options)
        self.app = build_app(self.settings, config=config)
        self._stack = ExitStack()
        url = self._stack.enter_context(running_server(self.app))
        self.client, self.versions = _Client(url), wanted
        self.starts += 1
        return self.client

    def flush(self) -> None:
        """Write the request log's buffered rows now (before the journal says the phase is done)."""
        if self.app is not None and self.app.request_log is not None:
            self.app.request_log.flush()

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self._stack is not None:
            self._stack.close()
        self._stack = self.client = self.app = None
        self.versions = ()


def request_id(day: date, version: int) -> str:
    """``live-<YYYYMMDD>-v<version>``; row i of the batch (ticker i in sorted order) is ``<id>/<i>``."""
    return f"live-{day:%Y%m%d}-v{version}"


def logged_rows(log_path: Path, rid: str, n: int) -> list[float] | None:
    """The ``prob_up`` of rows ``<rid>/0..n-1`` already in the request log (a crash after the server answered),
    or None when they are not all there."""

    if not log_path.exists():
        return None
    db = sqlite3.connect(log_path)
    try:
        rows = db.execute(
            "SELECT id, prob_up FROM requests WHERE id >= ? AND id < ? AND status = 200", (f"{rid}/", f"{rid}/~")
        ).fetchall()
    finally:
        db.close()
    found = {row_id: p for row_id, p in rows}
    probs = [found.get(f"{rid}/{i}") for i in range(n)]
    return None if any(p is None for p in probs) else [float(p) for p in probs]


def _batch_body(universe: Mapping[str, pd.DataFrame], day: date, rows: int, rid: str) -> dict[str, Any]:
    """One V2 request for every ticker: raw OHLCV ``[n_tickers, rows]`` FP64 up to ``day`` (and the universe's
    equal-weight ``market_return``), ``parameters.as_of`` the day."""

    market = market_returns(universe)
    tickers = sorted(universe)
    stamp = pd.Timestamp(day)
    frames = {t: universe[t].loc[:stamp].iloc[-rows:] for t in tickers}
    length = min(len(f) for f in frames.values())
    columns: dict[str, list[list[float]]] = {}
    for col in ("open", "high", "low", "close", "adj_close", "volume"):
        columns[col] = [frames[t][col].to_numpy(dtype=float)[-length:].tolist() for t in tickers]
    columns["market_return"] = [
        np.nan_to_num(market.reindex(frames[t].index).to_numpy(dtype=float), nan=0.0)[-length:].tolist()
        for t in tickers
    ]
    inputs = [
        {"name": name, "shape": [len(tickers), length], "datatype": "FP64", "data": data}
        for name, data in columns.items()
    ]
    return {"id": rid, "parameters": {"as_of": day.isoformat()}, "inputs": inputs}


# --- the loop -------------------------------------------------------------------------------------------------------


def canary_share(config: LiveConfig, state: LoopState) -> float:
    """The challenger's share of the served tickers now (0 without a challenger, or in shadow)."""
    if state.challenger is None:
        return 0.0
    return config.rollout.steps[min(state.step, len(config.rollout.steps) - 1)] / 100.0


def served_by_challenger(day: date, ticker: str, share: float) -> bool:
    """Whether the challenger's answer is served for ``ticker`` on ``day``: a stable hash below ``share``."""

    return share > 0 and stable_unit(f"{day.isoformat()}:{ticker}", "finmlops-live-canary") < share


class RetrainTrigger(BaseModel):
    """The retrain phase's decision: ``reason`` a refit starts today, or None; ``waiting`` says why a due refit
    does not start yet (a refit pending or a canary running)."""

    reason: str | None = None
    waiting: str | None = None


def retrain_trigger(retrain: RetrainConfig, state: LoopState, drift_alarm: bool) -> RetrainTrigger:
    """Whether a refit starts at the end of the day ``state.day_index`` (the loop's trading days, from 0).

    ``since``: trading days since the last refit started (the bootstrap fit counts as day -1). The schedule is due
    when ``since >= retrain.every_days``; a drift alarm (``on_drift``) or a decaying champion (``on_decay``)
    triggers when ``since > cooldown_days``. One challenger at a time: while a refit is pending or a canary runs,
    nothing starts, and a due schedule waits for the canary to resolve (promotion or rollback); it then refits on
    the first day after, and the count restarts from that refit. A schedule is therefore never skipped, only
    deferred; a drift or decay trigger that came while waiting is re-examined on that day."""
    index = state.day_index
    since = index - (state.last_retrain if state.last_retrain is not None else -1)
    reason = None
    if retrain.every_days is not None and since >= retrain.every_days:
        reason = f"schedule ({since} trading days since the last refit, every {retrain.every_days})"
    elif since > retrain.cooldown_days:
        if retrain.on_drift and drift_alarm:
            reason = "drift alarm"
        elif retrain.on_decay is not None:
            recent = state.champion_hits[-retrain.on_decay.window_days :]
            n, correct = sum(r[0] for r in recent), sum(r[1] for r in recent)
            if len(recent) >= retrain.on_decay.window_days and n and correct / n < retrain.on_decay.below:
                reason = f"live accuracy {correct / n:.3f} < {retrain.on_decay.below} over {len(recent)} days"
    if reason is None:
        return RetrainTrigger()
    if state.pending is not None:
        return RetrainTrigger(waiting=f"{reason}: waits for refit {state.pending.id}")
    if state.challenger is not None:
        return RetrainTrigger(waiting=f"{reason}: waits for the canary of v{state.challenger} to resolve")
    return RetrainTrigger(reason=reason)


class Loop:
    """The live loop of one config in one workspace; :meth:`run` walks days."""

    def __init__(self, settings: Settings, config: LiveConfig, *, feed: str = "replay", log_to: Callable[[str], None]):
        self.config = config
        self.settings = live_settings(settings, config)
        self.paths = LivePaths(self.settings)
        self.say = log_to
        self.feed_name = feed
        self.server = Server(self.settings, self.paths, config.registered_name)
        self.phase_seconds: dict[str, float] = dict.fromkeys((*PHASES, "bootstrap"), 0.0)
        self._universe: dict[str, pd.DataFrame] | None = None
        self._drift_refs: dict[int, Any] = {}
        self._calendar: list[date] = []

    # --- setup ---------------------------------------------------------------------------------------------------

    def _tracking(self) -> None:
        import mlflow  # noqa: F401      # deferred: mlflow, scipy; it sets its logger to INFO on import: quiet it after

        from finmlops.tracking import configure_tracking  # deferred: mlflow, scipy

        logging.getLogger("mlflow").setLevel(logging.WARNING)
        configure_tracking(self.settings)

    def _history(self) -> None:
        """The replay feed's store: the bundled snapshot's tickers, ingested once."""

        store = DataStore(self.paths.history)
        if not store.exists():
            ingest(store, "snapshot", self.config.universe.tickers)

    def _seed_store(self, first: date) -> None:
        """The live store before the first day: the history up to the day before ``first`` (idempotent)."""

        store = DataStore(self.paths.data)
        end = first - timedelta(days=1)
        raws = read_snapshot(self.config.universe.tickers)
        universe, sources, _ = validate_batch(raws, self.config.universe.history_start, end)
        store.write(universe, sources)

    def universe(self) -> dict[str, pd.DataFrame]:
        if self._universe is None:
            from finmlops.data import DataStore

            self._universe = DataStore(self.paths.data).read(self.config.universe.tickers)
        return self._universe

    # --- refits ----------------------------------------------------------------------------------------------------

    def _spec(self, rid: str, day: date) -> RetrainSpec:
        c = self.config
        return RetrainSpec(
            id=rid, store=str(self.paths.data), out=str(self.paths.retrains / rid), tickers=c.universe.tickers,
            start=c.universe.history_start, end=day, variant=c.model.variant, params=c.model.params,
            label=c.label, window=c.window.kind, window_days=c.window.days,
            val_days=c.model.val_days, epochs=c.model.epochs, seed=c.seed, threads=c.model.threads,
        )  # fmt: skip

    def _launch(self, spec: RetrainSpec) -> None:
        """Start the refit in its own process (it outlives a killed loop, and a resumed loop may start it again:
        the same spec gives the same files)."""
        out = Path(spec.out)
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "spec.json", spec.model_dump(mode="json"))
        if read_result(out) is not None:
            return
        env = os.environ | {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        with open(out / "stderr.log", "ab") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "finmlops.workflow.retrain", str(out / "spec.json")],
                stdout=subprocess.DEVNULL, stderr=err, env=env, start_new_session=True,
            )  # fmt: skip
        write_json_atomic(out / "pid.json", {"pid": proc.pid})
        self._children = getattr(self, "_children", {}) | {spec.id: proc}

    def _wait(self, spec: RetrainSpec) -> RetrainResult:
        """The refit's result: wait for our child, or run it here when no process of ours is on it (after a
        resume the old one may still run: its files are the same)."""
        out = Path(spec.out)
        proc = getattr(self, "_children", {}).get(spec.id)
        if proc is not None:
            proc.wait()
        result = read_result(out)
        if result is None:
            if not (out / "spec.json").exists():
                write_json_atomic(out / "spec.json", spec.model_dump(mode="json"))
            env = os.environ | {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
            done = subprocess.run(
                [sys.executable, "-m", "finmlops.workflow.retrain", str(out / "spec.json")],
                capture_output=True, text=True, env=env, check=False,
            )  # fmt: skip
            result = read_result(out)
            if result is None:
                tail = (done.stderr or "").strip().splitlines()[-1:] or ["no output"]
                raise LiveError(f"refit {spec.id} failed (exit {done.returncode}): {tail[0]}")
        return result

    def _register(self, spec: RetrainSpec, result: RetrainResult, reason: str) -> int:
        """Log the refit to MLflow (``training`` experiment, ONNX pyfunc) and register it, once: a finished run of
        this refit id, or a version of it, found in the registry is reused."""
        import mlflow  # deferred: mlflow, scipy
        import torch  # deferred: torch; the fitted DeepModel was saved with torch.save

        from finmlops.tracking import TrainedNetwork, log_training_run  # deferred: mlflow, onnxruntime, scipy

        name = self.config.registered_name
        client = mlflow.MlflowClient()
        runs = mlflow.search_runs(
            experiment_names=["training"], output_format="list",
            filter_string=f"params.`live.retrain` = '{spec.id}' and params.`live.workspace` = "
            f"'{self.config.workspace}' and attributes.status = 'FINISHED'",
        )  # fmt: skip
        runs = [r for r in runs if r.data.tags.get("finmlops.model_uri")]
        config_file = write_text_atomic(Path(spec.out) / "live_config.yaml", self.config.to_yaml())
        run_tags = {
            "finmlops.live.config": self.config.name, "finmlops.live.workspace": self.config.workspace,
            "finmlops.live.refit": spec.id, "finmlops.live.reason": reason,
            "finmlops.config_sha256": file_sha256(config_file),
            "finmlops.live.fit_git_commit": result.git_commit or "unknown",
            "finmlops.live.fit_pid": str(result.pid or ""),
        }  # fmt: skip
        if runs:
            run_id = runs[0].info.run_id
        else:
            model = torch.load(Path(spec.out) / "model.pt", weights_only=False)
            windows = np.load(Path(spec.out) / "windows.npy")
            history = model.outcome.history if model.outcome else []
            run_id = log_training_run(
                self.settings, variant=spec.variant,
                params={
                    "variant": model.variant.model_dump(), "train": model.config.model_dump(),
                    "label": spec.label.model_dump(),
                    "tickers": spec.tickers, "window": {"kind": spec.window, "days": spec.window_days},
                    "live": {"retrain": spec.id, "workspace": self.config.workspace, "reason": reason},
                    "final_fit": {"train_start": str(result.train_start), "train_end": str(result.train_end),
                                  "windows": result.windows},
                },
                feature_set=result.feature_set, feature_names=result.feature_names, data_hash=result.data_hash,
                epoch_losses={k: [h[k] for h in history] for k in (history[0] if history else {}) if k != "epoch"},
                metrics={"fit_seconds": result.seconds, "fit_cpu_seconds": result.cpu_seconds},
                trained=TrainedNetwork(model.net.cpu(), model.scaler, windows, str(result.train_start),
                                       str(result.train_end)),
                artifacts=[config_file, Path(spec.out) / "spec.json"],
            )  # fmt: skip
        for key, value in run_tags.items():  # again on a resume: a crash may have come between the run and these
            client.set_tag(run_id, key, value)
        versions = client.search_model_versions(f"run_id = '{run_id}'")
        if versions:
            version = int(max(versions, key=lambda v: int(v.version)).version)
        else:
            uri = client.get_run(run_id).data.tags["finmlops.model_uri"]
            version = int(mlflow.register_model(uri, name).version)
        tags = {
            "live.retrain": spec.id, "live.reason": reason, "live.train_start": str(result.train_start),
            "live.train_end": str(result.train_end), "data_hash": result.data_hash,
            "evidence": f"live refit, window {result.train_start}..{result.train_end}",
        }  # fmt: skip
        for key, value in tags.items():
            client.set_model_version_tag(name, str(version), key, value)
        return version

    # --- the day -----------------------------------------------------------------------------------------------

    def _phase(self, record: DayRecord, phase: str, action: Callable[[], P]) -> P:
        """``phase``'s result: the journal's when it already ran, else ``action``'s, journalled before returning."""
        done = getattr(record.phases, phase)
        if done is not None:
            return cast(P, done)
        started = time.perf_counter()
        result = action()
        self.phase_seconds[phase] += time.perf_counter() - started
        if phase_hook is not None:
            phase_hook(record.day, phase)
        setattr(record.phases, phase, result)
        _write_day(self.paths, record)
        return result

    def bootstrap(self, first: date) -> LoopState:
        """Before the first day: the history store, the live store up to the day before, the first champion
        (fitted here on the window up to then, forced: it has nothing to be compared with)."""
        from finmlops.tracking.registry import move_alias  # deferred: mlflow, scipy

        started = time.perf_counter()
        self._history()
        self._seed_store(first)
        state_file = self.paths.journal / "bootstrap.json"
        if state_file.exists():
            return LoopState.model_validate_json(state_file.read_text())
        universe = self.universe()
        last = max(f.index.max() for f in universe.values()).date()
        rid = f"bootstrap-{last:%Y%m%d}"
        spec = self._spec(rid, last)
        self.say(f"[bootstrap] fitting the first {self.config.model.variant} on the window up to {last}")
        result = self._wait(spec)
        version = self._register(spec, result, "bootstrap")
        reason = (
            f"bootstrap of finmlops live {self.config.name}: the first model (window {result.train_start}.."
            f"{result.train_end}) has no champion to be compared with"
        )
        move_alias(self.config.registered_name, "champion", version, action="force", reason=reason, day=first,
                   event_id=f"live-{rid}-champion")  # fmt: skip
        state = LoopState(champion=version, champion_window=(result.train_start, result.train_end))
        write_json_atomic(state_file, state.model_dump(mode="json"))
        self.phase_seconds["bootstrap"] += time.perf_counter() - started
        return state

    def run_day(self, day: date, index: int, state: LoopState, feed: Any) -> tuple[DayRecord, DaySummary]:
        """Run the phases of ``day`` not yet in its journal; returns the finished record."""
        record = read_day(self.paths, day) or DayRecord(day=day, index=index, state=state.model_copy(deep=True))
        if record.done:
            return record, self._summary(record)
        # Each phase reads and updates the state the previous one left in the record.
        st = record.state
        timings: dict[str, float] = {}

        def timed(phase: str, action: Callable[[], P]) -> P:
            t0 = time.perf_counter()
            out = self._phase(record, phase, action)
            timings[phase] = time.perf_counter() - t0
            return out

        timed("ingest", lambda: self._ingest(day, feed))
        timed("collect", lambda: self._collect(day, st))
        timed("score", lambda: self._score(day, st))
        timed("feedback", lambda: self._feedback(day, st))
        timed("rollout", lambda: self._rollout(day, st))
        drift = timed("drift", lambda: self._drift(day, st))
        timed("retrain", lambda: self._retrain(day, st, drift))
        st.day_index = index + 1
        record.done = True
        _write_day(self.paths, record)
        self._write_metrics(record)
        summary = self._summary(record)
        summary.seconds = {k: round(v, 4) for k, v in timings.items()}
        return record, summary

    def _next_day(self, day: date) -> date:
        """The trading day after ``day``: the replay's calendar, else the next business day."""
        later = [d for d in self._calendar if d > day]
        return later[0] if later else (pd.Timestamp(day) + pd.offsets.BDay(1)).date()

    def _write_metrics(self, record: DayRecord) -> None:
        """The loop's gauges in Prometheus' text format, ``<live>/metrics/finmlops_live.prom`` (atomically): what
        the missed-day, stuck-canary and repeated-rollback alerts read (monitoring/prometheus/live-rules.yaml),
        pushed to a Pushgateway by the CronWorkflow or read by node-exporter's textfile collector."""

        st, label = record.state, f'{{setup="{self.config.name}"}}'
        midnight = pd.Timestamp(record.day, tz="UTC").timestamp()
        gauges = {
            "finmlops_live_last_day_timestamp_seconds": ("gauge", "The last day lived (UTC midnight).", midnight),
            "finmlops_live_last_success_timestamp_seconds": ("gauge", "When the last day finished.", time.time()),
            "finmlops_live_champion_version": ("gauge", "Registry version holding champion.", st.champion or 0),
            "finmlops_live_canary_share": ("gauge", "Challenger's share of tickers.", canary_share(self.config, st)),
            "finmlops_live_canary_step_days": ("gauge", "Days the challenger has been at its current step.",
                                               st.step_days if st.challenger is not None else 0),
            "finmlops_live_canary_days": ("gauge", "Days since the challenger went to shadow.",
                                          len(st.canary) if st.challenger is not None else 0),
            "finmlops_live_drift_alarm": ("gauge", "1 when the day's drift check alarmed.",
                                          int(record.phases.drift is not None and record.phases.drift.alarm)),
            "finmlops_live_retrains_total": ("counter", "Refits started.", st.retrains),
            "finmlops_live_promotions_total": ("counter", "Challengers promoted to champion.", st.promotions),
            "finmlops_live_rollbacks_total": ("counter", "Challengers rolled back.", st.rollbacks),
        }  # fmt: skip
        lines = []
        for name, (kind, help_text, value) in gauges.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name}{label} {float(value):.15g}"]
        write_text_atomic(self.paths.home / "metrics" / "finmlops_live.prom", "\n".join(lines) + "\n")

    def _summary(self, record: DayRecord) -> DaySummary:
        score = record.phases.score
        return DaySummary(
            day=record.day, champion=score.champion if score else None, challenger=score.challenger if score else None,
            canary_share=score.share if score else 0.0, seconds={}, events=record.phases.events(),
        )  # fmt: skip

    # --- phases ----------------------------------------------------------------------------------------------------

    def _ingest(self, day: date, feed: Any) -> IngestPhase:
        raws = feed.bars(day)
        universe, sources, warnings = validate_batch(raws, day, day)
        result = DataStore(self.paths.data).write(universe, sources)
        self._universe = None
        added = sum(result.added_rows.values())
        return IngestPhase(added_rows=added, store_version=result.manifest.version, changed=result.changed,
                           warnings=warnings)  # fmt: skip

    def _collect(self, day: date, st: LoopState) -> CollectPhase:
        from finmlops.tracking.registry import move_alias  # deferred: mlflow, scipy

        pending = st.pending
        if pending is None or st.day_index < pending.due:
            return CollectPhase()
        spec = self._spec(pending.id, pending.day)
        result = self._wait(spec)
        version = self._register(spec, result, pending.reason)
        move_alias(
            self.config.registered_name, "challenger", version, action="challenger",
            reason=f"refit {pending.id} ({pending.reason}), window {result.train_start}..{result.train_end}",
            day=day, event_id=f"live-{day:%Y%m%d}-challenger",
            evidence={"train_start": str(result.train_start), "train_end": str(result.train_end)},
        )  # fmt: skip
        st.challenger, st.challenger_window, st.challenger_reason = (
            version,
            (result.train_start, result.train_end),
            (pending.reason),
        )
        st.step, st.step_days, st.canary, st.pending = 0, 0, [], None
        return CollectPhase(
            version=version, refit=pending.id, reason=pending.reason, fit_seconds=result.seconds,
            fit_cpu_seconds=result.cpu_seconds, events=[f"challenger v{version} ({pending.reason})"],
        )  # fmt: skip

    def _await_logged(self, rids: Sequence[str], n: int, timeout_s: float = 30.0) -> None:
        """Flush until the rows ``<rid>/0..n-1`` of every posted request are in the request log. The server logs a
        request just after answering it, so without this wait a kill right after the score phase lost the day's rows
        while the journal already said the day was scored."""
        deadline = time.monotonic() + timeout_s
        pending = list(rids)
        while True:
            self.server.flush()
            pending = [rid for rid in pending if logged_rows(self.paths.requests, rid, n) is None]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise LiveError(f"the request log has not recorded {', '.join(pending)} after {timeout_s:.0f} s")
            time.sleep(0.01)

    def _score(self, day: date, st: LoopState) -> ScorePhase:
        assert st.champion is not None
        versions = [st.champion] + ([st.challenger] if st.challenger is not None else [])
        universe = self.universe()
        tickers = sorted(universe)
        probs: dict[str, list[float]] = {}
        client: _Client | None = None
        posted: list[str] = []
        for version in versions:
            rid = request_id(day, version)
            found = logged_rows(self.paths.requests, rid, len(tickers))
            if found is None:
                posted.append(rid)
                client = client or self.server.serve(versions)
                status, answer = client.post(
                    f"/v2/models/{self.config.registered_name}/versions/{version}/infer",
                    _batch_body(universe, day, self.config.history_rows, rid),
                )
                if status != 200:
                    raise LiveError(f"{day}: the server refused v{version}'s request ({status}: {answer.get('error')})")
                found = [float(p) for p in answer["outputs"][0]["data"]]
            probs[str(version)] = found
        self._await_logged(posted, len(tickers))
        share = canary_share(self.config, st)
        served = {
            t: st.challenger if st.challenger is not None and served_by_challenger(day, t, share) else st.champion
            for t in tickers
        }
        st.scored = [*st.scored, day][-(self.config.label.reach + 1) :]
        return ScorePhase(
            champion=st.champion, challenger=st.challenger, share=share, tickers=tickers, probs=probs, served=served,
        )  # fmt: skip

    def _feedback(self, day: date, st: LoopState) -> FeedbackPhase:
        """Post the outcomes of the day ``label.reach`` trading days back, per row of each model's request."""
        from scipy import stats  # deferred: scipy

        h = self.config.label.reach  # the outcome of decision day t is known at the close of t + reach
        if len(st.scored) <= h:
            return FeedbackPhase()
        decided = st.scored[-1 - h]
        scored = read_day(self.paths, decided)
        score = scored.phases.score if scored else None
        if score is None:
            return FeedbackPhase()
        outcomes = label_outcomes(self.universe(), decided, self.config)
        tickers = score.tickers
        # Any server on the same request log takes the feedback: it reads the logged rows back by id.
        client = self.server.serve([v for v in (st.champion, st.challenger) if v is not None])
        per_model: dict[str, ModelHits] = {}
        posted = 0
        for version, probs in score.probs.items():
            rid = request_id(decided, int(version))
            n = correct = 0
            for i, ticker in enumerate(tickers):
                outcome = outcomes[ticker].outcome
                if outcome is None:
                    continue
                status, answer = client.post("/v2/feedback", {"id": f"{rid}/{i}", "outcome": outcome})
                if status != 200:
                    raise LiveError(f"{day}: feedback for {rid}/{i} refused ({status}: {answer.get('error')})")
                posted += 1
                n += 1
                correct += int((probs[i] > 0.5) == bool(outcome))
            returns = np.array([outcomes[t].return_ for t in tickers])
            finite = np.isfinite(returns)
            ic = float(stats.spearmanr(np.asarray(probs)[finite], returns[finite])[0]) if finite.sum() >= 3 else None
            per_model[version] = ModelHits(n=n, correct=correct, ic=ic if ic is None or np.isfinite(ic) else None)
        self.server.flush()
        # The served book: long the tickers whose served answer says up, equal weight, gross of costs.
        served_probs = {t: score.probs[str(score.served[t])][i] for i, t in enumerate(tickers)}
        longs = [outcomes[t].return_ for t in tickers if served_probs[t] > 0.5 and np.isfinite(outcomes[t].return_)]
        hits = [
            int((served_probs[t] > 0.5) == bool(outcomes[t].outcome))
            for t in tickers if outcomes[t].outcome is not None
        ]  # fmt: skip
        champion = per_model.get(str(score.champion), ModelHits())
        st.champion_hits = [*st.champion_hits, [champion.n, champion.correct]][-60:]
        challenger = score.challenger
        if challenger is not None and str(challenger) in per_model and challenger == st.challenger:
            other = per_model[str(challenger)]
            st.canary = [*st.canary, [champion.n, champion.correct, other.n, other.correct]]
        return FeedbackPhase(
            decided=decided, posted=posted, models=per_model,
            served=ServedBook(n=len(hits), correct=int(sum(hits)), book_return=float(np.mean(longs) if longs else 0)),
            outcomes={t: outcomes[t] for t in tickers},
        )  # fmt: skip

    def evidence(self, st: LoopState) -> Any:
        """The always-valid test of the challenger against the champion on the days since it went to shadow."""
        from finmlops.stats.sequential import daily_msprt  # deferred: scipy
        from finmlops.tracking.registry import LiveEvidence  # deferred: mlflow, scipy

        rollout = self.config.rollout
        if not st.canary:
            return LiveEvidence(difference=0.0, ci=None, p_value=1.0, days=0, outcomes=0, tested=False)
        n_a, s_a, n_b, s_b = (np.array(col, dtype=float) for col in zip(*st.canary, strict=True))
        test = daily_msprt(n_a, s_a, n_b, s_b, min_outcomes=rollout.min_outcomes, min_days=rollout.min_days)
        tested = bool(np.isfinite(test["half_width"][-1]))
        diff, half = float(test["difference"][-1]), float(test["half_width"][-1])
        enough = test["days"][-1] >= rollout.min_days and min(n_a.sum(), n_b.sum()) >= rollout.min_outcomes
        if not tested and enough and np.isfinite(diff) and not test["variance"][-1] > 0:
            # The two arms were right and wrong on exactly the same outcomes: no variance, the difference is known.
            tested, half = True, 0.0
        p_value = float(np.minimum.accumulate(test["p_value"])[-1])
        return LiveEvidence(
            difference=diff if np.isfinite(diff) else 0.0, ci=(diff - half, diff + half) if tested else None,
            p_value=p_value, days=int(test["days"][-1]), outcomes=int(min(n_a.sum(), n_b.sum())), tested=tested,
        )  # fmt: skip

    def _rollout(self, day: date, st: LoopState) -> RolloutPhase:
        from finmlops.tracking import PromotionRefused  # deferred: mlflow, scipy
        from finmlops.tracking.registry import live_decision, move_alias, promote_live  # deferred: mlflow, scipy

        if st.challenger is None or not st.canary:
            return RolloutPhase()
        rollout, name = self.config.rollout, self.config.registered_name
        evidence = self.evidence(st)
        body = evidence.model_dump(mode="json")
        decision = live_decision(evidence, rollout.margin)
        st.step_days += 1
        last = len(rollout.steps) - 1
        events: list[str] = []
        challenger = st.challenger
        tag = f"live-{day:%Y%m%d}"
        effective = self._next_day(day)  # decided after the day's scoring: the move serves from the next day
        if decision == "rollback" or (len(st.canary) >= rollout.max_days and st.step == last):
            why = "the challenger is worse (always-valid CS below 0)" if decision == "rollback" else (
                f"inconclusive after {len(st.canary)} days"
            )  # fmt: skip
            move_alias(name, "challenger", None, action="rollback", reason=f"rolled back v{challenger}: {why}",
                       evidence=body | {"version": challenger}, day=effective, event_id=f"{tag}-rollback")  # fmt: skip
            events.append(f"rollback v{challenger} ({why})")
            st.rollbacks += 1
            st.challenger, st.challenger_window, st.step, st.step_days, st.canary = None, None, 0, 0, []
            return RolloutPhase(decision="rollback", evidence=body, events=events)
        if st.step_days < rollout.step_days:
            return RolloutPhase(decision="hold", step=rollout.steps[st.step], evidence=body)
        if st.step < last:
            st.step, st.step_days = st.step + 1, 0
            events.append(f"canary v{challenger} -> {rollout.steps[st.step]}%")
            return RolloutPhase(decision="advance", step=rollout.steps[st.step], evidence=body, events=events)
        try:
            promote_live(name, challenger, evidence, margin=rollout.margin, day=effective, event_id=f"{tag}-promote")
        except PromotionRefused as exc:
            return RolloutPhase(decision="wait", step=100, evidence=body, detail=str(exc))
        move_alias(name, "challenger", None, action="retire", reason=f"v{challenger} promoted to champion",
                   day=effective, event_id=f"{tag}-retire")  # fmt: skip
        events.append(f"promote v{challenger} (replaces v{st.champion})")
        st.promotions += 1
        st.champion, st.champion_window = challenger, st.challenger_window
        st.challenger, st.challenger_window, st.step, st.step_days, st.canary = None, None, 0, 0, []
        return RolloutPhase(decision="promote", evidence=body, events=events)

    def _drift(self, day: date, st: LoopState) -> DriftPhase:

        # deferred: scipy
        from finmlops.monitoring.drift import WindowDriftCalibration, calibrate_window_drift, window_drift

        assert st.champion is not None and st.champion_window is not None
        variant = self.config.variant()
        universe = self.universe()
        drift = self.config.drift
        if st.champion not in self._drift_refs:
            path = self.paths.drift / f"v{st.champion}-calibration.json"
            if path.exists():
                self._drift_refs[st.champion] = WindowDriftCalibration.model_validate_json(path.read_text())
            else:
                start, end = st.champion_window
                frame = compute_features(universe, variant.feature_set)
                dates = frame.index.get_level_values("date")
                ref = frame[(dates >= pd.Timestamp(start)) & (dates <= pd.Timestamp(end))].dropna()
                calibration = calibrate_window_drift(
                    ref.to_numpy(), ref.index.get_level_values("date").to_numpy(), [str(c) for c in ref.columns],
                    window_days=drift.window_days, false_alarm=drift.false_alarm,
                )  # fmt: skip
                write_json_atomic(path, calibration.model_dump(mode="json"))
                self._drift_refs[st.champion] = calibration
        calibration = self._drift_refs[st.champion]
        window = drift.window_days
        recent = {t: f.iloc[-(window + 150) :] for t, f in universe.items()}
        frame = compute_features(recent, variant.feature_set)
        days = np.unique(frame.index.get_level_values("date"))[-window:]
        current = frame[frame.index.get_level_values("date").isin(days)].dropna()
        result = window_drift(calibration, current[calibration.features].to_numpy())
        events = []
        if result.alarm:
            top = ", ".join(result.drifted[:4])
            events.append(
                f"drift alarm: {len(result.drifted)} features above {result.threshold:.2f} x their typical PSI "
                f"(false-alarm rate {drift.false_alarm:.0%} on the training window; {top})"
            )
            log.info("finmlops live %s %s: %s", self.config.name, day, events[-1])
        return DriftPhase(**result.model_dump(), events=events)

    def _retrain(self, day: date, st: LoopState, drift: DriftPhase) -> RetrainPhase:
        trigger = retrain_trigger(self.config.retrain, st, drift.alarm)
        if trigger.reason is None:
            return RetrainPhase(waiting=trigger.waiting)
        rid = f"refit-{day:%Y%m%d}"
        self._launch(self._spec(rid, day))
        st.pending = Pending(id=rid, day=day, due=st.day_index + self.config.retrain.lag_days, reason=trigger.reason)
        st.last_retrain = st.day_index
        st.retrains += 1
        return RetrainPhase(refit=rid, reason=trigger.reason, events=[f"retrain started ({trigger.reason})"])

    # --- the walk ------------------------------------------------------------------------------------------------

    def run(self, start: date, end: date) -> LiveResult:
        started = time.perf_counter()
        self._tracking()
        tickers = self.config.universe.tickers
        feed: Any
        if self.feed_name == "yahoo":
            feed = YahooFeed(tickers)
            days = [start] if start == end else []
            if not days:
                raise LiveError("the yahoo feed runs one day at a time (finmlops live --today)")
            feed.bars(start)  # before anything else: offline, say so now rather than after a bootstrap fit
        else:
            self._history()
            feed = ReplayFeed(self.paths.history, tickers)
            days = feed.trading_days(start, end)
            self._calendar = feed.trading_days(start, date.max)
            if not days:
                raise LiveError(f"no trading day of {', '.join(tickers)} between {start} and {end} in the history")
        done = journal_days(self.paths)
        first = done[0].day if done else days[0]
        if days[0] < first:
            raise LiveError(f"this workspace lives from {first}; {days[0]} is before it (use another workspace)")
        state = self.bootstrap(first)
        finished = {r.day: r for r in done if r.done}
        last_done = max(finished) if finished else None
        if last_done is not None and days[0] > last_done + timedelta(days=1) and isinstance(feed, ReplayFeed):
            days = feed.trading_days(last_done + timedelta(days=1), end)  # a day is never left out
        summaries: list[DaySummary] = []
        skipped = 0
        try:
            for day in days:
                if day in finished:
                    state = finished[day].state
                    skipped += 1
                    continue
                index = state.day_index
                record, summary = self.run_day(day, index, state, feed)
                state = record.state
                summaries.append(summary)
                for event in summary.events:
                    self.say(f"[{day}] {event}")
        finally:
            self.server.close()
        self._log_period(summaries)
        return LiveResult(
            name=self.config.name, home=str(self.settings.home), feed=self.feed_name, days=summaries,
            skipped=skipped, champion=state.champion, challenger=state.challenger,
            seconds=round(time.perf_counter() - started, 2),
            phase_seconds={k: round(v, 3) for k, v in self.phase_seconds.items()},
        )  # fmt: skip

    def _log_period(self, summaries: list[DaySummary]) -> None:
        """One MLflow run (``evaluation`` experiment) for what this invocation lived, with the timeline."""
        if not summaries:
            return
        import mlflow  # deferred: mlflow, scipy

        from finmlops.tracking.backend import ensure_experiment  # deferred: mlflow, scipy

        timeline = live_timeline(self.paths)
        path = write_json_atomic(self.paths.results / "live_timeline.json", timeline.model_dump(mode="json"))
        experiment_id = ensure_experiment(self.settings, "evaluation")
        name = f"live {self.config.name} {summaries[0].day}..{summaries[-1].day}"
        with mlflow.start_run(experiment_id=experiment_id, run_name=name, tags={"finmlops.live": self.config.name}):
            mlflow.log_metrics({
                "live_days": len(timeline.days), "retrains": timeline.totals.retrains,
                "promotions": timeline.totals.promotions, "rollbacks": timeline.totals.rollbacks,
            })  # fmt: skip
            if timeline.totals.served_accuracy is not None:
                mlflow.log_metric("served_accuracy", timeline.totals.served_accuracy)
            mlflow.log_artifact(str(path), "live")


# --- the timeline ------------------------------------------------------------------------------------------------


def live_timeline(paths: LivePaths) -> Timeline:
    """The lived days of a workspace from its journal, with totals: retrains, promotions, rollbacks, the served
    accuracy over every outcome, refit CPU seconds."""
    days = []
    for record in journal_days(paths):
        if not record.done:
            continue
        phases = record.phases
        score, fb = phases.score, phases.feedback or FeedbackPhase()
        served = fb.served or ServedBook()
        # The day's up outcomes among those served_n counts (every ticker whose outcome is known).
        known = [o.outcome for o in (fb.outcomes or {}).values() if o.outcome is not None]
        champion_ic = None
        if fb.decided is not None and score is not None:
            decided = read_day(paths, fb.decided)
            if decided is not None and decided.phases.score is not None:
                champion = str(decided.phases.score.champion)
                champion_ic = fb.models[champion].ic if champion in fb.models else None
        entry = TimelineDay(
            day=record.day, champion=score.champion if score else None,
            challenger=score.challenger if score else None, share=score.share if score else 0.0,
            served_n=served.n, served_correct=served.correct,
            served_up=int(sum(bool(o) for o in known)) if fb.decided is None or fb.outcomes is not None else None,
            book_return=fb.served.book_return if fb.served else None, champion_ic=champion_ic,
            drift_alarm=phases.drift is not None and phases.drift.alarm, events=phases.events(),
            fit_cpu_seconds=phases.collect.fit_cpu_seconds if phases.collect else 0.0,
        )  # fmt: skip
        days.append(entry)
    n = sum(d.served_n for d in days)
    totals = TimelineTotals(
        days=len(days),
        retrains=sum(any(e.startswith("retrain started") for e in d.events) for d in days),
        promotions=sum(any(e.startswith("promote") for e in d.events) for d in days),
        rollbacks=sum(any(e.startswith("rollback") for e in d.events) for d in days),
        drift_alarms=sum(d.drift_alarm for d in days),
        served_accuracy=sum(d.served_correct for d in days) / n if n else None,
        fit_cpu_seconds=round(sum(d.fit_cpu_seconds for d in days), 2),
    )
    return Timeline(days=days, totals=totals)


def run_live(
    settings: Settings,
    config: LiveConfig,
    *,
    start: date,
    end: date,
    feed: Literal["replay", "yahoo"] = "replay",
    log: Callable[[str], None] = lambda _: None,
) -> LiveResult:
    """Live ``config`` from ``start`` to ``end`` (inclusive) in ``<home>/<config.workspace>``, resuming after the
    last finished day; raises :class:`LiveError` with the reason when a day cannot be lived."""
    return Loop(settings, config, feed=feed, log_to=log).run(start, end)


__all__ = [
    "PHASES", "CollectPhase", "DayPhases", "DriftPhase", "FeedbackPhase", "IngestPhase", "LiveError", "LiveResult",
    "Loop", "Outcome", "RetrainPhase", "RolloutPhase", "ScorePhase", "Timeline", "label_outcomes", "live_timeline",
    "run_live",
]  # fmt: skip
