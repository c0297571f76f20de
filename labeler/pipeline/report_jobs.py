"""Reports as a job source: a reported post (or account's profile) is fetched from its PDS and its images queued.

Durable in two steps (design.md invariant 6), so a PDS outage or a restart between report and fetch loses nothing:

1. `on_report` (a `ReportService.on_report` listener) only writes a `report_intake` row: one short insert, so
   createReport answers at once. One row per subject and CID; a report on a subject whose intake is done queues
   it again (a profile may have changed since).
2. Workers (`runner.WorkerPool`) `claim` due rows and `process` them: getRecord, image jobs queued (idempotent),
   row done. A PDS that cannot be reached is retried with the jobs' backoff; a record that is gone or has no
   images ends the row with that reason. A claim pushes `next_attempt_at` one lease ahead, so the row of a
   worker that died comes back by itself; `attempts` fences the finishing write against a later claimant.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from labeler.pipeline.fetcher import BlobFetcher, FetchError
from labeler.pipeline.jobs import JobQueue, backoff_delay
from labeler.pipeline.options import PipelineOptions
from labeler.pipeline.sources.records import PROFILE, jobs_for_record
from labeler.protocol import syntax
from labeler.reports import Report
from labeler.store.engine import StoreError, is_sqlite, write_transaction
from labeler.store.pipeline_schema import report_intake

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Intake:
    """A claimed `report_intake` row: the subject to fetch, and the claim's attempt number (its fence)."""

    id: int
    subject_uri: str
    subject_cid: str | None
    report_id: int
    attempts: int


class ReportIntake:
    """The `report_intake` queue and the one place that turns a reported subject into image jobs."""

    def __init__(
        self,
        engine: AsyncEngine,
        fetcher: BlobFetcher,
        jobs: JobQueue,
        options: PipelineOptions,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.fetcher = fetcher
        self.jobs = jobs
        self.options = options
        self._sqlite = is_sqlite(engine)
        self._clock = clock
        #: Called after a report was queued (in-process workers look at once instead of at their next poll).
        self.on_queued: Callable[[], None] | None = None

    async def on_report(self, report: Report) -> None:
        """Queue the report's subject for fetching; a failure is logged (the report itself is already stored)."""
        subject = report.subject
        stamp = syntax.now()
        values = {
            "subject_uri": subject.uri,
            "subject_cid": subject.cid or "",
            "report_id": report.id,
            "status": "queued",
            "attempts": 0,
            "next_attempt_at": self._clock(),
            "reason": None,
            "detail": None,
            "updated_at": stamp,
        }
        insert = sqlite.insert if self._sqlite else postgresql.insert
        stmt = insert(report_intake).values(**values, created_at=stamp)
        stmt = stmt.on_conflict_do_update(  # a pending row stays as it is; a done one is queued again
            index_elements=["subject_uri", "subject_cid"], set_=values, where=report_intake.c.status == "done"
        )
        try:
            async with write_transaction(self.engine, "report intake write") as conn:
                await conn.execute(stmt)
        except StoreError as exc:
            log.error("report %d: cannot queue %s for an image scan: %s", report.id, subject.uri, exc)
            return
        if self.on_queued is not None:
            self.on_queued()

    async def claim(self, *, limit: int = 1) -> list[Intake]:
        """Take up to `limit` due rows for one lease (`lease_seconds`); exclusive as `JobQueue.claim` is."""
        now = self._clock()
        due = sa.and_(report_intake.c.status == "queued", report_intake.c.next_attempt_at <= now)
        pick = sa.select(report_intake.c.id).where(due)
        pick = pick.order_by(report_intake.c.next_attempt_at, report_intake.c.id).limit(limit)
        if not self._sqlite:
            pick = pick.with_for_update(skip_locked=True)
        stmt = (
            report_intake.update()
            .where(report_intake.c.id.in_(pick.scalar_subquery()))
            .values(
                next_attempt_at=now + self.options.lease_seconds,
                attempts=report_intake.c.attempts + 1,
                updated_at=syntax.now(),
            )
            .returning(
                report_intake.c.id,
                report_intake.c.subject_uri,
                report_intake.c.subject_cid,
                report_intake.c.report_id,
                report_intake.c.attempts,
            )
        )
        async with write_transaction(self.engine, "report intake claim") as conn:
            rows = (await conn.execute(stmt)).all()
        return [Intake(r.id, r.subject_uri, r.subject_cid or None, r.report_id, r.attempts) for r in rows]

    async def process(self, intake: Intake) -> str:
        """Fetch the subject's record and queue its images; returns the reason recorded, or "retry"."""
        if intake.subject_uri.startswith("at://"):
            did, collection, rkey = intake.subject_uri.removeprefix("at://").split("/", 2)
        else:  # an account: its profile's avatar and banner
            did, collection, rkey = intake.subject_uri, PROFILE, "self"
        try:
            cid, record = await self.fetcher.get_record(did, collection, rkey)
            specs = jobs_for_record("report", did, collection, rkey, cid, record, profiles=True)
            added = await self.jobs.enqueue(specs)
        except FetchError as exc:
            if not exc.retryable:
                return await self._finish(intake, exc.reason, exc.detail)
            return await self._retry(intake, str(exc))
        except StoreError as exc:
            return await self._retry(intake, str(exc))
        except Exception as exc:  # a bug or an odd answer: retried (and given up), never a dead worker
            log.exception("report %d: intake of %s failed unexpectedly", intake.report_id, intake.subject_uri)
            return await self._retry(intake, f"internal: {type(exc).__name__}: {exc}")
        log.info("report %d: %d new image job(s) for %s", intake.report_id, added, intake.subject_uri)
        return await self._finish(intake, "queued" if specs else "no-images", None)

    def _claimed(self, intake: Intake) -> sa.ColumnElement[bool]:
        return sa.and_(
            report_intake.c.id == intake.id,
            report_intake.c.status == "queued",
            report_intake.c.attempts == intake.attempts,
        )

    async def _finish(self, intake: Intake, reason: str, detail: str | None) -> str:
        stmt = report_intake.update().where(self._claimed(intake))
        stmt = stmt.values(status="done", reason=reason, detail=detail and detail[:2000], updated_at=syntax.now())
        try:
            async with write_transaction(self.engine, "report intake finish") as conn:
                await conn.execute(stmt)
        except StoreError as exc:  # the row comes back when its lease ends; queuing its images again is harmless
            log.warning("report %d: cannot mark the intake of %s done: %s", intake.report_id, intake.subject_uri, exc)
        return reason

    async def _retry(self, intake: Intake, detail: str) -> str:
        options = self.options
        if intake.attempts >= options.max_attempts:
            log.warning("report %d: giving up on %s: %s", intake.report_id, intake.subject_uri, detail)
            return await self._finish(intake, "gave-up", detail)
        delay = backoff_delay(intake.attempts, base=options.retry_base_seconds, cap=options.retry_cap_seconds)
        log.info("report %d: %s not fetched (%s); retry in %.1fs", intake.report_id, intake.subject_uri, detail, delay)
        stmt = report_intake.update().where(self._claimed(intake))
        stmt = stmt.values(next_attempt_at=self._clock() + delay, detail=detail[:2000], updated_at=syntax.now())
        try:
            async with write_transaction(self.engine, "report intake retry") as conn:
                await conn.execute(stmt)
        except StoreError as exc:  # the lease still brings it back
            log.warning("report %d: cannot reschedule %s: %s", intake.report_id, intake.subject_uri, exc)
        return "retry"
