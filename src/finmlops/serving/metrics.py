"""Prometheus metrics of the server (names: docs/metrics.md), on a registry of its own.

The hot path touches only label children bound once per (model, experiment, arm[, status]) and cached, so a
request costs a few dict lookups and lock-free-ish increments. Gauges that summarise state (traffic shares,
feedback accuracy, PSI) are refreshed when /metrics is scraped.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily

# Sub-millisecond buckets: a scored request takes 0.1-1 ms on one core; the alert threshold is 100 ms.
LATENCY_BUCKETS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class ServerMetrics:
    """Every finmlops_* series the server exports."""

    def __init__(self) -> None:
        disable_created_metrics()  # the *_created series double the scrape for nothing a dashboard uses
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "finmlops_requests",
            "Inference requests by answering model, experiment, arm, protocol (rest, grpc) and HTTP status (a gRPC "
            "error counts as the REST status of its kind).",
            ["model", "experiment", "arm", "protocol", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "finmlops_request_latency_seconds",
            "Time from receiving an inference request to its response.",
            ["model", "experiment", "arm", "protocol"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "finmlops_predictions", "Predicted rows by class (up: P(up) > 0.5).", ["model", "class"], registry=r
        )
        self.feedback_accuracy = Gauge(
            "finmlops_feedback_accuracy",
            "Accuracy of the model's predictions (served and shadow) that got feedback.",
            ["model"],
            registry=r,
        )
        self.feedback_total = Counter(
            "finmlops_feedback",
            "Outcomes received for the model's predictions (repeats not counted).",
            ["model"],
            registry=r,
        )
        self.baseline_accuracy = Gauge(
            "finmlops_baseline_accuracy",
            "Majority-class rate of the outcomes on the same feedback.",
            ["model"],
            registry=r,
        )
        self.traffic_share = Gauge(
            "finmlops_traffic_share",
            "Share of the experiment's traffic the arm is meant to get.",
            ["experiment", "arm"],
            registry=r,
        )
        self.feature_psi = Gauge(
            "finmlops_feature_psi",
            "Population stability index of recent inputs against the training features.",
            ["model", "feature"],
            registry=r,
        )
        self.model_info = Gauge(
            "finmlops_model_info",
            "1 for each model version being served.",
            ["model", "version", "data_hash"],
            registry=r,
        )
        self.signature_routed = Counter(
            "finmlops_signature_routed",
            "Experiment requests whose tensor shape only some arms take, routed among those arms.",
            ["experiment"],
            registry=r,
        )
        self.batch_size = Histogram(
            "finmlops_batch_size",
            "Rows per onnxruntime run of the model: the adaptive batcher's batches (the count is the number of runs).",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self._request_log = _RequestLogCollector()
        r.register(self._request_log)
        self._request_children: dict[tuple[str, str, str, str, int], Any] = {}
        self._latency_children: dict[tuple[str, str, str, str], Any] = {}
        self._class_children: dict[str, tuple[Any, Any]] = {}

    def watch_request_log(self, request_log: Any) -> None:
        """Export ``request_log``'s write errors and dropped rows (a ``RequestLog``; 0 while there is none)."""
        self._request_log.source = request_log

    def observe_request(
        self, model: str, experiment: str, arm: str, status: int, seconds: float, protocol: str = "rest"
    ) -> None:
        """Count one request and its latency (cached children: no label parsing per request)."""
        key = (model, experiment, arm, protocol, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(model, experiment, arm, protocol, str(status))
        child.inc()
        lkey = (model, experiment, arm, protocol)
        hist = self._latency_children.get(lkey)
        if hist is None:
            hist = self._latency_children[lkey] = self.latency.labels(model, experiment, arm, protocol)
        hist.observe(seconds)

    def count_signature_routed(self, experiment: str) -> None:
        self.signature_routed.labels(experiment).inc()

    def declare_arm(self, model: str, experiment: str, arm: str) -> None:
        """Export the arm's REST request counter (status 200) at 0 before its first request, so that it exists."""
        key = (model, experiment, arm, "rest", 200)
        if key not in self._request_children:
            self._request_children[key] = self.requests.labels(model, experiment, arm, "rest", "200")

    def observe_predictions(self, model: str, n_up: int, n_down: int) -> None:
        children = self._class_children.get(model)
        if children is None:
            children = self._class_children[model] = (
                self.predictions.labels(model, "up"),
                self.predictions.labels(model, "down"),
            )
        if n_up:
            children[0].inc(n_up)
        if n_down:
            children[1].inc(n_down)

    def set_model_info(self, model: str, version: str, data_hash: str, previous: str | None = None) -> None:
        """Mark ``version`` as served (and unmark ``previous`` after a reload)."""
        if previous is not None and previous != version:
            for labels in list(self._info_labels(model)):
                if labels[1] == previous:
                    self.model_info.remove(*labels)
        self.model_info.labels(model, version, data_hash).set(1)

    def unset_model_info(self, model: str, version: str) -> None:
        """``version`` of ``model`` is no longer served (unloaded)."""
        for labels in list(self._info_labels(model)):
            if labels[1] == version:
                self.model_info.remove(*labels)

    def _info_labels(self, model: str) -> list[tuple[str, str, str]]:
        out = []
        for metric in self.model_info.collect():
            for sample in metric.samples:
                if sample.labels.get("model") == model:
                    out.append((sample.labels["model"], sample.labels["version"], sample.labels["data_hash"]))
        return out

    def render(self) -> bytes:
        """The Prometheus text exposition of every series."""
        return generate_latest(self.registry)


class _RequestLogCollector:
    """The request log's failure counters, read from it at scrape time (its writer thread owns them)."""

    def __init__(self) -> None:
        self.source: Any = None

    def collect(self) -> Any:
        log = self.source
        yield CounterMetricFamily(
            "finmlops_request_log_write_errors",
            "Failed writes of the request log (each retried later; a full or failing disk).",
            value=log.write_errors if log is not None else 0,
        )
        yield CounterMetricFamily(
            "finmlops_request_log_dropped_rows",
            "Request-log rows dropped because the writer was failing and the buffer was full.",
            value=log.dropped_rows if log is not None else 0,
        )
