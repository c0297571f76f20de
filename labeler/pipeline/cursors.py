"""Persisted source positions (firehose seq, Jetstream time_us, …), so a restarted source resumes where it stopped.

Each position keeps the time of its event when the protocol gives one (a firehose commit's `time`, Jetstream's
`time_us`): how far behind the network a source is, readable by `labeler doctor` from another process.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from labeler.protocol import syntax
from labeler.store.engine import StoreError, is_sqlite
from labeler.store.pipeline_schema import pipeline_cursors


@dataclass(frozen=True)
class SavedCursor:
    value: str
    event_time: float | None  # epoch seconds of the event at `value`, when the protocol says
    updated_at: str  # when it was saved (RFC 3339)


class CursorStore:
    """Named string cursors; `set` overwrites (sources write after the jobs of an event are queued)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._insert = sqlite.insert if is_sqlite(engine) else postgresql.insert

    async def get(self, name: str) -> str | None:
        saved = await self.saved(name)
        return saved.value if saved is not None else None

    async def saved(self, name: str) -> SavedCursor | None:
        """The cursor with its event time and save time."""
        columns = (pipeline_cursors.c.value, pipeline_cursors.c.event_time, pipeline_cursors.c.updated_at)
        query = sa.select(*columns).where(pipeline_cursors.c.name == name)
        try:
            async with self.engine.connect() as conn:
                row = (await conn.execute(query)).first()
        except SQLAlchemyError as exc:
            raise StoreError(f"reading cursor {name!r} failed: {type(exc).__name__}") from exc
        return SavedCursor(row.value, row.event_time, row.updated_at) if row is not None else None

    async def set(self, name: str, value: str, event_time: float | None = None) -> None:
        stmt = self._insert(pipeline_cursors).values(
            name=name, value=value, event_time=event_time, updated_at=syntax.now()
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[pipeline_cursors.c.name],
            set_={
                "value": stmt.excluded.value,
                "event_time": stmt.excluded.event_time,
                "updated_at": stmt.excluded.updated_at,
            },
        )
        try:
            async with self.engine.begin() as conn:
                await conn.execute(stmt)
        except SQLAlchemyError as exc:
            raise StoreError(f"writing cursor {name!r} failed: {type(exc).__name__}") from exc
