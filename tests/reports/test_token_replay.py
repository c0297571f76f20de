"""A service token is single use across restarts and across processes (issue #15.9): the used-token table.

The replay cache used to live in each process's memory: the same createReport token was accepted again after a
restart, and once by each process on PostgreSQL. Real `labeler serve` processes here, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from report_helpers import LABELER_DID, People, create_report, report_body
from support.serve_process import ServeProcess

from labeler.keys import Keyring
from labeler.store.engine import create_engine
from labeler.store.migrate import upgrade
from labeler.store.schema import metadata, service_token_uses
from labeler.store.token_uses import PRUNE_INTERVAL, TokenUses


def serve(name: str, database_url: str, workdir: Path, people: People) -> ServeProcess:
    return ServeProcess(
        name, database_url, workdir, password="replay-test", did=LABELER_DID, LABELER_PLC_URL=people.plc_url
    )


async def test_a_token_used_before_a_restart_is_refused_after_it(
    database_url: str, tmp_path: Path, people: People
) -> None:
    Keyring.open(tmp_path / "keys").ensure_active()
    server = serve("one", database_url, tmp_path, people)
    headers = people.alice.headers()
    body = report_body(people.bob.account)
    try:
        await server.start()
        first = await create_report(server.url, body, headers)
        assert first.status_code == 200, first.text
        await server.stop()
        await server.start()
        again = await create_report(server.url, body, headers)
        assert again.status_code == 401, again.text
        assert again.json()["error"] == "BadJwt" and "replayed" in again.json()["message"]
        assert (await create_report(server.url, body, people.alice.headers())).status_code == 200, "a new token"
    finally:
        await server.stop()


@pytest.mark.postgres
async def test_two_processes_on_one_postgresql_accept_each_token_once(
    pg_database: str, tmp_path: Path, people: People
) -> None:
    """Each of ten tokens is sent to both processes at the same moment: exactly one of the two accepts it."""
    database_url = pg_database
    Keyring.open(tmp_path / "keys").ensure_active()
    servers = [serve(name, database_url, tmp_path, people) for name in "ab"]
    body = report_body(people.bob.account)
    try:
        await asyncio.gather(*(s.start() for s in servers))
        for _ in range(10):
            headers = people.alice.headers()
            answers = await asyncio.gather(*(create_report(s.url, body, headers) for s in servers))
            assert sorted(a.status_code for a in answers) == [200, 401], [a.text for a in answers]
            refused = next(a for a in answers if a.status_code == 401)
            assert "replayed" in refused.json()["message"]
    finally:
        await asyncio.gather(*(s.stop() for s in servers))


async def test_used_tokens_are_remembered_until_they_expire_then_deleted(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await upgrade(engine)
        uses = TokenUses(engine)
        now = time.time()
        assert await uses.first_use("did:plc:a", "jti:1", now + 65, now)
        assert not await uses.first_use("did:plc:a", "jti:1", now + 65, now + 1)
        assert await uses.first_use("did:plc:b", "jti:1", now + 65, now + 1), "another issuer's token"
        later = now + PRUNE_INTERVAL + 100  # past both tokens' expiry and the next pruning
        assert await uses.first_use("did:plc:a", "jti:2", later + 60, later)
        async with engine.connect() as conn:
            rows: list[Any] = (await conn.execute(sa.select(service_token_uses.c.token_id))).all()
        assert [row.token_id for row in rows] == ["jti:2"], "expired tokens are deleted"

        def diff(conn: Any) -> list[Any]:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return [d for d in compare_metadata(context, metadata) if "service_token_uses" in repr(d)]

        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == [], "migration 0009 matches the table definition"
    finally:
        await engine.dispose()
