"""Aggregate reads over the labels table for operator tools (`labeler doctor`, `labeler keys resign`)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from labeler.store.schema import labels


async def count_stale(engine: AsyncEngine, src: str, active_key_id: str) -> int:
    """Labels of `src` (our DID) whose stored signature is by another key than the active one."""
    async with engine.connect() as conn:
        query = (
            sa.select(sa.func.count()).select_from(labels).where(labels.c.src == src, labels.c.key_id != active_key_id)
        )
        return int((await conn.execute(query)).scalar_one())


async def count_on_own_content(engine: AsyncEngine, did: str) -> int:
    """Labels whose subject is our own account or one of its records (clients ignore these: ozone#323)."""
    prefix = f"at://{did}/"
    async with engine.connect() as conn:
        query = (
            sa.select(sa.func.count())
            .select_from(labels)
            .where(sa.or_(labels.c.uri == did, sa.and_(labels.c.uri >= prefix, labels.c.uri < prefix[:-1] + "0")))
        )
        return int((await conn.execute(query)).scalar_one())


async def count_src(engine: AsyncEngine, src: str) -> int:
    """Current labels issued under `src` (`labeler label reissue`'s progress)."""
    async with engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(labels).where(labels.c.src == src)
        return int((await conn.execute(query)).scalar_one())
