"""How subscribeLabels puts frames on the wire: many frames per transport write, and live frames without a task switch.

Through plain ASGI every WebSocket message is one awaited `send()`: a task switch, the websockets state machine and
a transport write (a syscall) per frame per subscriber. That made a 200k-label backfill and a 1,000-subscriber
fan-out cost ~20 µs per frame per connection. `LabelerWebSocketProtocol` is uvicorn's sans-I/O WebSocket protocol
with one addition, the ASGI scope extension `labeler.frames`: a `TransportFrameSink` through which the stream
writes any number of already-encoded binary messages in one transport write, and through which the hub's fan-out
writes a live commit's frames straight to the socket while nothing waits in the transport's buffer (from the fan-out
threads, `labeler.labels.fanout`). Under any other ASGI server the stream falls back to `AsgiFrameSink`: the same
interface over ordinary `websocket.send` messages.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

from labeler.protocol.frames import binary_frames
from labeler.xrpc.write_stall import WriteStallGuard, reset

if TYPE_CHECKING:
    from starlette.websockets import WebSocket
    from websockets.http11 import Request

    from labeler.labels.hub import DirectTarget

EXTENSION: Final = "labeler.frames"


class FrameSink(Protocol):
    """Where a subscribeLabels connection's frames go."""

    def direct(self) -> DirectTarget | None:
        """For an open connection: its socket, for the hub's fan-out to write live frames to directly; None if this
        sink has no such path, so the hub always queues."""
        ...

    async def send(self, frames: Sequence[bytes]) -> None:
        """Write `frames` in order, waiting first while the client is behind. Raises ConnectionError if gone."""
        ...

    def abort(self) -> None:
        """Drop the connection at once, with whatever it still has buffered: for a client that takes nothing."""
        ...


class TransportFrameSink:
    """Frames onto a `LabelerWebSocketProtocol`'s connection, between the protocol's own writes.

    Whole frames only, through the transport on the event loop, or straight to the socket while the hub's fan-out
    holds the loop (`labeler.labels.fanout`) and only when nothing waits in the transport's buffer; so they never
    interleave with the protocol's pings or close frame, and nothing is written once the connection is closing.
    The transport's high-water mark (uvicorn's `writable` event) is the flow control: `send` waits for it, and a
    paused transport has bytes buffered, which turns the direct path away."""

    __slots__ = ("_fd", "_protocol", "_transport")

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol
        self._transport = protocol.transport
        # The socket's fd while live frames may be written straight to it: set by `direct()`, and -1 for good once
        # the protocol sends a close frame (`close_frame_sent`), so that the check made for every live subscriber
        # on every commit reads no protocol state (1,000 subscribers, 2 vCPUs: reading `close_sent` there cost
        # ~0.5 ms a commit, its cache misses after an idle moment).
        self._fd = -1

    def close_frame_sent(self) -> None:
        """Nothing may follow a close frame on the wire."""
        self._fd = -1

    def _open(self) -> bool:
        protocol = self._protocol
        return (
            not (protocol.close_sent or protocol.disconnected or self._transport.is_closing())
            and protocol.conn.state is State.OPEN
        )

    def direct(self) -> TransportFrameSink | None:
        protocol, transport = self._protocol, self._transport
        # A negotiated extension (deflate) transforms frames, and TLS the bytes: then only `send` may write.
        if protocol.conn.extensions or transport.get_extra_info("ssl_object") is not None:
            return None
        sock = transport.get_extra_info("socket")
        if sock is None:
            return None
        if not protocol.close_sent:
            self._fd = sock.fileno()
        return self

    def writable_fd(self) -> int:
        """The socket's fd only when nothing is in the transport's buffer (bytes written past it would overtake them,
        perhaps mid-frame; a paused transport has some), no close frame was sent (then `_fd` is -1) and the
        transport is not closing: receiving a close frame or losing the connection closes it, and so does every
        other way the WebSocket leaves the OPEN state."""
        transport = self._transport
        if transport.is_closing() or transport.get_write_buffer_size():
            return -1
        return self._fd

    def abort(self) -> None:
        reset(self._transport)

    def write_rest(self, data: bytes) -> None:
        """What the socket did not take of a direct write, queued in the transport (so it goes out first)."""
        with contextlib.suppress(OSError, RuntimeError):  # a transport closed under us: its sender finds out
            self._transport.write(data)

    async def send(self, frames: Sequence[bytes]) -> None:
        protocol = self._protocol
        await protocol.writable.wait()
        if not self._open():
            raise ConnectionResetError("the subscriber's connection is closed")
        if protocol.conn.extensions:  # a negotiated extension (deflate) transforms frames: let websockets build them
            for frame in frames:
                protocol.conn.send_binary(frame)
            self._transport.write(b"".join(protocol.conn.data_to_send()))
        else:
            self._transport.write(binary_frames(frames))


class AsgiFrameSink:
    """The same interface over plain ASGI messages, for ASGI servers without the `labeler.frames` extension."""

    __slots__ = ("_websocket",)

    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket

    def direct(self) -> None:
        return None

    def abort(self) -> None:
        """Plain ASGI has no way to drop a connection; the server's own timeouts end it."""

    async def send(self, frames: Sequence[bytes]) -> None:
        send = self._websocket.send_bytes
        for frame in frames:
            await send(frame)


def frame_sink(websocket: WebSocket) -> FrameSink:
    sink = websocket.scope.get("extensions", {}).get(EXTENSION)
    return sink if sink is not None else AsgiFrameSink(websocket)


class LabelerWebSocketProtocol(WriteStallGuard, WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, offering a `TransportFrameSink` as the scope extension `labeler.frames`.

    The scope is built in `handle_connect` (unless the handshake is refused), and the ASGI task it schedules reads
    it only once it runs, after this method returns. uvicorn sets `close_sent` wherever it sends a close frame;
    here that also tells the sink. A peer that stops reading is cut off (`WriteStallGuard`), and once the app is
    done the connection is gone within the closing handshake's timeout even if the peer never reads its close."""

    frame_sink: TransportFrameSink | None = None

    @classmethod
    def configured(cls, *, stall_timeout: float) -> type[LabelerWebSocketProtocol]:
        """A subclass with these limits, for uvicorn's `ws` option (uvicorn builds protocols from a class)."""
        return type(cls.__name__, (cls,), {"stall_timeout": stall_timeout})

    @property
    def close_sent(self) -> bool:
        return self._close_sent

    @close_sent.setter
    def close_sent(self, sent: bool) -> None:
        self._close_sent = sent
        if sent and self.frame_sink is not None:
            self.frame_sink.close_frame_sent()

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)
        if scope is not None:
            self.frame_sink = TransportFrameSink(self)
            scope["extensions"][EXTENSION] = self.frame_sink

    def on_task_complete(self, task: asyncio.Task[None]) -> None:
        super().on_task_complete(task)
        # The app is done: uvicorn has closed the transport, or waits `close_timeout` for the peer's close frame.
        self.abort_unless_closed_within(self.close_timeout + CLOSE_LINGER)


#: Seconds after the closing handshake's own timeout that a finished connection may still hold its socket.
CLOSE_LINGER: Final = 2.0
