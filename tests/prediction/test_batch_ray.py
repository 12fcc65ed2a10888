"""``finmlops predict --executor ray``: Ray tasks over chunks of tickers give the serial output bit for bit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from finmlops.executor import ExecutorConfig
from finmlops.prediction.batch import resolve_model, score_windows

from .test_batch import _predict, champion, csv_dir  # noqa: F401  # the fixtures and the CLI call of test_batch


@pytest.mark.slow
def test_ray_chunks_score_like_one_process(local_ray: None, champion: dict[str, Any], tmp_path: Path) -> None:  # noqa: F811
    artifact, card, _ = resolve_model("baseline-predictor@champion", tmp_path)
    # 20 000 windows: two chunks of 16 384 and 3 616 rows on 2 workers (cut at SCORE_BATCH multiples).
    x = np.random.default_rng(0).normal(size=(20_000, card.seq_len, len(card.feature_names))).astype(np.float32)
    serial = score_windows(artifact.graph, x, 1)
    distributed = score_windows(artifact.graph, x, 1, ExecutorConfig(kind="ray"))
    assert distributed.dtype == serial.dtype and distributed.tobytes() == serial.tobytes()


@pytest.mark.slow
def test_predict_with_ray_writes_the_serial_file(
    local_ray: None,
    champion: dict[str, Any],  # noqa: F811
    csv_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    serial, distributed = tmp_path / "serial.csv", tmp_path / "ray.csv"
    for out, extra in ((serial, []), (distributed, ["--executor", "ray"])):
        result = _predict("--model", "baseline-predictor@champion", "--data", str(csv_dir), "--out", str(out), *extra)
        assert result.exit_code == 0, result.output
    assert distributed.read_bytes() == serial.read_bytes()
