"""finmlops.executor: where independent work runs (walk-forward fold x model fits, tuning trials, scoring chunks).

``serial`` runs them one after another in this process; ``ray`` runs each as a Ray task, on a local Ray started
with this machine's cores (``ray.init(num_cpus=...)``, bound to 127.0.0.1, no dashboard, logs in a temporary
folder) or on a cluster (``address: ray://head:10001``). Both return the results in the order of the items, and
every item seeds its own work (a fit's seed and torch thread count are in its config), so the two executors give
the same results bit for bit (tests/test_executor.py checks the predictions' SHA-256).

Ray is the optional extra ``finmlops[distributed]``; nothing here imports it until a Ray executor starts.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")
ExecutorKind = Literal["serial", "ray"]
EXECUTORS: tuple[str, ...] = ("serial", "ray")


class RayConfig(BaseModel):
    """Where Ray runs: ``address`` ``None`` starts a local Ray with ``num_cpus`` CPUs (default: this machine's
    cores); ``ray://host:10001`` (or ``auto``) joins a running cluster. ``task_cpus`` is the CPUs Ray reserves per
    task (None: the fit's torch threads), so ``num_cpus / task_cpus`` tasks run at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str | None = None
    num_cpus: int | None = Field(default=None, ge=1)
    task_cpus: float | None = Field(default=None, gt=0)


class ExecutorConfig(BaseModel):
    """``kind`` serial or ray, and the Ray settings (read only when ``kind`` is ray)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ExecutorKind = "serial"
    ray: RayConfig = RayConfig()


Done = Callable[[int, Any], None]
"""``on_done(index, result)``: called once per item as it finishes (completion order under Ray)."""


class SerialExecutor:
    """Items one after another in this process."""

    kind = "serial"
    workers = 1

    def map(
        self, fn: Callable[[Any, Any], T], items: Sequence[Any], *, shared: Any = None, cpus: float = 1,
        on_done: Done | None = None,
    ) -> list[T]:  # fmt: skip
        """``[fn(shared, item) for item in items]``; ``on_done`` after each."""
        out = []
        for i, item in enumerate(items):
            out.append(fn(shared, item))
            if on_done is not None:
                on_done(i, out[-1])
        return out


class RayExecutor:
    """Items as Ray tasks. ``shared`` (the windows, the universe) goes into the object store once and every task
    reads it there (numpy arrays zero-copy); each item travels with its task."""

    kind = "ray"

    def __init__(self, config: RayConfig) -> None:
        self.config = config
        self.workers = 0

    def map(
        self, fn: Callable[[Any, Any], T], items: Sequence[Any], *, shared: Any = None, cpus: float = 1,
        on_done: Done | None = None,
    ) -> list[T]:  # fmt: skip
        """``fn(shared, item)`` for every item as Ray tasks reserving ``cpus`` CPUs each (``task_cpus`` overrides);
        results in item order. A task's exception is raised here as the original exception type."""
        import ray  # deferred: ray; optional extra finmlops[distributed]

        task = ray.remote(num_cpus=self.config.task_cpus or cpus, max_retries=0)(_call)
        shared_ref = ray.put(shared)
        pending = {task.remote(fn, shared_ref, item): i for i, item in enumerate(items)}
        results: dict[int, Any] = {}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    i = pending.pop(ref)
                    results[i] = ray.get(ref)
                    if on_done is not None:
                        on_done(i, results[i])
        except ray.exceptions.RayTaskError as exc:
            for ref in pending:
                ray.cancel(ref)
            cause = exc.as_instanceof_cause()
            raise (cause.cause if getattr(cause, "cause", None) is not None else cause) from None
        return [results[i] for i in range(len(items))]


def _call(fn: Callable[[Any, Any], T], shared: Any, item: Any) -> T:
    return fn(shared, item)


@contextmanager
def open_executor(config: ExecutorConfig | None) -> Iterator[SerialExecutor | RayExecutor]:
    """The executor ``config`` names. For Ray: joins the Ray already initialised in this process (a test
    session's, a RayJob driver's), else starts one (local, or the cluster at ``address``) and shuts it down after.
    A missing Ray is ``ModuleNotFoundError(name='ray')`` (the CLI names ``pip install 'finmlops[distributed]'``)."""
    config = config or ExecutorConfig()
    if config.kind == "serial":
        yield SerialExecutor()
        return
    import ray  # deferred: ray; optional extra finmlops[distributed]

    executor = RayExecutor(config.ray)
    started = not ray.is_initialized()
    kwargs = ray_init_kwargs(config.ray) if started else {}
    if started:
        ray.init(**kwargs)
    try:
        executor.workers = int(ray.cluster_resources().get("CPU", 0))
        yield executor
    finally:
        if started:
            ray.shutdown()
            if "_temp_dir" in kwargs:  # the local Ray's session files and logs
                shutil.rmtree(kwargs["_temp_dir"], ignore_errors=True)


def ray_init_kwargs(config: RayConfig) -> dict[str, Any]:
    """``ray.init`` arguments: a cluster address as given, or a local Ray on 127.0.0.1 with ``num_cpus`` (default
    this machine's cores), no dashboard, its session logs under a temporary folder, task output not echoed."""
    common: dict[str, Any] = {"log_to_driver": False, "configure_logging": False, "ignore_reinit_error": True}
    if config.address:  # the cluster's image has finmlops installed; a local Ray's workers inherit this environment
        return {"address": config.address, **common}
    return {
        "num_cpus": config.num_cpus or os.cpu_count() or 1,
        "include_dashboard": False,
        "_node_ip_address": "127.0.0.1",
        "_temp_dir": tempfile.mkdtemp(prefix="finmlops-ray-"),
        **common,
    }
