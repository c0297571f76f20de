"""Live fan-out of committed labels to subscribeLabels connections (design.md invariant 4).

The hub keeps `head`, the last seq it has fanned out, and hands every subscriber every committed label in seq
order with no gap: a commit whose `previous_head` equals the hub's head is fanned out directly from the writer's
rows; anything else (a commit by another process, a missed notification) makes the hub catch up from the
database first. Other processes' commits arrive as PostgreSQL notifications (`labeler.store.notify`); a periodic
poll covers writers the hub is never told about. Each frame is encoded once, and not at all while nobody listens.
A live subscriber whose socket can take a commit at once gets it written there directly, from the event loop's
thread and the fan-out's helper threads (`labeler.labels.fanout`); any other gets it queued for its sender task.

A subscriber has a bounded buffer; one that falls further behind is marked too slow and its connection is closed
with `ConsumerTooSlow`, so memory never grows without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

from labeler.labels.fanout import FanOutThreads, default_threads
from labeler.labels.resign import Resigner
from labeler.labels.slots import SubscriberSlots
from labeler.protocol.frames import binary_frames, label_frame
from labeler.protocol.label import LABEL_VER, cbor_parts
from labeler.store.labels import CommitResult, LabelStore, StoredLabel
from labeler.store.notify import CommitListener

log = logging.getLogger(__name__)

CLOSE_TIMEOUT: Final = 5.0


def encode_frame(row: StoredLabel) -> bytes:
    return label_frame(row.seq, row.label.cbor_parts())


def encode_row_frame(row: Any) -> bytes:
    """`encode_frame` for a plain row of the store (`LabelStore.query_rows`), without building a Label first."""
    seq, src, uri, cid, val, neg, cts, exp, sig, _key_id = row
    return label_frame(seq, cbor_parts(src, uri, val, cts, cid or None, bool(neg), exp, bytes(sig), LABEL_VER))


class FrameBatch:
    """The frames of one commit (or catch-up page), shared by every subscriber: each encoded once, and the whole
    batch framed for the wire once, so a live subscriber costs one write per commit, not one per label."""

    __slots__ = ("frames", "wire")

    def __init__(self, frames: list[tuple[int, bytes]]) -> None:
        self.frames = frames
        self.wire = binary_frames([frame for _seq, frame in frames])


class DirectTarget(Protocol):
    """A live connection's socket, as the hub's fan-out writes to it (`TransportFrameSink` is the one there is)."""

    def writable_fd(self) -> int:
        """The socket's file descriptor if WebSocket frames may be written straight to it now, or -1 if not
        (something is buffered ahead, the connection is closing). Called on the event loop just before the fan-out's
        threads write (`labeler.labels.fanout`), which then only write."""
        ...

    def write_rest(self, data: bytes) -> None:
        """On the event loop, after a direct write the socket took only part of: the rest, through the transport."""
        ...


class Subscriber:
    """One connection's queue of (seq, frame). `wait()` wakes the sender when there is something to do.

    Once the connection is live and has flushed its queue it sets `direct` (its sink's socket, if it has one):
    while the queue is empty the hub's fan-out then writes each batch straight to the socket, with no task switch
    per subscriber; a batch the socket cannot take at once, and everything after it until the sender has flushed,
    is queued instead, so frames stay in seq order. The sender clears `direct` while it flushes.

    `busy_since` is when the sender started flushing, 0.0 while idle; the hub's poll calls `on_stall` for a
    subscriber busy for longer than `stall_after`. Cheaper than a timer per wake-up on each of a thousand
    connections."""

    __slots__ = ("_event", "busy_since", "direct", "frames", "last_sent", "limit", "on_stall", "too_slow")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.frames: deque[tuple[int, bytes]] = deque()
        self.too_slow = False
        self.busy_since = 0.0
        self.last_sent = 0
        self.direct: DirectTarget | None = None
        self.on_stall: Callable[[], None] | None = None
        self._event = asyncio.Event()

    def direct_fd(self, first_seq: int) -> int:
        """Where a batch starting at `first_seq` may be written straight to the socket: its fd, or -1 if the batch
        is to be queued. Straight through only when nothing is queued and the whole batch is new (at cutover it may
        overlap what the connection's own catch-up sent: the queue path drops those)."""
        direct = self.direct
        if direct is None or self.frames or first_seq <= self.last_sent:
            return -1
        return direct.writable_fd()

    def after_fan_out(self, batch: FrameBatch, sent: int) -> None:
        """On the event loop, once the fan-out wrote `sent` bytes of `batch` to the socket (-1: none, or not tried)."""
        if sent < 0 or self.direct is None:
            self.queue(batch)
            return
        wire = batch.wire
        if sent < len(wire):
            self.direct.write_rest(wire[sent:])
        self.last_sent = batch.frames[-1][0]

    def queue(self, batch: FrameBatch) -> None:
        if self.too_slow:
            return
        if len(self.frames) + len(batch.frames) > self.limit:
            self.too_slow = True
            self.frames.clear()
        else:
            self.frames.extend(batch.frames)
        self._event.set()

    def take(self) -> list[bytes]:
        """The queued frames not yet sent, in seq order, marking them sent."""
        out = []
        last_sent = self.last_sent
        for seq, frame in self.frames:
            if seq > last_sent:
                out.append(frame)
                last_sent = seq
        self.frames.clear()
        self.last_sent = last_sent
        return out

    async def wait(self) -> None:
        await self._event.wait()
        self._event.clear()


class StreamHub:
    def __init__(
        self,
        store: LabelStore,
        resigner: Resigner,
        *,
        buffer_size: int = 2000,
        page_size: int = 500,
        poll_interval: float = 1.0,
        listen: bool = True,
        stall_after: float = 30.0,
        fan_out_threads: int = 0,
        max_subscribers: int = 5000,
        max_subscribers_per_client: int = 20,
    ) -> None:
        self.store = store
        self.resigner = resigner
        self.buffer_size = buffer_size
        self.page_size = page_size
        self.poll_interval = poll_interval
        self.stall_after = stall_after
        self.head = 0
        self.subscribers: set[Subscriber] = set()
        self._fan_out_threads = FanOutThreads(fan_out_threads or default_threads())
        # Open subscribeLabels connections, including those still backfilling (not yet in `subscribers`): the
        # caps count these, or a crowd of backfilling clients would bypass them.
        self.slots = SubscriberSlots(max_subscribers, max_subscribers_per_client)
        self._inbox: deque[CommitResult | None] = deque()
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._pumping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._listener: CommitListener | None = (
            CommitListener(store.engine, store.notify_token, self.nudge) if listen and store.notifies else None
        )

    async def start(self) -> None:
        self.head = await self.store.head()
        self._tasks = [
            asyncio.create_task(self._pump(), name="stream-hub"),
            asyncio.create_task(self._poll(), name="stream-hub-poll"),
        ]
        if self._listener is not None:
            self._listener.start()

    async def aclose(self) -> None:
        """Stop between queries rather than cancel inside one: a task cancelled while the pool is opening a
        connection can leak that connection."""
        if self._listener is not None:
            await self._listener.aclose()
        self._closing.set()
        self._wake.set()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=CLOSE_TIMEOUT)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._tasks = []
        self._fan_out_threads.close()

    def subscribe(self) -> Subscriber:
        sub = Subscriber(self.buffer_size)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def publish(self, result: CommitResult) -> None:
        """Called by the writer right after a commit; never blocks. The common case (the hub is idle and this
        commit follows its head) is fanned out right here, saving a task switch on every label's path."""
        if not self._pumping and not self._inbox and result.previous_head == self.head:
            self._fan_out(result.stored)
            return
        self._inbox.append(result)
        self._wake.set()

    def nudge(self, seq: int | None = None) -> None:
        """Something may have been committed elsewhere (a NOTIFY up to `seq`, a poll): catch up from the database.
        Nudges coalesce: one pending catch-up covers any number of them."""
        if seq is not None and seq <= self.head:
            return
        if not self._inbox or self._inbox[-1] is not None:
            self._inbox.append(None)
        self._wake.set()

    async def _pump(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._closing.is_set():
                return
            self._pumping = True
            try:
                await self._drain_inbox()
            finally:
                self._pumping = False

    async def _drain_inbox(self) -> None:
        while self._inbox and not self._closing.is_set():
            # Our own commits first, then any nudge: a poll can notice a commit before the writer hands it
            # over, and a catch-up reads current state only, so running it first would drop the events of
            # labels that a later commit superseded (a create followed by its negation).
            items = list(self._inbox)
            self._inbox.clear()
            nudged = False
            try:
                for item in items:
                    if item is None:
                        nudged = True
                    elif item.previous_head == self.head:
                        self._fan_out(item.stored)
                    elif item.stored and item.stored[-1].seq > self.head:
                        await self._catch_up()
                if nudged:
                    await self._catch_up()
            except Exception:
                log.exception("stream hub could not deliver; will retry on the next poll")

    async def _catch_up(self) -> None:
        while not self._closing.is_set():
            rows = await self.store.after(self.head, self.page_size)
            if not rows:
                return
            if self.subscribers:
                self._fan_out(await self.resigner.current(rows))
            else:
                # Nobody to send to: no re-signing or encoding, only the head moves. A connection that
                # registers later runs its own catch-up query after registering, so it misses nothing.
                self.head = max(self.head, rows[-1].seq)
            if len(rows) < self.page_size:
                return

    def _fan_out(self, rows: Sequence[StoredLabel]) -> None:
        """Hand rows (in seq order) above the head to every subscriber as one batch."""
        head = self.head
        new = [row for row in rows if row.seq > head]
        if not new:
            return
        self.head = new[-1].seq
        if not self.subscribers:
            return
        batch = FrameBatch([(row.seq, encode_frame(row)) for row in new])
        subscribers = list(self.subscribers)
        first = new[0].seq
        fds = [sub.direct_fd(first) for sub in subscribers]  # decided here on the loop; the threads only write
        written = iter(self._fan_out_threads.write(batch.wire, [fd for fd in fds if fd >= 0]))
        for sub, fd in zip(subscribers, fds, strict=True):
            sub.after_fan_out(batch, next(written) if fd >= 0 else -1)

    async def _poll(self) -> None:
        """Fallback for commits nobody told us about. A head the database already had one poll ago and the hub has
        still not reached means a missed commit; a newer one is most likely a local commit about to be published
        (catching up ahead of it would drop superseded events from the live stream), so it waits one interval."""
        seen = 0
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._closing.wait()
            if self._closing.is_set():
                return
            self._check_stalls()
            try:
                if seen > self.head:
                    self.nudge()
                seen = await self.store.head()
            except Exception:
                log.exception("stream hub poll failed")

    def _check_stalls(self) -> None:
        too_old = asyncio.get_running_loop().time() - self.stall_after
        for sub in list(self.subscribers):
            if 0.0 < sub.busy_since < too_old and sub.on_stall is not None:
                sub.on_stall()
