"""Report-queue records as the rest of the service sees them: a report, a subject's status, a moderation event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from labeler.reports.subject import Subject

ReportStatus = Literal["open", "actioned", "dismissed"]
REPORT_STATUSES: Final = ("open", "actioned", "dismissed")

MOD_DEFS: Final = "tools.ozone.moderation.defs#"
EVENT_REPORT: Final = MOD_DEFS + "modEventReport"
EVENT_LABEL: Final = MOD_DEFS + "modEventLabel"
EVENT_ACKNOWLEDGE: Final = MOD_DEFS + "modEventAcknowledge"
EVENT_RESOLVE_APPEAL: Final = MOD_DEFS + "modEventResolveAppeal"
EVENT_COMMENT: Final = MOD_DEFS + "modEventComment"
REVIEW_OPEN: Final = MOD_DEFS + "reviewOpen"
REVIEW_CLOSED: Final = MOD_DEFS + "reviewClosed"


@dataclass(frozen=True, slots=True)
class ReportInput:
    """A validated createReport body, before it has a reporter or an id."""

    reason_type: str
    subject: Subject
    reason: str | None = None
    mod_tool: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Report:
    """A stored report. `status` is open until a moderator acts on it (actioned) or decides not to (dismissed)."""

    id: int
    reason_type: str
    subject: Subject
    reported_by: str
    created_at: str
    reason: str | None = None
    mod_tool: dict[str, Any] | None = None
    status: ReportStatus = "open"
    resolved_by: str | None = None
    resolved_at: str | None = None
    note: str | None = None

    def to_output(self) -> dict[str, Any]:
        """The createReport output (`com.atproto.moderation.createReport#output`)."""
        out: dict[str, Any] = {"id": self.id, "reasonType": self.reason_type}
        if self.reason is not None:
            out["reason"] = self.reason
        out.update(subject=self.subject.to_ref(), reportedBy=self.reported_by, createdAt=self.created_at)
        return out

    def to_json(self) -> dict[str, Any]:
        """Everything, for moderators (CLI `--json`)."""
        return {
            **self.to_output(),
            "status": self.status,
            "modTool": self.mod_tool,
            "resolvedBy": self.resolved_by,
            "resolvedAt": self.resolved_at,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class SubjectStatus:
    """The queue entry for one subject: every report on it grouped, with counts and the last review."""

    id: int
    subject: Subject
    report_count: int
    open_count: int
    open_appeal_count: int
    created_at: str
    updated_at: str
    last_report_id: int
    last_reported_at: str
    last_reviewed_by: str | None = None
    last_reviewed_at: str | None = None
    last_appealed_at: str | None = None
    comment: str | None = None

    def to_view(self) -> dict[str, Any]:
        """`tools.ozone.moderation.defs#subjectStatusView` (the fields that apply to a labeler), plus counts."""
        view: dict[str, Any] = {
            "id": self.id,
            "subject": self.subject.to_ref(),
            "subjectBlobCids": [],
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "reviewState": REVIEW_OPEN if self.open_count else REVIEW_CLOSED,
            "lastReportedAt": self.last_reported_at,
            "appealed": self.open_appeal_count > 0,
            "takendown": False,
            # Not in Ozone's view (it keeps counts in `accountStats`/`recordsStats`); cheap and useful to triage.
            "reportCount": self.report_count,
            "openReportCount": self.open_count,
        }
        optional = {
            "lastReviewedBy": self.last_reviewed_by,
            "lastReviewedAt": self.last_reviewed_at,
            "lastAppealedAt": self.last_appealed_at,
            "comment": self.comment,
        }
        view.update({k: v for k, v in optional.items() if v is not None})
        return view


@dataclass(frozen=True, slots=True)
class ModEvent:
    """One audited moderation event: a report coming in, or a moderator's action. `actor` is who authenticated."""

    id: int
    event: dict[str, Any]
    subject: Subject
    created_by: str
    actor: str
    created_at: str
    report_id: int | None = None
    mod_tool: dict[str, Any] | None = None

    def to_view(self) -> dict[str, Any]:
        """`tools.ozone.moderation.defs#modEventView`."""
        view: dict[str, Any] = {
            "id": self.id,
            "event": self.event,
            "subject": self.subject.to_ref(),
            "subjectBlobCids": [],
            "createdBy": self.created_by,
            "createdAt": self.created_at,
        }
        if self.mod_tool is not None:
            view["modTool"] = self.mod_tool
        return view
