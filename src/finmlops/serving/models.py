"""Load served models (registry or local path) into onnxruntime sessions, and swap them when an alias moves.

Each model is loaded once, with one intra-op thread, and shared by every request. The graph takes one float32
input ``[batch, seq_len, n_features]`` and gives ``[batch, 1]`` = P(up). The ``ModelCard`` (feature names and
order, feature set, seq_len, data hash) comes from the MLflow model's metadata or the ``finmlops-model.json`` of an
export; a bare ``.onnx`` file has none and then takes only ``input_data`` tensors (no raw OHLCV).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from finmlops.contract import ModelError, locate_model, open_session, session_shape
from finmlops.serving.batching import ArrivalGate, MicroBatcher
from finmlops.serving.config import ModelSource, ServerOptions

log = logging.getLogger("finmlops.serving")


class ModelLoadError(RuntimeError):
    """A model cannot be found, downloaded or loaded; the message names the source (passwords redacted)."""


def _redact(text: str) -> str:
    # finmlops.tracking imports mlflow: only the registry paths, which have it loaded already, call this
    from finmlops.tracking.backend import redact  # deferred: bottleneck, mlflow, pandas, pyarrow, scipy

    return redact(text)


@dataclass
class LoadedModel:
    """A ready onnxruntime session with what requests are checked against."""

    name: str
    version: str
    source: str
    path: Path
    session: ort.InferenceSession
    input_name: str
    output_name: str
    seq_len: int
    n_features: int
    card: dict[str, Any] = field(default_factory=dict)
    drift_reference: dict[str, Any] | None = None
    batcher: MicroBatcher | None = None
    loaded_at: float = field(default_factory=time.time)

    @property
    def feature_names(self) -> list[str] | None:
        return self.card.get("feature_names")

    @property
    def feature_set(self) -> str | None:
        return self.card.get("feature_set")

    @property
    def data_hash(self) -> str:
        return str(self.card.get("data_hash") or "")

    def run(self, x: np.ndarray) -> np.ndarray:
        """``[n, seq_len, n_features]`` float32 -> ``[n, 1]`` float32 P(up)."""
        return self.session.run([self.output_name], {self.input_name: x})[0]

    def metadata(self) -> dict[str, Any]:
        """V2 model metadata, with the feature order and window length as ``parameters``."""
        params: dict[str, Any] = {"seq_len": self.seq_len, "n_features": self.n_features, "source": self.source}
        for key in ("feature_names", "feature_set", "feature_set_version", "data_hash", "variant"):
            if self.card.get(key) is not None:
                params[key] = self.card[key]
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": self.input_name, "datatype": "FP32", "shape": [-1, self.seq_len, self.n_features]}],
            "outputs": [{"name": self.output_name, "datatype": "FP32", "shape": [-1, 1]}],
            "parameters": params,
        }


def load_local(name: str, version: str, source: str, path: Path, threads: int) -> LoadedModel:
    """Load and check a local model (:func:`finmlops.contract.locate_model`, :func:`~finmlops.contract.open_session`):
    the graph must take ``[batch, seq_len, n_features]`` and give ``[batch, 1]``, as its card says."""
    try:
        artifact = locate_model(path)
        session = open_session(artifact.graph, threads)
        seq_len, n_features = session_shape(session, artifact.graph)
    except ModelError as exc:
        raise ModelLoadError(str(exc)) from None
    card = artifact.card.model_dump() if artifact.card is not None else {}
    names = card.get("feature_names")
    if names is not None and (len(names) != n_features or card.get("seq_len", seq_len) != seq_len):
        raise ModelLoadError(
            f"{path}: card says {card.get('seq_len')} x {len(names)} features, graph takes {seq_len} x {n_features}"
        )
    model = LoadedModel(
        name=name,
        version=version,
        source=source,
        path=path,
        session=session,
        input_name=session.get_inputs()[0].name,
        output_name=session.get_outputs()[0].name,
        seq_len=seq_len,
        n_features=n_features,
        card=card,
        drift_reference=artifact.drift_reference,
    )
    out = model.run(np.zeros((2, seq_len, n_features), np.float32))  # warm-up, and the output contract
    if out.shape != (2, 1):
        raise ModelLoadError(f"{artifact.graph}: output must be [batch, 1], got {list(out.shape)} for a batch of 2")
    return model


class Registry:
    """The MLflow model registry, through mlflow-skinny's client (no torch)."""

    def __init__(self, tracking_uri: str, cache: Path) -> None:
        # mlflow (through finmlops.tracking) is imported only when a registry is used: local paths serve without it
        import mlflow  # deferred: bottleneck, mlflow, pandas, pyarrow, scipy

        # deferred: bottleneck, mlflow, pandas, pyarrow, scipy
        from finmlops.tracking.backend import TrackingError, check_reachable, storage_url

        try:  # a dead registry fails in seconds, naming the URI (password redacted), not after minutes of retries
            check_reachable(tracking_uri)
        except TrackingError as exc:
            raise ModelLoadError(str(exc)) from None
        tracking_uri = storage_url(tracking_uri)  # postgresql:// works with psycopg2 as in the rest of finmlops
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        self.client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.cache = cache
        self.uri = tracking_uri

    def champions(self) -> list[str]:
        """Registered model names that have a ``champion`` alias."""
        from mlflow.exceptions import MlflowException  # deferred: bottleneck, mlflow, pandas, pyarrow, scipy

        try:
            return [m.name for m in self.client.search_registered_models() if "champion" in (m.aliases or {})]
        except MlflowException as exc:
            raise ModelLoadError(_redact(f"cannot list the models of the registry at {self.uri}: {exc}")) from None

    def resolve(self, name: str, alias: str | None, version: str | None) -> str:
        """The version number an alias (or an explicit version) names now."""
        from mlflow.exceptions import MlflowException  # deferred: bottleneck, mlflow, pandas, pyarrow, scipy

        try:
            if alias is not None:
                return str(self.client.get_model_version_by_alias(name, alias).version)
            return str(self.client.get_model_version(name, str(version)).version)
        except MlflowException as exc:
            raise ModelLoadError(
                _redact(f"models:/{name}@{alias or version}: not in the registry at {self.uri}: {exc}")
            ) from None

    def download(self, name: str, version: str) -> Path:
        """The local folder of ``models:/name/version`` (downloaded once into the cache, atomically)."""
        import mlflow  # deferred: bottleneck, mlflow, pandas, pyarrow, scipy
        from mlflow.exceptions import MlflowException  # deferred: bottleneck, mlflow, pandas, pyarrow, scipy

        target = self.cache / name / version
        if (target / "MLmodel").is_file():
            return target
        staging = self.cache / name / f".{version}.{threading.get_ident()}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            got = Path(
                mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(staging))
            )
            got.rename(target) if got != staging else staging.rename(target)
        except (MlflowException, OSError) as exc:
            raise ModelLoadError(_redact(f"cannot download models:/{name}/{version}: {exc}")) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target


@dataclass
class Entry:
    """A configured model and the version being served now."""

    spec: ModelSource
    current: LoadedModel
    last_error: str | None = None
    # Set by the repository API's unload (who and why); requests then get 404 until a load.
    unloaded: str | None = None


class ModelStore:
    """Every served model, by V2 name and version. ``poll`` reloads registry aliases that moved."""

    def __init__(self, options: ServerOptions, registry: Registry | None, gate: ArrivalGate) -> None:
        self.options = options
        self.registry = registry
        self.gate = gate
        self.entries: list[Entry] = []
        self._by_name: dict[str, list[Entry]] = {}
        self.reloads = 0

    def load_all(self, specs: list[ModelSource]) -> None:
        """Load every configured model; the first failure raises ``ModelLoadError`` naming it."""
        for spec in specs:
            self.entries.append(Entry(spec, self._load(spec)))
        self._index()

    def _index(self) -> None:
        by_name: dict[str, list[Entry]] = {}
        for entry in self.entries:
            by_name.setdefault(entry.spec.name, []).append(entry)
        self._by_name = by_name

    def _load(self, spec: ModelSource, version: str | None = None) -> LoadedModel:
        ref = spec.registry_ref
        if ref is None:
            path = Path(spec.source)
            model = load_local(spec.name, spec.version or "1", spec.source, path, self.options.intra_op_threads)
        else:
            if self.registry is None:
                raise ModelLoadError(f"{spec.source}: a registry source but no MLflow registry is configured")
            name, alias, pinned = ref
            version = version or self.registry.resolve(name, alias, pinned)
            folder = self.registry.download(name, version)
            model = load_local(spec.name, version, spec.source, folder, self.options.intra_op_threads)
        options = self.options
        model.batcher = MicroBatcher(
            model.run, options.max_batch_size, options.max_wait_ms / 1000, self.gate, options.max_batch_time_ms / 1000
        )
        return model

    def names(self) -> list[str]:
        """The names being served (loaded)."""
        return [name for name, entries in self._by_name.items() if any(e.unloaded is None for e in entries)]

    def configured(self, name: str) -> list[Entry]:
        """Every entry of the configured model ``name`` (loaded or not); empty if ``name`` is not configured."""
        return list(self._by_name.get(name, ()))

    def get(self, name: str, version: str | None = None) -> LoadedModel | None:
        """The model ``name`` (its first loaded entry), or the entry serving ``version``; None if absent or
        unloaded."""
        entries = self._by_name.get(name)
        if not entries:
            return None
        for entry in entries:
            if entry.unloaded is None and (version is None or entry.current.version == version):
                return entry.current
        return None

    def reload_entry(self, entry: Entry) -> LoadedModel:
        """A fresh session of ``entry``'s source (a registry alias resolved anew), loaded and warmed up; the caller
        swaps it in. Runs in a worker thread; ``ModelLoadError`` names the source."""
        return self._load(entry.spec)

    def resolve(self, ref: str) -> LoadedModel | None:
        """An experiment's model reference: ``name``, ``name@version`` or ``name@alias``."""
        if "@" not in ref:
            return self.get(ref)
        name, tag = ref.split("@", 1)
        found = self.get(name, tag)
        if found is not None:
            return found
        for entry in self._by_name.get(name, []):
            r = entry.spec.registry_ref
            if r is not None and r[1] == tag and entry.unloaded is None:
                return entry.current
        return None

    def poll(self) -> list[tuple[str, str, str]]:
        """Reload every alias source whose alias now names another version; returns ``(name, old, new)`` swaps.

        The new session is loaded and warmed up before the swap; requests already holding the old model finish
        on it, so no request fails. Called from a worker thread; the swap is one attribute assignment.
        """
        swaps = []
        for entry in self.entries:
            ref = entry.spec.registry_ref
            if ref is None or ref[1] is None or self.registry is None or entry.unloaded is not None:
                continue
            try:
                version = self.registry.resolve(ref[0], ref[1], None)
                if version == entry.current.version:
                    continue
                t0 = time.perf_counter()
                new = self._load(entry.spec, version)  # download + onnxruntime session + warm-up
            except ModelLoadError as exc:
                # Once per distinct cause, not at every poll: a registry that stays down is one warning line.
                level = logging.DEBUG if str(exc) == entry.last_error else logging.WARNING
                entry.last_error = str(exc)
                log.log(
                    level, "reload of %s skipped, still serving version %s: %s", entry.spec.name, entry.current.version,
                    exc,
                )  # fmt: skip
                continue
            entry.last_error = None
            old = entry.current.version
            entry.current = new
            self.reloads += 1
            swaps.append((entry.spec.name, old, version))
            log.info(
                "%s: alias %s moved, now serving version %s (was %s; downloaded and loaded in %.2f s)",
                entry.spec.name, ref[1], version, old, time.perf_counter() - t0,
            )  # fmt: skip
        return swaps
