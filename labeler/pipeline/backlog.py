"""Keeps the queue gauges on `/metrics` current (depth by status, age of the oldest due job).

Refreshed on a timer, not at scrape time, because reading the database is async and a scrape is not; in every
process that runs workers or serves `/metrics`, so a `serve` with its workers elsewhere still shows the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from labeler.pipeline.jobs import JobQueue
from labeler.pipeline.telemetry import PipelineMetrics
from labeler.store.engine import StoreError

log = logging.getLogger(__name__)

REFRESH_S: Final = 5.0


class BacklogGauges:
    def __init__(self, jobs: JobQueue, telemetry: PipelineMetrics, interval: float = REFRESH_S) -> None:
        self.jobs = jobs
        self.telemetry = telemetry
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._refresh_forever(), name="queue-gauges")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def refresh(self) -> None:
        backlog = await self.jobs.backlog()
        for status in ("queued", "running", "due"):
            self.telemetry.queue_depth.labels(status=status).set(getattr(backlog, status))
        self.telemetry.oldest_due_age.set(backlog.oldest_due_age)

    async def _refresh_forever(self) -> None:
        while True:
            try:
                await self.refresh()
            except StoreError as exc:
                log.debug("queue gauges: refresh failed: %s", exc)
            await asyncio.sleep(self.interval)
