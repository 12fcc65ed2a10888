"""The training loop for the deep variants, and ``DeepModel``: scaler + network behind the common model interface.

Batches are drawn by indexing one pre-built float32 tensor with shuffled index slices, which is several times
faster on CPU than a per-sample ``Dataset`` + ``DataLoader`` (no per-sample Python calls, no collation).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from finmlops.features import FeatureScaler
from finmlops.models.base import WindowsLike, check_windows
from finmlops.models.networks import build_network
from finmlops.models.variants import VariantConfig
from finmlops.stats.classification import roc_auc
from finmlops.training.config import TrainConfig

log = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device that is not available raises ``ValueError``."""
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps and mps.is_available())
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps_ok else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch sees no CUDA GPU")
    if device == "mps" and not mps_ok:
        raise ValueError("device 'mps' requested but the MPS backend is not available")
    if device not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or mps")
    return torch.device(device)


@contextlib.contextmanager
def deterministic(seed: int, threads: int) -> Iterator[None]:
    """Seed torch and numpy, fix the thread count and force deterministic kernels; restore the previous mode after."""
    # cuBLAS needs a fixed workspace to be deterministic; it reads this when CUDA first initialises.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    previous = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


@dataclass
class TrainOutcome:
    """What a training run did: per-epoch ``history``, the restored ``best_epoch`` (1-based) and timing."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = math.inf
    stopped_early: bool = False
    seconds: float = 0.0
    train_samples: int = 0


def _to_tensor(x: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)


def predict_logits(net: nn.Module, x: np.ndarray, device: torch.device, batch_size: int = 4096) -> np.ndarray:
    """Logits ``[n]`` float32 of ``net`` for windows ``x`` ``[n, seq_len, n_features]``, in eval mode, no grad."""
    net.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            out.append(net(_to_tensor(x[start : start + batch_size], device)).float().cpu())
    return torch.cat(out).numpy() if out else np.empty(0, dtype=np.float32)


def _optimizer(net: nn.Module, variant: VariantConfig) -> torch.optim.Optimizer:
    if variant.optimizer == "rmsprop":  # Keras' RMSprop: rho 0.9 (torch's alpha), eps 1e-7
        return torch.optim.RMSprop(
            net.parameters(), lr=variant.lr, alpha=0.9, eps=1e-7, weight_decay=variant.weight_decay
        )
    if variant.optimizer == "adadelta":  # Zeiler (2012) as H2O runs it for KDH: rho 0.99, eps 1e-8
        return torch.optim.Adadelta(
            net.parameters(), lr=variant.lr, rho=0.99, eps=1e-8, weight_decay=variant.weight_decay
        )
    if variant.optimizer == "adamw":
        return torch.optim.AdamW(net.parameters(), lr=variant.lr, weight_decay=variant.weight_decay)
    return torch.optim.Adam(net.parameters(), lr=variant.lr, weight_decay=variant.weight_decay)


def pos_weight_for(y: np.ndarray, class_balanced: bool) -> float:
    """``n_neg / n_pos`` when ``class_balanced`` (so both classes weigh the same in the loss), else 1."""
    n_pos = float(np.sum(y))
    if not class_balanced:
        return 1.0
    if n_pos == 0 or n_pos == len(y):
        raise ValueError("class-balanced loss needs both classes in the training labels")
    return (len(y) - n_pos) / n_pos


class _Reporter:
    """Rich progress bar (``bar``), one log line per epoch (``log``) or nothing (``silent``)."""

    def __init__(self, verbosity: str, label: str, epochs: int) -> None:
        self.verbosity, self.label, self.epochs = verbosity, label, epochs
        self._progress: Any = None

    def __enter__(self) -> _Reporter:
        if self.verbosity == "bar":
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[metrics]}"), console=Console(stderr=True), transient=False,
            )  # fmt: skip
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=self.epochs, metrics="")
        return self

    def epoch(self, record: dict[str, float]) -> None:
        text = (
            f"loss {record['train_loss']:.4f} val_loss {record['val_loss']:.4f} "
            f"val_acc {record['val_accuracy']:.3f} val_auc {record['val_auc']:.3f}"
        )
        if self._progress is not None:
            self._progress.update(self._task, completed=int(record["epoch"]), metrics=text)
        elif self.verbosity == "log":
            log.info("%s epoch %d/%d %s (%.1fs)", self.label, record["epoch"], self.epochs, text, record["seconds"])

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def train_network(
    net: nn.Module,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    variant: VariantConfig,
    config: TrainConfig,
    *,
    label: str = "",
) -> TrainOutcome:
    """Train ``net`` in place on scaled windows ``[n, seq_len, n_features]`` with 0/1 labels ``[n]``.

    The variant's optimizer (Adam, AdamW, RMSprop or ADADELTA) on ``BCEWithLogitsLoss`` (``pos_weight`` when
    class-balanced), gradient clipping, optional cosine learning-rate decay, and early stopping on the validation
    loss: after ``patience`` epochs (the variant's, else the loop's) without an improvement of ``min_delta``
    training stops and the best epoch's weights are restored. Call inside
    :func:`deterministic` for reproducible results.
    """
    device = next(net.parameters()).device
    xt, yt = _to_tensor(x_train, device), _to_tensor(y_train, device)
    pos_weight = torch.tensor(pos_weight_for(y_train, config.class_balanced), device=device)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    optimizer = _optimizer(net, variant)
    patience = variant.patience or config.patience  # a paper preset's own patience wins over the loop's
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
        if variant.scheduler == "cosine"
        else None
    )
    generator = torch.Generator().manual_seed(config.seed)
    outcome = TrainOutcome(train_samples=len(x_train))
    best_state: dict[str, torch.Tensor] | None = None
    stale = 0
    batch_size = config.batch_size or variant.batch_size
    started = time.perf_counter()
    with _Reporter(config.verbosity, label or variant.name, config.epochs) as reporter:
        for epoch in range(1, config.epochs + 1):
            t0 = time.perf_counter()
            net.train()
            order = torch.randperm(len(xt), generator=generator).to(device)
            total = 0.0
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(net(xt[idx]), yt[idx])
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
                optimizer.step()
                total += float(loss.detach()) * len(idx)
            lr = optimizer.param_groups[0]["lr"]
            if scheduler is not None:
                scheduler.step()
            val_logits = predict_logits(net, x_val, device, config.eval_batch_size)
            val_loss = float(
                nn.functional.binary_cross_entropy_with_logits(
                    torch.from_numpy(val_logits),
                    torch.from_numpy(y_val.astype(np.float32)),
                    pos_weight=pos_weight.cpu(),
                )
            )
            record = {
                "epoch": epoch,
                "train_loss": total / len(xt),
                "val_loss": val_loss,
                "val_accuracy": float(np.mean((val_logits > 0) == (y_val > 0.5))),
                "val_auc": roc_auc(y_val, val_logits),
                "lr": lr,
                "seconds": time.perf_counter() - t0,
            }
            outcome.history.append(record)
            reporter.epoch(record)
            if not math.isfinite(val_loss):
                raise FloatingPointError(f"{label or variant.name}: validation loss is {val_loss} at epoch {epoch}")
            if val_loss < outcome.best_val_loss - config.min_delta:
                outcome.best_val_loss, outcome.best_epoch, stale = val_loss, epoch, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                stale += 1
                if stale >= patience:
                    outcome.stopped_early = epoch < config.epochs
                    break
    if best_state is not None:
        net.load_state_dict(best_state)
    outcome.seconds = time.perf_counter() - started
    return outcome


class DeepModel:
    """A deep variant behind the common interface: ``fit(train, val)``, ``predict_proba(windows)`` -> P(up).

    The feature scaler is fit on the training windows only. The network outputs logits; ``predict_proba`` is the
    one place where the sigmoid is applied.
    """

    def __init__(self, variant: VariantConfig, config: TrainConfig | None = None) -> None:
        self.variant = variant
        self.config = config or TrainConfig()
        self.name = variant.name
        self.device = resolve_device(self.config.device)
        self.net: nn.Module | None = None
        self.scaler: Any = None
        self.outcome: TrainOutcome | None = None

    def _check_shape(self, windows: WindowsLike, what: str) -> None:
        check_windows(windows, what)
        if windows.X.shape[1] != self.variant.seq_len:
            raise ValueError(
                f"{what}: windows have {windows.X.shape[1]} steps but variant {self.name} uses "
                f"seq_len={self.variant.seq_len}"
            )

    def fit(self, train: WindowsLike, val: WindowsLike) -> DeepModel:
        """Fit the scaler on ``train``, then train the network with early stopping on ``val``."""

        self._check_shape(train, "train")
        self._check_shape(val, "val")
        with deterministic(self.config.seed, self.config.threads):
            self.scaler = FeatureScaler().fit(train.X)
            self.net = build_network(self.variant, train.X.shape[2]).to(self.device)
            self.outcome = train_network(
                self.net,
                self.scaler.transform(train.X),
                np.asarray(train.y, dtype=np.float32),
                self.scaler.transform(val.X),
                np.asarray(val.y, dtype=np.float32),
                self.variant,
                self.config,
            )
        return self

    def predict_logits(self, windows: WindowsLike) -> np.ndarray:
        """Raw network outputs ``[n]`` float32 (logits, not probabilities)."""
        if self.net is None or self.scaler is None:
            raise RuntimeError(f"model {self.name} used before fit")
        self._check_shape(windows, "predict")
        torch.set_num_threads(self.config.threads)
        return predict_logits(self.net, self.scaler.transform(windows.X), self.device, self.config.eval_batch_size)

    def predict_proba(self, windows: WindowsLike) -> np.ndarray:
        """P(up) ``[n]`` float64 in [0, 1]: the sigmoid of the logits, applied exactly once."""
        logits = torch.from_numpy(self.predict_logits(windows))
        return torch.sigmoid(logits).double().numpy()
