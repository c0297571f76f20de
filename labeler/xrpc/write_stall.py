"""Cut off a peer that stops reading, so its connection (socket, buffers, task) is released within seconds.

asyncio buffers what a socket cannot take yet and calls `pause_writing` once the buffer passes its high-water mark.
A peer that never reads again keeps that buffer, and the connection, forever: uvicorn's HTTP sender waits in
`drain`, the WebSocket sender on `writable`, and `transport.close()` itself waits for the buffer to empty before it
closes the socket. `WriteStallGuard`, mixed into the HTTP and WebSocket protocols, arms one timer while writing is
paused: when it fires and the buffer has not shrunk since it was armed, the connection is reset (the socket closes
at once and every buffer is dropped); a buffer that shrank is progress, and the timer is armed again. A peer that
reads slowly but steadily is never cut off. No timer exists while writing is not paused, the normal state.

`abort_unless_closed_within` covers the one way to hold a connection without pausing writes: a close that waits on
a small buffer the peer never reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from typing import Any, ClassVar

log = logging.getLogger(__name__)

#: Seconds a peer may take none of our bytes while writing is paused (`LABELER_CLIENT_STALL_TIMEOUT`).
DEFAULT_STALL_TIMEOUT = 10.0


class WriteStallGuard(asyncio.Protocol):
    """Mixin for an asyncio protocol that has `transport` and `loop` attributes (both uvicorn protocols do)."""

    stall_timeout: ClassVar[float] = DEFAULT_STALL_TIMEOUT
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    _stall_timer: asyncio.TimerHandle | None = None
    _stall_buffered = 0
    _lost = False

    def pause_writing(self) -> None:
        super().pause_writing()
        self._arm_stall_timer()

    def resume_writing(self) -> None:
        self._cancel_stall_timer()
        super().resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._cancel_stall_timer()
        super().connection_lost(exc)

    def abort_unless_closed_within(self, seconds: float) -> None:
        """Abort the connection if it is still open `seconds` from now (a close waiting on an unread buffer)."""
        if not self._lost:
            self.loop.call_later(seconds, self._abort_if_open, "did not close")

    def _arm_stall_timer(self) -> None:
        self._cancel_stall_timer()
        self._stall_buffered = self.transport.get_write_buffer_size()
        self._stall_timer = self.loop.call_later(self.stall_timeout, self._stall_check)

    def _cancel_stall_timer(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _stall_check(self) -> None:
        self._stall_timer = None
        if self._lost:
            return
        if self.transport.get_write_buffer_size() < self._stall_buffered:
            self._arm_stall_timer()  # the peer read something: slow, not stalled
            return
        self._abort_if_open(f"took no data for {self.stall_timeout:g} s")

    def _abort_if_open(self, why: str) -> None:
        if self._lost:
            return
        log.info("resetting the connection of %s: it %s", peer_name(self.transport), why)
        reset(self.transport)


def reset(transport: asyncio.WriteTransport) -> None:
    """Close the connection at once with a TCP reset: our process drops its buffer and fd now, and the kernel drops
    what it still held for a peer that is not reading (a plain close would keep sending it, with no deadline)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def peer_name(transport: asyncio.BaseTransport) -> str:
    peer: Any = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "a client"
