"""The report store on SQLite and PostgreSQL: counters stay right under concurrency, and the migration matches
the table definitions."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from report_helpers import APPEAL, VIOLATION
from sqlalchemy import event

from labeler.reports import ReportInput, Subject
from labeler.reports.models import EVENT_ACKNOWLEDGE, EVENT_LABEL, EVENT_RESOLVE_APPEAL
from labeler.service import Labeler
from labeler.store.schema import metadata

OWNER = "did:plc:ownerownerownerownerowne"
POST = Subject(
    "record",
    f"at://{OWNER}/app.bsky.feed.post/3k",
    OWNER,
    "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm",
)
MINE = ("reports", "report_subjects", "moderation_events")


async def test_concurrent_reports_and_actions_keep_counts(labeler: Labeler) -> None:
    store = labeler.reports.store
    reporters = [f"did:plc:reporter{i:016d}" for i in range(20)]
    await asyncio.gather(*(store.add(ReportInput(VIOLATION, POST), r) for r in reporters))
    await store.add(ReportInput(APPEAL, POST), OWNER)
    (status,) = await store.statuses(subject_uri=POST.uri)
    assert (status.report_count, status.open_count, status.open_appeal_count) == (21, 21, 1)
    assert status.last_report_id == max(r.id for r in await store.list_reports(subject_uri=POST.uri))

    ack = {"$type": EVENT_ACKNOWLEDGE}
    results = await asyncio.gather(
        *(labeler.reports.act(POST, ack, created_by=f"did:plc:mod{i:021d}", actor="admin") for i in range(5))
    )
    assert sorted(len(r.resolved) for r in results) == [0, 0, 0, 0, 20]  # each report resolved exactly once
    (status,) = await store.statuses(subject_uri=POST.uri)
    assert (status.open_count, status.open_appeal_count) == (1, 1)
    await labeler.reports.act(POST, {"$type": EVENT_RESOLVE_APPEAL}, created_by=OWNER, actor="admin")
    (status,) = await store.statuses(subject_uri=POST.uri)
    assert (status.report_count, status.open_count, status.open_appeal_count) == (21, 0, 0)
    assert len(await store.events(subject_uri=POST.uri, limit=100)) == 21 + 5 + 1


async def test_concurrent_actions_share_one_transaction_and_keep_their_own_events(labeler: Labeler) -> None:
    store = labeler.reports.store
    subjects = [Subject("account", f"did:plc:subject{i:017d}", f"did:plc:subject{i:017d}", None) for i in range(12)]
    reported = subjects[3], subjects[7]
    report_ids = [(await store.add(ReportInput(VIOLATION, s), OWNER)).id for s in reported]
    inserts = 0

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        nonlocal inserts
        inserts += statement.startswith("INSERT INTO moderation_events")

    label = {"$type": EVENT_LABEL, "createLabelVals": ["spam"], "negateLabelVals": []}
    event.listen(labeler.engine.sync_engine, "before_cursor_execute", count)
    try:
        results = await asyncio.gather(
            *(
                labeler.reports.act(s, {**label, "comment": f"c{i}"}, created_by=f"did:plc:mod{i:021d}", actor="admin")
                for i, s in enumerate(subjects)
            )
        )
    finally:
        event.remove(labeler.engine.sync_engine, "before_cursor_execute", count)
    assert inserts == 1  # group commit: all twelve events in one INSERT, in one transaction

    logged = {e.id: e for e in await store.events(types=[EVENT_LABEL], limit=100)}
    assert len(logged) == len(subjects)
    for i, (subject, result) in enumerate(zip(subjects, results, strict=True)):
        row = logged[result.event.id]  # each caller's id is the row holding its own event
        assert (row.subject, row.created_by, row.event["comment"]) == (subject, f"did:plc:mod{i:021d}", f"c{i}")
        assert result.event == row
    assert [results[3].resolved, results[7].resolved] == [[report_ids[0]], [report_ids[1]]]
    assert all(r.resolved == [] for i, r in enumerate(results) if i not in (3, 7))
    statuses = await store.statuses()
    assert sorted(s.subject.uri for s in statuses) == sorted(s.uri for s in reported)
    assert all((s.open_count, s.last_reviewed_by) == (0, f"did:plc:mod{subjects.index(s.subject):021d}")
               for s in statuses)  # fmt: skip


async def test_a_failing_action_fails_alone(labeler: Labeler) -> None:
    good = {"$type": EVENT_ACKNOWLEDGE}
    bad = {"$type": EVENT_ACKNOWLEDGE, "unstorable": object()}  # not JSON: its INSERT fails
    results = await asyncio.gather(
        labeler.reports.act(POST, good, created_by=OWNER, actor="admin"),
        labeler.reports.act(POST, bad, created_by=OWNER, actor="admin"),
        labeler.reports.act(POST, good, created_by=OWNER, actor="cli"),
        return_exceptions=True,
    )
    assert isinstance(results[1], Exception)
    assert [r.event.actor for r in (results[0], results[2])] == ["admin", "cli"]  # type: ignore[union-attr]
    assert [e.actor for e in await labeler.reports.store.events()] == ["cli", "admin"]


async def test_action_on_unreported_subject_is_still_audited(labeler: Labeler) -> None:
    result = await labeler.reports.act(POST, {"$type": EVENT_ACKNOWLEDGE}, created_by=OWNER, actor="cli")
    assert result.resolved == [] and result.event.actor == "cli"
    assert await labeler.reports.store.statuses() == []


async def test_migration_matches_table_definitions(labeler: Labeler) -> None:
    def diff(conn: Any) -> list[Any]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return [d for d in compare_metadata(context, metadata) if any(name in repr(d) for name in MINE)]

    async with labeler.engine.connect() as conn:
        assert await conn.run_sync(diff) == []
