"""Report rows, the per-subject queue status, and the moderation event log (tables in `labeler.store.schema`).

Each write is one transaction that keeps the three tables consistent: a report adds its row, bumps its
subject's counters and logs a `modEventReport`; a moderator action resolves open reports, lowers the counters
by the rows it actually changed (`UPDATE … RETURNING`, so two moderators racing cannot double-count) and logs
the action with who did it. Counters change by increments, never by recounting, which stays correct under
PostgreSQL's read-committed concurrency. SQLite write transactions start with BEGIN IMMEDIATE (one writer).

Moderator actions are group-committed (`labeler.reports.group_commit`): concurrent actions share one transaction
and one fsync, as labels do in the label writer, and each caller is answered only after that commit. The batch
first reads (on PostgreSQL: locks, in subject order, so two batches cannot deadlock) the status rows of its
subjects; a subject with no open reports needs no resolving UPDATE, and one never reported has no status to touch,
so the common emitEvent on an unreported subject costs only its share of one multi-row INSERT of the events.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from labeler.protocol import syntax
from labeler.protocol.storable import check_json, check_text
from labeler.reports.group_commit import GroupCommitter
from labeler.reports.models import EVENT_REPORT, ModEvent, Report, ReportInput, ReportStatus, SubjectStatus
from labeler.reports.reasons import APPEALS, is_appeal
from labeler.reports.subject import Subject
from labeler.store.engine import is_sqlite, write_transaction
from labeler.store.schema import moderation_events, report_subjects, reports

#: Which open reports on a subject an action resolves.
Scope = Literal["all", "appeals", "reports"]

#: Most moderator actions committed in one transaction.
MAX_ACTION_BATCH = 500


class DuplicateAppeal(Exception):
    """The reporter already has an open appeal on this subject."""


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What a moderator action did: its audit event and the ids of the reports it resolved."""

    event: ModEvent
    resolved: list[int]


@dataclass(frozen=True, slots=True)
class _Action:
    """One queued moderator action (the arguments of `ReportStore.act`)."""

    subject: Subject
    event: dict[str, Any]
    created_by: str
    actor: str
    resolve_to: ReportStatus | None
    scope: Scope
    report_ids: Sequence[int] | None
    note: str | None
    mod_tool: dict[str, Any] | None


def _report(row: Any) -> Report:
    return Report(
        id=row.id,
        reason_type=row.reason_type,
        subject=Subject.from_row(row.subject_type, row.subject_uri, row.subject_did, row.subject_cid),
        reported_by=row.reported_by,
        created_at=row.created_at,
        reason=row.reason,
        mod_tool=row.mod_tool,
        status=row.status,
        resolved_by=row.resolved_by,
        resolved_at=row.resolved_at,
        note=row.note,
    )


def _status(row: Any) -> SubjectStatus:
    return SubjectStatus(
        id=row.id,
        subject=Subject.from_row(row.subject_type, row.subject_uri, row.subject_did, row.subject_cid),
        report_count=row.report_count,
        open_count=row.open_count,
        open_appeal_count=row.open_appeal_count,
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_report_id=row.last_report_id,
        last_reported_at=row.last_reported_at,
        last_reviewed_by=row.last_reviewed_by,
        last_reviewed_at=row.last_reviewed_at,
        last_appealed_at=row.last_appealed_at,
        comment=row.comment,
    )


def _event(row: Any) -> ModEvent:
    return ModEvent(
        id=row.id,
        event=row.event,
        subject=Subject.from_row(row.subject_type, row.subject_uri, row.subject_did, row.subject_cid),
        created_by=row.created_by,
        actor=row.actor,
        created_at=row.created_at,
        report_id=row.report_id,
        mod_tool=row.mod_tool,
    )


def _page(query: Any, column: Any, cursor: int | None, descending: bool, limit: int) -> Any:
    if cursor is not None:
        query = query.where(column < cursor if descending else column > cursor)
    return query.order_by(column.desc() if descending else column).limit(limit)


class ReportStore:
    """Queries over `reports`, `report_subjects` and `moderation_events` of one engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sqlite = is_sqlite(engine)
        self._actions = GroupCommitter(self._commit_actions, max_batch=MAX_ACTION_BATCH, name="moderation-actions")

    def _write(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return write_transaction(self.engine, "report store write")

    async def add(self, report: ReportInput, reported_by: str) -> Report:
        """Store a report, count it on its subject and log it; `DuplicateAppeal` for a second open appeal,
        `Unstorable` (before anything is written) for text that cannot be stored or served."""
        check_text(report.reason_type, "reasonType")
        check_text(report.reason or "", "reason")
        check_json(report.mod_tool, "modTool")
        check_text(reported_by, "reporter")
        now = syntax.now()
        subject = report.subject
        appeal = is_appeal(report.reason_type)
        async with self._write() as conn:
            if appeal and await self._has_open_appeal(conn, subject.uri, reported_by):
                raise DuplicateAppeal(subject.uri)
            row = {
                "created_at": now, "reported_by": reported_by, "reason_type": report.reason_type,
                "reason": report.reason, "subject_type": subject.type, "subject_uri": subject.uri,
                "subject_did": subject.did, "subject_cid": subject.cid, "mod_tool": report.mod_tool, "status": "open",
            }  # fmt: skip
            report_id = int((await conn.execute(reports.insert().values(row).returning(reports.c.id))).scalar_one())
            await self._count_report(conn, subject, report_id, now, appeal)
            event: dict[str, Any] = {"$type": EVENT_REPORT, "reportType": report.reason_type}
            if report.reason is not None:
                event["comment"] = report.reason
            row = self._event_row(subject, event, reported_by, reported_by, now, report_id, report.mod_tool)
            await self._insert_events(conn, [row])
        return Report(report_id, report.reason_type, subject, reported_by, now, report.reason, report.mod_tool)

    async def act(
        self,
        subject: Subject,
        event: dict[str, Any],
        *,
        created_by: str,
        actor: str,
        resolve_to: ReportStatus | None = None,
        scope: Scope = "all",
        report_ids: Sequence[int] | None = None,
        note: str | None = None,
        mod_tool: dict[str, Any] | None = None,
    ) -> ActionResult:
        """Log a moderator action on `subject` and, with `resolve_to`, close its open reports (by `scope`, or
        only `report_ids`). An action on a subject nobody reported is still logged. Returns after the commit;
        concurrent actions share one transaction (see the module docstring). `Unstorable` for text that cannot be
        stored or served, checked here so that it never joins (and fails) a batch."""
        check_json(event, "event")
        check_json(mod_tool, "modTool")
        for text, what in ((created_by, "createdBy"), (actor, "actor"), (note or "", "note")):
            check_text(text, what)
        action = _Action(subject, event, created_by, actor, resolve_to, scope, report_ids, note, mod_tool)
        return await self._actions.submit(action)

    async def _commit_actions(self, actions: Sequence[_Action]) -> list[ActionResult]:
        now = syntax.now()
        resolved: list[list[int]] = []
        async with self._write() as conn:
            open_counts = await self._lock_statuses(conn, {a.subject.uri for a in actions})
            for a in actions:
                open_count = open_counts.get(a.subject.uri)
                # Never reported (no status row): no reports to resolve and no status to update.
                resolved.append([] if open_count is None else await self._apply(conn, a, open_count, now))
            rows = [self._event_row(a.subject, a.event, a.created_by, a.actor, now, None, a.mod_tool) for a in actions]
            event_ids = await self._insert_events(conn, rows)
        return [
            ActionResult(ModEvent(event_id, a.event, a.subject, a.created_by, a.actor, now, None, a.mod_tool), ids)
            for a, event_id, ids in zip(actions, event_ids, resolved, strict=True)
        ]

    async def _apply(self, conn: AsyncConnection, a: _Action, open_count: int, now: str) -> list[int]:
        """Resolve the action's reports (unless none is open) and update its subject's status row."""
        resolved: list[int] = []
        if a.resolve_to is not None and open_count > 0:
            resolved = await self._resolve(conn, a.subject, a.resolve_to, a.scope, a.report_ids, a.actor, now, a.note)
        changes: dict[str, Any] = {"updated_at": now}
        if a.resolve_to is not None:
            changes.update(last_reviewed_by=a.created_by, last_reviewed_at=now)
        if a.note:
            changes["comment"] = a.note
        await conn.execute(report_subjects.update().where(report_subjects.c.subject_uri == a.subject.uri), changes)
        return resolved

    async def _insert_events(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> list[int]:
        """Insert event rows with multi-row INSERTs; their ids, in the order of `rows`.

        PostgreSQL: SQLAlchemy orders RETURNING by parameter. SQLite: asking it to would insert row by row, and it
        is not needed: this transaction is the only writer, and SQLite gives the rows of an INSERT increasing ids
        in the order it inserts them, which is the order of the VALUES rows (of the statements, in turn).
        """
        ordered = not self._sqlite
        insert = moderation_events.insert().returning(moderation_events.c.id, sort_by_parameter_order=ordered)
        ids = [int(row.id) for row in await conn.execute(insert, rows)]
        return ids if ordered else sorted(ids)

    async def _lock_statuses(self, conn: AsyncConnection, subject_uris: set[str]) -> dict[str, int]:
        """Open-report counts of those subjects that have a status row. On PostgreSQL the rows are locked in
        subject order, so a report on one of them waits for this transaction (and batches never deadlock)."""
        table = report_subjects.c
        query = (
            sa.select(table.subject_uri, table.open_count)
            .where(table.subject_uri.in_(sorted(subject_uris)))
            .order_by(table.subject_uri)
        )
        if not self._sqlite:
            query = query.with_for_update()
        return {row.subject_uri: row.open_count for row in await conn.execute(query)}

    async def _resolve(
        self,
        conn: AsyncConnection,
        subject: Subject,
        status: ReportStatus,
        scope: Scope,
        report_ids: Sequence[int] | None,
        actor: str,
        now: str,
        note: str | None,
    ) -> list[int]:
        query = reports.update().where(reports.c.subject_uri == subject.uri, reports.c.status == "open")
        if report_ids is not None:
            query = query.where(reports.c.id.in_(list(report_ids)))
        if scope == "appeals":
            query = query.where(reports.c.reason_type.in_(sorted(APPEALS)))
        elif scope == "reports":
            query = query.where(reports.c.reason_type.not_in(sorted(APPEALS)))
        query = query.values(status=status, resolved_by=actor, resolved_at=now, note=note)
        rows = (await conn.execute(query.returning(reports.c.id, reports.c.reason_type))).all()
        if rows:
            appeals = sum(1 for r in rows if is_appeal(r.reason_type))
            await conn.execute(
                report_subjects.update()
                .where(report_subjects.c.subject_uri == subject.uri)
                .values(
                    open_count=report_subjects.c.open_count - len(rows),
                    open_appeal_count=report_subjects.c.open_appeal_count - appeals,
                )
            )
        return sorted(r.id for r in rows)

    async def _has_open_appeal(self, conn: AsyncConnection, subject_uri: str, reporter: str) -> bool:
        query = sa.select(reports.c.id).where(
            reports.c.subject_uri == subject_uri,
            reports.c.reported_by == reporter,
            reports.c.status == "open",
            reports.c.reason_type.in_(sorted(APPEALS)),
        )
        return (await conn.execute(query.limit(1))).first() is not None

    async def _count_report(
        self, conn: AsyncConnection, subject: Subject, report_id: int, now: str, appeal: bool
    ) -> None:
        values = {
            "subject_uri": subject.uri, "subject_did": subject.did, "subject_type": subject.type,
            "subject_cid": subject.cid, "report_count": 1, "open_count": 1, "open_appeal_count": int(appeal),
            "created_at": now, "updated_at": now, "last_report_id": report_id, "last_reported_at": now,
            "last_appealed_at": now if appeal else None,
        }  # fmt: skip
        insert = (sqlite.insert if self._sqlite else postgresql.insert)(report_subjects).values(values)
        table = report_subjects.c
        update: dict[str, Any] = {
            "report_count": table.report_count + 1,
            "open_count": table.open_count + 1,
            "open_appeal_count": table.open_appeal_count + int(appeal),
            "subject_cid": insert.excluded.subject_cid,
            "updated_at": now,
            "last_report_id": report_id,
            "last_reported_at": now,
        }
        if appeal:
            update["last_appealed_at"] = now
        await conn.execute(insert.on_conflict_do_update(index_elements=[table.subject_uri], set_=update))

    @staticmethod
    def _event_row(
        subject: Subject,
        event: dict[str, Any],
        created_by: str,
        actor: str,
        now: str,
        report_id: int | None,
        mod_tool: dict[str, Any] | None,
    ) -> dict[str, Any]:
        return {
            "created_at": now, "event_type": str(event.get("$type", "")), "event": event,
            "subject_type": subject.type, "subject_uri": subject.uri, "subject_did": subject.did,
            "subject_cid": subject.cid, "created_by": created_by, "actor": actor, "report_id": report_id,
            "mod_tool": mod_tool,
        }  # fmt: skip

    # Reads.

    async def get(self, report_id: int) -> Report | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(reports).where(reports.c.id == report_id))).first()
        return _report(row) if row is not None else None

    async def list_reports(
        self,
        *,
        status: ReportStatus | None = None,
        subject_uri: str | None = None,
        limit: int = 50,
        cursor: int | None = None,
        descending: bool = False,
    ) -> list[Report]:
        """Reports oldest first by default (a queue is worked in arrival order); `cursor` is the last id seen."""
        query = sa.select(reports)
        if status is not None:
            query = query.where(reports.c.status == status)
        if subject_uri is not None:
            query = query.where(reports.c.subject_uri == subject_uri)
        async with self.engine.connect() as conn:
            return [_report(r) for r in await conn.execute(_page(query, reports.c.id, cursor, descending, limit))]

    async def statuses(
        self,
        *,
        review_open: bool | None = None,
        subject_uri: str | None = None,
        appealed: bool | None = None,
        limit: int = 50,
        cursor: int | None = None,
        descending: bool = True,
    ) -> list[SubjectStatus]:
        """Subject statuses by the recency of their last report; `cursor` is the last `last_report_id` seen."""
        table = report_subjects.c
        query = sa.select(report_subjects)
        if review_open is not None:
            query = query.where(table.open_count > 0 if review_open else table.open_count == 0)
        if appealed is not None:
            query = query.where(table.open_appeal_count > 0 if appealed else table.open_appeal_count == 0)
        if subject_uri is not None:
            query = query.where(table.subject_uri == subject_uri)
        async with self.engine.connect() as conn:
            page = _page(query, table.last_report_id, cursor, descending, limit)
            return [_status(r) for r in await conn.execute(page)]

    async def events(
        self,
        *,
        subject_uri: str | None = None,
        types: Sequence[str] = (),
        created_by: str | None = None,
        limit: int = 50,
        cursor: int | None = None,
        descending: bool = True,
    ) -> list[ModEvent]:
        """The audit log, newest first by default; `cursor` is the last event id seen."""
        query = sa.select(moderation_events)
        if subject_uri is not None:
            query = query.where(moderation_events.c.subject_uri == subject_uri)
        if types:
            query = query.where(moderation_events.c.event_type.in_(list(types)))
        if created_by is not None:
            query = query.where(moderation_events.c.created_by == created_by)
        async with self.engine.connect() as conn:
            page = _page(query, moderation_events.c.id, cursor, descending, limit)
            return [_event(r) for r in await conn.execute(page)]
