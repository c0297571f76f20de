"""Reports as a job source: a reported post (or account's profile) is fetched from its PDS and its images queued.

Runs as a `ReportService.on_report` listener. The record fetch happens in a background task so createReport
answers at once. An intake that fails (PDS down, crash before the fetch) is logged and not retried: the report
itself is stored and stays in the moderation queue. Pending intakes are awaited on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from labeler.pipeline.fetcher import BlobFetcher, FetchError
from labeler.pipeline.jobs import JobQueue, JobSpec
from labeler.pipeline.sources.records import PROFILE, jobs_for_record
from labeler.reports import Report
from labeler.store.engine import StoreError

log = logging.getLogger(__name__)

MAX_PENDING = 100  # intakes in flight; reports beyond this are logged and not scanned
CLOSE_TIMEOUT = 10.0  # seconds shutdown waits for pending intakes


class ReportIntake:
    def __init__(self, fetcher: BlobFetcher, jobs: JobQueue) -> None:
        self.fetcher = fetcher
        self.jobs = jobs
        self._tasks: set[asyncio.Task[int]] = set()

    async def on_report(self, report: Report) -> None:
        if len(self._tasks) >= MAX_PENDING:
            log.warning("report %d: %d intakes pending; its images are not scanned", report.id, len(self._tasks))
            return
        task = asyncio.create_task(self.scan(report), name=f"report-intake-{report.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def scan(self, report: Report) -> int:
        """Queue jobs for the images of the report's subject; returns how many jobs were new."""
        subject = report.subject
        if subject.type == "record":
            _, collection, rkey = subject.uri.removeprefix("at://").split("/", 2)
        else:
            collection, rkey = PROFILE, "self"
        try:
            cid, record = await self.fetcher.get_record(subject.did, collection, rkey)
            specs: list[JobSpec] = jobs_for_record("report", subject.did, collection, rkey, cid, record, profiles=True)
            added = await self.jobs.enqueue(specs)
        except (FetchError, StoreError) as exc:
            log.warning("report %d: cannot queue the images of %s: %s", report.id, subject.uri, exc)
            return 0
        log.info("report %d: %d image job(s) queued for %s", report.id, added, subject.uri)
        return added

    async def aclose(self) -> None:
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=CLOSE_TIMEOUT)
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
