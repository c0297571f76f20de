"""Migration 0018: NCMEC exchanges recorded under bare entry ids are fetched again under `<member>-<entry>` ids;
other exchanges' records and every bank entry stay. On both databases."""

from __future__ import annotations

import sqlalchemy as sa
from support.migrations import downgrade

from labeler.store.engine import create_engine
from labeler.store.exchange_schema import exchange_entries, exchanges
from labeler.store.migrate import upgrade


async def test_ncmec_records_are_forgotten_and_fetched_again(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await upgrade(engine)
        await downgrade(engine, "0017")  # where an NCMEC exchange recorded bare ids
        async with engine.begin() as conn:
            for name, type_ in (("nc", "ncmec"), ("tat", "tat")):
                await conn.execute(exchanges.insert().values(
                    name=name, type=type_, bank="B", options={}, checkpoint={"from": 5}, created_at="2026-12-02",
                    next_fetch_at=9e9,
                ))  # fmt: skip
                await conn.execute(exchange_entries.insert().values(
                    exchange=name, remote_id="image1", value="a" * 64, fetched_at="2026-12-02"
                ))  # fmt: skip
        await upgrade(engine)
        async with engine.connect() as conn:
            rows = {r.name: (r.checkpoint, r.next_fetch_at) for r in await conn.execute(sa.select(exchanges))}
            kept = (await conn.execute(sa.select(exchange_entries.c.exchange))).scalars().all()
        assert rows == {"nc": (None, None), "tat": ({"from": 5}, 9e9)}
        assert kept == ["tat"]
    finally:
        await upgrade(engine)  # the PostgreSQL database is shared by the session's tests
        await engine.dispose()
