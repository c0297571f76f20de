"""Reports (createReport) and the moderation queue: validation, storage, moderator actions, and report hooks."""

from __future__ import annotations

from labeler.reports.models import ModEvent, Report, ReportInput, SubjectStatus
from labeler.reports.service import AlreadyAppealed, ReportListener, ReportService
from labeler.reports.store import ReportStore
from labeler.reports.subject import Subject

__all__ = [
    "AlreadyAppealed",
    "ModEvent",
    "Report",
    "ReportInput",
    "ReportListener",
    "ReportService",
    "ReportStore",
    "Subject",
    "SubjectStatus",
]
