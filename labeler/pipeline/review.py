"""The review queue: matches the policy sends to a person, with all their evidence, and the person's decision.

An item is unique per (job, subject, label values), so a job that runs twice (lease expiry after a crash) adds
its item once. Deciding is first-come: the status changes only from `pending`, so two moderators confirming
at once decide once. What a decision then does (labels, takedown, report; or reversing what the match did) is
the Actioner's: `labeler.pipeline.actions.decisions`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

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
    decided_via: str | None = None  # the front end: console, cli, api, altitude

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
            "decided_via": self.decided_via,
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
        decided_via=row.decided_via,
    )


class ReviewQueue:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._insert = sqlite.insert if is_sqlite(engine) else postgresql.insert

    async def add(
        self, job_id: int, subject_uri: str, subject_cid: str | None, vals: Sequence[str], evidence: dict[str, Any]
    ) -> tuple[int, bool]:
        """Queue an item; returns its id and whether it is new (False: this job queued the same item before)."""
        key = f"{job_id}|{subject_uri}|{subject_cid or ''}|{','.join(sorted(vals))}"
        values = {
            "job_id": job_id,
            "subject_uri": subject_uri,
            "subject_cid": subject_cid,
            "vals": list(vals),
            "evidence": evidence,
            "status": "pending",
            "created_at": syntax.now(),
            "dedupe_key": key,
        }
        stmt = self._insert(review_items).values(values).on_conflict_do_nothing(index_elements=["dedupe_key"])
        try:
            async with self.engine.begin() as conn:
                row = (await conn.execute(stmt.returning(review_items.c.id))).first()
                if row is None:
                    existing = sa.select(review_items.c.id).where(review_items.c.dedupe_key == key)
                    return int((await conn.execute(existing)).scalar_one()), False
        except SQLAlchemyError as exc:
            raise StoreError(f"adding a review item failed: {type(exc).__name__}") from exc
        return int(row[0]), True

    async def get(self, item_id: int) -> ReviewItem:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(review_items).where(review_items.c.id == item_id))).first()
        if row is None:
            raise ReviewError(f"no review item {item_id}")
        return _item(row)

    async def decided(self, *, before: int | None = None, limit: int = 100) -> list[ReviewItem]:
        """Decided items, newest item first (by id, not by when they were decided), before id `before`."""
        query = sa.select(review_items).where(review_items.c.status.in_(STATUSES[1:]))
        if before is not None:
            query = query.where(review_items.c.id < before)
        async with self.engine.connect() as conn:
            return [_item(r) for r in await conn.execute(query.order_by(review_items.c.id.desc()).limit(limit))]

    async def of_account(self, did: str, *, limit: int) -> list[ReviewItem]:
        """Items of any status whose subject is the account `did` or one of its records, newest first: one range
        of the (subject_uri, id) index (`at://did/` up to `at://did0`, '0' being the byte after '/')."""
        prefix = f"at://{did}/"
        query = (
            sa.select(review_items)
            .where(
                sa.or_(
                    review_items.c.subject_uri == did,
                    sa.and_(review_items.c.subject_uri >= prefix, review_items.c.subject_uri < f"at://{did}0"),
                )
            )
            .order_by(review_items.c.id.desc())
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [_item(r) for r in await conn.execute(query)]

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

    async def decide(
        self, item_id: int, *, confirm: bool, actor: str, note: str | None = None, via: str | None = None
    ) -> ReviewItem:
        """Confirm or reject a pending item (first come, first served); ReviewError if it is decided already, or if
        the note cannot be stored. `via` names the front end it was decided in, for the audit log."""
        try:
            check_text(note or "", "note")  # stored with the decision and as the labels' reason
        except Unstorable as exc:
            raise ReviewError(str(exc)) from None
        status = "confirmed" if confirm else "rejected"
        stmt = (
            review_items.update()
            .where(review_items.c.id == item_id, review_items.c.status == "pending")
            .values(status=status, decided_by=actor, decided_at=syntax.now(), decision_note=note, decided_via=via)
        )
        async with self.engine.begin() as conn:
            changed = (await conn.execute(stmt)).rowcount == 1
        item = await self.get(item_id)  # ReviewError if it does not exist
        if not changed:
            raise ReviewError(f"review item {item_id} is already {item.status}")
        return item
