"""The review queue: matches the policy sends to a person, with all their evidence; confirm labels, reject closes.

An item is unique per (job, subject, label values), so a job that runs twice (lease expiry after a crash) adds
its item once. Deciding is first-come: the status changes only from `pending`, so two moderators confirming
at once produce one label. A confirmed item's labels go through the writer with the item's evidence plus who
confirmed it. With a webhook configured, new items also wait in an outbox (see `labeler.pipeline.webhook`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from labeler.labels.writer import LabelRequest, LabelWriter
from labeler.protocol import syntax
from labeler.protocol.storable import Unstorable, check_text
from labeler.store.engine import StoreError, is_sqlite
from labeler.store.pipeline_schema import review_items

STATUSES = ("pending", "confirmed", "rejected")


class ReviewError(Exception):
    """A review action cannot be done (unknown item, already decided); the message says why."""


@dataclass(frozen=True)
class ReviewItem:
    id: int
    job_id: int
    subject_uri: str
    subject_cid: str | None
    vals: list[str]
    evidence: dict[str, Any]
    status: str
    created_at: str
    decided_by: str | None
    decided_at: str | None
    decision_note: str | None
    webhook_state: str | None
    webhook_attempts: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "job_id": self.job_id,
            "subject": {"uri": self.subject_uri, "cid": self.subject_cid},
            "labels": self.vals,
            "evidence": self.evidence,
            "created_at": self.created_at,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at,
            "decision_note": self.decision_note,
            "webhook": self.webhook_state,
        }


def _item(row: Any) -> ReviewItem:
    return ReviewItem(
        id=row.id,
        job_id=row.job_id,
        subject_uri=row.subject_uri,
        subject_cid=row.subject_cid,
        vals=list(row.vals),
        evidence=dict(row.evidence),
        status=row.status,
        created_at=row.created_at,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        decision_note=row.decision_note,
        webhook_state=row.webhook_state,
        webhook_attempts=row.webhook_attempts,
    )


class ReviewQueue:
    def __init__(self, engine: AsyncEngine, writer: LabelWriter, *, webhook: bool = False) -> None:
        self.engine = engine
        self.writer = writer
        self.webhook = webhook
        self._insert = sqlite.insert if is_sqlite(engine) else postgresql.insert

    async def add(
        self, job_id: int, subject_uri: str, subject_cid: str | None, vals: Sequence[str], evidence: dict[str, Any]
    ) -> int | None:
        """Queue an item; returns its id, or None if this job already queued the same one."""
        key = f"{job_id}|{subject_uri}|{subject_cid or ''}|{','.join(sorted(vals))}"
        values = {
            "job_id": job_id,
            "subject_uri": subject_uri,
            "subject_cid": subject_cid,
            "vals": list(vals),
            "evidence": evidence,
            "status": "pending",
            "created_at": syntax.now(),
            "webhook_state": "pending" if self.webhook else None,
            "webhook_next_at": time.time() if self.webhook else None,
            "dedupe_key": key,
        }
        stmt = self._insert(review_items).values(values).on_conflict_do_nothing(index_elements=["dedupe_key"])
        try:
            async with self.engine.begin() as conn:
                row = (await conn.execute(stmt.returning(review_items.c.id))).first()
        except SQLAlchemyError as exc:
            raise StoreError(f"adding a review item failed: {type(exc).__name__}") from exc
        return int(row[0]) if row is not None else None

    async def get(self, item_id: int) -> ReviewItem:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(review_items).where(review_items.c.id == item_id))).first()
        if row is None:
            raise ReviewError(f"no review item {item_id}")
        return _item(row)

    async def list(
        self, *, status: str | None = "pending", subject_uri: str | None = None, after: int = 0, limit: int = 50
    ) -> list[ReviewItem]:
        """Items in id order after `after` (a cursor), filtered by status and subject."""
        query = sa.select(review_items).where(review_items.c.id > after)
        if status is not None:
            query = query.where(review_items.c.status == status)
        if subject_uri is not None:
            query = query.where(review_items.c.subject_uri == subject_uri)
        async with self.engine.connect() as conn:
            return [_item(r) for r in await conn.execute(query.order_by(review_items.c.id).limit(limit))]

    async def decide(self, item_id: int, *, confirm: bool, actor: str, note: str | None = None) -> ReviewItem:
        """Confirm (labels go out through the writer) or reject a pending item."""
        try:
            check_text(note or "", "note")  # stored with the decision and as the labels' reason
        except Unstorable as exc:
            raise ReviewError(str(exc)) from None
        status = "confirmed" if confirm else "rejected"
        stmt = (
            review_items.update()
            .where(review_items.c.id == item_id, review_items.c.status == "pending")
            .values(status=status, decided_by=actor, decided_at=syntax.now(), decision_note=note)
        )
        async with self.engine.begin() as conn:
            changed = (await conn.execute(stmt)).rowcount == 1
        item = await self.get(item_id)  # ReviewError if it does not exist
        if not changed:
            raise ReviewError(f"review item {item_id} is already {item.status}")
        if confirm:
            try:
                await self._label(item, actor, note)
            except Exception:
                await self._reopen(item_id)
                raise
        return item

    async def _label(self, item: ReviewItem, actor: str, note: str | None) -> None:
        evidence = {**item.evidence, "review": {"item_id": item.id, "decided_by": actor, "note": note}}
        requests = [
            LabelRequest(
                uri=item.subject_uri,
                val=val,
                cid=item.subject_cid,
                actor=actor,
                via="review",
                reason=note or f"confirmed review item {item.id}",
                evidence=evidence,
            )
            for val in item.vals
        ]
        await self.writer.write(requests)

    async def _reopen(self, item_id: int) -> None:
        stmt = (
            review_items.update()
            .where(review_items.c.id == item_id)
            .values(status="pending", decided_by=None, decided_at=None, decision_note=None)
        )
        async with self.engine.begin() as conn:
            await conn.execute(stmt)
