"""HTTP limits the server enforces below the ASGI app: header size and count, header and body read timeouts.

uvicorn's httptools protocol has none of these (only a keep-alive timeout and ``limit_concurrency``, which gives
503 beyond a connection count and is used as is), and httptools buffers a header of any size before it reports
it. ``guarded_protocol(options)`` subclasses uvicorn's ``HttpToolsProtocol``:

- every byte read while a request's headers are incomplete counts against ``max_header_bytes``: beyond it, 431
  and the connection closes (so a 64 MB header costs at most one read buffer beyond the limit);
- a request line longer than ``max_header_line_bytes`` gets 414, a header line longer than it or more than
  ``max_headers`` headers 431;
- the headers must arrive within ``header_timeout_s`` of the connection (or of a keep-alive request's first byte),
  the body within ``body_timeout_s`` of the headers; otherwise 408 (when no response was started) and close.

The defaults (config.ServerOptions) are near nginx's and Envoy's.

With ``answer`` (``ServingApp.answer_infer``) the protocol also answers a plain infer request itself, without the
ASGI layer: ``POST .../infer`` with a ``Content-Length`` within ``max_body_bytes``, no ``Expect``, no upgrade, on the
main port, and no other request of the connection in flight. Such a request gets no ASGI scope, cycle, events or
messages, and its response goes out in one write; everything else (other routes and methods, chunked or oversized
bodies, pipelined requests) goes through uvicorn and the ASGI app as before. Both call the same ``answer_infer``, so
the two paths cannot answer differently; uvicorn's ASGI machinery cost more per request than the model does
(docs/serving.md, "The REST fast path").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httptools

from finmlops.serving.batching import ArrivalGate
from finmlops.serving.config import ServerOptions

Answer = Callable[[str, dict[str, str], bytes, float], Awaitable[tuple[int, bytes, list[tuple[bytes, bytes]]]]]
_INTERNAL_ERROR = b'{"error":"internal error"}'

log = logging.getLogger("finmlops.serving")


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request that broke a limit."""


class _NoEvent:
    """uvicorn sets its cycle's event on a disconnect or a body chunk; nothing waits on a fast-path request's."""

    __slots__ = ()

    def set(self) -> None:
        pass


_NO_EVENT = _NoEvent()


class _InferCycle:
    """A request the fast path answers: the attributes of uvicorn's ``RequestResponseCycle`` that its protocol
    (and this module) read, and what the answer needs."""

    __slots__ = (
        "chunks", "disconnected", "headers", "keep_alive", "message_event", "more_body", "path", "received",
        "response_complete", "response_started", "started",
    )  # fmt: skip

    def __init__(self, path: str, headers: dict[str, str], keep_alive: bool, received: float) -> None:
        self.path, self.headers, self.keep_alive, self.received = path, headers, keep_alive, received
        self.chunks: list[bytes] = []
        self.more_body = True
        self.started = False  # the answer's task was created (or the request was given up): the gate was left
        self.response_started = self.response_complete = self.disconnected = False
        self.message_event = _NO_EVENT


def guarded_protocol(
    options: ServerOptions, answer: Answer | None = None, gate: ArrivalGate | None = None
) -> type[asyncio.Protocol]:
    """A uvicorn HTTP protocol class enforcing ``options``' header limits and read timeouts; with ``answer`` and
    ``gate`` (the data plane's arrival gate), also the infer fast path (module docstring)."""
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol  # deferred: uvicorn

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        limits = options

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._reading_headers = True
            self._header_bytes = 0
            self._header_count = 0
            self._header_total = 0  # request line and header lines parsed so far
            self._refusal: tuple[int, str] | None = None
            self._timer: asyncio.TimerHandle | None = None
            self._timer_at = 0.0  # when the pending timer fires (loop time)
            self._deadline: float | None = None  # when the current read times out (loop time); None: not timed
            self._what = ""

        # --- timers -------------------------------------------------------------------------------------------
        # One deadline per connection, checked by a lazy timer: arming and disarming per request only set the
        # deadline (no timer handle created and cancelled for every request of a keep-alive connection); the timer,
        # when it fires, re-arms itself for a deadline that moved later, and a deadline earlier than the pending
        # timer replaces it.

        def _arm(self, seconds: float, what: str) -> None:
            deadline = self.loop.time() + seconds
            self._deadline, self._what = deadline, what
            if self._timer is None or deadline < self._timer_at:
                if self._timer is not None:
                    self._timer.cancel()
                self._timer_at = deadline
                self._timer = self.loop.call_at(deadline, self._check)

        def _disarm(self) -> None:
            self._deadline = None

        def _cancel_timer(self) -> None:
            self._deadline = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _check(self) -> None:
            self._timer = None
            if self._deadline is None:
                return
            if self._deadline > self.loop.time():
                self._timer_at = self._deadline
                self._timer = self.loop.call_at(self._deadline, self._check)
                return
            self._deadline = None
            self._expire(self._what)

        def _expire(self, what: str) -> None:
            if self.transport is None or self.transport.is_closing():
                return
            log.info("closing a connection from %s: %s", _peer(self.client), what)
            if self.cycle is None or self.cycle.response_complete or not self.cycle.response_started:
                if self.cycle is not None and not self.cycle.response_complete:
                    self.cycle.disconnected = True  # the app's receive() now answers http.disconnect
                    self.cycle.message_event.set()
                self._write_close(408, what)
            else:
                self.transport.close()

        # --- refusals -----------------------------------------------------------------------------------------

        def _write_close(self, status: int, message: str) -> None:
            body = message.encode("ascii", "replace")
            self.transport.write(
                b"".join(
                    [
                        STATUS_LINE[status],
                        b"content-type: text/plain; charset=utf-8\r\n",
                        b"content-length: " + str(len(body)).encode() + b"\r\n",
                        b"connection: close\r\n\r\n",
                        body,
                    ]
                )
            )
            self.transport.close()

        def _refuse(self, status: int, message: str) -> None:
            self._refusal = (status, message)
            raise _Refused(message)

        # --- protocol and parser callbacks --------------------------------------------------------------------

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm(
                self.limits.header_timeout_s, f"request headers not received within {self.limits.header_timeout_s:g} s"
            )

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_timer()
            cycle = self.cycle
            if type(cycle) is _InferCycle and not cycle.started:  # its body never came: it leaves the gate here
                cycle.started = True
                gate.leave()  # type: ignore[union-attr]  # a fast-path cycle exists only with a gate
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            self._unset_keepalive_if_required()
            if self._reading_headers:
                self._header_bytes += len(data)
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                if self._should_upgrade():
                    self.handle_websocket_upgrade()
                else:
                    self._unsupported_upgrade_warning()
                return
            except httptools.HttpParserError:
                if self._refusal is not None:
                    self._write_close(*self._refusal)
                else:
                    self.logger.warning("Invalid HTTP request received.")
                    self.send_400_response("Invalid HTTP request received.")
                return
            if self._reading_headers and self._header_bytes > self.limits.max_header_bytes:
                self._write_close(431, f"request headers exceed {self.limits.max_header_bytes} bytes")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._reading_headers, self._header_count, self._header_total = True, 0, 0
            if self._deadline is None:  # a keep-alive connection's next request: its headers are timed from now
                self._header_bytes = 0
                self._arm(self.limits.header_timeout_s, "request headers not received in time")

        def on_url(self, url: bytes) -> None:
            super().on_url(url)
            self._header_total += len(url)
            if len(self.url) > self.limits.max_header_line_bytes:
                self._refuse(414, f"request line exceeds {self.limits.max_header_line_bytes} bytes")

        def on_header(self, name: bytes, value: bytes) -> None:
            self._header_count += 1
            self._header_total += len(name) + len(value) + 4  # ": " and CRLF
            if self._header_total > self.limits.max_header_bytes:  # headers that arrived in one read
                self._refuse(431, f"request headers exceed {self.limits.max_header_bytes} bytes")
            if self._header_count > self.limits.max_headers:
                self._refuse(431, f"more than {self.limits.max_headers} request headers")
            if len(name) + len(value) + 2 > self.limits.max_header_line_bytes:
                self._refuse(
                    431, f"header {name[:64].decode('latin-1')!r} exceeds {self.limits.max_header_line_bytes} bytes"
                )
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._reading_headers = False
            self._disarm()
            if not self._take_infer():
                super().on_headers_complete()
            if self.cycle is not None and self.cycle.more_body:
                self._arm(
                    self.limits.body_timeout_s, f"request body not received within {self.limits.body_timeout_s:g} s"
                )

        def on_body(self, body: bytes) -> None:
            cycle = self.cycle
            if type(cycle) is _InferCycle:  # no flow control: Content-Length is within max_body_bytes
                cycle.chunks.append(body)
                return
            super().on_body(body)

        def on_message_complete(self) -> None:
            self._disarm()
            cycle = self.cycle
            if type(cycle) is _InferCycle and not cycle.started:
                cycle.started, cycle.more_body = True, False
                body = cycle.chunks[0] if len(cycle.chunks) == 1 else b"".join(cycle.chunks)
                task = self.loop.create_task(self._answer(cycle, body))
                task.add_done_callback(self.tasks.discard)  # uvicorn's shutdown waits for its tasks to finish
                self.tasks.add(task)
                return
            super().on_message_complete()

        # --- the infer fast path ------------------------------------------------------------------------------

        def _take_infer(self) -> bool:
            """Whether this request is a plain infer the fast path answers (then ``self.cycle`` is its cycle)."""
            if answer is None or self.parser.get_method() != b"POST" or self.expect_100_continue:
                return False
            if (self.cycle is not None and not self.cycle.response_complete) or self.parser.should_upgrade():
                return False  # one in flight: uvicorn queues this one behind it, in order
            limit = self.limit_concurrency
            if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
                return False  # uvicorn's 503
            if options.admin_port is not None and self.server is not None and self.server[1] == options.admin_port:
                return False  # the admin port serves no infer: the ASGI app's 404
            path = self.url.partition(b"?")[0]  # origin-form only; an absolute URL or an escape: the ASGI path
            if not path.endswith(b"/infer") or path[:1] != b"/" or b"%" in path or b"#" in path or not path.isascii():
                return False
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in self.headers}
            length = headers.get("content-length")
            if length is None or not length.isdigit() or int(length) > options.max_body_bytes:
                return False  # chunked, or a 413 to give: the ASGI path's body reader
            if "transfer-encoding" in headers:
                return False
            keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
            gate.enter()  # type: ignore[union-attr]  # the arrival phase, as the ASGI path enters it
            self.cycle = _InferCycle(path.decode("ascii"), headers, keep_alive, time.perf_counter())
            return True

        async def _answer(self, cycle: _InferCycle, request_body: bytes) -> None:
            try:
                status, body, headers = await answer(  # type: ignore[misc]  # set when a cycle exists
                    cycle.path, cycle.headers, request_body, cycle.received
                )
            except Exception:  # as uvicorn answers an app that raised: a 500, and the server keeps serving
                log.exception("infer failed on %s", cycle.path)
                status, body = 500, _INTERNAL_ERROR
                headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
            cycle.response_started = True
            if not self.transport.is_closing():
                parts = [STATUS_LINE[status]]
                for name, value in headers:
                    parts += (name, b": ", value, b"\r\n")
                if not cycle.keep_alive:
                    parts.append(b"connection: close\r\n")
                parts += (b"\r\n", body)
                self.transport.write(b"".join(parts))  # one write: status line, headers and body
            cycle.response_complete = True
            if not cycle.keep_alive:
                self.transport.close()
            self.on_response_complete()  # keep-alive timer, the next pipelined request, the request count

    return GuardedHttpToolsProtocol


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "an unknown client"
