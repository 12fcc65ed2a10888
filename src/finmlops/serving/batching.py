"""Adaptive micro-batching on the event loop: requests that arrive together are scored in one onnxruntime run.

A request alone is scored on the next turn of the event loop (no timer). Requests submitted in the same turn, or
while others are still being read (``ArrivalGate.arriving > 0``, for at most ``max_wait_s``), share one run of up
to ``max_batch`` rows. Scoring runs inline on the loop: with one intra-op thread per session, a thread hand-off
would cost more than the 60 µs a batch-1 LSTM takes, and on a one-core server it could not run in parallel anyway.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np

RunFn = Callable[[np.ndarray], np.ndarray]


class ArrivalGate:
    """Counts requests between "started reading" and "submitted or failed", so batches can wait for them."""

    __slots__ = ("arriving",)

    def __init__(self) -> None:
        self.arriving = 0

    def enter(self) -> None:
        self.arriving += 1

    def leave(self) -> None:
        self.arriving -= 1


class MicroBatcher:
    """Batches ``[rows, ...]`` float32 inputs for ``run`` (``[n, ...] -> [n, k]``); one per loaded model."""

    def __init__(self, run: RunFn, max_batch: int, max_wait_s: float, gate: ArrivalGate | None = None) -> None:
        self._run = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._gate = gate or ArrivalGate()
        self._items: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = []
        self._rows = 0
        self._scheduled = False
        self._since = 0.0
        self.runs = 0
        self.rows_scored = 0

    def submit(self, x: np.ndarray) -> asyncio.Future[np.ndarray]:
        """Queue ``x`` (``[rows, ...]``); the future resolves to this request's ``[rows, k]`` slice of the output."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        self._items.append((x, future))
        self._rows += len(x)
        if self._rows >= self.max_batch:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            self._since = time.perf_counter()
            loop.call_soon(self._tick, loop)
        return future

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._items and self._gate.arriving > 0 and time.perf_counter() - self._since < self.max_wait_s:
            loop.call_later(min(self.max_wait_s / 4, 2e-4), self._tick, loop)
            return
        self._scheduled = False
        self._flush()

    def _flush(self) -> None:
        items, self._items, self._rows = self._items, [], 0
        start = 0
        while start < len(items):
            stop, rows = start, 0
            while stop < len(items) and (stop == start or rows + len(items[stop][0]) <= self.max_batch):
                rows += len(items[stop][0])
                stop += 1
            self._score(items[start:stop])
            start = stop

    def _score(self, chunk: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]]) -> None:
        try:
            x = chunk[0][0] if len(chunk) == 1 else np.concatenate([item[0] for item in chunk])
            y = self._run(x)
        except Exception as exc:  # onnxruntime errors vary; every waiter must hear of it
            for _, future in chunk:
                if not future.done():
                    future.set_exception(exc)
            return
        self.runs += 1
        self.rows_scored += len(x)
        offset = 0
        for xi, future in chunk:
            n = len(xi)
            if not future.done():  # a client that went away cancels its future
                future.set_result(y[offset : offset + n])
            offset += n
