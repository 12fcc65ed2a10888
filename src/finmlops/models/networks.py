"""PyTorch networks for the deep variants. Every network maps ``[batch, seq_len, n_features]`` float32 windows to
``[batch]`` LOGITS; the sigmoid is applied once, at prediction time, never inside a network."""

from __future__ import annotations

import math

import torch
from torch import nn

from finmlops.models.variants import VariantConfig


class LSTMNet(nn.Module):
    """Stacked LSTM; the last time step's output goes through dropout and a linear layer to one logit."""

    def __init__(self, n_features: int, hidden_size: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        self.lstm = nn.LSTM(
            n_features, hidden_size, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(self.dropout(out[:, -1])).squeeze(-1)


class MultiScaleLSTMNet(nn.Module):
    """A shallow (1-layer) and a deep (``num_layers``) LSTM branch of ``hidden_size // 2`` units each; their last
    outputs are concatenated, layer-normalised and passed through a two-layer MLP head to one logit."""

    def __init__(self, n_features: int, hidden_size: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        half = hidden_size // 2
        self.shallow = nn.LSTM(n_features, half, 1, batch_first=True)
        self.deep = nn.LSTM(n_features, half, max(num_layers, 2), batch_first=True, dropout=dropout)
        self.norm = nn.LayerNorm(2 * half)
        self.head = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(2 * half, half), nn.GELU(), nn.Dropout(dropout), nn.Linear(half, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shallow, _ = self.shallow(x)
        deep, _ = self.deep(x)
        return self.head(self.norm(torch.cat([shallow[:, -1], deep[:, -1]], dim=-1))).squeeze(-1)


class TransformerNet(nn.Module):
    """Linear input projection to ``d_model``, fixed sinusoidal positional encoding, a pre-norm transformer encoder,
    mean pooling over time, then a linear layer to one logit."""

    def __init__(
        self, n_features: int, d_model: int, num_layers: int, n_heads: int, ff_size: int, dropout: float, seq_len: int
    ) -> None:
        super().__init__()
        self.proj = nn.Linear(n_features, d_model)
        self.register_buffer("pos", sinusoidal_encoding(seq_len, d_model), persistent=False)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, ff_size, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > self.pos.shape[0]:
            raise ValueError(f"window of {x.shape[1]} steps exceeds the positional table of {self.pos.shape[0]}")
        h = self.encoder(self.proj(x) + self.pos[: x.shape[1]])
        return self.head(self.norm(h.mean(dim=1))).squeeze(-1)


class Maxout(nn.Module):
    """``pieces`` affine maps of the input, elementwise maximum: ``[batch, in] -> [batch, out]`` (Goodfellow et
    al. 2013; Krauss, Do & Huck's activation, with two pieces)."""

    def __init__(self, n_in: int, n_out: int, pieces: int = 2) -> None:
        super().__init__()
        self.n_out, self.pieces = n_out, pieces
        self.linear = nn.Linear(n_in, n_out * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(*x.shape[:-1], self.n_out, self.pieces).amax(dim=-1)


class DNNNet(nn.Module):
    """Krauss, Do & Huck's feed-forward net on the decision day's features (the window's last row): input dropout,
    maxout hidden layers of ``widths`` units (two pieces each) with dropout after each, a linear layer to one
    logit. ``[batch, seq_len, n_features] -> [batch]``."""

    def __init__(self, n_features: int, widths: tuple[int, ...], dropout: float, input_dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Dropout(input_dropout)]
        n_in = n_features
        for width in widths:
            layers += [Maxout(n_in, width), nn.Dropout(dropout)]
            n_in = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(n_in, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x[:, -1])).squeeze(-1)


def sinusoidal_encoding(length: int, d_model: int) -> torch.Tensor:
    """The ``[length, d_model]`` sine/cosine position table of Vaswani et al. (2017)."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(length, d_model)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: d_model // 2])
    return table


def build_network(config: VariantConfig, n_features: int) -> nn.Module:
    """The untrained network of ``config`` for windows with ``n_features`` columns."""
    if config.architecture == "lstm":
        return LSTMNet(n_features, config.hidden_size, config.num_layers, config.dropout)
    if config.architecture == "multiscale_lstm":
        return MultiScaleLSTMNet(n_features, config.hidden_size, config.num_layers, config.dropout)
    if config.architecture == "dnn":
        return DNNNet(n_features, (config.hidden_size, *config.layers), config.dropout, config.input_dropout)
    if config.hidden_size % config.n_heads:
        raise ValueError(f"{config.name}: d_model {config.hidden_size} is not divisible by {config.n_heads} heads")
    return TransformerNet(
        n_features, config.hidden_size, config.num_layers, config.n_heads, config.ff_size, config.dropout,
        config.seq_len,
    )  # fmt: skip


def forward_flops(config: VariantConfig, n_features: int) -> float:
    """Analytic forward FLOPs per window (one multiply-add = 2 FLOPs), counting matmuls only.

    DNN (maxout, two pieces): 2 x inputs x units x 2 per layer, on the last row only.
    LSTM layer, per step: 4 gates x (inputs + hidden) x hidden x 2. Transformer layer, per token: Q, K, V and output
    projections 4 x d^2 x 2, attention scores and weighted sum 2 x seq_len x d x 2, feed-forward 2 x d x ff x 2.
    Training (forward + backward) costs about three times this.
    """
    t, h = config.seq_len, config.hidden_size

    def lstm(inputs: int, hidden: int, layers: int) -> float:
        first = 4 * (inputs + hidden) * hidden * 2
        rest = (layers - 1) * 4 * (2 * hidden) * hidden * 2
        return float(t * (first + rest))

    if config.architecture == "lstm":
        return lstm(n_features, h, config.num_layers) + 2 * h
    if config.architecture == "dnn":
        widths, n_in, total = (h, *config.layers), n_features, 0.0
        for width in widths:  # maxout: two affine pieces per unit
            total += 2 * n_in * width * 2
            n_in = width
        return total + 2 * n_in
    if config.architecture == "multiscale_lstm":
        half = h // 2
        head = 2 * (2 * half) * half + 2 * half
        return lstm(n_features, half, 1) + lstm(n_features, half, max(config.num_layers, 2)) + head
    per_token = 4 * h * h * 2 + 2 * t * h * 2 + 2 * h * config.ff_size * 2
    return float(t * (n_features * h * 2 + config.num_layers * per_token) + 2 * h)
