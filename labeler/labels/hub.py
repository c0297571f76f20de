"""Live fan-out of committed labels to subscribeLabels connections (design.md invariant 4).

The hub keeps `head`, the last seq it has fanned out, and hands every subscriber every committed label in seq
order with no gap: a commit whose `previous_head` equals the hub's head is fanned out directly from the writer's
rows; anything else (a commit by another process, a missed notification) makes the hub catch up from the
database first. A periodic poll covers writers the hub is never told about. Each frame is encoded once.

A subscriber has a bounded buffer; one that falls further behind is marked too slow and its connection is closed
with `ConsumerTooSlow`, so memory never grows without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence

from labeler.labels.resign import Resigner
from labeler.protocol.frames import labels_frame
from labeler.store.labels import CommitResult, LabelStore, StoredLabel

log = logging.getLogger(__name__)


def encode_frame(row: StoredLabel) -> bytes:
    return labels_frame(row.seq, [row.label.to_cbor()])


class Subscriber:
    """One connection's queue of (seq, frame). `wait()` wakes the sender when there is something to do."""

    __slots__ = ("_event", "frames", "limit", "too_slow")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.frames: deque[tuple[int, bytes]] = deque()
        self.too_slow = False
        self._event = asyncio.Event()

    def offer(self, seq: int, frame: bytes) -> None:
        if self.too_slow:
            return
        if len(self.frames) >= self.limit:
            self.too_slow = True
            self.frames.clear()
        else:
            self.frames.append((seq, frame))
        self._event.set()

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
    ) -> None:
        self.store = store
        self.resigner = resigner
        self.buffer_size = buffer_size
        self.page_size = page_size
        self.poll_interval = poll_interval
        self.head = 0
        self.subscribers: set[Subscriber] = set()
        # Open subscribeLabels connections, including those still backfilling (not yet in `subscribers`): the
        # max_subscribers limit counts these, or a crowd of backfilling clients would bypass it.
        self.connections = 0
        self._inbox: deque[CommitResult | None] = deque()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.head = await self.store.head()
        self._tasks = [
            asyncio.create_task(self._pump(), name="stream-hub"),
            asyncio.create_task(self._poll(), name="stream-hub-poll"),
        ]

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def subscribe(self) -> Subscriber:
        sub = Subscriber(self.buffer_size)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def publish(self, result: CommitResult) -> None:
        """Called by the writer right after a commit; never blocks."""
        self._inbox.append(result)
        self._wake.set()

    def nudge(self) -> None:
        """Something may have been committed elsewhere (a NOTIFY, a poll): catch up from the database."""
        self._inbox.append(None)
        self._wake.set()

    async def _pump(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._inbox:
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
        while True:
            rows = await self.store.after(self.head, self.page_size)
            if not rows:
                return
            self._fan_out(await self.resigner.current(rows))
            if len(rows) < self.page_size:
                return

    def _fan_out(self, rows: Sequence[StoredLabel]) -> None:
        for row in rows:
            if row.seq <= self.head:
                continue
            frame = encode_frame(row)
            for sub in self.subscribers:
                sub.offer(row.seq, frame)
            self.head = row.seq

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                if await self.store.head() > self.head:
                    self.nudge()
            except Exception:
                log.exception("stream hub poll failed")
