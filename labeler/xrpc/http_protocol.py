"""How the labeler reads HTTP requests: uvicorn's httptools protocol with limits on time, size and connections.

uvicorn alone bounds none of the three (issue #15, items 14 and 15): a connection that never sends a request, or
sends its head a byte at a time, is kept forever (its keep-alive timer runs only after a response, and every
received byte stops it); llhttp reads a request line or header of any size into memory; and connections are
accepted until the process runs out of file descriptors, after which nothing, `/livez` included, is answered.
`LabelerHttpProtocol` adds:

- a head deadline: a connection must deliver a complete request head within `head_timeout` seconds of opening or
  of its previous response, however it trickles bytes; then it is answered 408 (or, if it sent nothing, closed);
- size limits, checked as the bytes arrive: a request target over `MAX_TARGET_BYTES` is answered 414 (a
  WebSocket upgrade's over `MAX_UPGRADE_TARGET_BYTES`, what the WebSocket handshake parser takes), a head over
  `MAX_HEAD_BYTES`, with more than `MAX_HEADERS` fields (or, for a WebSocket, a header line the handshake parser
  would refuse) 431, at once and without reading the rest;
- a connection cap: past `max_connections` open connections a new one is answered 503 with `Retry-After` and
  closed at once, so its file descriptor is released (`labeler.xrpc.server_options` keeps the cap below the
  process's descriptor limit);
- a body deadline: a request body must arrive within `body_timeout` seconds of its head, plus a second per MB its
  `Content-Length` declares (a 300 MB video over a 1 MB/s link fits), else 408 (or, if the response is already
  sent, the connection is closed); time when the server itself is not reading (a pipelined request waiting its
  turn, a handler that has not asked for the body yet, `Expect: 100-continue` not yet answered) does not count;
- a peer that stops reading a response is cut off (`WriteStallGuard`);
- a malformed request is answered in the XRPC error shape and logged at INFO (anyone can send one), and only after
  the responses to the requests pipelined before it, instead of in their place.
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import time
from typing import ClassVar, Final

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from websockets.http11 import MAX_LINE_LENGTH

from labeler.xrpc.write_stall import WriteStallGuard, peer_name

log = logging.getLogger(__name__)

#: Longest request target (path and query). 100 `uriPatterns` of queryLabels fit several times over.
MAX_TARGET_BYTES: Final = 16 * 1024
#: Longest target of a WebSocket upgrade: websockets refuses lines over 8,192 bytes, CRLF included.
MAX_UPGRADE_TARGET_BYTES: Final = MAX_LINE_LENGTH - len("GET  HTTP/1.1\r\n")
#: Largest request head: request line and header fields together.
MAX_HEAD_BYTES: Final = 32 * 1024
#: Most header fields in one request (websockets refuses more than 128).
MAX_HEADERS: Final = 100
#: Bytes a second of body deadline is added for, on top of `body_timeout`.
BODY_BYTES_PER_SECOND: Final = 1_000_000
#: Seconds a client refused for the connection cap is asked to wait.
RETRY_AFTER_S: Final = 1
#: The connection cap's refusals are logged at most this often (seconds): they come in floods.
_CAP_LOG_INTERVAL: Final = 60.0
_cap_logged_at = -_CAP_LOG_INTERVAL


class LabelerHttpProtocol(WriteStallGuard, HttpToolsProtocol):
    """uvicorn's httptools protocol with a head deadline, head size limits and a connection cap (module docstring).

    Configure it with `configured(...)`: uvicorn builds one instance per connection from the class."""

    head_timeout: ClassVar[float] = 10.0
    body_timeout: ClassVar[float] = 60.0
    max_connections: ClassVar[int] = 10_000

    # Per connection: the head being received (since the connection opened or the previous message ended).
    url: bytes = b""
    _awaiting_head = True
    _head_bytes = 0
    _head_timer: asyncio.TimerHandle | None = None
    _body_timer: asyncio.TimerHandle | None = None
    # A refusal waiting for the responses to earlier pipelined requests: (status, message).
    _refusal: tuple[int, str] | None = None

    @classmethod
    def configured(
        cls, *, head_timeout: float, body_timeout: float, max_connections: int, stall_timeout: float
    ) -> type[LabelerHttpProtocol]:
        """A subclass with these limits, for uvicorn's `http` option."""
        limits = {
            "head_timeout": head_timeout, "body_timeout": body_timeout, "max_connections": max_connections,
            "stall_timeout": stall_timeout,
        }  # fmt: skip
        return type(cls.__name__, (cls,), limits)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        if len(self.connections) > self.max_connections:
            _log_cap(self.max_connections)
            self._answer(503, f"more than {self.max_connections} open connections; try again later", retry=True)
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None or self.transport.is_closing():
            return  # refused: nothing more is read
        self._unset_keepalive_if_required()
        if self._awaiting_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            self._refuse(*(_HeadTooLarge.status_of(exc) or (400, "Invalid HTTP request.")))
            return
        if self._awaiting_head:
            if len(self.url) > MAX_TARGET_BYTES:
                self._refuse(414, f"the request target is over {MAX_TARGET_BYTES} bytes")
            elif self._head_bytes > MAX_HEAD_BYTES:
                self._refuse(431, f"the request head is over {MAX_HEAD_BYTES} bytes")

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._cancel_head_timer()
        refusal = self._oversized()
        if refusal is not None:
            raise _HeadTooLarge(*refusal)  # stops the parser; data_received answers it
        super().on_headers_complete()
        declared = self._declared_body()
        if declared is not None and not self.parser.should_upgrade():
            self._arm_body_timer(self.body_timeout + declared / BODY_BYTES_PER_SECOND)

    def on_message_complete(self) -> None:
        self._awaiting_head, self._head_bytes = True, 0
        self._cancel_body_timer()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._refusal is not None:
            if self.cycle.response_complete:  # the last request before the refused one is answered
                self._answer(*self._refusal)
        elif self.timeout_keep_alive_task is not None:  # idle, waiting for the next request
            self._arm_head_timer()

    def _oversized(self) -> tuple[int, str] | None:
        """The refusal of a complete head that is too large, if it is."""
        upgrade = self.parser.should_upgrade()
        target_limit = MAX_UPGRADE_TARGET_BYTES if upgrade else MAX_TARGET_BYTES
        if len(self.url) > target_limit:
            return 414, f"the request target is over {target_limit} bytes" + (" for a WebSocket" if upgrade else "")
        if len(self.headers) > MAX_HEADERS:
            return 431, f"more than {MAX_HEADERS} header fields"
        lines = [len(name) + len(value) + 4 for name, value in self.headers]  # "name: value\r\n"
        if len(self.url) + sum(lines) > MAX_HEAD_BYTES:
            return 431, f"the request head is over {MAX_HEAD_BYTES} bytes"
        if upgrade and max(lines, default=0) > MAX_LINE_LENGTH:
            return 431, f"a header line is over {MAX_LINE_LENGTH} bytes for a WebSocket"
        return None

    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` and close, after the responses to the requests before this one on the connection."""
        log.info("refused a request from %s: %d %s", peer_name(self.transport), status, message)
        self._cancel_head_timer()
        if self.cycle is None or self.cycle.response_complete:
            self._answer(status, message)
        else:
            self._refusal = (status, message)
            self.flow.pause_reading()

    def _answer(self, status: int, message: str, *, retry: bool = False) -> None:
        """Write a whole XRPC error response with `Connection: close` and close the connection."""
        if self.transport.is_closing():
            return
        error = "ServiceUnavailable" if status == 503 else "InvalidRequest"
        body = json.dumps({"error": error, "message": message}).encode()
        head = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}".encode()]
        head += [name + b": " + value for name, value in self.server_state.default_headers]
        head += [b"content-type: application/json", b"content-length: %d" % len(body), b"connection: close"]
        if retry:
            head.append(b"retry-after: %d" % RETRY_AFTER_S)
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.transport.close()

    def _declared_body(self) -> int | None:
        """The bytes of body the request head announces (0 for a chunked one: only the base time), None if none."""
        fields = dict(self.headers)
        if b"chunked" in fields.get(b"transfer-encoding", b"").lower():
            return 0
        try:
            length = int(fields.get(b"content-length", b"0"))
        except ValueError:
            return None  # llhttp refuses such a head before this is asked
        return length or None

    def _arm_body_timer(self, seconds: float) -> None:
        self._cancel_body_timer()
        self._body_timer = self.loop.call_later(seconds, self._body_timed_out)

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_timed_out(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if self.transport.is_closing() or cycle is None:
            return
        if self.flow.read_paused or cycle.waiting_for_100_continue:  # we are not reading: not the client's time
            self._arm_body_timer(self.body_timeout)
            return
        if cycle.response_started:  # answered already (a refusal before reading): stop taking the rest
            self.transport.close()
            return
        message = f"the request body did not arrive within {self.body_timeout:g} s (plus 1 s per MB)"
        log.info("refused a request from %s: 408 %s", peer_name(self.transport), message)
        self._answer(408, message)  # now, in place of the response its handler cannot give without the body

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._awaiting_head and self._head_bytes:
            self._refuse(408, f"the request head did not arrive within {self.head_timeout:g} s")
        else:  # never sent a request, or stopped after a response: uvicorn's keep-alive timeout, made absolute
            self.transport.close()


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop llhttp; httptools wraps it in HttpParserCallbackError."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message

    @staticmethod
    def status_of(exc: BaseException) -> tuple[int, str] | None:
        cause = exc.__context__
        return (cause.status, cause.message) if isinstance(cause, _HeadTooLarge) else None


def _log_cap(cap: int) -> None:
    global _cap_logged_at
    now = time.monotonic()
    if now - _cap_logged_at >= _CAP_LOG_INTERVAL:
        _cap_logged_at = now
        log.warning("%d connections are open (LABELER_MAX_CONNECTIONS): refusing new ones with 503", cap)
