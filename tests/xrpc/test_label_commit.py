"""Label commits on SQLite and PostgreSQL (design.md invariants 2 and 3): big batches with repeated keys, atomic
failure, the audit rows, and the schema of migration 0005 (seq as SQLite's rowid, data kept both ways)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from support.migrations import downgrade

from labeler.labels.writer import SPLIT_MIN, LabelRequest
from labeler.service import Labeler
from labeler.store.engine import StoreError, create_engine
from labeler.store.labels import CommitResult
from labeler.store.migrate import upgrade
from labeler.store.schema import label_events, labels, metadata

MINE = ("labels", "label_events")


def _migration_diff(conn: Any) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return [d for d in compare_metadata(context, metadata) if any(f"'{name}'" in repr(d) for name in MINE)]


async def test_label_tables_match_their_definitions(labeler: Labeler) -> None:
    async with labeler.engine.connect() as conn:
        assert await conn.run_sync(_migration_diff) == []


async def test_a_batch_beyond_one_statement_with_a_repeated_key(labeler: Labeler) -> None:
    """700 labels in one write (several statements of different sizes on SQLite), one (uri, val) three times:
    consecutive seqs, the last action is the current state, every action is in the audit log with who/why."""
    requests = [
        LabelRequest(uri=f"did:plc:subject{i:016d}", val="spam", actor=f"mod{i}", via="test", reason=f"r{i}")
        for i in range(700)
    ]
    repeated = "did:plc:repeatedrepeatedrepeat"
    requests[10] = LabelRequest(uri=repeated, val="spam", actor="first", via="test")
    requests[400] = LabelRequest(uri=repeated, val="spam", neg=True, actor="second", via="test")
    requests[699] = LabelRequest(uri=repeated, val="spam", actor="third", via="test", evidence={"job": 7})
    head = await labeler.store.head()
    stored = await labeler.writer.write(requests)
    seqs = [s.seq for s in stored]
    assert seqs == list(range(seqs[0], seqs[0] + 700)) and seqs[0] > head
    async with labeler.engine.connect() as conn:
        rows = (await conn.execute(sa.select(labels.c.seq, labels.c.uri, labels.c.neg, labels.c.sig))).all()
        events = (await conn.execute(sa.select(label_events).order_by(label_events.c.id))).mappings().all()
    assert len(rows) == 698  # 700 actions, one key three times
    current = {uri: (seq, neg, bytes(sig)) for seq, uri, neg, sig in rows}
    assert current[repeated] == (seqs[699], False, stored[699].label.sig)
    assert current[requests[5].uri] == (seqs[5], False, stored[5].label.sig)
    assert [e["seq"] for e in events] == seqs
    assert [e["actor"] for e in events][:3] == ["mod0", "mod1", "mod2"]
    assert [(e["actor"], bool(e["neg"])) for e in events if e["uri"] == repeated] == [
        ("first", False),
        ("second", True),
        ("third", False),
    ]
    assert events[5]["reason"] == "r5" and events[5]["via"] == "test" and events[699]["evidence"] == {"job": 7}
    assert await labeler.store.head() == seqs[-1]


async def _commit_sizes_of_concurrent_writes(labeler: Labeler, callers: int) -> list[int]:
    """Write one label from each of `callers` coroutines at once; the sizes of the store commits that took them."""
    sizes: list[int] = []
    commit = labeler.store.commit

    async def observed(actions: Any, generation: int | None = None) -> Any:
        sizes.append(len(actions))
        return await commit(actions, generation)

    labeler.store.commit = observed  # type: ignore[method-assign]
    requests = [LabelRequest(uri=f"did:plc:concurrent{i:014d}", val="spam") for i in range(callers)]
    stored = await asyncio.gather(*(labeler.writer.write_one(request) for request in requests))
    assert [s.label.uri for s in stored] == [r.uri for r in requests]
    assert len({s.seq for s in stored}) == callers
    return sizes


async def test_many_writers_queued_at_once_commit_in_two_halves(labeler: Labeler) -> None:
    """Not one lockstep commit: the first half commits while the second half waits its turn, so the first half's
    callers could prepare their next labels during the second commit (no commit yet to weigh against)."""
    assert await _commit_sizes_of_concurrent_writes(labeler, 40) == [20, 20]


async def test_few_writers_queued_at_once_commit_together(labeler: Labeler) -> None:
    assert await _commit_sizes_of_concurrent_writes(labeler, SPLIT_MIN - 1) == [SPLIT_MIN - 1]


async def test_a_failed_commit_is_a_store_error_and_leaves_nothing(labeler: Labeler) -> None:
    first = await labeler.writer.write_one(LabelRequest(uri="did:plc:beforebeforebeforebefore", val="spam"))
    async with labeler.engine.begin() as conn:
        await conn.execute(sa.text("ALTER TABLE label_events RENAME TO label_events_away"))
    try:
        with pytest.raises(StoreError, match="label commit failed"):
            await labeler.writer.write([LabelRequest(uri="did:plc:failedfailedfailedfailed", val="spam")])
    finally:
        async with labeler.engine.begin() as conn:
            await conn.execute(sa.text("ALTER TABLE label_events_away RENAME TO label_events"))
    assert await labeler.store.head() == first.seq  # the label row went with the audit row that failed
    again = await labeler.writer.write_one(LabelRequest(uri="did:plc:failedfailedfailedfailed", val="spam"))
    assert again.seq > first.seq


async def test_a_failing_commit_listener_does_not_stop_the_writer(
    labeler: Labeler, caplog: pytest.LogCaptureFixture
) -> None:
    told: list[int] = []

    def broken(result: CommitResult) -> None:
        told.append(result.stored[-1].seq)
        raise RuntimeError("listener bug")

    labeler.writer.on_commit = broken
    first = await labeler.writer.write_one(LabelRequest(uri="did:plc:listenerlistenerlistener", val="spam"))
    second = await asyncio.wait_for(
        labeler.writer.write_one(LabelRequest(uri="did:plc:listenerlistenerlistener", val="ham")), timeout=60
    )
    assert told == [first.seq, second.seq]
    assert "listener bug" in caplog.text


async def test_the_commit_thread_ends_with_the_labeler(settings: Any) -> None:
    if not settings.is_sqlite:
        pytest.skip("SQLite only: its own commit thread")
    service = Labeler(settings)
    await service.start()
    await service.writer.write_one(LabelRequest(uri="did:plc:threadthreadthreadthread", val="spam"))
    assert any(t.name.startswith("label-commit") for t in threading.enumerate())
    await service.aclose()
    for _ in range(200):
        if not any(t.name.startswith("label-commit") for t in threading.enumerate()):
            break
        await asyncio.sleep(0.01)
    assert not any(t.name.startswith("label-commit") for t in threading.enumerate())


def _label_row(seq: int) -> tuple[Any, ...]:
    cts = "2026-11-21T00:00:00.000Z"
    return (seq, "did:plc:src", f"did:plc:u{seq}", "", "spam", False, cts, None, b"\x01" * 64, "k")


async def test_migration_0005_keeps_rows_and_makes_seq_the_rowid(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await upgrade(engine, "0004")
        async with engine.begin() as conn:
            await conn.exec_driver_sql(
                "INSERT INTO labels (seq, src, uri, cid, val, neg, cts, exp, sig, key_id) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [_label_row(seq) for seq in (5, 1_700_000_000_000_000, 9)],
            )
        before = _rows(path)
        assert not _seq_is_rowid(path)
        await upgrade(engine, "0005")
        assert _rows(path) == before and _seq_is_rowid(path)
        assert "label_events_seq" not in _indexes(path) and {"labels_uri_seq", "label_events_uri"} <= _indexes(path)
        with _connect(path) as conn, pytest.raises(sqlite3.IntegrityError):  # the current-state key survived
            conn.execute("INSERT INTO labels VALUES (?,?,?,?,?,?,?,?,?,?)", (10, *_label_row(9)[1:]))
        await downgrade(engine, "0004")
        assert _rows(path) == before and not _seq_is_rowid(path) and "label_events_seq" in _indexes(path)
    finally:
        await engine.dispose()


def _label_indexes(conn: Any) -> dict[str, tuple[bool, list[str]]]:
    """labels' indexes and unique constraints: name → (unique, columns)."""
    inspector = sa.inspect(conn)
    found = {i["name"]: (bool(i["unique"]), i["column_names"]) for i in inspector.get_indexes("labels")}
    for constraint in inspector.get_unique_constraints("labels"):
        found.setdefault(constraint["name"], (True, constraint["column_names"]))
    return found


async def test_migration_0006_leads_the_current_key_with_the_uri_and_keeps_rows(database_url: str) -> None:
    engine = create_engine(database_url)
    insert = "INSERT INTO labels (seq, src, uri, cid, val, neg, cts, exp, sig, key_id) VALUES " + (
        "(?,?,?,?,?,?,?,?,?,?)" if database_url.startswith("sqlite") else "($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)"
    )
    select = sa.select(labels).order_by(labels.c.seq)
    try:
        await upgrade(engine)
        await downgrade(engine, "0005")
        async with engine.begin() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            await driver.executemany(insert, [_label_row(seq) for seq in (5, 1_700_000_000_000_000, 9)])
            before = (await conn.execute(select)).all()
        await upgrade(engine)
        async with engine.connect() as conn:
            assert (await conn.execute(select)).all() == before
            indexes = await conn.run_sync(_label_indexes)
        assert indexes["labels_current_key"] == (True, ["uri", "src", "cid", "val"])
        assert indexes["labels_src_seq"] == (False, ["src", "seq"]) and "labels_uri_seq" not in indexes
        if engine.url.database and engine.dialect.name == "sqlite":  # the rebuilt table keeps seq as its rowid
            assert _seq_is_rowid(Path(engine.url.database))
        with pytest.raises(sa.exc.IntegrityError):  # still the current-state key
            async with engine.begin() as conn:
                row = dict(zip(labels.c.keys(), (10, *_label_row(9)[1:]), strict=True))
                await conn.execute(labels.insert().values(row))
        await downgrade(engine, "0005")
        async with engine.connect() as conn:
            assert (await conn.execute(select)).all() == before
            indexes = await conn.run_sync(_label_indexes)
        assert indexes["labels_current_key"] == (True, ["src", "uri", "cid", "val"])
        assert indexes["labels_uri_seq"] == (False, ["uri", "seq"]) and "labels_src_seq" not in indexes
    finally:
        await upgrade(engine)  # the PostgreSQL database is shared by the session's tests
        await engine.dispose()


def _connect(path: Path) -> contextlib.closing[sqlite3.Connection]:
    return contextlib.closing(sqlite3.connect(path))


def _rows(path: Path) -> list[Any]:
    with _connect(path) as conn:
        return conn.execute("SELECT * FROM labels ORDER BY seq").fetchall()


def _seq_is_rowid(path: Path) -> bool:
    with _connect(path) as conn:
        return all(rowid == seq for rowid, seq in conn.execute("SELECT rowid, seq FROM labels")) and any(
            "INTEGER PRIMARY KEY" in row[-1]
            for row in conn.execute("EXPLAIN QUERY PLAN SELECT * FROM labels WHERE seq > 6 ORDER BY seq")
        )


def _indexes(path: Path) -> set[str]:
    with _connect(path) as conn:
        return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
