"""Taking a test database back to an earlier migration, to test the next one from there: Alembic's downgrade on
our engine. (`upgrade` is the application's own, `labeler.store.migrate.upgrade`.) PostgreSQL's database is shared
by a session's tests and is at the newest migration once any test ran, so a migration test goes back first rather
than upgrading to its revision, which would do nothing there."""

from __future__ import annotations

from typing import Any

from alembic import command

from labeler.store.migrate import alembic_config


async def downgrade(engine: Any, revision: str) -> None:
    cfg = alembic_config()

    def run(conn: Any) -> None:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)

    async with engine.connect() as conn:
        await conn.run_sync(run)
        await conn.commit()
