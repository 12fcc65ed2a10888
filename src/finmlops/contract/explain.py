"""Integrated Gradients of an ONNX model with numpy and onnxruntime only, and the explanation it returns.

The server's ``/explain`` and ``finmlops explain --model`` call :func:`explain_payload`; it imports neither torch nor
captum. Attributions explain the exported model's P(up) in terms of the unscaled input window ``[seq_len,
n_features]``, relative to a stated baseline window; see :mod:`finmlops.monitoring.explain` for the baselines and
the Captum implementation the tests compare this one against.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from finmlops.contract.session import score

Quadrature = Literal["gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"]
QUADRATURES: tuple[str, ...] = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")
DEFAULT_STEPS = 50  # Captum's default
# The server's default: its cost is steps * 2 * seq_len * n_features forward passes (transformer: 35k windows, ~4.5 s
# on one core), and on the variants' networks Gauss-Legendre with 16 nodes already agrees with 64 nodes to ~1e-10
# per attribution (docs/explain.md). Every response carries the convergence delta, so a shortfall is visible.
SERVER_STEPS = 16
# Central-difference step as a fraction of each coordinate's displacement x_j - b_j. Float32 outputs carry ~1e-7 of
# rounding noise, which this step turns into ~1e-6 of attribution noise; the truncation error (~step^2 times the
# curvature along the path, small for these nearly linear paths) is smaller still. 5e-3 was 4x noisier on a trained
# model and 1e-1 no better (docs/explain.md); measured against Captum in tests/monitoring/test_explain.py.
FD_REL_STEP = 2e-2
FD_CHUNK = 4096  # perturbed windows per onnxruntime call (about 25 MB of float32 for 1500 inputs)


class OnnxSession(Protocol):
    """What :func:`integrated_gradients_onnx` needs from ``onnxruntime.InferenceSession``."""

    def run(self, output_names: Sequence[str] | None, input_feed: Mapping[str, np.ndarray]) -> list[Any]: ...

    def get_inputs(self) -> Sequence[Any]: ...

    def get_outputs(self) -> Sequence[Any]: ...


# --- the path integral -----------------------------------------------------------------------------------------------


def path_weights(steps: int, method: Quadrature = "gausslegendre") -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes ``alphas`` ``[steps]`` in [0, 1] and weights ``[steps]`` for the IG path integral.

    The same rules as ``captum.attr._utils.approximation_methods``: Gauss-Legendre nodes rescaled from [-1, 1], or
    left/right/middle/trapezoid Riemann sums.
    """
    if method == "gausslegendre":
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (1.0 + nodes), 0.5 * weights
    if method not in QUADRATURES:
        raise ValueError(f"unknown quadrature {method!r}; known: {', '.join(QUADRATURES)}")
    if steps < 2:
        raise ValueError(f"Riemann quadrature needs steps >= 2, got {steps}")
    weights = np.full(steps, 1.0 / steps)
    if method == "riemann_trapezoid":
        weights[[0, -1]] /= 2
        return np.linspace(0.0, 1.0, steps), weights
    lo, hi = {"riemann_left": (0.0, 1 - 1 / steps), "riemann_right": (1 / steps, 1.0)}.get(
        method, (1 / (2 * steps), 1 - 1 / (2 * steps))
    )
    return np.linspace(lo, hi, steps), weights


def window_pair(x: np.ndarray, baseline: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``x`` ``[seq, f]`` and the baseline broadcast to it (``[f]`` means the same values every day), float64."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"explain one window [seq_len, n_features], got shape {x.shape}")
    if not np.isfinite(x).all():
        day, feature = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"the window has a non-finite value on day {day}, feature {feature}")
    b = x.mean(axis=0) if baseline is None else np.asarray(baseline, dtype=np.float64)
    try:
        b = np.broadcast_to(b, x.shape)
    except ValueError:
        raise ValueError(f"baseline of shape {b.shape} does not fit the window {x.shape}") from None
    if not np.isfinite(b).all():
        raise ValueError("the baseline has non-finite values")
    return x, b


def integrated_gradients_onnx(
    session: OnnxSession,
    x: np.ndarray,
    baseline: np.ndarray | None,
    steps: int = DEFAULT_STEPS,
    *,
    method: Quadrature = "gausslegendre",
    rel_step: float = FD_REL_STEP,
    chunk: int = FD_CHUNK,
) -> np.ndarray:
    """Integrated Gradients of an ONNX model's P(up) for one window, with numpy and onnxruntime only.

    ``session``: input float32 ``[batch, seq, f]``, output ``[batch, 1]`` (the finmlops contract); ``x``: the
    unscaled window ``[seq, f]``; ``baseline``: ``[seq, f]`` or ``[f]``, or None for the window's own per-feature
    mean. Returns attributions ``[seq, f]`` float64, in units of P(up).

    For each node ``alpha_k`` of :func:`path_weights` and each coordinate ``j`` with a nonzero displacement
    ``d_j = x_j - b_j``, the directional derivative ``d_j * df/dx_j`` at ``b + alpha_k d`` is a central difference
    with step ``rel_step * d_j`` (scale-free: volume-sized and return-sized features get the same relative step).
    The divisor is the step actually realised after rounding to float32. ``steps * 2 * nnz(d)`` windows in all,
    batched ``chunk`` at a time. Coordinates with ``d_j = 0`` get exactly zero.
    """
    x, b = window_pair(x, baseline)
    alphas, weights = path_weights(steps, method)
    d = (x - b).ravel()
    active = np.flatnonzero(d)
    attributions = np.zeros(x.size)
    if len(active) == 0:
        return attributions.reshape(x.shape)
    input_name, output_name = session.get_inputs()[0].name, session.get_outputs()[0].name
    points = b.ravel()[None, :] + alphas[:, None] * d[None, :]  # [steps, seq*f] on the straight path
    m, h = len(active), rel_step * d[active]  # perturbed coordinates and their steps [m]
    per_call = max(1, chunk // (2 * m))  # whole nodes per onnxruntime call
    for first in range(0, steps, per_call):
        nodes = np.arange(first, min(first + per_call, steps))
        # [nodes, 2 (+/-), m, seq*f]: each row is a path point with one coordinate moved by +h_j or -h_j.
        rows = np.broadcast_to(points[nodes, None, None, :], (len(nodes), 2, m, x.size)).astype(np.float32)
        moved = points[nodes][:, active]  # [nodes, m] float64
        diag = np.arange(m)
        rows[:, 0, diag, active] = (moved + h).astype(np.float32)
        rows[:, 1, diag, active] = (moved - h).astype(np.float32)
        out = session.run([output_name], {input_name: rows.reshape(-1, *x.shape)})[0]
        out = np.asarray(out, dtype=np.float64).reshape(len(nodes), 2, m)
        # Divide by the step realised after rounding to float32, not the one asked for.
        realised = rows[:, 0, diag, active].astype(np.float64) - rows[:, 1, diag, active].astype(np.float64)
        slope = (out[:, 0] - out[:, 1]) / realised  # df/dx_j at each node [nodes, m]
        attributions[active] += (weights[nodes, None] * slope).sum(axis=0) * d[active]
    return attributions.reshape(x.shape)


def onnx_probabilities(session: OnnxSession, windows: np.ndarray) -> np.ndarray:
    """P(up) ``[n]`` float64 of an ONNX session for windows ``[n, seq, f]`` (:func:`finmlops.contract.score`)."""
    return score(session, windows)  # type: ignore[arg-type]  # any session with run/get_inputs/get_outputs


# --- one explanation -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Explanation:
    """IG attributions of one prediction: ``attributions`` ``[seq, f]`` in units of P(up), the unscaled window
    ``values`` and ``baseline`` ``[seq, f]``, the model's P(up) at both, and Captum's convergence delta."""

    attributions: np.ndarray
    values: np.ndarray
    baseline: np.ndarray
    feature_names: list[str]
    days: list[str]
    prob_up: float
    baseline_prob_up: float
    convergence_delta: float
    baseline_kind: str
    steps: int
    method: str
    engine: str
    context: dict[str, Any] = field(default_factory=dict)

    def feature_totals(self) -> pd.Series:
        """Attribution of each feature summed over the window's days ``[f]``."""
        return pd.Series(self.attributions.sum(axis=0), index=self.feature_names, name="attribution")

    def day_totals(self) -> pd.Series:
        """Attribution of each day summed over the features ``[seq]``, oldest day first."""
        return pd.Series(self.attributions.sum(axis=1), index=self.days, name="attribution")

    def payload(self, top: int = 10, matrix: bool = False, seconds: float | None = None) -> ExplanationPayload:
        """The ``top`` features by absolute total attribution, every day's total, the completeness check, the
        ``context`` and (``matrix``) the full ``[seq][f]`` attributions with the feature names."""
        totals = self.feature_totals()
        order = np.argsort(-np.abs(totals.to_numpy()), kind="stable")[: max(top, 0)]
        extra: dict[str, Any] = {}
        if matrix:
            extra.update(feature_names=list(self.feature_names), attributions=self.attributions.tolist())
        if seconds is not None:
            extra["seconds"] = seconds
        return ExplanationPayload(
            **self.context, method="integrated_gradients", engine=self.engine, quadrature=self.method,
            steps=self.steps, baseline=self.baseline_kind,
            output="prob_up", prob_up=self.prob_up, baseline_prob_up=self.baseline_prob_up,
            sum_attributions=float(self.attributions.sum()), convergence_delta=self.convergence_delta,
            top_features=[
                TopFeature(
                    feature=self.feature_names[i], attribution=float(totals.iloc[i]),
                    value=float(self.values[-1, i]), baseline=float(self.baseline[-1, i]),
                )
                for i in order
            ],
            days=[DayAttribution(day=str(day), attribution=float(v)) for day, v in self.day_totals().items()],
            **extra,
        )  # fmt: skip


class PayloadModel(BaseModel):
    """Base of the explanation payload's models: keys they do not declare are ignored on reading."""

    model_config = ConfigDict(extra="ignore")


class TopFeature(PayloadModel):
    """One feature's attribution summed over the window's days (P(up) units), its value and baseline on day t."""

    feature: str
    attribution: float
    value: float
    baseline: float


class DayAttribution(PayloadModel):
    """One day's attribution summed over the features (P(up) units); ``day`` a date or ``t-k``."""

    day: str
    attribution: float


class ExplanationPayload(PayloadModel):
    """What ``finmlops explain`` prints and ``/explain`` answers: the context of the explained prediction (which of
    ``variant``, ``model``, ``model_uri``, ``model_dir``, ``ticker``, ``date``, the model's and the store's data
    hashes the caller knows), the method, P(up) at the window and at the baseline, the completeness check
    (``sum_attributions`` vs ``prob_up - baseline_prob_up``, ``convergence_delta`` their difference), the top
    features, every day's total, optionally the ``[seq][f]`` matrix and the ``seconds`` it took.

    Fields the caller did not know stay unset and out of the JSON: :meth:`to_json`."""

    variant: str | None = None
    model: str | None = None
    model_uri: str | None = None
    ticker: str | None = None
    date: str | None = None
    model_dir: str | None = None
    model_data_hash: str | None = None
    store_data_hash: str | None = None
    method: Literal["integrated_gradients"] = "integrated_gradients"
    engine: str
    quadrature: str
    steps: int
    output: Literal["prob_up"] = "prob_up"
    baseline: str
    prob_up: float
    baseline_prob_up: float
    sum_attributions: float
    convergence_delta: float
    top_features: list[TopFeature]
    days: list[DayAttribution]
    feature_names: list[str] | None = None
    attributions: list[list[float]] | None = None
    seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object: the fields that were set (NaN as null)."""
        return self.model_dump(mode="json", exclude_unset=True)


class CardLike(Protocol):
    """What :func:`explain_payload` reads from ``finmlops.contract.ModelCard``."""

    variant: str
    feature_names: list[str]
    seq_len: int


def relative_days(seq_len: int) -> list[str]:
    """Day labels ``t-(seq_len-1)`` ... ``t-1``, ``t`` (t: the decision day, the window's last row)."""
    return [f"t-{seq_len - 1 - i}" if i < seq_len - 1 else "t" for i in range(seq_len)]


def explain_payload(
    session: OnnxSession,
    card: CardLike,
    x: np.ndarray,
    *,
    baseline: np.ndarray | None = None,
    baseline_kind: str | None = None,
    steps: int = SERVER_STEPS,
    method: Quadrature = "gausslegendre",
    top: int = 10,
    matrix: bool = False,
) -> dict[str, Any]:
    """The JSON body of ``POST /v2/models/{name}/explain`` for one unscaled window ``x`` (``[seq, f]`` or
    ``[1, seq, f]``), computed with :func:`integrated_gradients_onnx` (no torch).

    ``baseline``: ``[seq, f]`` or ``[f]`` (e.g. the training means), or None for ``window_mean``;
    ``baseline_kind`` names it in the payload (default ``custom`` when one is given). Raises ``ValueError`` naming
    the expected shape when ``x`` does not match the card.
    """
    window = np.asarray(x, dtype=np.float64)
    if window.ndim == 3 and window.shape[0] == 1:
        window = window[0]
    expected = (card.seq_len, len(card.feature_names))
    if window.shape != expected:
        raise ValueError(f"explain takes one window of shape [1, {expected[0]}, {expected[1]}], got {list(x.shape)}")
    window, b = window_pair(window, baseline)
    started = time.perf_counter()
    attributions = integrated_gradients_onnx(session, window, b, steps, method=method)
    prob, base_prob = onnx_probabilities(session, np.stack([window, b]))
    explanation = Explanation(
        attributions=attributions, values=window, baseline=b, feature_names=list(card.feature_names),
        days=relative_days(card.seq_len), prob_up=float(prob), baseline_prob_up=float(base_prob),
        convergence_delta=float(attributions.sum() - (prob - base_prob)),
        baseline_kind=baseline_kind or ("window_mean" if baseline is None else "custom"), steps=steps,
        method=method, engine="onnxruntime-central-differences",
        context={"model": card.variant},
    )  # fmt: skip
    return explanation.payload(top, matrix, seconds=time.perf_counter() - started).to_json()
