"""Settings of one training run (the loop, not the model: that is ``finmlops.models.VariantConfig``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Device = Literal["auto", "cpu", "cuda", "mps"]
Verbosity = Literal["bar", "log", "silent"]


class TrainConfig(BaseModel):
    """Loop hyperparameters. Defaults are chosen for CPU speed on ~30k windows: large batches keep the matmuls
    big enough to run near the machine's GEMM rate, and early stopping ends most runs in under 15 epochs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epochs: int = Field(default=30, ge=1, description="Maximum epochs.")
    batch_size: int | None = Field(default=None, ge=1, description="Overrides the variant's batch size.")
    patience: int = Field(default=4, ge=1, description="Epochs without validation-loss improvement before stopping.")
    min_delta: float = Field(default=1e-4, ge=0.0, description="Smallest validation-loss drop that counts.")
    grad_clip: float = Field(default=1.0, gt=0.0, description="Max global L2 norm of the gradients.")
    class_balanced: bool = Field(default=False, description="Weight positives by n_neg/n_pos in the loss.")
    seed: int = 42
    device: Device = "auto"
    threads: int = Field(default=2, ge=1, description="torch.set_num_threads for CPU work.")
    verbosity: Verbosity = Field(default="bar", description="bar: rich progress; log: one line per epoch.")
    eval_batch_size: int = Field(default=4096, ge=1)
