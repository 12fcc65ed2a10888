"""One refit of the live loop, run in its own process so that the day's scoring never waits for it.

``python -m finmlops.workflow.retrain <spec.json>`` reads the live store up to the spec's ``end`` day (the store
may already hold later days by the time it runs: they are cut off), fits the variant on the expanding or rolling
window of labelled decision dates (the last ``val_days`` dates, after a purge of ``seq_len + reach`` days, for
early stopping), and writes into the spec's ``out`` folder, atomically: ``model.pt`` (the fitted
``finmlops.training.DeepModel``), ``windows.npy`` (training windows for the ONNX parity check) and ``result.json``
(:class:`RetrainResult`,
with the worker's code version and pid), last. A second process started on the same spec (a resumed loop) computes
the same files and replaces them with the same content: the fit is seeded and runs on ``threads`` (default 1)
threads.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from finmlops.data import DataStore, dataset_hash_of
from finmlops.features import compute_features, make_target, make_windows
from finmlops.features.splits import min_gap
from finmlops.features.target import LabelSpec
from finmlops.models.variants import get_variant
from finmlops.provenance import atomic_path, git_commit, software_versions, write_json_atomic

RESULT = "result.json"
EXPORT_WINDOWS = 2000  # training windows kept for the export parity check and the drift reference


class RetrainSpec(BaseModel):
    """What to fit: ``variant`` (with ``params``) on the live store at ``store`` up to ``end``, on ``label`` (only
    decision dates whose traded return is known by ``end`` are labelled); ``window`` "expanding" or "rolling"
    (``window_days`` decision dates)."""

    model_config = ConfigDict(frozen=True)

    id: str
    store: str
    out: str
    tickers: list[str]
    start: date
    end: date
    variant: str
    params: dict[str, object] = {}
    label: LabelSpec
    window: str
    window_days: int
    val_days: int
    epochs: int
    seed: int
    threads: int


class RetrainResult(BaseModel):
    """What a refit produced: its decision-date span, window count, best validation loss, seconds and CPU
    seconds spent (the compute figure of the comparison)."""

    id: str
    train_start: date
    train_end: date
    windows: int
    val_loss: float | None
    seconds: float
    cpu_seconds: float
    data_hash: str
    feature_set: str
    feature_names: list[str]
    git_commit: str | None = None  # the code the worker process fitted with (finmlops.provenance.git_commit)
    versions: dict[str, str] = Field(default_factory=dict)  # its Python and package versions
    pid: int | None = None  # the worker process


def fit(spec: RetrainSpec) -> RetrainResult:
    """Fit and write ``spec.out`` (see the module docstring); returns the result also written as ``result.json``."""
    import torch  # deferred: torch; the refit's process is the one that needs torch

    from finmlops.training import DeepModel, TrainConfig  # deferred: torch

    started, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    universe = DataStore(spec.store).read(list(spec.tickers), spec.start, spec.end)
    variant = get_variant(spec.variant, **spec.params)
    target = make_target(universe, spec.label)
    windows = make_windows(compute_features(universe, variant.feature_set), target, variant.seq_len)
    windows = windows.subset(np.isfinite(windows.y))
    dates = np.unique(windows.dates)
    if spec.window == "rolling":
        dates = dates[-spec.window_days :]
    gap = min_gap(variant.seq_len, spec.label.reach)
    if len(dates) < spec.val_days + gap + 20:
        raise ValueError(f"retrain {spec.id}: {len(dates)} labelled dates up to {spec.end} are too few to fit")
    val_dates, train_dates = dates[-spec.val_days :], dates[: -(spec.val_days + gap)]
    train = windows.subset(np.isin(windows.dates, train_dates))
    val = windows.subset(np.isin(windows.dates, val_dates))
    torch.manual_seed(spec.seed)
    config = TrainConfig(
        epochs=spec.epochs, patience=2, seed=spec.seed, threads=spec.threads, device="cpu", verbosity="silent"
    )
    model = DeepModel(variant, config).fit(train, val)
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    keep = np.linspace(0, len(train) - 1, min(len(train), EXPORT_WINDOWS)).astype(int)
    with atomic_path(out / "windows.npy") as tmp, open(tmp, "wb") as handle:
        np.save(handle, train.X[keep])
    with atomic_path(out / "model.pt") as tmp:
        torch.save(model, tmp)
    history = model.outcome.history if model.outcome else []
    losses = [h["val_loss"] for h in history if "val_loss" in h]
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    result = RetrainResult(
        id=spec.id,
        train_start=np.datetime64(train_dates[0], "D").astype(object),
        train_end=np.datetime64(train_dates[-1], "D").astype(object),
        windows=len(train),
        val_loss=float(min(losses)) if losses else None,
        seconds=round(time.perf_counter() - started, 3),
        cpu_seconds=round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 3),
        data_hash=dataset_hash_of(universe),
        feature_set=variant.feature_set,
        feature_names=list(train.feature_names),
        git_commit=git_commit(Path(__file__).parent),
        versions=software_versions(),
        pid=os.getpid(),
    )
    write_json_atomic(out / RESULT, result.model_dump(mode="json"))
    return result


def read_result(out: Path) -> RetrainResult | None:
    """The finished refit in ``out``, or None when it has not finished (no ``result.json``)."""
    path = Path(out) / RESULT
    if not path.exists():
        return None
    return RetrainResult.model_validate(json.loads(path.read_text()))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m finmlops.workflow.retrain <spec.json>", file=sys.stderr)
        return 2
    spec = RetrainSpec.model_validate(json.loads(Path(argv[0]).read_text()))
    if read_result(Path(spec.out)) is None:
        fit(spec)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
