"""Shared fixtures: settings on a real SQLite file or the real PostgreSQL, a started Labeler, and the labeler
served by real uvicorn on loopback inside the test's own event loop (so tests can call the writer directly)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.postgres import PG_URL, pg_unreachable

from labeler.config import Settings, load_settings
from labeler.service import Labeler
from labeler.testing import LiveServer, serve_labeler

IN_CI = os.environ.get("CI") == "true"
# The suite's own knobs (where its PostgreSQL and e2e cache are, fuzz seeds); every other LABELER_* is the
# labeler's configuration, which belongs to the user, not to the tests.
SUITE_VARS_PREFIXES = ("LABELER_TEST_", "LABELER_E2E_", "LABELER_FUZZ_", "LABELER_BENCH_")


@pytest.fixture(scope="session", autouse=True)
def _isolated_from_the_user(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The suite gives the same result whatever the checkout's `labeler.toml` and the exported `LABELER_*` say:
    settings are read from the environment and `./labeler.toml`, so both are taken away for the whole session
    (session-scoped fixtures included), and subprocesses inherit the clean environment."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("LABELER_") and not name.startswith(SUITE_VARS_PREFIXES):
                patch.delenv(name)
        patch.chdir(tmp_path_factory.mktemp("cwd"))
        yield


@pytest.fixture(autouse=True)
def _own_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in its own empty directory, so files written at default paths (`labeler.db`, `keys/`,
    `labeler.toml`) never reach the checkout or another test."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end; its async URL."""
    reason = pg_unreachable()
    if reason:
        if IN_CI:
            pytest.fail(f"{reason}; CI=true requires PostgreSQL")
        pytest.skip(reason)
    import asyncpg

    name = f"labeler_test_{uuid.uuid4().hex[:10]}"
    admin_url = PG_URL.replace("postgresql+asyncpg://", "postgresql://")

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    base = admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1)
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _reset_pg(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )
        if tables:
            names = ", ".join(f'"{t["tablename"]}"' for t in tables)
            await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs twice: on a fresh SQLite file and on the real PostgreSQL (emptied)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'labeler.db'}"
    url: str = request.getfixturevalue("pg_database")
    asyncio.run(_reset_pg(url))
    return url


@pytest.fixture
def make_settings(tmp_path: Path, database_url: str) -> Any:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "keys_dir": str(tmp_path / "keys"),
            "admin_password": "test-admin-password",
            "did": "did:plc:labelertestlabelertest1",
            "public_url": "http://localhost:8080",
        }
        values.update(overrides)
        return load_settings(env={}, **values)

    return make


@pytest.fixture
def settings(make_settings: Any) -> Settings:
    return make_settings()


@pytest.fixture
async def labeler(settings: Settings) -> AsyncIterator[Labeler]:
    service = Labeler(settings)
    await service.start()
    try:
        yield service
    finally:
        await service.aclose()


@pytest.fixture
async def server(labeler: Labeler) -> AsyncIterator[LiveServer]:
    async with serve_labeler(labeler) as live:
        yield live


@pytest.fixture
async def client(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for `server`."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield http
