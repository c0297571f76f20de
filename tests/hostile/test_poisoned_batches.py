"""One bad request among many never fails the others (issue #15, item 6).

Concurrent writes share transactions (the label writer's group commit, the moderation log's `GroupCommitter`). A
request that cannot be stored is refused before it joins a batch; and should a batch fail anyway (something no
check foresaw: here a database trigger that refuses one row), each of its requests is retried alone, so only the
bad one fails. Both on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import sqlalchemy as sa

from labeler.labels.writer import LabelRequest
from labeler.reports.models import EVENT_COMMENT
from labeler.reports.subject import Subject
from labeler.service import Labeler
from labeler.store.engine import StoreError, is_sqlite
from labeler.testing import LiveServer

from .callers import ADMIN

EMIT = "/xrpc/tools.ozone.moderation.emitEvent"
VALID = 64


def label_body(n: int, comment: str) -> bytes:
    """An emitEvent body, by json.dumps rather than httpx's json=, which cannot write a lone surrogate (\ud800)."""
    event = {"$type": "tools.ozone.moderation.defs#modEventLabel", "createLabelVals": ["spam"], "comment": comment}
    subject = {"$type": "com.atproto.admin.defs#repoRef", "did": f"did:plc:subject{n:06d}"}
    return json.dumps({"event": event, "subject": subject}).encode()


@pytest.mark.parametrize("bad_comment", ["\ud800", "a\x00b"], ids=["surrogate", "nul"])
async def test_one_unstorable_emit_event_beside_64_valid_ones(
    server: LiveServer, labeler: Labeler, bad_comment: str
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=60, auth=ADMIN) as client:
        bodies = [label_body(n, "fine") for n in range(VALID)]
        bodies.insert(VALID // 2, label_body(VALID, bad_comment))
        responses = await asyncio.gather(*(client.post(EMIT, content=body) for body in bodies))
        statuses = [r.status_code for r in responses]
        assert statuses.pop(VALID // 2) == 400
        assert statuses == [200] * VALID
        stored = await labeler.store.query(["did:plc:subject*"], [], 0, 250)
        assert sorted(label.label.uri for label in stored) == [f"did:plc:subject{n:06d}" for n in range(VALID)]
        events = await client.get("/xrpc/tools.ozone.moderation.queryEvents", params={"limit": 100})
        assert events.status_code == 200 and len(events.json()["events"]) == VALID


@asynccontextmanager
async def refusing(labeler: Labeler, table: str, column: str) -> AsyncIterator[str]:
    """A trigger that makes the database refuse rows of `table` whose `column` is the yielded value: a failure
    no check before the batch can foresee. Dropped afterwards (PostgreSQL's test database outlives the test)."""
    value = f"poison-{uuid.uuid4().hex[:8]}"
    engine = labeler.store.engine
    if is_sqlite(engine):
        create = [
            f"CREATE TRIGGER poison BEFORE INSERT ON {table} WHEN NEW.{column} = '{value}'"
            " BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
        ]
        drop = ["DROP TRIGGER poison"]
    else:
        create = [
            f"CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN IF NEW.{column} = '{value}' THEN"
            " RAISE EXCEPTION 'poisoned row'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
            f"CREATE TRIGGER poison BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION poison()",
        ]
        drop = [f"DROP TRIGGER poison ON {table}", "DROP FUNCTION poison()"]
    async with engine.begin() as conn:
        for sql in create:
            await conn.execute(sa.text(sql))
    try:
        yield value
    finally:
        async with engine.begin() as conn:
            for sql in drop:
                await conn.execute(sa.text(sql))


async def test_a_label_batch_the_database_refuses_is_retried_caller_by_caller(
    labeler: Labeler, caplog: pytest.LogCaptureFixture
) -> None:
    async with refusing(labeler, "label_events", "reason") as poison:
        requests = [LabelRequest(uri=f"did:plc:subject{n:06d}", val="spam", reason="fine") for n in range(VALID)]
        requests.insert(VALID // 2, LabelRequest(uri="did:plc:poisoned", val="spam", reason=poison))
        with caplog.at_level(logging.WARNING, "labeler.labels.writer"):
            results = await asyncio.gather(*(labeler.writer.write([r]) for r in requests), return_exceptions=True)
    bad = results.pop(VALID // 2)
    assert isinstance(bad, StoreError), bad
    assert all(isinstance(r, list) and len(r) == 1 for r in results), results
    assert "committing them one by one" in caplog.text  # they really were batched together first
    stored = await labeler.store.query(["did:plc:*"], [], 0, 250)
    assert sorted(s.label.uri for s in stored) == [f"did:plc:subject{n:06d}" for n in range(VALID)]
    seqs = [s.seq for s in stored]
    assert seqs == sorted(seqs) and len(set(seqs)) == VALID


async def test_a_moderation_batch_the_database_refuses_is_retried_item_by_item(
    labeler: Labeler, caplog: pytest.LogCaptureFixture
) -> None:
    store = labeler.reports.store
    subject = Subject("account", "did:plc:subject", "did:plc:subject")
    async with refusing(labeler, "moderation_events", "actor") as poison:
        actors = ["admin"] * VALID
        actors.insert(VALID // 2, poison)
        event = {"$type": EVENT_COMMENT, "comment": "seen"}
        with caplog.at_level(logging.WARNING, "labeler.reports.group_commit"):
            results = await asyncio.gather(
                *(store.act(subject, event, created_by="did:plc:mod", actor=a) for a in actors), return_exceptions=True
            )
    assert isinstance(results.pop(VALID // 2), StoreError)
    assert all(not isinstance(r, BaseException) for r in results), results
    assert "committing its items one by one" in caplog.text
    assert len(await store.events(limit=100)) == VALID
