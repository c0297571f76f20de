"""How subscribeLabels puts frames on the wire: many frames per transport write, and live frames without a task switch.

Through plain ASGI every WebSocket message is one awaited `send()`: a task switch, the websockets state machine and
a transport write (a syscall) per frame per subscriber. That made a 200k-label backfill and a 1,000-subscriber
fan-out cost ~20 µs per frame per connection. `LabelerWebSocketProtocol` is uvicorn's sans-I/O WebSocket protocol
with one addition, the ASGI scope extension `labeler.frames`: a `TransportFrameSink` through which the stream
writes any number of already-encoded binary messages in one transport write, or a live commit's frames
synchronously from the hub's fan-out while the transport's buffer has room. Under any other ASGI server the
stream falls back to `AsgiFrameSink`: the same interface over ordinary `websocket.send` messages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

from labeler.protocol.frames import binary_frames

if TYPE_CHECKING:
    from starlette.websockets import WebSocket
    from websockets.http11 import Request

EXTENSION: Final = "labeler.frames"


class FrameSink(Protocol):
    """Where a subscribeLabels connection's frames go."""

    def direct_writer(self) -> Callable[[bytes], bool] | None:
        """For an open connection: a function that writes WebSocket frames (`binary_frames`) now if the connection
        can take them without waiting, and returns False (queue them) otherwise; None if this sink has no such
        path, so the hub always queues."""
        ...

    async def send(self, frames: Sequence[bytes]) -> None:
        """Write `frames` in order, waiting first while the client is behind. Raises ConnectionError if gone."""
        ...


class TransportFrameSink:
    """Frames straight onto a `LabelerWebSocketProtocol`'s transport, between the protocol's own writes.

    Only whole frames are written, on the event loop, so they never interleave with the protocol's pings or close
    frame; nothing is written once the connection is closing. The transport's high-water mark (uvicorn's
    `writable` event) is the flow control: the direct writer refuses while it is paused, `send` waits for it."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol

    def _open(self) -> bool:
        protocol = self._protocol
        return (
            not (protocol.close_sent or protocol.disconnected or protocol.transport.is_closing())
            and protocol.conn.state is State.OPEN
        )

    def direct_writer(self) -> Callable[[bytes], bool] | None:
        # A negotiated extension (deflate) transforms frames: then only `send` may build them.
        return None if self._protocol.conn.extensions else self._try_write

    def _try_write(self, wire: bytes) -> bool:
        """Called from the hub's fan-out, i.e. from the label writer's commit path, once per subscriber per commit:
        it must never raise, so a connection in any odd state just refuses, and its own sender finds out why."""
        protocol = self._protocol
        if not protocol.writable.is_set() or not self._open():
            return False
        try:
            protocol.transport.write(wire)
        except (OSError, RuntimeError):  # a transport closed under us (uvloop raises rather than drops)
            return False
        return True

    async def send(self, frames: Sequence[bytes]) -> None:
        protocol = self._protocol
        await protocol.writable.wait()
        if not self._open():
            raise ConnectionResetError("the subscriber's connection is closed")
        if protocol.conn.extensions:  # a negotiated extension (deflate) transforms frames: let websockets build them
            for frame in frames:
                protocol.conn.send_binary(frame)
            protocol.transport.write(b"".join(protocol.conn.data_to_send()))
        else:
            protocol.transport.write(binary_frames(frames))


class AsgiFrameSink:
    """The same interface over plain ASGI messages, for ASGI servers without the `labeler.frames` extension."""

    __slots__ = ("_websocket",)

    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket

    def direct_writer(self) -> None:
        return None

    async def send(self, frames: Sequence[bytes]) -> None:
        send = self._websocket.send_bytes
        for frame in frames:
            await send(frame)


def frame_sink(websocket: WebSocket) -> FrameSink:
    sink = websocket.scope.get("extensions", {}).get(EXTENSION)
    return sink if sink is not None else AsgiFrameSink(websocket)


class LabelerWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, offering a `TransportFrameSink` as the scope extension `labeler.frames`.

    The scope is built in `handle_connect` (unless the handshake is refused), and the ASGI task it schedules reads
    it only once it runs, after this method returns."""

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][EXTENSION] = TransportFrameSink(self)


# What `labeler serve` (and the tests and benchmarks, which serve the app the same way) give uvicorn for WebSockets.
UVICORN_WEBSOCKET_OPTIONS: Final[dict[str, Any]] = {
    "ws": LabelerWebSocketProtocol,
    "ws_max_size": 64 * 1024,
    "ws_ping_interval": 20,
    "ws_ping_timeout": 60,
    # Frames are encoded once and shared by every subscriber; per-message deflate would compress each frame again
    # for each subscriber that negotiates it, so it is off (clients fall back to plain frames).
    "ws_per_message_deflate": False,
}
