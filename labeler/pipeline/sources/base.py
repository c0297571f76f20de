"""What every stream source shares: the reconnect loop with backoff, and batched, durable job + cursor writes.

A source reads events in order and hands each one's jobs and cursor to `emit`. Jobs are enqueued in batches
and the cursor is saved only after the jobs of every event up to it are committed, so a crash or restart
replays from the last durable cursor: at least once, and the idempotent enqueue makes the repeats free.
Pending work is bounded (`max_batch`): when it is full, `emit` waits for the database, and the wait pushes
back on the socket instead of growing memory. The queue is bounded too (`backpressure`): while it holds too many
jobs not done, `emit` saves everything read so far and waits for workers to drain it, reading nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from labeler.pipeline.jobs import JobSpec
from labeler.pipeline.sources.backpressure import Backpressure

log = logging.getLogger(__name__)

# A connection that lived this long was healthy: the next failure starts the backoff over.
HEALTHY_AFTER_S: Final = 60.0


class JobSink(Protocol):
    """Where jobs go (labeler.pipeline.jobs.JobQueue); idempotent per (subject_uri, subject_cid, blob_cid)."""

    async def enqueue(self, specs: Sequence[JobSpec]) -> int: ...


class Cursors(Protocol):
    """Durable named cursors (labeler.pipeline.cursors.CursorStore)."""

    async def get(self, name: str) -> str | None: ...

    async def set(self, name: str, value: str, event_time: float | None = None) -> None: ...


@dataclass
class Backoff:
    """Exponential backoff with full jitter, reset after a healthy connection."""

    initial: float = 1.0
    maximum: float = 60.0
    attempt: int = 0

    def next_delay(self, connected_for: float | None = None) -> float:
        if connected_for is not None and connected_for >= HEALTHY_AFTER_S:
            self.attempt = 0
        ceiling = min(self.maximum, self.initial * 2**self.attempt)
        self.attempt = min(self.attempt + 1, 30)
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class SourceStats:
    """Counters for logs, metrics and tests."""

    events: int = 0
    jobs: int = 0
    connects: int = 0
    errors: int = 0
    saved_cursor: str | None = None
    event_time: float | None = None  # epoch seconds of the newest event read, when the protocol gives its time
    outdated_cursor: int = 0  # times the server said our cursor was older than what it keeps (events were missed)
    paused_since: float | None = None  # monotonic time the current backpressure pause began
    pauses: int = 0
    paused_seconds: float = 0.0  # finished pauses

    def paused_for(self) -> float:
        """Seconds spent paused by backpressure, the current pause included."""
        current = time.monotonic() - self.paused_since if self.paused_since is not None else 0.0
        return self.paused_seconds + current


class StreamSource(ABC):
    """Runs `_stream` until stopped, reconnecting with backoff; subclasses speak one protocol.

    `_stream(cursor)` connects from `cursor` (None: live), calls `emit` for each event in order and returns when
    the connection ends; raising is a failed connection. `_interrupt()` makes a running `_stream` return soon.
    """

    kind: str = "stream"

    def __init__(
        self,
        name: str,
        jobs: JobSink,
        cursors: Cursors,
        *,
        max_batch: int = 500,
        flush_interval: float = 1.0,
        backoff: Backoff | None = None,
        backpressure: Backpressure | None = None,
    ) -> None:
        self.name = name
        self.jobs = jobs
        self.cursors = cursors
        self.max_batch = max_batch
        self.flush_interval = flush_interval
        self.backoff = backoff or Backoff()
        self.backpressure = backpressure
        self.stats = SourceStats()
        self._pending: list[JobSpec] = []
        self._cursor: str | None = None
        self._saved: str | None = None
        self._event_time: float | None = None  # the time of the event at `_cursor`
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._loaded = False

    @abstractmethod
    async def _stream(self, cursor: str | None) -> None: ...

    @abstractmethod
    async def _interrupt(self) -> None: ...

    @property
    def cursor(self) -> str | None:
        """The newest event seen (not necessarily saved yet)."""
        return self._cursor

    def forget_cursor(self) -> None:
        """Reconnect live next time (the server said our cursor is in its future)."""
        self._cursor = None

    async def emit(self, cursor: str | None, specs: Sequence[JobSpec] = (), event_time: float | None = None) -> None:
        """Record one event's jobs, position and time (epoch seconds); waits when the batch is full."""
        self.stats.events += 1
        if specs:
            self._pending.extend(specs)
            self.stats.jobs += len(specs)
        if cursor is not None:
            self._cursor = cursor
            self._event_time = event_time
        if event_time is not None:
            self.stats.event_time = event_time
        if len(self._pending) >= self.max_batch:
            await self.flush()
        if self.backpressure is not None and self.backpressure.due():
            await self._hold_while_full(self.backpressure)

    async def _hold_while_full(self, gate: Backpressure) -> None:
        """While the queue is full, read nothing: save what was read, then wait for workers to drain it."""
        try:
            count = await gate.full()
        except Exception as exc:  # the database is unreachable: the flush path waits for it
            log.debug("%s: could not count pending jobs: %s", self.name, exc)
            return
        if count is None:
            return
        await self.flush()  # the saved cursor covers every event read; replays start after it
        log.warning(
            "%s: backpressure: %d+ jobs not done (bound %d); pausing at cursor %s until %d or fewer",
            self.name, count, gate.bound, self._saved, gate.resume_at,
        )  # fmt: skip
        self.stats.pauses += 1
        self.stats.paused_since = started = time.monotonic()
        try:
            while not self._stopping.is_set():
                await self._sleep(gate.poll)
                try:
                    if await gate.drained():
                        break
                except Exception as exc:
                    log.debug("%s: could not count pending jobs: %s", self.name, exc)
        finally:
            self.stats.paused_since = None
            self.stats.paused_seconds += time.monotonic() - started
        if not self._stopping.is_set():
            log.info("%s: backpressure: queue drained; resuming after %.1f s", self.name, time.monotonic() - started)

    async def flush(self) -> None:
        """Enqueue pending jobs, then save the cursor; retries with backoff until it works or the source stops.

        Jobs leave `_pending` only once `enqueue` has returned, so a cancel at any await (of the task, at shutdown
        or by a timeout) leaves them for the next flush, and no flush saves a cursor past them. The writes are
        shielded: a cancelled flush lets its transaction finish rather than abandon it midway, where SQLite's write
        lock or PostgreSQL's row locks would stay held by a connection nobody closes until the next flush times out.
        """
        async with self._lock:
            retry = Backoff(initial=0.5, maximum=30.0)
            while True:
                count, cursor = len(self._pending), self._cursor  # the cursor covers exactly these jobs
                event_time = self._event_time
                if not count and (cursor is None or cursor == self._saved):
                    return
                try:
                    if count:
                        await asyncio.shield(self.jobs.enqueue(self._pending[:count]))
                        del self._pending[:count]
                    if cursor is not None and cursor != self._saved:
                        await asyncio.shield(self.cursors.set(self.name, cursor, event_time))
                        self._saved = self.stats.saved_cursor = cursor
                    return
                except Exception as exc:
                    self.stats.errors += 1
                    if self._stopping.is_set():
                        # Left pending and the cursor unsaved: the next start replays from the saved one.
                        log.error("%s: could not save %d jobs at cursor %s on stop: %s", self.name, count, cursor, exc)
                        return
                    delay = retry.next_delay()
                    log.warning("%s: saving jobs/cursor failed (%s); retrying in %.1f s", self.name, exc, delay)
                    await self._sleep(delay)

    async def run(self) -> None:
        """Consume until `stop()`; never raises for connection or protocol trouble."""
        await self._load_cursor()
        if self._stopping.is_set():
            return
        ticker = asyncio.create_task(self._tick(), name=f"{self.name} flush")
        try:
            while not self._stopping.is_set():
                started = time.monotonic()
                self.stats.connects += 1
                try:
                    await self._stream(self._cursor)
                    reason = "connection closed"
                except Exception as exc:
                    self.stats.errors += 1
                    reason = f"{type(exc).__name__}: {exc}"
                if self._stopping.is_set():
                    break
                delay = self.backoff.next_delay(time.monotonic() - started)
                log.warning("%s: %s; reconnecting from cursor %s in %.1f s", self.name, reason, self._cursor, delay)
                await self._sleep(delay)
        finally:
            self._stopping.set()  # the ticker ends after the flush in hand, never in the middle of one
            await ticker
            await self.flush()

    async def _load_cursor(self) -> None:
        retry = Backoff(initial=0.5, maximum=30.0)
        while not self._loaded and not self._stopping.is_set():
            try:
                self._cursor = self._saved = await self.cursors.get(self.name)
                self._loaded = True
            except Exception as exc:  # the database is not reachable yet: wait, never start without the cursor
                self.stats.errors += 1
                delay = retry.next_delay()
                log.warning("%s: reading the saved cursor failed (%s); retrying in %.1f s", self.name, exc, delay)
                await self._sleep(delay)

    async def stop(self) -> None:
        """Ask `run()` to finish: the connection closes, pending jobs and the cursor are saved."""
        self._stopping.set()
        await self._interrupt()

    async def _tick(self) -> None:
        while not self._stopping.is_set():
            await self._sleep(self.flush_interval)
            await self.flush()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
