"""The executors: serial and Ray give the same walk-forward predictions bit for bit (SHA-256 of the file's bytes).

The Ray tests share the session's local Ray (``finmlops_testing.ray``); its start and the first tasks' worker
processes (each imports torch) take 20-40 s on the shared 2-core machine, so they are marked slow. The
default suite checks the serial executor, the config and the one-line error without Ray.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from finmlops.data import load_snapshot
from finmlops.evaluation.workspace import write_parquet_atomic
from finmlops.executor import ExecutorConfig, RayConfig, SerialExecutor, open_executor, ray_init_kwargs
from finmlops.provenance import file_sha256
from finmlops.training import walk_forward_predictions


def predictions_sha256(frame: pd.DataFrame, tmp_path: Path) -> str:
    """SHA-256 of predictions.parquet as ``finmlops evaluate`` writes it (its attrs, the fit times, left out)."""
    return file_sha256(write_parquet_atomic(frame, tmp_path / "predictions.parquet"))


def _slice(executor: ExecutorConfig | None) -> pd.DataFrame:
    universe = load_snapshot(["AAPL", "XOM", "JPM"], start=date(2016, 1, 1), end=date(2019, 12, 31))
    return walk_forward_predictions(
        universe, variants=["lightweight"], baselines=["majority", "momentum", "logistic"], test_years=[2018, 2019],
        epochs=2, threads=1, progress=False, executor=executor,
    )  # fmt: skip


def test_serial_executor_keeps_item_order_and_reports_each() -> None:
    seen: list[int] = []
    out = SerialExecutor().map(lambda shared, x: shared + x, [3, 1, 2], shared=10, on_done=lambda i, r: seen.append(i))
    assert out == [13, 11, 12] and seen == [0, 1, 2]


def test_local_ray_binds_loopback_without_dashboard() -> None:
    local = ray_init_kwargs(RayConfig(num_cpus=2))
    assert local["num_cpus"] == 2 and local["include_dashboard"] is False and local["_node_ip_address"] == "127.0.0.1"
    assert ray_init_kwargs(RayConfig(address="ray://head:10001"))["address"] == "ray://head:10001"


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from finmlops.cli.main import error_line

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ModuleNotFoundError(name="ray")
    with pytest.raises(ModuleNotFoundError) as caught, open_executor(ExecutorConfig(kind="ray")):
        pass
    assert error_line(caught.value) == (
        "this command needs ray, which is not installed: pip install 'finmlops[distributed]'"
    )


@pytest.mark.slow
def test_ray_and_serial_predictions_are_identical_bit_for_bit(local_ray: None, tmp_path: Path) -> None:
    serial = _slice(None)
    distributed = _slice(ExecutorConfig(kind="ray", ray=RayConfig(num_cpus=2)))
    assert predictions_sha256(distributed, tmp_path) == predictions_sha256(serial, tmp_path)
    assert distributed.attrs["row_report"] == serial.attrs["row_report"]
    assert len({(f["fold"], f["model"]) for f in distributed.attrs["fit_seconds"]}) == 2 * 4


@pytest.mark.slow
def test_a_failing_ray_task_raises_its_own_error(local_ray: None) -> None:
    def boom(_shared: object, item: int) -> int:
        if item == 2:
            raise ValueError("fold 2: no training windows")
        return item

    with open_executor(ExecutorConfig(kind="ray")) as run, pytest.raises(ValueError, match="fold 2: no training"):
        run.map(boom, [1, 2, 3])


def test_run_config_names_the_executor_and_rejects_unknown_ones() -> None:
    from finmlops.workflow.config import RunConfigError, parse_run_config, shipped_config

    quick = shipped_config("quick")
    assert quick.executor_config == ExecutorConfig()
    text = quick.to_yaml() + "executor: ray\nray:\n  address: ray://head:10001\n"
    config = parse_run_config(text.replace("executor: serial\n", "").replace("ray:\n  address: null\n  num_cpus: "
                                          "null\n  task_cpus: null\n", ""), "x.yaml")  # fmt: skip
    assert config.executor_config == ExecutorConfig(kind="ray", ray=RayConfig(address="ray://head:10001"))
    with pytest.raises(RunConfigError, match="executor"):
        parse_run_config(quick.to_yaml().replace("executor: serial", "executor: dask"), "x.yaml")
