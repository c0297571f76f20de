"""Alembic environment. Normally driven by `labeler db upgrade` (and on start), which passes a connection in.

Run directly (`alembic -c migrations/alembic.ini …`), it connects to `LABELER_DATABASE_URL`.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from labeler.config import load_settings
from labeler.store.engine import create_engine
from labeler.store.schema import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_standalone() -> None:
    engine = create_engine(load_settings().database_url)
    async with engine.connect() as conn:
        await conn.run_sync(_run)
        await conn.commit()
    await engine.dispose()


given = context.config.attributes.get("connection")
if given is not None:
    _run(given)
else:
    asyncio.run(_run_standalone())
