"""Workers: claim a job, fetch → hash → match → policy → actions (the Actioner), record the outcome; repeat.

Failure handling per step (every path ends in `finish` or `retry`, never in a dead worker):

    fetch   FetchUnavailable → retry with backoff; after `max_attempts` → error/gave-up
            FetchRejected    → rejected/<reason> (cid-mismatch, too-large, blob-not-found, private-address, …)
            (MD5 and SHA-256 are computed while the bytes arrive; a video's go to a temporary file)
    hash    an image gets PDQ, a video vPDQ:
            ImageRejected / VideoRejected → no perceptual hash; unless an exact hash matches, rejected/<reason>
                                            (truncated, not-a-video, too-long, too-slow, …)
            HasherCrashed    → retry; quality below the threshold (a video: every frame) → not looked up
                               (no-match/low-quality)
    match   MatcherUnavailable (HMA down, 503) → retry with backoff, never given up (the hash is kept on the row,
            so the retry does not fetch again); MatcherError → error/matcher-error
    act     database failure queuing the actions → retry (once queued, actions retry on their own)

Besides the job workers, one task per pool drains the report intake (`report_jobs`): reported records fetched and
their images queued, retried with the same backoff while a PDS is down.

A graceful stop lets each worker finish the job in hand (up to `stop_timeout_seconds`); a job interrupted
after that goes back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from labeler.pipeline.fetcher import FetchError
from labeler.pipeline.hashing import HasherCrashed
from labeler.pipeline.jobs import Job, backoff_delay
from labeler.pipeline.match.base import MatchFailure, lookup_signals
from labeler.pipeline.signals.blob import hash_blob, lookup_from
from labeler.store.engine import StoreError

if TYPE_CHECKING:
    from labeler.pipeline.pipeline import Pipeline

log = logging.getLogger(__name__)


class JobProcessor:
    """Takes one claimed job to an outcome."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline

    async def run(self, job: Job, owner: str) -> str:
        """Process `job`; returns the outcome recorded, or "retry"."""
        try:
            return await self._run(job, owner)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or an unexpected failure: the job retries, the worker lives on
            log.exception("job %d failed unexpectedly", job.id)
            return await self._retry(job, owner, "internal", f"{type(exc).__name__}: {exc}", give_up=True)

    async def _run(self, job: Job, owner: str) -> str:
        p, settings = self.p, self.p.settings
        if job.pdq is None and job.signals is None:
            if job.attempts > p.options.max_attempts:
                return await self._finish(job, owner, "error", "gave-up", job.detail)
            hashed = await self._fetch_and_hash(job, owner)
            if isinstance(hashed, str):
                return hashed
            job = hashed
        ask = lookup_from(
            pdq=job.pdq,
            quality=job.quality,
            variants=job.variants,
            kept=job.signals,
            quality_threshold=settings.pdq_quality_threshold,
        )
        started = time.perf_counter()
        try:
            matches = await lookup_signals(
                p.matcher, pdq=ask.pdq, exact=ask.exact, vpdq=ask.vpdq, max_distance=settings.match_distance
            )
        except MatchFailure as exc:
            p.telemetry.matcher_errors.labels(matcher=settings.matcher, kind=type(exc).__name__).inc()
            if exc.retryable:
                cap = p.options.matcher_retry_cap_seconds
                return await self._retry(job, owner, "matcher", exc.message, give_up=False, cap=cap)
            return await self._finish(job, owner, "error", "matcher-error", exc.message)
        p.telemetry.matcher_seconds.labels(matcher=settings.matcher).observe(time.perf_counter() - started)
        if not matches:
            # Nothing matched the hashes there are; say why a perceptual hash is missing or was not looked up.
            if ask.rejected is not None:
                reason, detail = ask.rejected.get("reason"), ask.rejected.get("detail")
                return await self._finish(job, owner, "rejected", reason, detail)
            if ask.low_quality:
                quality = f"PDQ quality {job.quality}" if job.quality is not None else "every frame's PDQ quality"
                detail = f"{quality} < {settings.pdq_quality_threshold}"
                return await self._finish(job, owner, "no-match", "low-quality", detail)
            return await self._finish(job, owner, "no-match", None, None, {"matches": []})
        for m in matches:
            p.telemetry.matches.labels(signal_type=m.signal_type).inc()
        found = [
            {"bank": m.bank, "entry_id": m.entry_id, "distance": m.distance, "signal_type": m.signal_type}
            | ({"similarity": m.similarity.to_json()} if m.similarity is not None else {})
            for m in matches
        ]
        try:
            screened = await p.screen.screen(job.image.blob_cid, matches)
        except StoreError as exc:
            return await self._retry(job, owner, "store", str(exc), give_up=True)
        if screened.reason is not None:  # allow-listed, or only disabled entries matched
            return await self._finish(job, owner, "no-match", screened.reason, None, {"matches": found})
        decisions = screened.restrict(p.policy.decide(screened.matches, job.subject_uri, job.subject_cid))
        try:
            done = await p.applier.apply(job, decisions)
        except StoreError as exc:
            return await self._retry(job, owner, "store", str(exc), give_up=True)
        for record in done:
            for kind in record["kinds"]:
                p.telemetry.labels.labels(action=kind).inc()
        reason = ",".join(sorted({k for d in decisions for k in d.kinds if k != "webhook"})) or "below-policy"
        return await self._finish(job, owner, "match", reason, None, {"matches": found, "decisions": done})

    async def _fetch_and_hash(self, job: Job, owner: str) -> Job | str:
        """Fetch the blob and compute its signals, kept on the row; returns the updated job, or the outcome
        recorded when the job ends here (or "retry")."""
        p = self.p
        try:
            blob = await p.fetcher.fetch(job.image)
        except FetchError as exc:
            p.telemetry.fetch_errors.labels(reason=exc.reason).inc()
            if exc.retryable:
                return await self._retry(job, owner, "fetch", str(exc), give_up=True)
            return await self._finish(job, owner, "rejected", exc.reason, exc.detail)
        started = time.perf_counter()
        try:
            hashed = await hash_blob(p.hasher, blob, job.image.media)
        except HasherCrashed as exc:
            return await self._retry(job, owner, "hasher", str(exc), give_up=True)
        finally:
            blob.discard()
        p.telemetry.hash_seconds.labels(media=job.image.media).observe(time.perf_counter() - started)
        signals, columns = hashed.kept(), hashed.pdq_columns()
        if not await p.jobs.save_hash(job, owner, signals=signals, **columns):
            return "lost-lease"
        return replace(job, signals=signals, **columns)

    async def _finish(
        self,
        job: Job,
        owner: str,
        outcome: str,
        reason: str | None,
        detail: str | None,
        result: dict[str, object] | None = None,
    ) -> str:
        if not await self.p.jobs.finish(job, owner, outcome, reason=reason, detail=detail, result=result):
            log.warning("job %d: lease lost before finishing (%s)", job.id, outcome)
            return "lost-lease"
        self.p.telemetry.outcomes.labels(outcome=outcome, reason=reason or "").inc()
        # What the labeler did, one line per job with its subject: a match, and a job refused (and why), at INFO;
        # no-match, the common case on a firehose, at DEBUG.
        log.log(
            logging.DEBUG if outcome == "no-match" else logging.INFO,
            "job %d %s%s: %s (%s %s by %s)",
            job.id,
            outcome,
            f" {reason}" if reason else "",
            job.subject_uri,
            job.image.media,
            job.image.blob_cid,
            job.image.did,
            extra={"job": job.id, "outcome": outcome, "reason": reason, "subject": job.subject_uri}
            | ({"detail": detail} if detail else {}),
        )
        return outcome

    async def _retry(
        self, job: Job, owner: str, cause: str, detail: str, *, give_up: bool, cap: float | None = None
    ) -> str:
        options = self.p.options
        if give_up and job.attempts >= options.max_attempts:
            return await self._finish(job, owner, "error", "gave-up", f"{cause}: {detail}")
        delay = backoff_delay(job.attempts, base=options.retry_base_seconds, cap=cap or options.retry_cap_seconds)
        self.p.telemetry.retries.labels(cause=cause).inc()
        log.info("job %d: %s failed (%s); retry %d in %.1fs", job.id, cause, detail, job.attempts, delay)
        await self.p.jobs.retry(job, owner, delay=delay, detail=f"{cause}: {detail}")
        return "retry"


class WorkerPool:
    """`count` concurrent workers in this process, each processing one job at a time."""

    def __init__(self, pipeline: Pipeline, count: int) -> None:
        self.p = pipeline
        self.count = count
        self.processor = JobProcessor(pipeline)
        self.name = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._wake = asyncio.Event()
        self._reports_wake = asyncio.Event()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._work(f"{self.name}/{n}"), name=f"worker-{n}") for n in range(self.count)
        ]
        self._tasks.append(asyncio.create_task(self._drain_reports(), name="report-intake"))

    def wake(self) -> None:
        """New jobs were queued in this process: idle workers look now instead of at the next poll."""
        self._wake.set()

    def wake_reports(self) -> None:
        """A report was queued in this process: fetch its record now instead of at the next poll."""
        self._reports_wake.set()

    async def stop(self) -> None:
        """Finish in-flight jobs (up to the stop timeout), then stop; interrupted jobs go back to the queue."""
        self._stopping = True
        self._wake.set()
        self._reports_wake.set()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=self.p.options.stop_timeout_seconds)
        for task in pending:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _work(self, owner: str) -> None:
        failures = 0
        while not self._stopping:
            try:
                jobs = await self.p.jobs.claim(owner, limit=1, lease_seconds=self.p.options.lease_seconds)
                failures = 0
            except StoreError as exc:
                failures += 1
                delay = backoff_delay(failures, base=0.5, cap=30.0)
                log.warning("worker %s: claiming failed (%s); retrying in %.1fs", owner, exc, delay)
                await self._idle(self._wake, delay)
                continue
            if not jobs:
                await self._idle(self._wake, self.p.options.poll_seconds)
                continue
            for job in jobs:
                try:
                    await self.processor.run(job, owner)
                except asyncio.CancelledError:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self.p.jobs.release(job, owner))
                    raise

    async def _drain_reports(self) -> None:
        """One reported record at a time: reports are few, and a slow PDS then holds up no image job."""
        failures = 0
        while not self._stopping:
            try:
                intakes = await self.p.reports.claim()
                failures = 0
            except StoreError as exc:
                failures += 1
                delay = backoff_delay(failures, base=0.5, cap=30.0)
                log.warning("report intake: claiming failed (%s); retrying in %.1fs", exc, delay)
                await self._idle(self._reports_wake, delay)
                continue
            if not intakes:
                await self._idle(self._reports_wake, self.p.options.poll_seconds)
                continue
            for intake in intakes:
                await self.p.reports.process(intake)

    async def _idle(self, wake: asyncio.Event, seconds: float) -> None:
        if self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), seconds)
        wake.clear()
