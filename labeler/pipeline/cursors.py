"""Persisted source positions (firehose seq, Jetstream time_us, …), so a restarted source resumes where it stopped."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from labeler.protocol import syntax
from labeler.store.engine import StoreError, is_sqlite
from labeler.store.pipeline_schema import pipeline_cursors


class CursorStore:
    """Named string cursors; `set` overwrites (sources write after the jobs of an event are queued)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._insert = sqlite.insert if is_sqlite(engine) else postgresql.insert

    async def get(self, name: str) -> str | None:
        query = sa.select(pipeline_cursors.c.value).where(pipeline_cursors.c.name == name)
        try:
            async with self.engine.connect() as conn:
                return (await conn.execute(query)).scalar_one_or_none()
        except SQLAlchemyError as exc:
            raise StoreError(f"reading cursor {name!r} failed: {type(exc).__name__}") from exc

    async def set(self, name: str, value: str) -> None:
        stmt = self._insert(pipeline_cursors).values(name=name, value=value, updated_at=syntax.now())
        stmt = stmt.on_conflict_do_update(
            index_elements=[pipeline_cursors.c.name],
            set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
        )
        try:
            async with self.engine.begin() as conn:
                await conn.execute(stmt)
        except SQLAlchemyError as exc:
            raise StoreError(f"writing cursor {name!r} failed: {type(exc).__name__}") from exc
