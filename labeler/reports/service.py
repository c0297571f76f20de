"""The report queue's rules: accepting a report (Ozone's business rules), moderator actions, and report hooks.

Extension point for the image pipeline: `ReportService.on_report(listener)` registers an async callback that
runs after each report is committed, before createReport answers, e.g. to enqueue image jobs for a reported
post. A failing listener is logged and does not fail the report (the report is already stored, and a reporter
must not see our pipeline's problems); a pipeline that needs every report can also sweep open reports.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from labeler.declaration import Declaration
from labeler.protocol.errors import Forbidden, InvalidRequest
from labeler.protocol.storable import Unstorable
from labeler.reports.actions import queue_action
from labeler.reports.models import Report
from labeler.reports.reasons import is_appeal
from labeler.reports.store import ActionResult, DuplicateAppeal, ReportStore
from labeler.reports.subject import Subject
from labeler.reports.validate import parse_report_input

log = logging.getLogger(__name__)

ReportListener = Callable[[Report], Awaitable[None]]


class AlreadyAppealed(Forbidden):
    """A second appeal while the first still waits for a decision (Ozone's name and status)."""

    name = "AlreadyAppealed"


class ReportService:
    """Accepts reports from verified reporters and applies moderators' actions to the queue."""

    def __init__(self, store: ReportStore, declaration: Declaration) -> None:
        self.store = store
        self.declaration = declaration
        self._listeners: list[ReportListener] = []

    def on_report(self, listener: ReportListener) -> None:
        """Call `listener(report)` after every report is stored (see the module docstring)."""
        self._listeners.append(listener)

    async def submit(self, body: dict[str, Any], reported_by: str) -> Report:
        """Validate a createReport body from the verified DID `reported_by`, store it, run the hooks.

        An appeal must come from the subject's own account (Ozone: 403 "You cannot appeal this report"), and
        one appeal per reporter and subject may be open at a time (403 AlreadyAppealed).
        """
        report_input = parse_report_input(body, self.declaration)
        if is_appeal(report_input.reason_type) and reported_by != report_input.subject.did:
            raise Forbidden("only the subject's own account can appeal")
        try:
            report = await self.store.add(report_input, reported_by)
        except DuplicateAppeal:
            raise AlreadyAppealed("awaiting a decision on a previous appeal") from None
        except Unstorable as exc:
            raise InvalidRequest(str(exc)) from None
        for listener in self._listeners:
            try:
                await listener(report)
            except Exception:
                log.exception("report listener %r failed on report %d", listener, report.id)
        return report

    async def act(
        self,
        subject: Subject,
        event: dict[str, Any],
        *,
        created_by: str,
        actor: str,
        report_ids: list[int] | None = None,
        mod_tool: dict[str, Any] | None = None,
    ) -> ActionResult:
        """Apply and audit a moderation event (see `labeler.reports.actions` for what each type does).

        With `report_ids`, only those open reports on `subject` are resolved, appeals included.
        """
        action = queue_action(event)
        try:
            return await self.store.act(
                subject,
                event,
                created_by=created_by,
                actor=actor,
                resolve_to=action.resolve_to,
                scope="all" if report_ids is not None else action.scope,  # named reports are resolved as named
                report_ids=report_ids,
                note=action.note,
                mod_tool=mod_tool,
            )
        except Unstorable as exc:
            raise InvalidRequest(str(exc)) from None
