"""Async engine for SQLite (aiosqlite, WAL) or PostgreSQL (asyncpg), chosen by the database URL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final
from weakref import WeakKeyDictionary

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from labeler.store.errors import StoreError as StoreError  # re-exported: the store's callers import it from here

#: PostgreSQL's transaction-level advisory lock that serialises label commits (seq order = commit order) and the
#: signing hold's changes (`labeler.store.labels`, `labeler.store.signing_state`).
PG_LABEL_SEQUENCE_LOCK: Final = 0x6C61626C  # "labl"


def normalise_url(url: str) -> str:
    """Accept plain `sqlite:///…` and `postgresql://…` URLs and pick the async drivers."""
    parsed = make_url(url)
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for PostgreSQL and in-memory SQLite."""
    parsed = make_url(url)
    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if not parsed.drivername.startswith("sqlite") or in_memory:
        return None
    return Path(database)


def require_database(url: str) -> None:
    """Refuse a SQLite file that does not exist, for commands that only read: opening it would leave an empty
    database behind (in whatever folder the command was run from)."""
    path = sqlite_file(url)
    if path is not None and not path.exists():
        raise StoreError(
            f"no database at {path}: run this where the labeler runs (or set LABELER_DATABASE_URL); "
            "`labeler serve` or `labeler db upgrade` creates it"
        )


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


@asynccontextmanager
async def opened_engine(url: str) -> AsyncIterator[AsyncEngine]:
    """An engine for one short task (a CLI command, a doctor check), disposed on leaving, whatever happens: its
    pooled connections are closed rather than left to the garbage collector's warnings."""
    engine = create_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()


def configure_sqlite_connection(dbapi_conn: Any) -> None:
    """WAL for concurrent readers; FULL sync so an acknowledged label survives a crash; autocommit mode, so each
    transaction is an explicit BEGIN (pysqlite's implicit transactions would defer the write lock). Used for the
    engine's connections and for the label store's own commit connection (labeler.store.labels)."""
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache: fewer re-reads of the label indexes
    cursor.execute("PRAGMA wal_autocheckpoint=10000")  # checkpoint less often under bursts of writes
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _configure_sqlite(engine: AsyncEngine) -> None:
    """Every pooled connection gets `configure_sqlite_connection`; a write transaction asks for `BEGIN IMMEDIATE`
    so it takes the write lock up front."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        configure_sqlite_connection(dbapi_conn)

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


_SQLITE_WRITE_LOCKS: WeakKeyDictionary[AsyncEngine, asyncio.Lock] = WeakKeyDictionary()


def sqlite_write_lock(engine: AsyncEngine) -> asyncio.Lock:
    """One in-process lock per SQLite engine: writers queue here instead of sleeping in SQLite's busy handler,
    whose growing back-off turned write contention into second-long latencies. Other processes still meet
    SQLite's own lock (busy_timeout)."""
    lock = _SQLITE_WRITE_LOCKS.get(engine)
    if lock is None:
        lock = _SQLITE_WRITE_LOCKS[engine] = asyncio.Lock()
    return lock


@asynccontextmanager
async def write_transaction(
    engine: AsyncEngine, what: str, *, pg_lock: str | None = None
) -> AsyncIterator[AsyncConnection]:
    """A write transaction that holds the database's write lock from its first statement.

    SQLite: `BEGIN IMMEDIATE`, so two writers never deadlock upgrading read locks. PostgreSQL: an optional
    `pg_lock` statement (a table lock or advisory lock) runs first. Driver errors leave as `StoreError`, naming
    `what` failed but not the SQL or its parameters.
    """
    try:
        if is_sqlite(engine):
            async with sqlite_write_lock(engine), engine.connect() as raw:
                conn = await raw.execution_options(sqlite_begin="IMMEDIATE")
                async with conn.begin():
                    yield conn
        else:
            async with engine.begin() as conn:
                if pg_lock:
                    await conn.execute(sa.text(pg_lock))
                yield conn
    except SQLAlchemyError as exc:
        raise StoreError(f"{what} failed: {type(exc).__name__}") from exc
