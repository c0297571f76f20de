"""What each moderation event does to the report queue. Minimal, and the same for XRPC (emitEvent) and the CLI.

    event ($type tools.ozone.moderation.defs#…)     open reports on the subject        becomes
    modEventLabel (create or negate label values)   all, appeals included              actioned
    modEventAcknowledge                             all but appeals                    dismissed
    modEventResolveAppeal                           appeals only                       dismissed
    modEventComment (comment required)              none; the comment is noted         —

"actioned" means our labels changed because of the reports; "dismissed" means a moderator looked and changed
nothing. Reversing a label in answer to an appeal is a modEventLabel that negates it, which closes the appeal
as actioned; modEventResolveAppeal closes it without a change. An acknowledge may carry `"resolution":
"actioned"` for reports handled some other way (e.g. `labeler label add` from a shell); the CLI's
`reports resolve` uses that form, optionally limited to one report. Every event is logged with who sent it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from labeler.protocol.errors import InvalidRequest
from labeler.reports.models import (
    EVENT_ACKNOWLEDGE,
    EVENT_COMMENT,
    EVENT_LABEL,
    EVENT_RESOLVE_APPEAL,
    ReportStatus,
)
from labeler.reports.store import Scope

MAX_COMMENT_CHARS: Final = 10_000
QUEUE_EVENTS: Final = frozenset({EVENT_ACKNOWLEDGE, EVENT_RESOLVE_APPEAL, EVENT_COMMENT})


@dataclass(frozen=True, slots=True)
class QueueAction:
    """How one event changes the queue: which open reports it resolves, to what, and the note it leaves."""

    resolve_to: ReportStatus | None
    scope: Scope
    note: str | None


def is_queue_event(event: Any) -> bool:
    """Events handled by the report queue alone (label events go through the label writer first)."""
    kind = event.get("$type") if isinstance(event, dict) else None
    return isinstance(kind, str) and kind in QUEUE_EVENTS


def queue_action(event: dict[str, Any]) -> QueueAction:
    """The queue effect of a validated event object; `InvalidRequest` for a malformed one."""
    kind = event.get("$type")
    comment = event.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT_CHARS or "\x00" in comment):
        raise InvalidRequest(f"event.comment must be a string of at most {MAX_COMMENT_CHARS} characters")
    if kind == EVENT_LABEL:
        return QueueAction("actioned", "all", comment)
    if kind == EVENT_ACKNOWLEDGE:
        resolution = event.get("resolution", "dismissed")
        if resolution not in ("dismissed", "actioned"):
            raise InvalidRequest('event.resolution must be "dismissed" or "actioned"')
        return QueueAction(resolution, "reports", comment)
    if kind == EVENT_RESOLVE_APPEAL:
        return QueueAction("dismissed", "appeals", comment)
    if kind == EVENT_COMMENT:
        if not comment:
            raise InvalidRequest("event.comment is required for modEventComment")
        return QueueAction(None, "all", comment)
    raise InvalidRequest(f"unsupported event type {str(kind)[:100]!r}")
