"""What every command needs: settings (with a readable error), a migrated engine or a running Labeler, async entry,
JSON output."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import click

from labeler.config import ConfigError, Settings, load_settings
from labeler.keys import KeyringError
from labeler.store.errors import StoreError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from labeler.service import Labeler

T = TypeVar("T")


def settings_or_exit(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run an async command body, turning our own errors into clean CLI failures."""
    try:
        return asyncio.run(_as_coroutine(coro_fn))
    except (StoreError, KeyringError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None


async def _as_coroutine(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()


@asynccontextmanager
async def migrated_engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine on the configured database with every migration applied, disposed on leaving: for commands that
    need a store or two but not the whole service (`running_labeler`), and may be the first to touch the database.

    SQLAlchemy and Alembic are imported here, when a command runs, not with the CLI."""
    from labeler.store.engine import opened_engine
    from labeler.store.migrate import upgrade

    async with opened_engine(settings.database_url) as engine:
        await upgrade(engine)
        yield engine


@asynccontextmanager
async def running_labeler(settings: Settings) -> AsyncIterator[Labeler]:
    """A Labeler without a stream hub: CLI writes reach a running server's subscribers through its poll.

    The service (SQLAlchemy, the pipeline, the SDK) is imported here, not with the CLI, so that `labeler --help`
    and commands that do not need it start at once."""
    from labeler.service import Labeler

    labeler = Labeler(settings, with_hub=False)
    await labeler.start(create_dev_key=False)
    try:
        yield labeler
    finally:
        await labeler.aclose()


def echo_lines(lines: Iterable[str], *, none: str) -> None:
    """Each line, or `none` when there are no lines: an empty listing says so rather than printing nothing."""
    empty = True
    for line in lines:
        click.echo(line)
        empty = False
    if empty:
        click.echo(none)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=False))
