"""The `altitude_cases` table (`labeler.store.altitude_schema`): Altitude's ids per review item, and the decision."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from labeler.protocol import syntax
from labeler.store.altitude_schema import altitude_cases
from labeler.store.engine import StoreError, write_transaction

IDS: Final = ("target_id", "signal_id", "case_id")


@dataclass(frozen=True)
class Handoff:
    review_item: int
    target_id: str | None
    signal_id: str | None
    case_id: str | None
    decision: str | None


class HandoffStore:
    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock

    async def get(self, review_item: int) -> Handoff | None:
        query = sa.select(altitude_cases).where(altitude_cases.c.review_item == review_item)
        try:
            async with self.engine.connect() as conn:
                row = (await conn.execute(query)).first()
        except SQLAlchemyError as exc:
            raise StoreError(f"reading an Altitude hand-off failed: {type(exc).__name__}") from exc
        return None if row is None else _handoff(row)

    async def record(self, review_item: int, key: str, value: str) -> None:
        """Keep one id Altitude gave us (`key` in IDS) as soon as it answers, so a retry does not ask again."""
        if key not in IDS:
            raise ValueError(f"not an Altitude id: {key}")
        now = syntax.now()
        async with write_transaction(self.engine, "recording an Altitude hand-off") as conn:
            updated = await conn.execute(
                altitude_cases.update()
                .where(altitude_cases.c.review_item == review_item)
                .values({key: value, "updated_at": now})
            )
            if updated.rowcount == 0:
                await conn.execute(
                    altitude_cases.insert().values(
                        {"review_item": review_item, key: value, "created_at": now, "updated_at": now}
                    )
                )

    async def open_cases(self, limit: int) -> list[Handoff]:
        """Filed cases without a decision, the longest unread first; each is marked read now."""
        query = (
            sa.select(altitude_cases)
            .where(altitude_cases.c.case_id.is_not(None), altitude_cases.c.decision.is_(None))
            .order_by(altitude_cases.c.polled_at, altitude_cases.c.review_item)
            .limit(limit)
        )
        async with write_transaction(self.engine, "reading open Altitude cases") as conn:
            rows = [_handoff(r) for r in await conn.execute(query)]
            if rows:
                ids = [h.review_item for h in rows]
                await conn.execute(
                    altitude_cases.update().where(altitude_cases.c.review_item.in_(ids)).values(polled_at=self.clock())
                )
        return rows

    async def close(self, review_item: int, decision: str) -> None:
        async with write_transaction(self.engine, "recording an Altitude decision") as conn:
            await conn.execute(
                altitude_cases.update()
                .where(altitude_cases.c.review_item == review_item)
                .values(decision=decision, updated_at=syntax.now())
            )


def _handoff(row: sa.Row[tuple[object, ...]]) -> Handoff:
    return Handoff(row.review_item, row.target_id, row.signal_id, row.case_id, row.decision)
