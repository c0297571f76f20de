"""Apply Alembic migrations from the top-level `migrations/` folder to an engine."""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from labeler.store.engine import StoreError, is_sqlite

_PG_MIGRATION_LOCK = 0x6C61626D  # "labm": serialises concurrent upgrades from several processes


def migrations_dir() -> Path:
    configured = os.environ.get("LABELER_MIGRATIONS_DIR")
    path = Path(configured) if configured else Path(__file__).resolve().parents[2] / "migrations"
    if not (path / "env.py").exists():
        raise StoreError(f"migrations not found at {path}; set LABELER_MIGRATIONS_DIR")
    return path


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    cfg = alembic_config()

    def _upgrade(conn: Connection) -> None:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)

    async with engine.connect() as conn:
        if not is_sqlite(engine):
            await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            await conn.commit()
        try:
            await conn.run_sync(_upgrade)
            await conn.commit()
        finally:
            if not is_sqlite(engine):
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK})
                await conn.commit()
