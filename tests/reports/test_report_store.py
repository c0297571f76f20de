"""The report store on SQLite and PostgreSQL: counters stay right under concurrency, and the migration matches
the table definitions."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from report_helpers import APPEAL, VIOLATION

from labeler.reports import ReportInput, Subject
from labeler.reports.models import EVENT_ACKNOWLEDGE, EVENT_RESOLVE_APPEAL
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
