"""Feature and prediction drift reports: PSI on reference quantile bins, the two-sample Kolmogorov-Smirnov test and
the normalised Wasserstein distance per column (``drift_report``) and the workspace runner behind ``finmlops drift``
(``run_drift``). The statistics, and the online ``SlidingDrift`` the server keeps, are ``finmlops.stats.drift``: batch
and online PSI use the same bins and the same ``psi``. See docs/monitoring.md.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, computed_field

from finmlops.data import DataStore
from finmlops.provenance import stamp, write_json_atomic
from finmlops.stats.drift import (
    N_BINS,
    bin_counts,
    finite_values,
    ks_test,
    psi,
    quantile_edges,
    reference_profile,
    wasserstein_norm,
)

if TYPE_CHECKING:
    from finmlops.settings import Settings

PREDICTION_COLUMN = "prob_up"


class DriftThresholds(BaseModel):
    """When a column alerts. Defaults: PSI > 0.2 (the usual "significant shift" rule); and Evidently's default test
    for numerical columns: KS p-value < 0.05 when the reference has <= 1000 rows, normalised Wasserstein
    distance >= 0.1 otherwise."""

    model_config = ConfigDict(extra="forbid")

    psi: float = Field(default=0.2, gt=0, description="Alert when PSI > psi.")
    ks_p_value: float = Field(default=0.05, gt=0, lt=1, description="Alert when the KS p-value < this.")
    wasserstein: float = Field(default=0.1, gt=0, description="Alert when the normalised Wasserstein >= this.")
    ks_max_reference_rows: int = Field(
        default=1000, ge=1, description="References up to this many rows use KS, larger ones Wasserstein."
    )
    n_bins: int = Field(default=N_BINS, ge=2, le=100, description="Reference quantile bins for PSI.")


class ColumnDrift(BaseModel):
    """Drift of one column (a feature, or the predicted probability) between the reference and current windows."""

    column: str
    n_reference: int
    n_current: int
    psi: float
    ks_statistic: float
    ks_p_value: float
    wasserstein_norm: float = Field(description="Wasserstein-1 distance / reference std (floored at 1e-3).")
    test: Literal["ks", "wasserstein"] = Field(description="The statistical test that decides test_alert.")
    psi_alert: bool
    test_alert: bool
    reference_mean: float
    current_mean: float

    @computed_field  # type: ignore[prop-decorator]
    @property
    def drifted(self) -> bool:
        return self.psi_alert or self.test_alert


class DriftReport(BaseModel):
    """Per-feature drift, prediction drift (when both windows carry ``prob_up``) and the alert count."""

    thresholds: DriftThresholds
    n_reference: int
    n_current: int
    features: list[ColumnDrift]
    prediction: ColumnDrift | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def drifted_features(self) -> list[str]:
        return [f.column for f in self.features if f.drifted]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def n_drifted(self) -> int:
        return len(self.drifted_features)


class DriftResult(DriftReport):
    """``results/drift.json``: the :class:`DriftReport` with what was compared (``model``, the ``reference`` and
    ``current`` windows in words, the ``feature_set``), notes on the windows, and the provenance stamp."""

    model: str | None = None
    reference: str | None = None
    current: str | None = None
    feature_set: str | None = None
    notes: list[str] = Field(default_factory=list)
    provenance: dict[str, Any] = Field(default_factory=dict)


# --- batch report ----------------------------------------------------------------------------------------------------


def column_drift(
    column: str,
    reference: np.ndarray,
    current: np.ndarray,
    thresholds: DriftThresholds | None = None,
    profile_entry: Mapping[str, Any] | None = None,
) -> ColumnDrift:
    """Drift of one column; PSI uses ``profile_entry`` bins when given (else bins of ``reference``)."""
    t = thresholds or DriftThresholds()
    ref, cur = finite_values(reference, f"reference {column!r}"), finite_values(current, f"current {column!r}")
    if profile_entry is None:
        edges = quantile_edges(ref, t.n_bins)
        ref_props = bin_counts(ref, edges)
    else:
        edges, ref_props = np.asarray(profile_entry["edges"]), np.asarray(profile_entry["proportions"])
    value = psi(ref_props, bin_counts(cur, edges))
    ks_statistic, ks_p_value = ks_test(ref, cur)
    wasserstein = wasserstein_norm(ref, cur)
    test: Literal["ks", "wasserstein"] = "ks" if ref.size <= t.ks_max_reference_rows else "wasserstein"
    return ColumnDrift(
        column=column,
        n_reference=int(ref.size),
        n_current=int(cur.size),
        psi=value,
        ks_statistic=ks_statistic,
        ks_p_value=ks_p_value,
        wasserstein_norm=float(wasserstein),
        test=test,
        psi_alert=value > t.psi,
        test_alert=bool(ks_p_value < t.ks_p_value) if test == "ks" else bool(wasserstein >= t.wasserstein),
        reference_mean=float(ref.mean()),
        current_mean=float(cur.mean()),
    )


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    thresholds: DriftThresholds | None = None,
    prediction_column: str = PREDICTION_COLUMN,
) -> DriftReport:
    """Drift of every column of ``reference`` (``[n_ref, n_columns]``) in ``current`` (``[n_cur, >= n_columns]``).

    A ``prediction_column`` present in both frames is reported as prediction drift, not as a feature. PSI bins come
    from ``reference_profile(reference)``, the same profile the online ``SlidingDrift`` reads.
    """
    t = thresholds or DriftThresholds()
    missing = [c for c in reference.columns if c not in current.columns]
    if missing:
        raise ValueError(f"current window lacks column(s) {', '.join(map(str, missing))} of the reference")
    names = [str(c) for c in reference.columns if c != prediction_column]
    profile = reference_profile(reference[names].to_numpy(np.float64), names, t.n_bins)
    features = [
        column_drift(n, reference[n].to_numpy(), current[n].to_numpy(), t, profile["features"][n]) for n in names
    ]
    prediction = None
    if prediction_column in reference.columns:
        prediction = column_drift(
            prediction_column, reference[prediction_column].to_numpy(), current[prediction_column].to_numpy(), t
        )
    return DriftReport(
        thresholds=t, n_reference=len(reference), n_current=len(current), features=features, prediction=prediction
    )


# --- workspace: `finmlops drift` -------------------------------------------------------------------------------------

CURRENT_SOURCES: tuple[str, ...] = ("recent", "log")


def decode_features(blobs: pd.Series, n_features: int, ids: pd.Series) -> np.ndarray:
    """Request-log ``last_features`` blobs (float32 bytes) to ``[n, n_features]`` float64; a blob of another length
    raises ``ValueError`` naming the request id."""
    rows = []
    for blob, rid in zip(blobs, ids, strict=True):
        vector = np.frombuffer(blob, dtype=np.float32)
        if vector.size != n_features:
            raise ValueError(f"request log row id={rid}: last_features has {vector.size} values, expected {n_features}")
        rows.append(vector)
    return np.asarray(rows, dtype=np.float64).reshape(-1, n_features)


def _read_reference_parquet(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the reference features ({exc})") from None
    if {"date", "ticker"} <= set(frame.columns):
        frame = frame.set_index(["date", "ticker"])
    bad = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad or frame.empty:
        raise ValueError(f"{path}: reference features must be numeric columns with rows; non-numeric: {bad}")
    return frame


def _feature_set_with(columns: Sequence[str], preferred: str) -> str:
    from finmlops.features import FEATURE_SETS, feature_names  # deferred: pydantic_settings, talib

    for name in (preferred, *FEATURE_SETS):
        if set(columns) <= set(feature_names(name)):
            return name
    raise ValueError(f"no feature set holds every reference column ({', '.join(columns)})")


def _predict(onnx_file: Path, windows: np.ndarray, threads: int) -> np.ndarray:
    """``prob_up`` ``[n]`` of ``windows`` ``[n, seq_len, n_features]`` from the ONNX graph (onnxruntime, no torch)."""
    from finmlops.contract import open_session, score  # deferred: onnxruntime

    return score(open_session(onnx_file, threads), windows)


def run_drift(
    settings: Settings,
    *,
    model: str | None = None,
    reference: Path | None = None,
    current: str = "recent",
    window_days: int = 90,
    thresholds: DriftThresholds | None = None,
    log_path: Path | None = None,
) -> DriftResult:
    """Compare a reference window with a current window and write ``results/drift.json`` (stamped).

    Reference: ``reference`` (a feature parquet) or, for ``model`` (``NAME@alias``, a registered name, a URI or a
    model folder), the features of its training date range (from its ModelCard) recomputed from the store.
    Current: ``recent`` (the last ``window_days`` calendar days of the store) or ``log`` (the model's logged
    ``last_features`` and ``prob_up`` of the last ``window_days`` days; needs ``model``). With a model, prediction
    drift compares its ``prob_up`` on the reference windows with the current ones. Returns the JSON payload.
    """

    from finmlops.features import compute_features, make_windows  # deferred: pydantic_settings, talib

    if current not in CURRENT_SOURCES:
        raise ValueError(f"current must be one of {', '.join(CURRENT_SOURCES)}, got {current!r}")
    if model is None and reference is None:
        raise ValueError("give --model NAME@alias or --reference FEATURES.parquet")
    if current == "log" and model is None:
        raise ValueError("--current log needs --model: the log's feature vectors are in the model's feature order")
    t = thresholds or DriftThresholds()
    universe, data_hash = DataStore(settings.data_dir).read_versioned()
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        card, onnx_file = None, None
        if model is not None:
            from finmlops.tracking.backend import configure_tracking  # deferred: mlflow, pydantic_settings
            from finmlops.tracking.packaging import fetch_model, read_model  # deferred: mlflow, onnx, onnxruntime

            if not Path(model).exists():
                configure_tracking(settings)
            artifact = read_model(fetch_model(model, Path(tmp)))
            card, onnx_file = artifact.card, artifact.graph
        if reference is not None:
            ref_frame = _read_reference_parquet(reference)
            names = [str(c) for c in ref_frame.columns if c != PREDICTION_COLUMN]
            if card is not None and names != card.feature_names:
                raise ValueError(f"{reference}: columns differ from the model's feature order {card.feature_names}")
            feature_set = card.feature_set if card else _feature_set_with(names, settings.feature_set)
        else:
            assert card is not None
            names, feature_set = card.feature_names, card.feature_set
        features = compute_features(universe, feature_set)[names]
        dates = features.index.get_level_values("date")
        if reference is None:
            assert card is not None
            if not (card.train_start and card.train_end):
                raise ValueError(f"model {model}: its card has no training date range; pass --reference")
            in_train = (dates >= pd.Timestamp(card.train_start)) & (dates <= pd.Timestamp(card.train_end))
            ref_frame = features[in_train]
        else:
            in_train = features.index.isin(ref_frame.index) if ref_frame.index.nlevels == 2 else dates < dates.min()
        if current == "recent":
            start = dates.max() - pd.Timedelta(days=window_days)
            in_current = dates > start
            cur_frame = features[in_current]
            if (in_current & in_train).any():
                notes.append("the current window overlaps the reference (training) window")
            window_label = f"store dates after {start.date()} to {dates.max().date()}"
        else:
            from finmlops.serving.requestlog import read_requests

            assert card is not None
            path = log_path or settings.home / "serving" / "requests.db"
            since = time.time() - window_days * 86400.0
            log = read_requests(path)
            name = model.split("@", 1)[0].removeprefix("models:/") if model else ""
            rows = log[(log["model"] == name) & (log["status"] == 200) & log["last_features"].notna()]
            rows = rows[rows["ts"] >= since]
            if rows.empty:
                raise ValueError(
                    f"{path}: no logged inputs of model {name!r} in the last {window_days} days "
                    f"(models in the log: {', '.join(sorted(log['model'].unique())) or 'none'})"
                )
            cur_frame = pd.DataFrame(decode_features(rows["last_features"], len(names), rows["id"]), columns=names)
            cur_frame[PREDICTION_COLUMN] = rows["prob_up"].to_numpy(np.float64)
            window_label = f"{len(rows)} logged requests to {name} in the last {window_days} days"
        if card is not None and onnx_file is not None:
            # A constant target: windows need a finite label but the model never sees it.
            windows = make_windows(features, pd.Series(0.0, index=features.index), card.seq_len)
            keys = pd.MultiIndex.from_arrays([pd.DatetimeIndex(windows.dates), windows.tickers])
            ref_mask = keys.isin(ref_frame.index)
            ref_frame = ref_frame.loc[keys[ref_mask]].assign(
                **{PREDICTION_COLUMN: _predict(onnx_file, windows.X[ref_mask], settings.threads)}
            )
            if current == "recent":
                cur_mask = keys.isin(cur_frame.index)
                cur_frame = cur_frame.loc[keys[cur_mask]].assign(
                    **{PREDICTION_COLUMN: _predict(onnx_file, windows.X[cur_mask], settings.threads)}
                )
    if ref_frame.empty or cur_frame.empty:
        raise ValueError(f"empty window: {len(ref_frame)} reference rows, {len(cur_frame)} current rows")
    report = drift_report(ref_frame, cur_frame, t)
    config = {"model": model, "reference": str(reference) if reference else None, "current": current}
    result = DriftResult(
        **dict(report),
        model=model,
        reference=str(reference) if reference else f"training range {card.train_start} to {card.train_end}",
        current=window_label,
        feature_set=feature_set,
        notes=notes,
        provenance=stamp(data_hash=data_hash, config=config | {"window_days": window_days}),
    )
    write_json_atomic(settings.results_dir / "drift.json", result.model_dump(mode="json"))
    return result


# --- the live loop's alarm: PSI over a window of days, calibrated on the training window ------------------------------


class WindowDriftCalibration(BaseModel):
    """The drift alarm of a model, calibrated on its own training window (:func:`calibrate_window_drift`).

    ``edges``/``proportions``: per feature (``features`` order) the reference bins of the whole window. ``scale``:
    per feature the median PSI of held-out ``window_days`` blocks of the window against the rest of it (a feature
    whose values move slowly, a 60-day volatility, has a large PSI over 20 days even without any drift: the scale
    puts every feature on the same footing). ``threshold``: the ``1 - false_alarm`` quantile over the held-out
    blocks of the largest scaled PSI (the max-statistic, Westfall-Young correction for testing every feature at
    once): a day alarms when any feature's PSI / scale exceeds it, which on the training window's own days happens
    on a ``false_alarm`` share of them. ``in_sample_rate``: that share as measured on the blocks."""

    model_config = ConfigDict(frozen=True)

    features: list[str]
    edges: list[list[float]]
    proportions: list[list[float]]
    scale: list[float]
    threshold: float
    false_alarm: float
    window_days: int
    gap_days: int
    blocks: int
    in_sample_rate: float


class WindowDrift(BaseModel):
    """One window's drift against a :class:`WindowDriftCalibration`: per feature its PSI and PSI / scale, the
    largest scaled PSI (``statistic``), the threshold, the alarm and the features above the threshold."""

    psi: dict[str, float]
    scaled: dict[str, float]
    statistic: float
    threshold: float
    alarm: bool
    drifted: list[str]


def _block_psi(x: np.ndarray, block: np.ndarray, reference: np.ndarray, n_bins: int) -> np.ndarray:
    """PSI ``[n_features]`` of rows ``block`` of ``x`` (``[n_rows, n_features]``, finite) against rows
    ``reference``, on the reference's quantile bins."""
    ref, cur = x[reference], x[block]
    quantiles = np.quantile(ref, np.arange(1, n_bins) / n_bins, axis=0)  # [n_bins - 1, n_features]
    out = np.empty(x.shape[1])
    for j in range(x.shape[1]):
        edges = np.unique(quantiles[:, j])
        out[j] = psi(bin_counts(ref[:, j], edges), bin_counts(cur[:, j], edges))
    return out


def calibrate_window_drift(
    values: np.ndarray,
    days: np.ndarray,
    names: Sequence[str],
    *,
    window_days: int,
    false_alarm: float = 0.05,
    gap_days: int | None = None,
    max_blocks: int = 200,
    n_bins: int = N_BINS,
) -> WindowDriftCalibration:
    """Calibrate the window drift alarm on a model's training window.

    ``values`` ``[n_rows, n_features]`` (columns in ``names`` order) are the window's feature rows, ``days``
    ``[n_rows]`` the day of each (any sortable type; the rows of one day, its tickers, stay together). The window's
    days are cut into blocks of ``window_days`` consecutive days (overlapping, at most ``max_blocks``); each block is
    held out in turn and compared with the rest of the window minus ``gap_days`` (default ``window_days``) on each
    side of it, so that the features' look-back does not leak the block into its reference. See
    :class:`WindowDriftCalibration` for what is kept. ``ValueError`` when the window has fewer than
    ``3 * window_days`` days or fewer than 20 blocks.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ValueError(f"calibration features must be [n_rows, {len(names)}], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("calibration features must be finite (drop the look-back rows with NaN first)")
    if not 0 < false_alarm < 1:
        raise ValueError(f"false_alarm must be in (0, 1), got {false_alarm}")
    gap = window_days if gap_days is None else gap_days
    unique, day_of_row = np.unique(np.asarray(days), return_inverse=True)
    n_days = len(unique)
    if n_days < 3 * window_days:
        raise ValueError(f"the training window has {n_days} days, too few to calibrate {window_days}-day drift")
    starts = np.arange(0, n_days - window_days + 1)
    stride = max(1, -(-len(starts) // max_blocks))
    starts = starts[::stride]
    if len(starts) < 20:
        raise ValueError(f"the training window gives {len(starts)} held-out blocks, fewer than 20")
    null = np.empty((len(starts), x.shape[1]))
    for b, start in enumerate(starts):
        end = start + window_days
        block = (day_of_row >= start) & (day_of_row < end)
        reference = (day_of_row < start - gap) | (day_of_row >= end + gap)
        null[b] = _block_psi(x, block, reference, n_bins)
    scale = np.maximum(np.nanmedian(null, axis=0), 1e-6)
    statistic = np.nanmax(null / scale, axis=1)
    threshold = float(np.quantile(statistic, 1 - false_alarm, method="higher"))
    profile = reference_profile(x, list(names), n_bins)["features"]
    return WindowDriftCalibration(
        features=list(names),
        edges=[profile[n]["edges"] for n in names],
        proportions=[profile[n]["proportions"] for n in names],
        scale=[float(s) for s in scale],
        threshold=threshold,
        false_alarm=false_alarm,
        window_days=window_days,
        gap_days=gap,
        blocks=len(starts),
        in_sample_rate=float(np.mean(statistic > threshold)),
    )


def window_drift(calibration: WindowDriftCalibration, values: np.ndarray) -> WindowDrift:
    """Drift of a window's feature rows ``values`` ``[n_rows, n_features]`` (``calibration.features`` order)
    against the training window the calibration was made on; PSI on the whole window's reference bins."""
    x = np.asarray(values, dtype=np.float64)
    c = calibration
    if x.ndim != 2 or x.shape[1] != len(c.features):
        raise ValueError(f"window features must be [n_rows, {len(c.features)}], got shape {x.shape}")
    values_psi: dict[str, float] = {}
    scaled: dict[str, float] = {}
    for j, name in enumerate(c.features):
        column = x[:, j]
        value = psi(np.asarray(c.proportions[j]), bin_counts(column[np.isfinite(column)], np.asarray(c.edges[j])))
        values_psi[name], scaled[name] = value, value / c.scale[j]
    finite = [v for v in scaled.values() if np.isfinite(v)]
    statistic = max(finite) if finite else float("nan")
    drifted = sorted((n for n, v in scaled.items() if v > c.threshold), key=lambda n: -scaled[n])
    return WindowDrift(
        psi=values_psi, scaled=scaled, statistic=statistic, threshold=c.threshold, alarm=bool(drifted), drifted=drifted
    )
