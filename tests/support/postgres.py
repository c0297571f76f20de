"""Where the suite's PostgreSQL is (`LABELER_TEST_PG_URL`) and whether it answers: for the `database_url` fixture
and for e2e services that need one of their own (Ozone)."""

from __future__ import annotations

import asyncio
import os

PG_URL = os.environ.get("LABELER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def pg_unreachable() -> str | None:
    """None when PostgreSQL answers, else the reason it does not."""
    import asyncpg

    async def probe() -> None:
        conn = await asyncpg.connect(PG_URL.replace("postgresql+asyncpg://", "postgresql://"), timeout=3)
        await conn.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        return f"PostgreSQL at {PG_URL} is not reachable ({type(exc).__name__}: {exc})"
    return None
