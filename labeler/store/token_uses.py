"""The service tokens already used, in the database: the `ReplayGuard` of `labeler.protocol.service_auth`.

A token is single use. Remembering that in process memory failed twice (issue #15.9): a restart forgot every token,
and on PostgreSQL each labeler process accepted the same token once. Here the first use inserts `(iss, token_id)`,
and the primary key makes any later insert of the same pair, by any process, a no-op that reports a replay. Rows
are kept until the token's `exp` (plus leeway), which the verifier bounds to about an hour, and deleted at most
once a minute by whichever process records a token then.

The console records its signed-out sessions here too (`iss` "console-signout", the session's token hash), so a
signed-out session cookie is refused by every process until it would have expired anyway.
"""

from __future__ import annotations

from typing import Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from labeler.store.engine import is_sqlite, write_transaction
from labeler.store.schema import service_token_uses

#: Seconds between deletions of expired rows (per process).
PRUNE_INTERVAL: Final = 60.0


class TokenUses:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._insert = sqlite.insert if is_sqlite(engine) else postgresql.insert
        self._next_prune = 0.0

    async def first_use(self, iss: str, token_id: str, expires_at: float, now: float) -> bool:
        row = {"iss": iss, "token_id": token_id, "expires_at": expires_at}
        async with write_transaction(self.engine, "recording a service token") as conn:
            if now >= self._next_prune:
                self._next_prune = now + PRUNE_INTERVAL
                await conn.execute(sa.delete(service_token_uses).where(service_token_uses.c.expires_at < now))
            result = await conn.execute(self._insert(service_token_uses).values(row).on_conflict_do_nothing())
            return result.rowcount == 1

    async def used(self, iss: str, token_id: str, now: float) -> bool:
        """True if `(iss, token_id)` was recorded and has not expired."""
        query = sa.select(sa.literal(1)).where(
            service_token_uses.c.iss == iss,
            service_token_uses.c.token_id == token_id,
            service_token_uses.c.expires_at >= now,
        )
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).first() is not None
