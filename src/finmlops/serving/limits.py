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
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httptools

from finmlops.serving.config import ServerOptions

log = logging.getLogger("finmlops.serving")


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request that broke a limit."""


def guarded_protocol(options: ServerOptions) -> type[asyncio.Protocol]:
    """A uvicorn HTTP protocol class enforcing ``options``' header limits and read timeouts."""
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
            super().on_headers_complete()
            if self.cycle is not None and self.cycle.more_body:
                self._arm(
                    self.limits.body_timeout_s, f"request body not received within {self.limits.body_timeout_s:g} s"
                )

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

    return GuardedHttpToolsProtocol


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "an unknown client"
