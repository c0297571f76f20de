"""Failed sign-ins are counted in the database, not per process: two labelers (two uvicorn servers on loopback)
sharing one SQLite file or the PostgreSQL database refuse a guesser at the one shared allowance however the
guesses are spread over them, a fresh process refuses it too, the window's end lets it in again (an injected
clock, no sleeping), a flood of distinct clients keeps the table bounded, and a database that fails (a SQLite
file that is not a database, a PostgreSQL port nothing listens on) leaves each process refusing by its own count
instead of letting guesses through or answering 5xx."""

from __future__ import annotations

import base64
import contextlib
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from labeler.config import Settings
from labeler.service import Labeler
from labeler.store.engine import create_engine, is_sqlite
from labeler.store.login_failures import LoginFailures
from labeler.store.schema import login_failures, metadata
from labeler.testing import LiveServer, serve_labeler
from labeler.xrpc.failed_logins import Allowance, FailureLimiter

from .callers import ADMIN

ALLOWED = 4
WINDOW = 600
REVIEW = "/api/v1/review?status=all"
CONSOLE_BY_CLIENT, CONSOLE_BY_NAME = 5, 20  # labeler.console.auth
CONSOLE_NAME_WINDOW = 900


class Clock:
    """Unix seconds that move only when the test says so, given to both servers' limiters."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def settings(make_settings: Any) -> Settings:
    return make_settings(max_login_failures=ALLOWED, login_failure_window=WINDOW)


@contextlib.asynccontextmanager
async def another_process(labeler: Labeler, settings: Settings) -> AsyncIterator[LiveServer]:
    """A server with its own app and limiter (its own memory) on the same database. On PostgreSQL a second
    Labeler, as a second `serve` process runs one; SQLite takes one labeler process (`labeler.single_process`), so
    there the app serves the one Labeler."""
    if is_sqlite(labeler.engine):
        async with serve_labeler(labeler) as live:
            yield live
        return
    other = Labeler(settings)
    await other.start()
    try:
        async with serve_labeler(other) as live:
            yield live
    finally:
        await other.aclose()


@pytest.fixture
async def servers(labeler: Labeler, settings: Settings) -> AsyncIterator[tuple[LiveServer, LiveServer, Clock]]:
    """Two servers on one database, their limiters on one clock."""
    clock = Clock()
    async with serve_labeler(labeler) as first, another_process(labeler, settings) as second:
        for live in (first, second):
            limiter(live).clock = clock
        yield first, second, clock


NOTHING_LISTENS = "postgresql+asyncpg://postgres@127.0.0.1:1/test"


def broken_database(folder: Path) -> str:
    """A SQLite file that is not a database: every statement on it fails (SQLite's "file is not a database")."""
    path = folder / "broken.db"
    path.write_bytes(b"not a SQLite database\n" * 256)
    return f"sqlite+aiosqlite:///{path}"


def limiter(live: LiveServer) -> FailureLimiter:
    found: FailureLimiter = live.app.state.failed_logins
    return found


def from_address(live: LiveServer, address: str) -> httpx.AsyncClient:
    """A client the server takes for `address` (uvicorn trusts X-Forwarded-For from loopback)."""
    return httpx.AsyncClient(base_url=live.url, timeout=30, headers={"X-Forwarded-For": address})


def basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def admin_get(live: LiveServer, address: str, password: str) -> httpx.Response:
    async with from_address(live, address) as http:
        return await http.get(REVIEW, headers=basic("admin", password))


async def console_sign_in(live: LiveServer, address: str, credential: str) -> int:
    async with from_address(live, address) as http:
        page = await http.get("/console/login")
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found, page.text
        form = {"user": "admin", "credential": credential, "csrf": found.group(1)}
        return (await http.post("/console/login", data=form)).status_code


async def rows(labeler: Labeler) -> int:
    async with labeler.engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(login_failures))).scalar_one())


async def test_admin_guesses_spread_over_two_servers_share_one_allowance(
    servers: tuple[LiveServer, LiveServer, Clock], settings: Settings
) -> None:
    first, second, clock = servers
    for n in range(ALLOWED):  # each server sees only half: alone, neither would refuse
        assert (await admin_get((first, second)[n % 2], "198.51.100.7", f"guess-{n}")).status_code == 401
    for live in (first, second):
        refused = await admin_get(live, "198.51.100.7", ADMIN[1])  # the right password too
        assert refused.status_code == 429, refused.text
        assert 0 < int(refused.headers["retry-after"]) <= WINDOW
    assert (await admin_get(second, "198.51.100.8", ADMIN[1])).status_code == 200  # another client

    async with another_process(first.labeler, settings) as third:  # started after the guesses, it knows them
        limiter(third).clock = clock
        assert (await admin_get(third, "198.51.100.7", ADMIN[1])).status_code == 429

    clock.now += WINDOW - 1
    assert (await admin_get(second, "198.51.100.7", ADMIN[1])).status_code == 429
    clock.now += 1  # the window has ended
    assert (await admin_get(first, "198.51.100.7", ADMIN[1])).status_code == 200
    for n in range(ALLOWED):  # and the success cleared the count everywhere: a whole allowance again
        assert (await admin_get((second, first)[n % 2], "198.51.100.7", "wrong")).status_code == 401
    assert (await admin_get(second, "198.51.100.7", "wrong")).status_code == 429


async def test_console_sign_ins_spread_over_two_servers_share_the_client_and_name_allowances(
    servers: tuple[LiveServer, LiveServer, Clock],
) -> None:
    first, second, clock = servers
    for n in range(CONSOLE_BY_CLIENT):
        assert await console_sign_in((first, second)[n % 2], "2001:db8:7::1", "wrong") == 401
    assert await console_sign_in(second, "2001:db8:7::2", ADMIN[1]) == 429  # same /64, other server
    # The name: 20 failures from as many clients, spread, then a fresh client with the right password is refused.
    for n in range(CONSOLE_BY_NAME - CONSOLE_BY_CLIENT):
        assert await console_sign_in((first, second)[n % 2], f"203.0.113.{n + 1}", "wrong") == 401
    assert await console_sign_in(first, "203.0.113.200", ADMIN[1]) == 429
    clock.now += CONSOLE_NAME_WINDOW
    assert await console_sign_in(second, "203.0.113.200", ADMIN[1]) == 303
    assert await console_sign_in(first, "2001:db8:7::3", ADMIN[1]) == 303


async def test_a_flood_of_distinct_clients_keeps_the_table_bounded(
    servers: tuple[LiveServer, LiveServer, Clock],
) -> None:
    first, second, clock = servers
    cap, every = 30, 10
    for live in (first, second):
        limiter(live).store.max_rows, limiter(live).store.prune_every = cap, every
    async with httpx.AsyncClient(timeout=30) as http:  # one client: a new one per request costs more than it
        for n in range(200):
            clock.now += 0.01
            headers = basic("admin", "wrong") | {"X-Forwarded-For": f"10.9.0.{n}"}
            url = (first, second)[n % 2].url + REVIEW
            assert (await http.get(url, headers=headers)).status_code == 401
            assert await rows(first.labeler) <= cap + 2 * every
    for n in range(ALLOWED):  # the newest failures are the ones kept
        clock.now += 0.01
        assert (await admin_get((first, second)[n % 2], "10.9.9.9", "wrong")).status_code == 401
    assert (await admin_get(first, "10.9.9.9", ADMIN[1])).status_code == 429
    clock.now += WINDOW  # every window has ended: the next failure's prune leaves only its own row
    assert (await admin_get(second, "10.9.9.10", "wrong")).status_code == 401
    assert await rows(first.labeler) == 1


async def test_a_failing_database_leaves_each_process_counting_its_own(
    servers: tuple[LiveServer, LiveServer, Clock], tmp_path: Path, database_url: str
) -> None:
    first, second, _ = servers
    engine = create_engine(broken_database(tmp_path) if database_url.startswith("sqlite") else NOTHING_LISTENS)
    try:
        for live in (first, second):
            limiter(live).store = LoginFailures(engine)
        for n in range(ALLOWED):
            assert (await admin_get(first, "192.0.2.5", f"guess-{n}")).status_code == 401
        assert (await admin_get(first, "192.0.2.5", ADMIN[1])).status_code == 429  # by its own count
        assert (await admin_get(second, "192.0.2.5", ADMIN[1])).status_code == 200  # which the other lacks
        for _ in range(CONSOLE_BY_CLIENT):
            assert await console_sign_in(second, "192.0.2.6", "wrong") == 401
        assert await console_sign_in(second, "192.0.2.6", ADMIN[1]) == 429
    finally:
        await engine.dispose()


async def test_the_memory_count_remembers_at_most_max_keys(tmp_path: Path) -> None:
    """The fallback count is bounded too: the least recently failed key is forgotten first."""
    engine = create_engine(broken_database(tmp_path))
    clients = Allowance("test", limit=1, window=60)
    try:
        limits = FailureLimiter(LoginFailures(engine), clients=clients, max_keys=3)
        for key in "abc":
            await limits.failed([(clients, key)])
        await limits.failed([(clients, "a")])  # a failed again: now the most recent
        await limits.failed([(clients, "d")])  # past the bound: b, the least recent, is forgotten
        assert [(await limits.check([(clients, k)])).wait > 0 for k in "abcd"] == [True, False, True, True]
    finally:
        await engine.dispose()


def _login_failures_diff(conn: Any) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return [d for d in compare_metadata(context, metadata) if "'login_failures'" in repr(d)]


async def test_migration_0023_makes_the_table_the_code_declares(labeler: Labeler) -> None:
    async with labeler.engine.connect() as conn:
        assert await conn.run_sync(_login_failures_diff) == []
