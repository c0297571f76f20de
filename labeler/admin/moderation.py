"""Moderators' XRPC on the report queue, in Ozone's shapes where they fit (admin password or moderator auth).

- `tools.ozone.moderation.queryStatuses` (GET): one `subjectStatusView` per reported subject, newest report
  first. Params: `subject`, `reviewState` (`…defs#reviewOpen` = has open reports, `…#reviewClosed`),
  `appealed`, `sortDirection` (`desc` default, `asc` = oldest first, i.e. the queue in arrival order),
  `sortField` (only `lastReportedAt`), `limit` 1–100 (50), `cursor`.
- `tools.ozone.moderation.queryEvents` (GET): `modEventView`s from the audit log (reports and actions).
  Params: `subject`, `types` (repeatable), `createdBy`, `sortDirection` (`desc` default), `limit`, `cursor`.
- `tools.ozone.moderation.emitEvent` (POST) with `modEventAcknowledge`, `modEventResolveAppeal` or
  `modEventComment` lands here (from `emit_event`); what each does is in `labeler.reports.actions`.
"""

from __future__ import annotations

from typing import Any, Final

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse

from labeler.admin.auth import authenticate_moderator
from labeler.protocol import syntax
from labeler.protocol.errors import InvalidRequest
from labeler.reports.models import REVIEW_CLOSED, REVIEW_OPEN
from labeler.reports.subject import parse_subject_param, parse_subject_ref
from labeler.reports.validate import parse_mod_tool
from labeler.service import Labeler
from labeler.xrpc.params import get_int, get_list, get_str

QUERY_STATUSES: Final = "tools.ozone.moderation.queryStatuses"
QUERY_EVENTS: Final = "tools.ozone.moderation.queryEvents"
EMIT_EVENT: Final = "tools.ozone.moderation.emitEvent"
MAX_LIMIT: Final = 100
DEFAULT_LIMIT: Final = 50
MAX_TYPES: Final = 20


def created_by_for(body: dict[str, Any], actor: str, labeler: Labeler) -> str:
    """`createdBy` of an emitted event: a moderator acts as their own DID; the operator names one (default: us)."""
    if syntax.is_did(actor):
        given = body.get("createdBy", actor)
        if given != actor:
            raise InvalidRequest("createdBy must be your own DID")
        return actor
    created_by = body.get("createdBy", labeler.settings.did)
    if not isinstance(created_by, str) or not syntax.is_did(created_by):
        raise InvalidRequest("createdBy must be a DID")
    return created_by


async def emit_queue_event(labeler: Labeler, body: dict[str, Any], actor: str) -> JSONResponse:
    """emitEvent for an acknowledge / resolveAppeal / comment event: apply to the queue, answer a modEventView."""
    subject = parse_subject_ref(body.get("subject"))
    created_by = created_by_for(body, actor, labeler)
    mod_tool = parse_mod_tool(body.get("modTool"))
    result = await labeler.reports.act(subject, body["event"], created_by=created_by, actor=actor, mod_tool=mod_tool)
    return JSONResponse(result.event.to_view())


def _choice(params: QueryParams, name: str, choices: dict[str, Any], default: Any) -> Any:
    value = get_str(params, name)
    if value is None:
        return default
    if value not in choices:
        raise InvalidRequest(f"{name}: must be one of {', '.join(choices)}")
    return choices[value]


def _paging(params: QueryParams) -> tuple[int, int | None, bool]:
    limit = get_int(params, "limit", default=DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
    try:
        cursor = get_int(params, "cursor", default=None, minimum=0, maximum=2**63 - 1)
    except InvalidRequest:
        raise InvalidRequest("invalid cursor") from None
    descending = _choice(params, "sortDirection", {"desc": True, "asc": False}, True)
    assert limit is not None
    return limit, cursor, descending


def _subject(params: QueryParams) -> str | None:
    value = get_str(params, "subject")
    return parse_subject_param(value) if value is not None else None


async def query_statuses(request: Request) -> JSONResponse:
    await authenticate_moderator(request, QUERY_STATUSES)
    labeler: Labeler = request.app.state.labeler
    params = request.query_params
    limit, cursor, descending = _paging(params)
    _choice(params, "sortField", {"lastReportedAt": None}, None)
    rows = await labeler.reports.store.statuses(
        review_open=_choice(params, "reviewState", {REVIEW_OPEN: True, REVIEW_CLOSED: False}, None),
        subject_uri=_subject(params),
        appealed=_choice(params, "appealed", {"true": True, "false": False}, None),
        limit=limit + 1,
        cursor=cursor,
        descending=descending,
    )
    body: dict[str, Any] = {"subjectStatuses": [row.to_view() for row in rows[:limit]]}
    if len(rows) > limit:
        body["cursor"] = str(rows[limit - 1].last_report_id)
    return JSONResponse(body)


async def query_events(request: Request) -> JSONResponse:
    await authenticate_moderator(request, QUERY_EVENTS)
    labeler: Labeler = request.app.state.labeler
    params = request.query_params
    limit, cursor, descending = _paging(params)
    created_by = get_str(params, "createdBy")
    if created_by is not None and not syntax.is_did(created_by):
        raise InvalidRequest("createdBy: not a DID")
    rows = await labeler.reports.store.events(
        subject_uri=_subject(params),
        types=get_list(params, "types", max_items=MAX_TYPES),
        created_by=created_by,
        limit=limit + 1,
        cursor=cursor,
        descending=descending,
    )
    body: dict[str, Any] = {"events": [row.to_view() for row in rows[:limit]]}
    if len(rows) > limit:
        body["cursor"] = str(rows[limit - 1].id)
    return JSONResponse(body)
