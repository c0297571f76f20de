"""The outbox runner: claims due actions and attempts them, up to `concurrency` at once, in every process that runs
pipeline workers (`serve` with workers, `labeler worker`).

It sleeps until an action is due, it is woken (an action queued in this process), or its poll comes round
(actions queued by other processes). A graceful stop lets attempts in flight finish (up to the timeout); one
cut short goes back to the queue. The queue-depth gauge is refreshed as it goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from labeler.pipeline.actions.dispatch import Dispatcher
from labeler.pipeline.actions.outbox import Outbox
from labeler.pipeline.jobs import backoff_delay
from labeler.store.engine import StoreError

log = logging.getLogger(__name__)

_GAUGE_EVERY = 5.0


class OutboxRunner:
    def __init__(
        self, outbox: Outbox, dispatcher: Dispatcher, *, concurrency: int, lease_seconds: float, poll: float = 1.0
    ) -> None:
        self.outbox = outbox
        self.dispatcher = dispatcher
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.poll = poll
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._gauged_at = 0.0

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="action-outbox")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self, grace: float) -> None:
        """Stop claiming; let attempts in flight finish for up to `grace` seconds, then cancel them."""
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._inflight:
            _, pending = await asyncio.wait(self._inflight, timeout=grace)
            for task in pending:
                task.cancel()
            for task in list(pending):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            free = self.concurrency - len(self._inflight)
            claimed = []
            if free > 0:
                try:
                    claimed = await self.outbox.claim(limit=free, lease_seconds=self.lease_seconds)
                    failures = 0
                except StoreError as exc:
                    failures += 1
                    delay = backoff_delay(failures, base=0.5, cap=30.0)
                    log.warning("action outbox: claiming failed (%s); retrying in %.1fs", exc, delay)
                    await self._idle(delay)
                    continue
            for action in claimed:
                task = asyncio.create_task(self.dispatcher.attempt(action), name=f"action-{action.id}")
                self._inflight.add(task)
                task.add_done_callback(self._done)
            await self._gauge()
            if not claimed:
                await self._idle(self.poll)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("action outbox: an attempt failed outside its handler", exc_info=task.exception())
        self._wake.set()  # a slot is free

    async def _idle(self, seconds: float) -> None:
        if self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def _gauge(self) -> None:
        now = time.monotonic()
        if now - self._gauged_at < _GAUGE_EVERY:
            return
        self._gauged_at = now
        try:
            counts = await self.outbox.counts()
        except StoreError as exc:
            log.debug("action queue depth refresh failed: %s", exc)
            return
        gauge = self.dispatcher.metrics.queued
        for kind in self.dispatcher.kinds:
            for state in ("pending", "running", "failed"):
                gauge.labels(kind=kind, state=state).set(counts.get((kind, state), 0))
