"""Named model presets: architecture, size, optimiser and the window length and feature set each one reads."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Architecture = Literal["lstm", "multiscale_lstm", "transformer", "dnn"]


class VariantConfig(BaseModel):
    """Hyperparameters of one deep model variant. Frozen: derive changed copies with :func:`get_variant`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    architecture: Architecture
    hidden_size: int = Field(gt=0, description="LSTM hidden units, or d_model of the transformer.")
    num_layers: int = Field(ge=1, description="Stacked layers (multiscale LSTM: depth of its deeper branch).")
    dropout: float = Field(ge=0.0, lt=1.0, description="Dropout after each hidden layer (dnn: after each maxout).")
    optimizer: Literal["adam", "adamw", "rmsprop", "adadelta"] = "adam"
    lr: float = Field(gt=0.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    scheduler: Literal["none", "cosine"] = "none"
    seq_len: int = Field(ge=1, description="Trading days per input window.")
    feature_set: Literal["basic", "enhanced", "advanced", "alpha158", "kdh", "fk240"]
    n_heads: int = Field(default=4, ge=1, description="Attention heads (transformer only).")
    ff_size: int = Field(default=128, ge=1, description="Feed-forward width (transformer only).")
    batch_size: int = Field(
        default=256, ge=1, description="Training batch; small networks need larger ones to keep CPU matmuls efficient."
    )
    layers: tuple[int, ...] = Field(
        default=(), description="dnn only: the hidden layers' widths after the first (``hidden_size``), e.g. (10, 5)."
    )
    input_dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="dnn only: dropout on the inputs.")
    patience: int | None = Field(
        default=None, ge=1, description="Early-stopping patience of this model; None: the training loop's."
    )


VARIANTS: dict[str, VariantConfig] = {
    v.name: v
    for v in (
        VariantConfig(
            name="baseline", architecture="lstm", hidden_size=32, num_layers=1, dropout=0.1, lr=0.002,
            seq_len=10, feature_set="basic", batch_size=512,
        ),
        VariantConfig(
            name="lightweight", architecture="lstm", hidden_size=32, num_layers=1, dropout=0.1, lr=0.001,
            seq_len=10, feature_set="basic", batch_size=512,
        ),
        VariantConfig(
            name="enhanced", architecture="lstm", hidden_size=96, num_layers=2, dropout=0.25, lr=0.0008,
            seq_len=10, feature_set="enhanced",
        ),
        VariantConfig(
            name="advanced", architecture="multiscale_lstm", hidden_size=96, num_layers=2, dropout=0.3,
            optimizer="adamw", lr=1e-3, weight_decay=1e-4, scheduler="cosine", seq_len=15, feature_set="advanced",
        ),
        # Transformers want a smaller step and a decaying schedule to train stably on noisy labels. No dropout:
        # on CPU its mask sampling was 35% of the training time; AdamW weight decay and early stopping regularise.
        VariantConfig(
            name="transformer", architecture="transformer", hidden_size=64, num_layers=2, dropout=0.0,
            optimizer="adamw", lr=5e-4, weight_decay=1e-2, scheduler="cosine", seq_len=30, feature_set="advanced",
            n_heads=4, ff_size=128,
        ),
    )
}  # fmt: skip

# The papers' networks (docs/models.md). They are presets like the ones above (get_variant, run configs, the
# registry accept them) but stay out of VARIANTS, the project's default walk-forward set and `--all`.
PAPER_VARIANTS: dict[str, VariantConfig] = {
    v.name: v
    for v in (
        # Fischer & Krauss (2018): one LSTM layer of 25 units, dropout 0.1, RMSprop (Keras' default step 1e-3),
        # batch 512, early stopping with patience 10 (on a 20% validation block: the run's val_frac).
        VariantConfig(
            name="fk_lstm", architecture="lstm", hidden_size=25, num_layers=1, dropout=0.1, optimizer="rmsprop",
            lr=1e-3, seq_len=240, feature_set="fk240", batch_size=512, patience=10,
        ),
        # Krauss, Do & Huck (2017): 31 inputs, maxout hidden layers of 31, 10 and 5 units, dropout 0.5 on the
        # hidden layers and 0.1 on the inputs, ADADELTA; one logit replaces their two-unit softmax (equivalent).
        VariantConfig(
            name="kdh_dnn", architecture="dnn", hidden_size=31, num_layers=3, layers=(10, 5), dropout=0.5,
            input_dropout=0.1, optimizer="adadelta", lr=1.0, seq_len=1, feature_set="kdh", batch_size=1024,
        ),
    )
}  # fmt: skip

PRESETS: dict[str, VariantConfig] = VARIANTS | PAPER_VARIANTS
"""Every deep preset by name: the project's :data:`VARIANTS` and the papers' :data:`PAPER_VARIANTS`."""


def get_variant(name: str, **overrides: Any) -> VariantConfig:
    """The preset ``name`` with ``overrides`` applied (validated); ``None`` overrides are ignored.

    Raises ``KeyError`` naming the known variants, or ``ValueError`` naming the bad field.
    """
    try:
        base = PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown variant {name!r}; known: {', '.join(PRESETS)}") from None
    updates = {k: v for k, v in overrides.items() if v is not None}
    if "name" in updates:
        raise ValueError("the variant name cannot be overridden")
    try:
        return VariantConfig.model_validate({**base.model_dump(), **updates})
    except ValidationError as exc:
        raise ValueError(f"invalid override for variant {name!r}: {exc}") from exc
