"""Failed sign-ins per (scope, key), in the database, so that every serving process counts the same failures and a
restart forgets none (`labeler.xrpc.failed_logins` decides with them).

A key's row counts the failures of one fixed window, which starts at its first failure: a failure is a single
upsert that adds one, or starts the window again at one if the stored window has ended, so two processes failing
the same key at once both count (no read-then-write). A lockout check is one primary-key read.

The table stays bounded under a flood of distinct keys: every `PRUNE_EVERY` failures (or `PRUNE_INTERVAL`
seconds) a process deletes, in the same transaction, the rows whose window has ended and, past `max_rows`, those
ending soonest. So the table holds at most `max_rows` plus `PRUNE_EVERY` per serving process.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from labeler.store.engine import is_sqlite, write_transaction
from labeler.store.errors import StoreError
from labeler.store.schema import login_failures

#: Rows kept past a prune, at most (the in-memory limiter kept 50,000 keys).
MAX_ROWS: Final = 100_000
#: Failures recorded by a process between two prunes, at most.
PRUNE_EVERY: Final = 1_000
#: Seconds between two prunes of a process, at most (expired rows leave even without a flood).
PRUNE_INTERVAL: Final = 60.0

Key = tuple[str, str]  # (scope, key)


@dataclass(frozen=True)
class Count:
    failures: int
    expires_at: float  # Unix seconds: the end of the window the failures were counted in


class LoginFailures:
    def __init__(self, engine: AsyncEngine, *, max_rows: int = MAX_ROWS, prune_every: int = PRUNE_EVERY) -> None:
        self.engine = engine
        self.max_rows = max_rows
        self.prune_every = prune_every
        self._insert = sqlite.insert if is_sqlite(engine) else postgresql.insert
        self._since_prune = 0
        self._next_prune = 0.0

    async def counts(self, keys: Sequence[Key], now: float) -> dict[Key, Count]:
        """The failures of each key whose window has not ended (keys without any are left out): one read."""
        query = sa.select(
            login_failures.c.scope, login_failures.c.key, login_failures.c.failures, login_failures.c.expires_at
        ).where(_rows_of(keys), login_failures.c.expires_at > now)
        try:
            async with self.engine.connect() as conn:
                rows = (await conn.execute(query)).all()
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"reading sign-in failures failed: {type(exc).__name__}") from exc
        return {(row.scope, row.key): Count(row.failures, row.expires_at) for row in rows}

    async def add(self, windows: Iterable[tuple[Key, float]], now: float) -> None:
        """One more failure for each key, in a window of the given seconds: one upsert for all of them."""
        rows = [{"scope": s, "key": k, "failures": 1, "expires_at": now + window} for (s, k), window in windows]
        insert = self._insert(login_failures).values(rows)
        ended = login_failures.c.expires_at <= now
        upsert = insert.on_conflict_do_update(
            index_elements=[login_failures.c.scope, login_failures.c.key],
            set_={
                "failures": sa.case((ended, 1), else_=login_failures.c.failures + 1),
                "expires_at": sa.case((ended, insert.excluded.expires_at), else_=login_failures.c.expires_at),
            },
        )
        self._since_prune += len(rows)
        prune = self._since_prune >= self.prune_every or now >= self._next_prune
        async with write_transaction(self.engine, "recording a sign-in failure") as conn:
            await conn.execute(upsert)
            if prune:
                await conn.execute(self._prune(now))
        if prune:
            self._since_prune, self._next_prune = 0, now + PRUNE_INTERVAL

    async def clear(self, keys: Sequence[Key]) -> None:
        """Forget the keys' failures (a success)."""
        delete = sa.delete(login_failures).where(_rows_of(keys))
        async with write_transaction(self.engine, "clearing sign-in failures") as conn:
            await conn.execute(delete)

    def _prune(self, now: float) -> sa.Delete:
        """Rows whose window has ended, and past `max_rows` the rows whose window ends soonest (one statement:
        the cut-off is the `max_rows`-th latest end, read from the expires_at index)."""
        cutoff = (
            sa.select(login_failures.c.expires_at)
            .order_by(login_failures.c.expires_at.desc())
            .offset(self.max_rows)
            .limit(1)
            .scalar_subquery()
        )
        return sa.delete(login_failures).where(
            sa.or_(login_failures.c.expires_at <= now, login_failures.c.expires_at <= cutoff)
        )


def _rows_of(keys: Sequence[Key]) -> sa.ColumnElement[bool]:
    """The rows of these (scope, key) pairs: what a check reads and a success deletes."""
    return sa.or_(*(sa.and_(login_failures.c.scope == s, login_failures.c.key == k) for s, k in keys))
