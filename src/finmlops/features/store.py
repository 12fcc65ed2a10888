"""Feature frames in the workspace: ``<features_dir>/<set>.parquet`` plus ``<set>.json`` metadata, atomically."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from finmlops.features.registry import check_set, feature_names
from finmlops.provenance import file_sha256, json_safe, stamp


def save_features(
    frame: pd.DataFrame, feature_set: str, directory: Path, *, data_hash: str | None, seed: int | None = None
) -> dict[str, Any]:
    """Write ``frame`` (from ``compute_features``) and its metadata; returns the metadata.

    Both files are written to temporaries first and renamed only when both are complete, so a failed write
    leaves the previous pair intact. The metadata names the data hash and the parquet file's SHA-256.
    """
    check_set(feature_set)
    if list(frame.columns) != feature_names(feature_set):
        raise ValueError(f"frame columns do not match feature set {feature_set!r}: {list(frame.columns)[:5]}...")
    directory.mkdir(parents=True, exist_ok=True)
    parquet, meta_path = directory / f"{feature_set}.parquet", directory / f"{feature_set}.json"
    tmp_parquet = directory / f".{feature_set}.parquet.{os.getpid()}.tmp"
    tmp_meta = directory / f".{feature_set}.json.{os.getpid()}.tmp"
    try:
        frame.to_parquet(tmp_parquet)
        dates = frame.index.get_level_values("date")
        meta = {
            "feature_set": feature_set,
            "feature_names": list(frame.columns),
            "data_hash": data_hash,
            "rows": len(frame),
            "tickers": sorted(frame.index.get_level_values("ticker").unique().tolist()),
            "start": dates.min().date().isoformat() if len(frame) else None,
            "end": dates.max().date().isoformat() if len(frame) else None,
            "file_sha256": file_sha256(tmp_parquet),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "provenance": stamp(data_hash=data_hash, config={"feature_set": feature_set}, seed=seed),
        }
        tmp_meta.write_text(json.dumps(json_safe(meta), indent=2, allow_nan=False) + "\n")
        os.replace(tmp_parquet, parquet)
        os.replace(tmp_meta, meta_path)
    finally:
        tmp_parquet.unlink(missing_ok=True)
        tmp_meta.unlink(missing_ok=True)
    return meta


def load_features(directory: Path, feature_set: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The saved frame and metadata of ``feature_set``; raises if missing, or if the file does not match its hash."""
    check_set(feature_set)
    parquet, meta_path = directory / f"{feature_set}.parquet", directory / f"{feature_set}.json"
    if not parquet.exists() or not meta_path.exists():
        raise FileNotFoundError(
            f"no {feature_set!r} features in {directory}; run `finmlops features --set {feature_set}`"
        )
    meta = json.loads(meta_path.read_text())
    if file_sha256(parquet) != meta.get("file_sha256"):
        raise ValueError(f"{parquet}: content does not match file_sha256 in {meta_path}; recompute the features")
    return pd.read_parquet(parquet), meta
