"""Adaptive batching on the event loop: concurrent requests to one model are scored in one onnxruntime run.

A batch opens with its first request and is scored, stacked into one ``[rows, ...]`` run and split back in order,
at the first of:

- ``max_batch`` rows queued (``server.max_batch_size``);
- the next turn of the event loop, once no request is still being read (``ArrivalGate.arriving == 0``) and the
  batch window is over: requests submitted in the same turn always share the run, and a request whose body is still
  arriving is waited for, at most ``max_wait_s`` (``server.max_wait_ms``) from the batch's first request;
- ``max_batch_time_s`` (``server.max_batch_time_ms``, the batch window, as MLServer's ``max_batch_time`` and
  Triton's ``max_queue_delay_microseconds``) after the first request: with a window, a batch also waits for calls
  that have not begun to arrive yet. gRPC calls reach the loop one at a time, so without a window they are scored
  alone. The window is adaptive: it is waited only when another call is in flight as the batch opens
  (``ArrivalGate.in_flight``) or the last batch held two calls or more, so a client alone (each call sent after the
  last answer) never waits for it. Default 2 ms; 0 turns it off.

Scoring runs inline on the loop: with one intra-op thread per session, a thread hand-off would cost more than the
60 µs a batch-1 LSTM takes, and on a one-core server it could not run in parallel anyway. When a stacked run fails,
each of its requests is scored again alone, so that a request that breaks the run fails by itself and the others
get their answers. ``observe(rows)``, when set, is told the size of every run (the ``finmlops_batch_size``
histogram: its count is the number of onnxruntime runs).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np

RunFn = Callable[[np.ndarray], np.ndarray]
# uvloop's timers have a resolution of 1 ms (a shorter delay fires on the next turn): the last part of a window
# shorter than this is waited out turn by turn instead, which keeps serving the loop meanwhile.
_TIMER_RESOLUTION_S = 1e-3


class ArrivalGate:
    """Counts requests between "started reading" and "submitted or failed" (``arriving``), so batches can wait for
    them, and the infer calls the data plane has begun and not yet answered (``in_flight``)."""

    __slots__ = ("arriving", "in_flight")

    def __init__(self) -> None:
        self.arriving = 0
        self.in_flight = 0

    def enter(self) -> None:
        self.arriving += 1

    def leave(self) -> None:
        self.arriving -= 1


class MicroBatcher:
    """Batches ``[rows, ...]`` float32 inputs for ``run`` (``[n, ...] -> [n, k]``); one per loaded model."""

    def __init__(
        self,
        run: RunFn,
        max_batch: int,
        max_wait_s: float,
        gate: ArrivalGate | None = None,
        max_batch_time_s: float = 0.0,
        observe: Callable[[int], None] | None = None,
    ) -> None:
        self._run = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_batch_time_s = max_batch_time_s
        self.observe = observe
        self._gate = gate or ArrivalGate()
        self._items: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = []
        self._rows = 0
        self._scheduled = False
        self._since = 0.0
        self._batch = 0  # the open batch's number: a timer of a batch that already left is ignored
        self._busy = False  # whether the last batch held two requests or more
        self._window = 0.0
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
            self._batch += 1
            # The window is waited out under concurrency only: when another call is in flight (begun and not
            # yet answered) as this one opens the batch, or the last batch held two calls or more. A client alone
            # (each call sent after the last answer) never waits for it.
            busy = self._busy or self._gate.in_flight > 1
            self._window = self.max_batch_time_s if busy else 0.0
            if self._window >= _TIMER_RESOLUTION_S:
                loop.call_later(self._window - _TIMER_RESOLUTION_S / 2, self._tick, loop, self._batch)
            else:
                loop.call_soon(self._tick, loop, self._batch)
        return future

    def _tick(self, loop: asyncio.AbstractEventLoop, batch: int) -> None:
        if not self._scheduled or batch != self._batch:  # that batch filled up and left; the next has its own tick
            return
        if self._items:
            elapsed = time.perf_counter() - self._since
            if elapsed < self._window or (self._gate.arriving > 0 and elapsed < self.max_wait_s):
                loop.call_later(min(self.max_wait_s / 4, 2e-4), self._tick, loop, batch)
                return
        self._scheduled = False
        self._flush()

    def _flush(self) -> None:
        items, self._items, self._rows = self._items, [], 0
        self._scheduled = False
        self._busy = len(items) > 1
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
            if len(chunk) > 1:  # which request broke the run: each alone, so that only that one fails
                for item in chunk:
                    self._score([item])
                return
            if not chunk[0][1].done():
                chunk[0][1].set_exception(exc)
            return
        self.runs += 1
        self.rows_scored += len(x)
        if self.observe is not None:
            self.observe(len(x))
        offset = 0
        for xi, future in chunk:
            n = len(xi)
            if not future.done():  # a client that went away cancels its future
                future.set_result(y[offset : offset + n])
            offset += n
