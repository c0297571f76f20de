"""`labeler db …`: schema migrations."""

from __future__ import annotations

import click

from labeler.cli._common import migrated_engine, run, settings_or_exit
from labeler.store.engine import opened_engine


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply all migrations (also done on `serve`)."""
    settings = settings_or_exit()
    from labeler.store.migrate import current_revision  # Alembic: imported when used (labeler.cli)

    async def body() -> str | None:
        async with migrated_engine(settings) as engine:
            return await current_revision(engine)

    click.echo(f"database at revision {run(body)}")


@db.command("current")
def db_current() -> None:
    """Show the database's revision and the newest one available."""
    settings = settings_or_exit()
    from labeler.store.migrate import current_revision, head_revision  # Alembic: imported when used (labeler.cli)

    async def body() -> str | None:
        async with opened_engine(settings.database_url) as engine:
            return await current_revision(engine)

    click.echo(f"current: {run(body)}\nhead:    {head_revision()}")
