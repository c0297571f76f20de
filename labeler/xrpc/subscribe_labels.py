"""`com.atproto.label.subscribeLabels` over WebSocket (protocol.md §3; design.md invariant 4).

No cursor → live from the head as it was before the handshake; `cursor=N` → every current label with seq > N,
then live; N beyond the head → `FutureCursor` error frame and close. Backfill hands over to live without gap or
duplicate: the connection registers with the hub only after backfill has caught up, runs one more catch-up query
after registering, and drops any live frame at or below the last seq it sent. Client frames are ignored, but a
client that floods frames is disconnected.

Connections are capped in total (`LABELER_MAX_SUBSCRIBERS`) and per client network
(`LABELER_MAX_SUBSCRIBERS_PER_CLIENT`, `labeler.labels.slots`); a refused handshake is answered 503 (or 429) with
Retry-After. A client that stops reading is dropped by the connection's stall check (`labeler.xrpc.write_stall`),
and one that does not take its error frame and close within CLOSE_GRACE is dropped too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from labeler.labels.hub import Subscriber, encode_row_frame
from labeler.protocol.errors import ConsumerTooSlow, FutureCursor, InvalidRequest, RetryLater, XrpcError
from labeler.protocol.frames import error_frame
from labeler.service import Labeler
from labeler.xrpc.clients import client_key
from labeler.xrpc.errors import error_response
from labeler.xrpc.params import get_int
from labeler.xrpc.websocket import FrameSink, frame_sink

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008
MAX_CLIENT_FRAMES_PER_SECOND = 20
# A subscriber that cannot take a backfill page, or what queued up for it live, within this long is too slow. Under
# uvicorn a client that takes nothing at all is cut off sooner, by the connection's own stall check
# (`LABELER_CLIENT_STALL_TIMEOUT`, labeler.xrpc.write_stall); this bounds a slow one on any ASGI server.
SEND_TIMEOUT = 30.0
# Seconds an error frame and the close after it may take to leave before the connection is dropped instead.
CLOSE_GRACE = 5.0


async def subscribe_labels(ws: WebSocket) -> None:
    labeler: Labeler = ws.app.state.labeler
    hub = labeler.hub
    assert hub is not None
    # "Live" starts here, before the handshake: a label committed once the client holds its 101 has a higher seq,
    # so it cannot fall between the handshake and the hub registration.
    live_from = hub.head
    # The slot is held until the connection is closed, error frame and close included, not only while streaming.
    with contextlib.ExitStack() as slot:
        try:
            # Counted before the first await: simultaneous handshakes cannot all pass the caps.
            slot.enter_context(hub.slots.hold(client_key(ws)))
        except RetryLater as exc:
            await _refuse(ws, exc)
            return
        await ws.accept()
        try:
            try:
                cursor = get_int(ws.query_params, "cursor", default=None, minimum=0, maximum=2**53)
            except InvalidRequest as exc:
                raise InvalidRequest(f"invalid cursor: {exc.message}") from None
            if cursor is not None and cursor > max(hub.head, await labeler.store.head()):
                raise FutureCursor("Cursor in the future.")
            await _serve(ws, labeler, live_from if cursor is None else cursor)
        except XrpcError as exc:
            await _close_with_error(ws, exc)
        except (WebSocketDisconnect, ConnectionError, RuntimeError):
            pass  # the client went away
        except Exception:
            log.exception("subscribeLabels connection failed")
            await _close_with_error(ws, XrpcError("internal error"))


async def _serve(ws: WebSocket, labeler: Labeler, cursor: int) -> None:
    """Stream until the stream ends or fails, or the client leaves or floods us."""
    stream = asyncio.create_task(_stream(ws, labeler, cursor))
    watchdog = asyncio.create_task(_drain_client(ws))
    try:
        await asyncio.wait((stream, watchdog), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watchdog.cancel()
        stream.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stream
    if stream.done() and not stream.cancelled() and stream.exception() is not None:
        raise stream.exception()  # type: ignore[misc]


async def _stream(ws: WebSocket, labeler: Labeler, cursor: int) -> None:
    """Backfill, register, catch up once more, then forward live frames; a client that cannot take a backfill
    page (or, live, what queued up for it) within SEND_TIMEOUT is too slow. One deadline, re-armed per page, rather
    than a timer task per write (`wait_for`); live, the hub's poll watches `busy_since` and expires the deadline
    (no timer per wake-up on each of many connections)."""
    try:
        async with asyncio.timeout(None) as deadline:
            await _stream_within(ws, labeler, cursor, deadline)
    except TimeoutError:
        raise ConsumerTooSlow("subscriber stopped reading") from None


async def _stream_within(ws: WebSocket, labeler: Labeler, cursor: int, deadline: asyncio.Timeout) -> None:
    hub = labeler.hub
    assert hub is not None
    loop = asyncio.get_running_loop()
    page = labeler.settings.backfill_page_size
    store = labeler.store
    sink = frame_sink(ws)
    last_sent = cursor
    sub: Subscriber | None = None
    prefetch: asyncio.Task[list[Any]] | None = None
    try:
        # Backfill until a short page says we are at the head; the next page is read while this one is sent.
        rows = await store.after_rows(last_sent, page)
        while True:
            if len(rows) == page:
                prefetch = asyncio.create_task(store.after_rows(rows[-1][0], page))
            deadline.reschedule(loop.time() + SEND_TIMEOUT)
            last_sent = await _send_rows(sink, labeler, rows, last_sent)
            deadline.reschedule(None)
            if prefetch is None:
                break
            rows, prefetch = await prefetch, None
        # Register, then catch up once more: a commit between the last page and registering is in this query, one
        # after registering is in both (the live copy is dropped below: seq <= last_sent).
        sub = hub.subscribe()
        sub.on_stall = lambda: deadline.reschedule(loop.time())  # the hub's poll found the live sender stuck
        while True:
            rows = await store.after_rows(last_sent, page)
            deadline.reschedule(loop.time() + SEND_TIMEOUT)
            last_sent = await _send_rows(sink, labeler, rows, last_sent)
            deadline.reschedule(None)
            if len(rows) < page:
                break
        sub.last_sent = last_sent
        direct = sink.direct()
        while True:
            # Flush what queued up (the hub queues while `direct` is None), then let the hub write live frames
            # straight to the connection until one has to wait again.
            sub.direct = None
            while sub.frames:
                sub.busy_since = loop.time()
                await sink.send(sub.take())
            sub.busy_since = 0.0
            if sub.too_slow:
                raise ConsumerTooSlow("subscriber fell too far behind")
            sub.direct = direct
            await sub.wait()
    finally:
        if prefetch is not None:
            prefetch.cancel()
            if prefetch.done() and not prefetch.cancelled():
                prefetch.exception()  # retrieved: the error that ended the stream is the one reported
        if sub is not None:
            hub.unsubscribe(sub)


async def _send_rows(sink: FrameSink, labeler: Labeler, rows: list[Any], last_sent: int) -> int:
    """A page of store rows as one write; returns the last seq sent."""
    frames = []
    for row in await labeler.resigner.current_rows(rows):
        if row[0] > last_sent:
            frames.append(encode_row_frame(row))
            last_sent = row[0]
    if frames:
        await sink.send(frames)
    return last_sent


async def _drain_client(ws: WebSocket) -> None:
    """Read and discard client frames (the protocol has none); close a client that floods us."""
    window_start, count = time.monotonic(), 0
    with contextlib.suppress(Exception):
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            now = time.monotonic()
            if now - window_start > 1.0:
                window_start, count = now, 0
            count += 1
            if count > MAX_CLIENT_FRAMES_PER_SECOND:
                await ws.close(code=POLICY_VIOLATION, reason="too many client frames")
                return


async def _refuse(ws: WebSocket, exc: RetryLater) -> None:
    """Overload: the handshake is answered with the HTTP status (503, or 429 for one client's share), the XRPC
    error body and Retry-After, which a client can act on (protocol.md §3.1 lists 429 and 5xx among the stream's
    HTTP-level failures). An ASGI server without the denial-response extension gets the error frame instead."""
    if "websocket.http.response" not in ws.scope.get("extensions", {}):
        await ws.accept()
        await _close_with_error(ws, exc)
        return
    with contextlib.suppress(Exception):  # the client went away meanwhile
        await ws.send_denial_response(error_response(exc))


async def _close_with_error(ws: WebSocket, exc: XrpcError) -> None:
    """The error frame and a 1008 close; a client that does not take them within CLOSE_GRACE is dropped instead,
    so a connection that reads nothing is released at once rather than held for the closing handshake."""
    if ws.application_state != WebSocketState.CONNECTED or ws.client_state != WebSocketState.CONNECTED:
        return
    try:
        async with asyncio.timeout(CLOSE_GRACE):
            await ws.send_bytes(error_frame(exc.name, exc.message or None))
            await ws.close(code=POLICY_VIOLATION, reason=exc.name)
    except TimeoutError:
        frame_sink(ws).abort()
    except Exception:
        pass  # the client went away meanwhile
