"""What `labeler doctor` checks about keeping up: how far behind the network each configured source's saved
position is, and how long the oldest due job has waited for a worker.

Both are read from the database, so the check works from any machine that reaches it, whichever processes run
the sources and workers. A lag that grows past the thresholds means a source stopped or cannot keep up (or, on a
quiet PDS, that nothing has been posted), or that workers are too few.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from labeler.config import ConfigError, Settings
from labeler.identity.doctor import Finding
from labeler.pipeline.cursors import CursorStore
from labeler.pipeline.jobs import JobQueue
from labeler.pipeline.sources import Sources
from labeler.store.engine import StoreError, opened_engine

SOURCE_LAG_WARN_S: Final = 300.0
JOB_WAIT_WARN_S: Final = 600.0
_SOURCE_FIX = (
    "check that `labeler serve` or `labeler ingest` runs and reaches the stream (its log, and its "
    "labeler_source_lag_seconds: on serve's /metrics, or ingest's with LABELER_METRICS_PORT set); a lag that keeps "
    "growing while it runs means it cannot keep up"
)
_QUEUE_FIX = "run more workers (`labeler worker --workers N`, or more worker processes on PostgreSQL)"


async def lag_findings(settings: Settings, clock: Callable[[], float] = time.time) -> list[Finding]:
    try:
        async with opened_engine(settings.database_url) as engine:
            jobs, cursors = JobQueue(engine, clock=clock), CursorStore(engine)
            try:
                sources = Sources.from_settings(settings, jobs, cursors).sources
            except ConfigError as exc:
                findings = [Finding("source-lag", "fail", str(exc), "fix the URL")]
            else:
                findings = [await _source_finding(s.name, cursors, clock()) for s in sources]
            findings.append(await _queue_finding(jobs, settings.ingest_max_pending_jobs))
            return findings
    except StoreError as exc:
        return [Finding("ingest-lag", "warn", f"cannot read the queue and source positions: {exc}")]


async def _source_finding(name: str, cursors: CursorStore, now: float) -> Finding:
    saved = await cursors.saved(name)
    if saved is None:
        return Finding("source-lag", "warn", f"{name}: no position saved yet", _SOURCE_FIX)
    if saved.event_time is None:
        return Finding("source-lag", "ok", f"{name}: at {saved.value}, saved {saved.updated_at} (events carry no time)")
    lag = now - saved.event_time
    message = f"{name}: at {saved.value}, {_duration(lag)} behind the network"
    if lag > SOURCE_LAG_WARN_S:
        return Finding("source-lag", "warn", f"{message} (more than {_duration(SOURCE_LAG_WARN_S)})", _SOURCE_FIX)
    return Finding("source-lag", "ok", message)


async def _queue_finding(jobs: JobQueue, bound: int) -> Finding:
    backlog = await jobs.backlog()
    message = (
        f"{backlog.queued} queued ({backlog.due} due), {backlog.running} running; "
        f"the oldest due job has waited {_duration(backlog.oldest_due_age)}"
    )
    if bound and backlog.queued + backlog.running >= bound:
        paused = f"{message}: sources pause at LABELER_INGEST_MAX_PENDING_JOBS={bound} until workers drain it"
        return Finding("job-queue", "warn", paused, _QUEUE_FIX)
    if backlog.oldest_due_age > JOB_WAIT_WARN_S:
        return Finding("job-queue", "warn", f"{message} (more than {_duration(JOB_WAIT_WARN_S)})", _QUEUE_FIX)
    return Finding("job-queue", "ok", message)


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
