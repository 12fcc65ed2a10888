"""The data plane: events to observers, experiment takeover by tensor signature, admin limits, a live event loop."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from finmlops_testing.serving import Client, serve, tiny_onnx, tiny_reference, v2_body

from finmlops.serving.app import ServingApp
from finmlops.serving.config import parse_config
from finmlops.serving.dataplane import AdminEvent, FeedbackEvent, InferenceEvent

ADMIN = "admin-token-0123456789"


class Recorder:
    """An observer that keeps every event it is given."""

    def __init__(self) -> None:
        self.inference: list[InferenceEvent] = []
        self.feedback: list[FeedbackEvent] = []
        self.admin: list[AdminEvent] = []

    def on_inference(self, event: InferenceEvent) -> None:
        self.inference.append(event)

    def on_feedback(self, event: FeedbackEvent) -> None:
        self.feedback.append(event)

    def on_admin(self, event: AdminEvent) -> None:
        self.admin.append(event)


@pytest.fixture(scope="module")
def takeover(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ServingApp, Recorder]]:
    """``wide`` ([-1, 10, 35]) is the default of an experiment whose other, favoured arm ``narrow`` takes
    [-1, 5, 35]: the experiment takes over wide's endpoint."""
    root = tmp_path_factory.mktemp("takeover")
    config = parse_config({
        "models": [{"name": "wide", "source": str(tiny_onnx(root / "wide.onnx", 10, 35))},
                   {"name": "narrow", "source": str(tiny_onnx(root / "narrow.onnx", 5, 35, bias=1.0))}],
        "experiments": [{"name": "mixed", "default": "wide",
                         "candidates": [{"name": "wide", "weight": 1}, {"name": "narrow", "weight": 2}]}],
        "auth": {"admin_tokens": {"root": ADMIN}},
    })  # fmt: skip
    app = ServingApp(config, registry=None, request_log=root / "requests.db")
    recorder = Recorder()
    app.plane.subscribe(recorder)
    with serve(app) as base:
        yield base, app, recorder


def _metric(text: str, name: str, **labels: str) -> float:
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{name}\{{{selector}\}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_the_advertised_tensor_always_succeeds_under_an_experiment_takeover(
    takeover: tuple[str, ServingApp, Recorder],
) -> None:
    """11.5: a tensor of exactly the shape GET /v2/models/wide advertises failed with 400 on the requests routed to
    the arm of another width. Tensors go only to arms whose signature fits, and the metric counts them."""
    base, _, _ = takeover
    client = Client(base)
    status, meta, _ = client.request("GET", "/v2/models/wide")
    shape = meta["inputs"][0]["shape"]
    assert status == 200 and shape == [-1, 10, 35]
    metrics_before = client.request("GET", "/metrics")[1]
    x = np.random.default_rng(0).normal(size=(1, *shape[1:])).astype(np.float32)
    for i in range(60):
        status, body, _ = client.request("POST", "/v2/models/wide/infer", v2_body(x, id=f"wide-{i}"))
        assert status == 200, body
        assert body["model_name"] == "wide" and body["parameters"] == {"experiment": "mixed", "arm": "wide"}
        np.testing.assert_allclose(body["outputs"][0]["data"], tiny_reference(x)[:, 0], atol=1e-5)
    # A tensor only the narrow arm takes goes there, through the same endpoint.
    narrow = x[:, :5]
    status, body, _ = client.request("POST", "/v2/models/wide/infer", v2_body(narrow))
    assert status == 200 and body["model_name"] == "narrow", body
    # A tensor no arm takes is the routed model's usual 400, naming the shape it takes.
    status, body, _ = client.request("POST", "/v2/models/wide/infer", v2_body(x[:, :7]))
    assert status == 400 and "expects shape" in body["error"], body
    metrics_after = client.request("GET", "/metrics")[1]
    routed = _metric(metrics_after, "finmlops_signature_routed_total", experiment="mixed") - _metric(
        metrics_before, "finmlops_signature_routed_total", experiment="mixed"
    )
    assert routed == 61


def test_every_request_reaches_the_observers_as_a_typed_event(takeover: tuple[str, ServingApp, Recorder]) -> None:
    base, app, recorder = takeover
    client = Client(base)
    x = np.random.default_rng(1).normal(size=(3, 10, 35)).astype(np.float32)
    assert client.request("POST", "/v2/models/wide/versions/1/infer", v2_body(x, id="batch-3"))[0] == 200
    assert client.request("POST", "/v2/models/wide/versions/1/infer", raw=b"{oops")[0] == 400
    assert client.request("POST", "/v2/feedback", {"id": "batch-3/1", "outcome": 1})[0] == 200
    status, _, _ = client.request("PUT", "/admin/experiments/mixed", {"candidates": [{"name": "wide"}]},
                                  {"Authorization": f"Bearer {ADMIN}"})  # fmt: skip
    assert status == 200
    served = next(e for e in recorder.inference if e.id == "batch-3")
    assert served.status == 200 and served.model == "wide" and served.version == "1" and not served.shadow
    assert served.row_ids == ["batch-3/0", "batch-3/1", "batch-3/2"] and served.y is not None
    np.testing.assert_allclose(served.y, tiny_reference(x), atol=1e-5)
    assert served.seconds > 0
    refused = recorder.inference[-1]
    assert refused.status == 400 and refused.model == "" and "malformed JSON" in str(refused.error)
    assert recorder.feedback[-1].result.id == "batch-3/1" and recorder.feedback[-1].result.counted
    assert recorder.feedback[-1].stats["wide"].n == 1
    assert recorder.admin[-1].who == "root" and recorder.admin[-1].experiment == "mixed"
    app.request_log.flush()


PATCHES = [
    ({"candidates": [{"name": "wide", "weight": 1e308}, {"name": "narrow", "weight": 1e308}]},
     "candidates.0.weight"),
    ({"candidates": [{"name": "wide"}] + [{"name": f"arm{i}", "model": "wide"} for i in range(1, 50)]},
     "50 arms exceed the server's limit of 32 (server.max_experiment_arms)"),
    ({"strategy": "bandit", "bandit": {"draws": 1_000_000}},
     "bandit.draws: 1000000 exceeds the server's limit of 20000 (server.max_bandit_draws)"),
]  # fmt: skip


@pytest.mark.parametrize(("patch", "words"), PATCHES, ids=["weights-1e308", "50-arms", "1e6-draws"])
def test_admin_patches_beyond_the_limits_are_400s_naming_the_field(
    takeover: tuple[str, ServingApp, Recorder], patch: dict[str, Any], words: str
) -> None:
    """11.3: weights of 1e308 were accepted (shares 0/0), and a 50-arm bandit with 10^6 draws stalled the loop."""
    base, app, _ = takeover
    before = app.experiments.get("mixed").describe()["config"]
    status, body, _ = Client(base).request(
        "PUT", "/admin/experiments/mixed", patch, {"Authorization": f"Bearer {ADMIN}"}
    )
    assert status == 400 and words in body["error"], body
    assert app.experiments.get("mixed").describe()["config"] == before


def _live_latencies(base: str, stop: threading.Event, out: list[float]) -> None:
    client = Client(base)
    while not stop.is_set():
        t0 = time.perf_counter()
        status, _, _ = client.request("GET", "/v2/health/live")
        out.append(time.perf_counter() - t0)
        assert status == 200
        time.sleep(0.005)


def test_liveness_stays_fast_during_a_heavy_admin_patch_and_a_feedback_storm(tmp_path: Path) -> None:
    """11.3: the bandit's posterior draws (an admin patch, then a refresh after every outcome) run off the event
    loop, so /v2/health/live keeps answering: p99 <= 50 ms (a generous bound for a loaded 2-core machine)."""
    model = str(tiny_onnx(tmp_path / "m.onnx", 10, 35))
    config = parse_config({
        "models": [{"name": "m", "source": model}],
        "experiments": [{"name": "bandit", "default": "m", "candidates": [{"name": "m"}]}],
        "auth": {"admin_tokens": {"root": ADMIN}},
    })  # fmt: skip
    app = ServingApp(config, registry=None, request_log=tmp_path / "requests.db")
    x = np.zeros((1, 10, 35), np.float32)
    with serve(app) as base:
        client = Client(base)
        ids = [f"r{i}" for i in range(60)]
        for rid in ids:
            assert client.request("POST", "/v2/models/m/infer", v2_body(x, id=rid))[0] == 200
        latencies: list[float] = []
        stop = threading.Event()
        probe = threading.Thread(target=_live_latencies, args=(base, stop, latencies))
        probe.start()
        try:
            time.sleep(0.2)
            patch = {
                "strategy": "bandit",
                "bandit": {"draws": 20_000, "refresh_every": 1, "min_share": 0.01},
                "candidates": [{"name": "m"}] + [{"name": f"arm{i}", "model": "m"} for i in range(1, 32)],
            }
            status, body, _ = client.request(
                "PUT", "/admin/experiments/bandit", patch, {"Authorization": f"Bearer {ADMIN}"}
            )
            assert status == 200, body

            def storm(chunk: list[str]) -> None:
                c = Client(base)
                for rid in chunk:
                    assert c.request("POST", "/v2/feedback", {"id": rid, "outcome": 1})[0] == 200

            workers = [threading.Thread(target=storm, args=(ids[i::4],)) for i in range(4)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
        finally:
            stop.set()
            probe.join()
    assert app.experiments.get("bandit").refreshes >= 30  # the storm did make the bandit work
    assert len(latencies) >= 20
    p99 = float(np.percentile(latencies, 99))
    assert p99 <= 0.050, f"/v2/health/live p99 {p99 * 1000:.1f} ms over {len(latencies)} probes"
