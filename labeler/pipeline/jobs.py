"""The durable job queue: every image to check is a row before anything is fetched (design.md invariant 6).

A job moves queued → running (claimed under a lease) → done (with an outcome), or back to queued with a later
`next_attempt_at` when a PDS or the matcher is unreachable. A worker that dies leaves its jobs `running` with a
lease that expires; any worker then claims them again. Claims are exclusive: PostgreSQL picks rows with
`FOR UPDATE SKIP LOCKED`, SQLite runs the same `UPDATE … WHERE id IN (…) RETURNING` under its write lock
(`BEGIN IMMEDIATE`). Every finishing write checks the lease owner, so a worker that lost its lease changes nothing.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from labeler.pipeline.signals import IMAGE, VIDEO
from labeler.protocol import syntax
from labeler.store.engine import is_sqlite, write_transaction
from labeler.store.pipeline_schema import image_jobs

SOURCES: Final = frozenset({"firehose", "jetstream", "report", "upload", "manual"})
MEDIA: Final = (IMAGE, VIDEO)
OUTCOMES: Final = ("no-match", "match", "rejected", "error")
_MAX_URI: Final = 8192
_INSERT_CHUNK: Final = 500


@dataclass(frozen=True)
class ImageRef:
    """A media blob: the repo (DID) that holds it, its CID (raw codec, sha256), and what the record says it is:
    `media` is "image" (PDQ) or "video" (vPDQ). Image jobs are the pipeline's name for media jobs of both kinds."""

    did: str
    blob_cid: str
    mime_type: str | None = None
    media: str = "image"


@dataclass(frozen=True)
class JobSpec:
    """What to check: an image, and the subject (post URI + CID, or a DID) a label would go on.

    Raises ValueError when constructed with a malformed field, so a source can skip one bad record.
    """

    source: str
    subject_uri: str
    subject_cid: str | None
    image: ImageRef

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"unknown job source {self.source!r}")
        if not self.subject_uri or len(self.subject_uri) > _MAX_URI:
            raise ValueError("subject_uri must be 1..8192 characters")
        if not self.image.did.startswith("did:") or len(self.image.did) > 2048:
            raise ValueError(f"not a DID: {self.image.did[:100]!r}")
        syntax.check_cid(self.image.blob_cid)
        if self.image.media not in MEDIA:
            raise ValueError(f"unknown media {self.image.media!r}")
        if self.subject_cid:
            syntax.check_cid(self.subject_cid)


@dataclass(frozen=True)
class Job:
    """A job row as a worker or `explain` sees it."""

    id: int
    source: str
    subject_uri: str
    subject_cid: str | None
    image: ImageRef
    status: str
    attempts: int
    next_attempt_at: float
    lease_owner: str | None
    outcome: str | None
    reason: str | None
    detail: str | None
    pdq: str | None
    quality: int | None
    variants: list[str] | None
    signals: dict[str, Any] | None  # exact hashes, and why no perceptual hash could be made (see save_hash)
    result: dict[str, Any] | None
    created_at: str
    updated_at: str
    finished_at: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "source": self.source, "subject_uri": self.subject_uri, "subject_cid": self.subject_cid,
            "image": {
                "did": self.image.did, "blob_cid": self.image.blob_cid, "mime_type": self.image.mime_type,
                "media": self.image.media,
            },
            "status": self.status, "attempts": self.attempts, "outcome": self.outcome, "reason": self.reason,
            "detail": self.detail, "pdq": self.pdq, "quality": self.quality, "signals": self.signals,
            "result": self.result,
            "created_at": self.created_at, "updated_at": self.updated_at, "finished_at": self.finished_at,
        }  # fmt: skip


def _job(row: Any) -> Job:
    return Job(
        id=row.id, source=row.source, subject_uri=row.subject_uri, subject_cid=row.subject_cid or None,
        image=ImageRef(row.image_did, row.blob_cid, row.mime_type, row.media), status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at, lease_owner=row.lease_owner, outcome=row.outcome, reason=row.reason,
        detail=row.detail, pdq=row.pdq, quality=row.quality, variants=row.variants, signals=row.signals,
        result=row.result,
        created_at=row.created_at, updated_at=row.updated_at, finished_at=row.finished_at,
    )  # fmt: skip


@dataclass(frozen=True)
class Backlog:
    """The queue as operators watch it: rows waiting, rows claimed, rows due now and the oldest due one's wait."""

    queued: int
    running: int
    due: int
    oldest_due_age: float  # seconds since the oldest due job became due (0 when none is due)


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff for the `attempt`-th failure (1-based): base·2^(n-1), capped, with ±20 % jitter."""
    raw = min(cap, base * 2 ** min(max(attempt, 1) - 1, 60))
    return min(cap, raw * (rng or random).uniform(0.8, 1.2))


class JobQueue:
    """Queries over `image_jobs`. Every method is one short transaction; errors leave as `StoreError`."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self._sqlite = is_sqlite(engine)
        self._clock = clock
        #: Called after an enqueue that added rows (in-process workers wake at once instead of at their poll).
        self.on_enqueue: Callable[[], None] | None = None

    def _write(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return write_transaction(self.engine, "job queue write")

    async def enqueue(self, specs: Sequence[JobSpec]) -> int:
        """Queue jobs; returns how many rows are new. Idempotent per (subject_uri, subject_cid, blob_cid)."""
        if not specs:
            return 0
        now, stamp = self._clock(), syntax.now()
        rows = [
            {
                "source": s.source,
                "subject_uri": s.subject_uri,
                "subject_cid": s.subject_cid or "",
                "image_did": s.image.did,
                "blob_cid": s.image.blob_cid,
                "mime_type": s.image.mime_type,
                "media": s.image.media,
                "status": "queued",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": stamp,
                "updated_at": stamp,
            }
            for s in dict.fromkeys(specs)
        ]
        insert = sqlite.insert if self._sqlite else postgresql.insert
        added = 0
        async with self._write() as conn:
            for start in range(0, len(rows), _INSERT_CHUNK):
                stmt = (
                    insert(image_jobs)
                    .values(rows[start : start + _INSERT_CHUNK])
                    .on_conflict_do_nothing(index_elements=["subject_uri", "subject_cid", "blob_cid"])
                    .returning(image_jobs.c.id)
                )
                added += len((await conn.execute(stmt)).all())
        if added and self.on_enqueue is not None:
            self.on_enqueue()
        return added

    async def claim(self, owner: str, *, limit: int = 1, lease_seconds: float = 300.0) -> list[Job]:
        """Take up to `limit` due jobs (queued and due, or running with an expired lease) for `owner`."""
        now = self._clock()
        due = sa.or_(
            sa.and_(image_jobs.c.status == "queued", image_jobs.c.next_attempt_at <= now),
            sa.and_(image_jobs.c.status == "running", image_jobs.c.lease_expires_at <= now),
        )
        pick = sa.select(image_jobs.c.id).where(due).order_by(image_jobs.c.next_attempt_at, image_jobs.c.id)
        pick = pick.limit(limit)
        if not self._sqlite:
            pick = pick.with_for_update(skip_locked=True)
        stmt = (
            image_jobs.update()
            .where(image_jobs.c.id.in_(pick.scalar_subquery()))
            .values(
                status="running",
                lease_owner=owner,
                lease_expires_at=now + lease_seconds,
                attempts=image_jobs.c.attempts + 1,
                updated_at=syntax.now(),
            )
            .returning(*image_jobs.c)
        )
        async with self._write() as conn:
            jobs = [_job(r) for r in await conn.execute(stmt)]
        return sorted(jobs, key=lambda j: (j.next_attempt_at, j.id))

    def _owned(self, job: Job, owner: str) -> Any:
        return sa.and_(image_jobs.c.id == job.id, image_jobs.c.status == "running", image_jobs.c.lease_owner == owner)

    async def save_hash(
        self,
        job: Job,
        owner: str,
        *,
        signals: dict[str, Any],
        pdq: str | None = None,
        quality: int | None = None,
        variants: Sequence[str] | None = None,
    ) -> bool:
        """Keep the hashes on the row, so a retry (matcher down) does not fetch and hash again.

        `signals` holds the exact hashes (`{"md5", "sha256"}`) and, when the blob could not be hashed
        perceptually, `{"rejected": {"reason", "detail"}}`: its exact hashes are still matched.
        """
        stmt = image_jobs.update().where(self._owned(job, owner))
        stmt = stmt.values(signals=signals, pdq=pdq, quality=quality, variants=list(variants) if variants else None)
        async with self._write() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def retry(self, job: Job, owner: str, *, delay: float, detail: str) -> bool:
        """Back to queued, due after `delay` seconds; False if `owner` no longer holds the lease."""
        stmt = (
            image_jobs.update()
            .where(self._owned(job, owner))
            .values(
                status="queued",
                next_attempt_at=self._clock() + delay,
                lease_owner=None,
                lease_expires_at=None,
                detail=detail[:2000],
                updated_at=syntax.now(),
            )
        )
        async with self._write() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def release(self, job: Job, owner: str) -> bool:
        """Give a claimed job back untouched (worker stopping before it started): due now, attempt not counted."""
        stmt = (
            image_jobs.update()
            .where(self._owned(job, owner))
            .values(
                status="queued",
                lease_owner=None,
                lease_expires_at=None,
                attempts=sa.func.max(image_jobs.c.attempts - 1, 0)
                if self._sqlite
                else sa.func.greatest(image_jobs.c.attempts - 1, 0),
                updated_at=syntax.now(),
            )
        )
        async with self._write() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def finish(
        self,
        job: Job,
        owner: str,
        outcome: str,
        *,
        reason: str | None = None,
        detail: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> bool:
        """Record the outcome and mark done; False if `owner` no longer holds the lease."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        stamp = syntax.now()
        stmt = (
            image_jobs.update()
            .where(self._owned(job, owner))
            .values(
                status="done",
                outcome=outcome,
                reason=reason,
                detail=(detail or None) and detail[:2000],
                result=result,
                lease_owner=None,
                lease_expires_at=None,
                updated_at=stamp,
                finished_at=stamp,
            )
        )
        async with self._write() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def get(self, job_id: int) -> Job | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(image_jobs).where(image_jobs.c.id == job_id))).first()
        return _job(row) if row is not None else None

    async def for_subject(self, subject_uri: str, limit: int = 100) -> list[Job]:
        """Jobs whose subject is `subject_uri`, oldest first (for `explain`)."""
        query = (
            sa.select(image_jobs).where(image_jobs.c.subject_uri == subject_uri).order_by(image_jobs.c.id).limit(limit)
        )
        async with self.engine.connect() as conn:
            return [_job(r) for r in await conn.execute(query)]

    async def counts(self) -> dict[str, int]:
        """Rows per status (queue depth), plus `due` = queued rows whose time has come."""
        now = self._clock()
        query = sa.select(image_jobs.c.status, sa.func.count()).group_by(image_jobs.c.status)
        due = sa.select(sa.func.count()).where(image_jobs.c.status == "queued", image_jobs.c.next_attempt_at <= now)
        async with self.engine.connect() as conn:
            counts = {status: int(n) for status, n in await conn.execute(query)}
            counts["due"] = int((await conn.execute(due)).scalar_one())
        return {"queued": 0, "running": 0, "done": 0, **counts}

    async def pending(self, limit: int) -> int:
        """Jobs not done (queued or running), counting at most `limit` rows of the claim index."""
        pending = image_jobs.c.status.in_(("queued", "running"))
        capped = sa.select(image_jobs.c.id).where(pending).limit(limit).subquery()
        async with self.engine.connect() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(capped))).scalar_one())

    async def backlog(self) -> Backlog:
        """Jobs not done and how long the oldest due one has waited; two index range scans, no full count."""
        now = self._clock()
        pending = image_jobs.c.status.in_(("queued", "running"))
        by_status = sa.select(image_jobs.c.status, sa.func.count()).where(pending).group_by(image_jobs.c.status)
        due = sa.select(sa.func.count(), sa.func.min(image_jobs.c.next_attempt_at)).where(
            image_jobs.c.status == "queued", image_jobs.c.next_attempt_at <= now
        )
        async with self.engine.connect() as conn:
            counts = {status: int(n) for status, n in await conn.execute(by_status)}
            due_count, oldest = (await conn.execute(due)).one()
        return Backlog(
            queued=counts.get("queued", 0),
            running=counts.get("running", 0),
            due=int(due_count),
            oldest_due_age=max(0.0, now - float(oldest)) if oldest is not None else 0.0,
        )

    async def outcomes(self) -> dict[str, int]:
        """Finished jobs per outcome."""
        query = (
            sa.select(image_jobs.c.outcome, sa.func.count())
            .where(image_jobs.c.status == "done")
            .group_by(image_jobs.c.outcome)
        )
        async with self.engine.connect() as conn:
            return {str(outcome): int(n) for outcome, n in await conn.execute(query)}
