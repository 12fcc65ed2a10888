"""Replay real market history against a running V2 server: one infer per ticker (or one per day) per simulated day,
then feedback.

Each simulated trading day ``d``, every ticker sends its OHLCV history up to and including ``d`` (raw inputs, so
arms with different feature sets answer the same request) or a ready feature window (``model_input="tensor"``),
routed by the ``seldon-model: <experiment>.experiment`` header with a sticky user key; ``parameters.as_of`` names
``d``, so the request log (and the A/B timeline) knows the simulated day however fast it is replayed. When the
replay reaches day ``d + feedback_delay`` it posts the realised label of ``d`` to ``/v2/feedback``: the direction
of the traded move from the close of ``d+1`` to the close of ``d+2`` (``finmlops.features.LabelSpec()``, what the
models predict), known from the close of ``d+2``, hence the default delay of 2. A bad answer is counted, never fatal.

What is sent is a function of the data, the days (``start``..``end``, or a number of days) and the seed only: one
request per ticker per trading day, request ids ``s<seed>-<YYYYMMDD>-<ticker>`` (the server routes a request
without a sticky key by a hash of its id), users drawn from a seeded generator in request order. The optional
rate cap and the keep-alive connections change only how fast it goes, never what is sent or where it is routed.

With ``per="day"`` each trading day is instead **one** request that scores every ticker: a ``[n, T]`` batch of
binary V2 tensors (row i is ``parameters.tickers[i]``), id ``s<seed>-<YYYYMMDD>``, so one arm answers the whole
day (the A/B test's unit is then the day, as the mSPRT already counts it). Feedback goes to each row's id
(``<id>/<i>``). A row the server refuses (a 400 whose body names its ``row``, e.g. a ticker whose features are
undefined on a zero-volume day) is left out and the rest resent (id ``<id>-retry<k>``), at most
``MAX_DROPPED_ROWS`` times; the summary lists every row left out with the server's reason.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
from pydantic import Field

from finmlops.evaluation.results import Result
from finmlops.features import LabelSpec, make_target, market_returns
from finmlops.serving.experiments import SELDON_ROUTE_HEADER
from finmlops.serving.feedback import row_ids

ModelInput = Literal["raw", "tensor"]
Per = Literal["ticker", "day"]
MAX_DROPPED_ROWS = 20  # rows a day request may lose to refusals before the day counts as failed
RAW_COLUMNS = ("open", "high", "low", "close", "adj_close", "volume")
# Sent with every raw request: models with cross-asset features need the universe's market return (see serving.raw).
MARKET_COLUMN = "market_return"
DEFAULT_HISTORY = 120  # rows per raw request: the longest feature window (70) plus the longest seq_len (30), rounded up


@dataclass(frozen=True, slots=True)
class Item:
    """One request of the replay: its body, routing headers and the realised direction (None: unknown or flat)."""

    ticker: str
    day: date
    body: dict[str, Any]
    regime: str
    outcome: int | None


@dataclass(frozen=True, slots=True)
class DayItem:
    """One request for every ticker of a day. ``tensors``: name -> ``[n, ...]`` (raw: FP64 ``[n, T]`` OHLCV and the
    market return; tensor: FP32 ``[n, seq_len, n_features]`` ``input_data``), row i is ``tickers[i]``, whose
    realised label is ``outcomes[i]``; ``regime``: the most common of the tickers' volatility regimes."""

    day: date
    tickers: tuple[str, ...]
    tensors: dict[str, np.ndarray]
    regime: str
    outcomes: tuple[int | None, ...]

    def without(self, row: int) -> DayItem:
        """This request less batch row ``row``."""
        keep = [i for i in range(len(self.tickers)) if i != row]
        return DayItem(
            self.day, tuple(self.tickers[i] for i in keep), {n: a[keep] for n, a in self.tensors.items()},
            self.regime, tuple(self.outcomes[i] for i in keep),
        )  # fmt: skip

    def encode(self, request_id: str) -> tuple[bytes, int]:
        """The V2 body: a JSON header and the tensors' little-endian bytes; returns ``(body, header length)``, the
        ``Inference-Header-Content-Length``."""
        parts, inputs = [], []
        for name, array in self.tensors.items():
            data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            datatype = "FP64" if array.dtype == np.float64 else "FP32"
            inputs.append({"name": name, "shape": list(array.shape), "datatype": datatype,
                           "parameters": {"binary_data_size": len(data)}})  # fmt: skip
            parts.append(data)
        parameters = {"as_of": self.day.isoformat(), "regime": self.regime, "tickers": list(self.tickers)}
        doc = {"id": request_id, "parameters": parameters, "inputs": inputs}
        head = json.dumps(doc, separators=(",", ":")).encode()
        return head + b"".join(parts), len(head)


@dataclass(frozen=True, slots=True)
class Answer:
    """What the server said to one request. ``error`` names the failure (``status:<code>``, ``connection``, ...)."""

    status: int
    arm: str | None = None
    prob_up: float | None = None
    latency_ms: float = 0.0
    error: str | None = None
    detail: str | None = None  # the server's error text (its JSON ``error`` field) or the exception's message
    probs: tuple[float, ...] = ()  # every row's probability (a day request's batch)
    row: int | None = None  # the batch row a refusal names (its error body's ``row``)


@dataclass(frozen=True, slots=True)
class DayAnswer:
    """What a day request ended with: the last ``answer``, the request id and rows it was sent with (``sent``), and
    the rows left out on the way, ``(ticker, server's reason)``."""

    answer: Answer
    request_id: str
    sent: DayItem
    dropped: tuple[tuple[str, str], ...] = ()


class Latency(Result):
    """Client-side latency of the answered infer requests, in milliseconds."""

    p50: float
    p99: float
    max: float


class ArmAccuracy(Result):
    """One arm's client-side hit rate on its fed-back requests: ``n`` requests, ``accuracy`` a fraction."""

    n: int
    accuracy: float


class TrafficSummary(Result):
    """The replay's tally, what ``finmlops traffic --json`` prints.

    ``days`` replayed trading days ``first_day``..``last_day`` (None when none); ``data_exhausted``: the replay ran
    out of data (not out of ``max_days``). ``requests`` infers sent, ``ok`` answered; ``errors`` counts the failed
    ones by kind (``status:<code>``, ``connection:<exception>``, ``bad-body``) and ``error_text`` holds the first
    server message of each kind (``feedback <kind>`` for feedback errors). ``arms``: answered requests per arm.
    ``elapsed_s`` seconds; ``target_rate``/``achieved_rate`` HTTP requests per second (infer and feedback).
    ``latency_ms`` None when nothing was answered. ``arm_accuracy``: the client's view (the server's gauges are the
    record). ``per``: ``ticker`` (a request per ticker per day) or ``day`` (one request per day); ``rows_scored``
    the rows answered (equal to ``ok`` per ticker); ``rows_dropped`` the rows day requests left out,
    ``"<ticker> <day>"`` -> the server's reason."""

    experiment: str
    url: str
    model_input: str
    per: str = "ticker"
    rows_scored: int = 0
    rows_dropped: dict[str, str] = Field(default_factory=dict)
    days: int = 0
    first_day: date | None = None
    last_day: date | None = None
    data_exhausted: bool = False
    requests: int = 0
    ok: int = 0
    requests_per_day: int = 0
    errors: dict[str, int] = Field(default_factory=dict)
    error_text: dict[str, str] = Field(default_factory=dict)
    arms: dict[str, int] = Field(default_factory=dict)
    feedback_sent: int = 0
    feedback_ok: int = 0
    feedback_errors: dict[str, int] = Field(default_factory=dict)
    elapsed_s: float = 0.0
    target_rate: float | None = None
    achieved_rate: float | None = None
    latency_ms: Latency | None = None
    arm_accuracy: dict[str, ArmAccuracy] = Field(default_factory=dict)

    def failure(self) -> str | None:
        """Why the replay failed (None if it did not): no request sent, or more than half of the infers failed."""
        if self.requests == 0:
            return "no request was sent: no replayed day (check --start/--end and the tickers' common history)"
        if self.ok * 2 >= self.requests:
            return None
        failed = describe_errors(self.errors, self.error_text)
        return f"{self.requests - self.ok} of {self.requests} requests failed: {failed}"


@dataclass
class _Tally:
    """The replay's running counts, turned into a :class:`TrafficSummary` by :meth:`result`."""

    experiment: str
    url: str
    model_input: str
    target_rate: float | None
    per: str = "ticker"
    rows_scored: int = 0
    rows_dropped: dict[str, str] = field(default_factory=dict)
    requests_per_day: int = 0
    requests: int = 0
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    error_text: dict[str, str] = field(default_factory=dict)  # the first server message of each error kind
    arms: Counter[str] = field(default_factory=Counter)
    feedback_sent: int = 0
    feedback_ok: int = 0
    feedback_errors: Counter[str] = field(default_factory=Counter)
    days: int = 0
    first_day: date | None = None
    last_day: date | None = None
    elapsed_s: float = 0.0
    exhausted: bool = False
    latencies_ms: list[float] = field(default_factory=list)
    hits: Counter[str] = field(default_factory=Counter)
    labelled: Counter[str] = field(default_factory=Counter)

    def result(self) -> TrafficSummary:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else None
        sent = self.requests + self.feedback_sent
        return TrafficSummary(
            experiment=self.experiment,
            url=self.url,
            model_input=self.model_input,
            per=self.per,
            rows_scored=self.rows_scored,
            rows_dropped=dict(self.rows_dropped),
            days=self.days,
            first_day=self.first_day,
            last_day=self.last_day,
            data_exhausted=self.exhausted,
            requests=self.requests,
            ok=self.ok,
            requests_per_day=self.requests_per_day,
            errors=dict(self.errors),
            error_text=dict(self.error_text),
            arms=dict(self.arms),
            feedback_sent=self.feedback_sent,
            feedback_ok=self.feedback_ok,
            feedback_errors=dict(self.feedback_errors),
            elapsed_s=round(self.elapsed_s, 3),
            target_rate=self.target_rate,
            achieved_rate=round(sent / self.elapsed_s, 2) if self.elapsed_s > 0 else None,
            latency_ms=None
            if lat is None
            else Latency(p50=float(np.percentile(lat, 50)), p99=float(np.percentile(lat, 99)), max=float(lat.max())),
            arm_accuracy={
                arm: ArmAccuracy(n=n, accuracy=self.hits[arm] / n) for arm, n in sorted(self.labelled.items()) if n
            },
        )


# --- building the requests -----------------------------------------------------------------------------------------


def volatility_regime(adj_close: pd.Series, short: int = 20, long: int = 252) -> pd.Series:
    """ "high" where the ``short``-day volatility of log returns is above its ``long``-day rolling median, else "low".

    Uses data at or before each date only; dates without enough history are "low".
    """
    vol = np.log(adj_close).diff().rolling(short).std()
    median = vol.rolling(long, min_periods=short * 3).median()
    return pd.Series(np.where(vol > median, "high", "low"), index=adj_close.index)


def raw_body(columns: dict[str, np.ndarray], ticker: str, day: date, regime: str) -> dict[str, Any]:
    """A V2 request body of raw OHLCV tensors, each ``[1, T]`` FP64 (volume as float), from T-row ``columns``."""
    inputs = [
        {"name": col, "shape": [1, len(columns[col])], "datatype": "FP64", "data": columns[col].tolist()}
        for col in (*RAW_COLUMNS, MARKET_COLUMN)
        if col in columns
    ]
    return {"parameters": {"ticker": ticker, "as_of": day.isoformat(), "regime": regime}, "inputs": inputs}


def tensor_body(window: np.ndarray, ticker: str, day: date, regime: str) -> dict[str, Any]:
    """A V2 request body with one unscaled feature window ``[1, seq_len, n_features]`` FP32 named ``input_data``."""
    data = np.asarray(window, dtype=np.float32)
    return {
        "parameters": {"ticker": ticker, "as_of": day.isoformat(), "regime": regime},
        "inputs": [
            {"name": "input_data", "shape": [1, *data.shape], "datatype": "FP32", "data": data.ravel().tolist()}
        ],
    }


def replay_days(
    universe: dict[str, pd.DataFrame],
    *,
    start: date | None = None,
    history: int = DEFAULT_HISTORY,
    model_input: ModelInput = "raw",
    feature_set: str = "basic",
    seq_len: int = 10,
    end: date | None = None,
    label: LabelSpec | None = None,
    per: Per = "ticker",
) -> Iterator[list[Item]] | Iterator[list[DayItem]]:
    """Per trading day in ``start``..``end`` (inclusive) that every ticker traded, one :class:`Item` per ticker, or
    with ``per="day"`` one :class:`DayItem` holding every ticker as a batch row.

    Each item's outcome (the feedback posted for it) is ``make_target(universe, label)`` on its day: the label the
    served models were fit on (``ModelCard.kind`` etc.; default ``LabelSpec()``), so that a cross-sectional model's
    feedback says whether the stock beat the day's median, not whether it rose.

    Raw items carry the last ``history`` rows up to the day; tensor items the last ``seq_len`` feature rows. Days
    without enough history (or with warm-up NaNs in the window) for every ticker are skipped. The per-ticker work
    (target, regimes, features) happens here, before the first request; bodies are built one day at a time.
    """
    if not universe:
        raise ValueError("the universe is empty: no tickers to replay")
    if history < 2 or seq_len < 1:
        raise ValueError(f"history must be at least 2 and seq_len at least 1, got {history} and {seq_len}")
    if per not in ("ticker", "day"):
        raise ValueError(f"per must be 'ticker' or 'day', got {per!r}")
    features: dict[str, np.ndarray] = {}
    if model_input == "tensor":
        from finmlops.features import compute_features  # only tensor mode needs the (slower) feature pass

        long = compute_features(universe, feature_set)
        features = {t: long.xs(t, level="ticker").reindex(f.index).to_numpy() for t, f in universe.items()}
    market = market_returns(universe)
    columns = {
        t: {c: f[c].to_numpy(dtype=float) for c in RAW_COLUMNS}
        # The universe's first day has no return (NaN, which JSON cannot carry); it only feeds warm-up rows.
        | {MARKET_COLUMN: np.nan_to_num(market.reindex(f.index).to_numpy(dtype=float), nan=0.0)}
        for t, f in universe.items()
    }
    regimes = {t: volatility_regime(f["adj_close"]).to_numpy() for t, f in universe.items()}
    # The models' label (default LabelSpec(): 1 when the close-to-close move from t+1 to t+2 is up, 0 otherwise),
    # NaN when those days are not in the data.
    target = make_target(universe, label or LabelSpec())
    labels = {t: target.xs(t, level="ticker").reindex(f.index).to_numpy() for t, f in universe.items()}
    calendar = sorted(set.intersection(*(set(f.index) for f in universe.values())))
    days = [d for d in calendar if (start is None or d.date() >= start) and (end is None or d.date() <= end)]
    rows = _day_rows(universe, days, columns, features, regimes, labels, history if not features else seq_len)
    if per == "day":
        return ([_day_item(day, picked)] for day, picked in rows)
    return ([_ticker_item(day, row) for row in picked] for day, picked in rows)


@dataclass(frozen=True, slots=True)
class _Row:
    """One ticker's part of a day: its arrays (raw columns ``[T]``, or ``input_data`` ``[seq_len, n_features]``)."""

    ticker: str
    arrays: dict[str, np.ndarray]
    regime: str
    outcome: int | None


def _day_rows(
    universe: dict[str, pd.DataFrame],
    days: list[pd.Timestamp],
    columns: dict[str, dict[str, np.ndarray]],
    features: dict[str, np.ndarray],
    regimes: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    rows: int,
) -> Iterator[tuple[date, list[_Row]]]:
    """Each replayed day with every ticker's row; a day on which a ticker lacks ``rows`` of history (or has a NaN
    feature in its window) is skipped."""
    for day in days:
        picked = []
        for ticker, frame in universe.items():
            end = frame.index.get_loc(day) + 1
            if end < rows:
                break
            if features:
                window = features[ticker][end - rows : end]
                if np.isnan(window).any():
                    break
                arrays = {"input_data": window}
            else:
                arrays = {c: v[end - rows : end] for c, v in columns[ticker].items()}
            label = labels[ticker][end - 1]
            picked.append(_Row(ticker, arrays, str(regimes[ticker][end - 1]), None if np.isnan(label) else int(label)))
        else:
            yield day.date(), picked


def _ticker_item(day: date, row: _Row) -> Item:
    if "input_data" in row.arrays:
        body = tensor_body(row.arrays["input_data"], row.ticker, day, row.regime)
    else:
        body = raw_body(row.arrays, row.ticker, day, row.regime)
    return Item(row.ticker, day, body, row.regime, row.outcome)


def _day_item(day: date, picked: list[_Row]) -> DayItem:
    names = list(picked[0].arrays)
    dtype = np.float32 if names == ["input_data"] else np.float64
    tensors = {n: np.stack([r.arrays[n] for r in picked]).astype(dtype, copy=False) for n in names}
    regime = Counter(r.regime for r in picked).most_common(1)[0][0]
    return DayItem(day, tuple(r.ticker for r in picked), tensors, regime, tuple(r.outcome for r in picked))


# --- HTTP ----------------------------------------------------------------------------------------------------------


def _arm_of(route_header: str | None, body: dict[str, Any]) -> str | None:
    """The answering model: Seldon's ``x-seldon-route`` (``:name_version:``) if present, else ``model_name``."""
    if route_header:
        first = route_header.strip().strip(":").split(":", 1)[0]
        return first.rsplit("_", 1)[0] if "_" in first else first
    name = body.get("model_name")
    return str(name) if name is not None else None


class _Connections:
    """One keep-alive ``http.client`` connection per worker thread, reopened after a failure."""

    def __init__(self, url: str, timeout_s: float):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--url must look like http://host:port, got {url!r}")
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port
        self.base = parts.path.rstrip("/")
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            conn = cls(self.host, self.port, timeout=self.timeout_s)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def post(self, path: str, payload: bytes, headers: dict[str, str]) -> tuple[int, str | None, bytes]:
        """POST and read the whole answer: ``(status, x-seldon-route header, body)``. One retry on a stale socket."""
        for attempt in (0, 1):
            conn = self._connection()
            try:
                conn.request("POST", self.base + path, body=payload, headers=headers)
                response = conn.getresponse()
                return response.status, response.getheader(SELDON_ROUTE_HEADER), response.read()
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()


def _error_text(raw: bytes, limit: int = 300) -> str:
    """The server's message: a V2 error body's ``error`` field, else the body's first ``limit`` characters."""
    text = _error_doc(raw).get("error")
    text = str(text) if text is not None else raw.decode("utf-8", "replace")
    return " ".join(text.split())[:limit] or "(empty body)"


def _error_doc(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _infer(conns: _Connections, path: str, payload: bytes, headers: dict[str, str], rows: int = 1) -> Answer:
    """One infer; a 200 must hold ``rows`` probabilities in its first output."""
    began = time.perf_counter()
    try:
        status, route, raw = conns.post(path, payload, headers)
    except (http.client.HTTPException, OSError) as exc:
        return Answer(0, error=f"connection:{type(exc).__name__}", detail=str(exc) or type(exc).__name__)
    latency = (time.perf_counter() - began) * 1000
    if status != 200:
        row = _error_doc(raw).get("row")
        return Answer(status, latency_ms=latency, error=f"status:{status}", detail=_error_text(raw),
                      row=row if type(row) is int else None)  # fmt: skip
    try:
        body = json.loads(raw)
        probs = tuple(float(p) for p in body["outputs"][0]["data"])
        if len(probs) != rows:
            raise ValueError(f"{len(probs)} probabilities for {rows} rows")
    except (ValueError, KeyError, IndexError, TypeError):
        return Answer(status, latency_ms=latency, error="bad-body", detail=_error_text(raw))
    return Answer(status, _arm_of(route, body), probs[0], latency, probs=probs)


def _infer_day(conns: _Connections, path: str, item: DayItem, request_id: str, headers: dict[str, str]) -> DayAnswer:
    """A day request; each refused row the server names is left out and the rest resent, up to
    ``MAX_DROPPED_ROWS`` times."""
    dropped: list[tuple[str, str]] = []
    sent, rid = item, request_id
    while True:
        body, head = sent.encode(rid)
        answer = _infer(conns, path, body, headers | {"inference-header-content-length": str(head)}, len(sent.tickers))
        row = answer.row
        n = len(sent.tickers)
        resendable = answer.status == 400 and row is not None and 0 <= row < n and n > 1
        if not resendable or len(dropped) == MAX_DROPPED_ROWS:
            return DayAnswer(answer, rid, sent, tuple(dropped))
        dropped.append((sent.tickers[row], answer.detail or ""))
        sent, rid = sent.without(row), f"{request_id}-retry{len(dropped)}"


def _feedback(conns: _Connections, payload: bytes, headers: dict[str, str]) -> Answer:
    try:
        status, _, raw = conns.post("/v2/feedback", payload, headers)
    except (http.client.HTTPException, OSError) as exc:
        return Answer(0, error=f"connection:{type(exc).__name__}", detail=str(exc) or type(exc).__name__)
    if 200 <= status < 300:
        return Answer(status)
    return Answer(status, error=f"status:{status}", detail=_error_text(raw))


class _Pacer:
    """Spaces calls ``1 / rate`` seconds apart from a fixed start, so a slow moment is caught up, not lost.

    ``rate`` None: no pacing (the connections bound the speed)."""

    def __init__(self, rate: float | None):
        self.interval = 1.0 / rate if rate else 0.0
        self.start = time.perf_counter()
        self.sent = 0

    def wait(self) -> None:
        if not self.interval:
            return
        delay = self.start + self.sent * self.interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        self.sent += 1


def run_traffic(
    days: Iterator[list[Item]] | Iterator[list[DayItem]],
    *,
    url: str,
    experiment: str,
    rate: float | None = None,
    max_days: int | None = None,
    model_input: ModelInput = "raw",
    feedback_delay: int = 2,
    seed: int = 0,
    users: int = 100,
    key_header: str = "x-user-id",
    token: str | None = None,
    concurrency: int = 4,
    timeout_s: float = 10.0,
    on_request: Callable[[], None] | None = None,
) -> TrafficSummary:
    """Send the replay to the server at ``url`` and return the tally.

    ``max_days``: replay at most this many trading days of ``days`` (None: all); then the outcomes of the days
    replayed are posted (the data knows them), so every answered request with a known direction gets its feedback.
    ``rate``: a cap on HTTP requests per second (infer and feedback together; None: none); it changes the timing
    only. ``feedback_delay``: the outcome of day d is posted when the replay reaches day d + delay (before that
    day's requests). ``seed``: names the request ids (``s<seed>-<YYYYMMDD>-<ticker>``, or ``s<seed>-<YYYYMMDD>``
    for a :class:`DayItem`, so a second replay into the same request log needs another seed) and draws the users
    of the sticky ``key_header`` from a pool of ``users``.
    """
    if (rate is not None and rate <= 0) or (max_days is not None and max_days < 1):
        raise ValueError(f"rate and days must be positive, got rate {rate} and {max_days} days")
    if concurrency < 1 or feedback_delay < 0 or users < 1:
        raise ValueError("users must be positive, concurrency >= 1, feedback_delay >= 0")
    rng = random.Random(seed)
    run_id = f"s{seed}"
    summary = _Tally(experiment=experiment, url=url, model_input=model_input, target_rate=rate)
    conns = _Connections(url, timeout_s)
    base = {"content-type": "application/json", "seldon-model": f"{experiment}.experiment"}
    if token:
        base["authorization"] = f"Bearer {token}"
    path = f"/v2/models/{experiment}/infer"
    pacer = _Pacer(rate)
    slots = threading.BoundedSemaphore(concurrency * 2)  # bounds the queue, not only the workers
    pending: deque[tuple[int, str, Item | DayItem, Future[Any]]] = deque()
    feedback: list[Future[Answer]] = []
    infers: list[Future[Any]] = []

    def submit(pool: ThreadPoolExecutor, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        pacer.wait()
        slots.acquire()
        future = pool.submit(fn, conns, *args)
        future.add_done_callback(lambda _: slots.release())
        if on_request is not None:
            future.add_done_callback(lambda _: on_request())
        return future

    def send_feedback(pool: ThreadPoolExecutor, rid: str, arm: str | None, prob: float | None, outcome: int) -> None:
        if arm is not None:
            summary.labelled[arm] += 1
            summary.hits[arm] += (prob is not None and prob > 0.5) == outcome
        payload = json.dumps({"id": rid, "outcome": outcome}).encode()
        feedback.append(submit(pool, _feedback, payload, base))

    def post_feedback(pool: ThreadPoolExecutor, upto: int) -> None:
        while pending and pending[0][0] <= upto:
            _, rid, item, future = pending.popleft()
            result = future.result()
            if isinstance(result, DayAnswer):
                answer, sent = result.answer, result.sent
                if answer.error is None:
                    ids = row_ids(result.request_id, len(sent.tickers))  # the ids the server gave the rows
                    for row_id, prob, outcome in zip(ids, answer.probs, sent.outcomes, strict=True):
                        if outcome is not None:
                            send_feedback(pool, row_id, answer.arm, prob, outcome)
            elif isinstance(item, Item) and result.error is None and item.outcome is not None:
                send_feedback(pool, rid, result.arm, result.prob_up, item.outcome)

    index = -1
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="traffic")
    try:
        for index, items in enumerate(days):
            if max_days is not None and index >= max_days:
                index -= 1
                break
            post_feedback(pool, index - feedback_delay)
            summary.first_day = summary.first_day or items[0].day
            summary.last_day = items[0].day
            summary.days += 1
            summary.requests_per_day = len(items)
            for item in items:
                user = f"user-{rng.randrange(users)}"
                if isinstance(item, DayItem):
                    summary.per = "day"
                    rid = f"{run_id}-{item.day:%Y%m%d}"
                    headers = {**base, "content-type": "application/octet-stream", key_header: user,
                               "x-volatility-regime": item.regime}  # fmt: skip
                    future = submit(pool, _infer_day, path, item, rid, headers)
                else:
                    rid = f"{run_id}-{item.day:%Y%m%d}-{item.ticker}"
                    headers = {**base, key_header: user, "x-volatility-regime": item.regime}
                    payload = json.dumps({"id": rid, **item.body}, separators=(",", ":")).encode()
                    future = submit(pool, _infer, path, payload, headers)
                infers.append(future)
                pending.append((index, rid, item, future))
        else:
            summary.exhausted = True
        post_feedback(pool, index)
    finally:
        pool.shutdown(wait=True)
        summary.elapsed_s = time.perf_counter() - pacer.start
        conns.close()
    for future in infers:
        result = future.result()
        answer = result.answer if isinstance(result, DayAnswer) else result
        if isinstance(result, DayAnswer):
            for ticker, reason in result.dropped:
                summary.rows_dropped[f"{ticker} {result.sent.day}"] = reason
        summary.requests += 1
        if answer.error is None:
            summary.ok += 1
            summary.rows_scored += len(answer.probs)
            summary.arms[answer.arm or "?"] += 1
            summary.latencies_ms.append(answer.latency_ms)
        else:
            summary.errors[answer.error] += 1
            summary.error_text.setdefault(answer.error, answer.detail or "")
    for future in feedback:
        answer = future.result()
        summary.feedback_sent += 1
        if answer.error is None:
            summary.feedback_ok += 1
        else:
            summary.feedback_errors[answer.error] += 1
            summary.error_text.setdefault(f"feedback {answer.error}", answer.detail or "")
    return summary.result()


def describe_errors(errors: dict[str, int], error_text: dict[str, str], prefix: str = "") -> str:
    """``"70 status:404 (no experiment 'x'; configured: ab)"``, one clause per error kind, most frequent first."""
    parts = []
    for kind, n in sorted(errors.items(), key=lambda kv: (-kv[1], kv[0])):
        text = error_text.get(prefix + kind)
        parts.append(f"{n} {kind}" + (f" ({text})" if text else ""))
    return "; ".join(parts) or "none"
