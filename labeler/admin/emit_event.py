"""`tools.ozone.moderation.emitEvent`, the label-event subset: how Ozone-compatible tooling drives labelers.

Accepts `tools.ozone.moderation.defs#modEventLabel` (`createLabelVals`, `negateLabelVals`, `durationInHours` →
`exp`) on a `com.atproto.admin.defs#repoRef` or `com.atproto.repo.strongRef` subject, and answers a lexicon-valid
`modEventView`. Every label goes through the writer; the event is then logged in the moderation audit log (the
view's `id` is that event's id) and closes the subject's open reports as actioned. Negating values the pipeline
published reverses what those matches did (`Decisions.label_negated`: takedowns lifted, reviews closed).
Report-queue events (acknowledge, resolveAppeal, comment) go to `labeler.admin.moderation`. Callers: the operator
(Basic) or a configured moderator (service auth, `lxm` = emitEvent).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from labeler.admin.auth import authenticate_moderator
from labeler.admin.moderation import EMIT_EVENT, created_by_for, emit_queue_event
from labeler.labels.writer import LabelRequest
from labeler.protocol import syntax
from labeler.protocol.errors import InvalidRequest
from labeler.protocol.label import InvalidLabel, check_value
from labeler.reports.actions import is_queue_event, queue_action
from labeler.reports.store import ActionResult
from labeler.reports.subject import Subject, parse_subject_ref
from labeler.reports.validate import parse_mod_tool
from labeler.service import Labeler
from labeler.xrpc.body import read_json_object

MOD_EVENT_LABEL = "tools.ozone.moderation.defs#modEventLabel"
MAX_VALUES = 100
MAX_DURATION_HOURS = 24 * 365 * 100
MAX_BLOB_CIDS = 100


def _values(event: dict[str, Any], key: str) -> list[str]:
    values = event.get(key, [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise InvalidRequest(f"event.{key} must be an array of strings")
    if len(values) > MAX_VALUES:
        raise InvalidRequest(f"event.{key}: at most {MAX_VALUES} values")
    try:
        return [check_value(v) for v in values]
    except InvalidLabel as exc:
        raise InvalidRequest(f"event.{key}: {exc}") from None


def parse_label_event(event: Any) -> tuple[list[str], list[str], int | None, str | None]:
    if not isinstance(event, dict):
        raise InvalidRequest("event must be an object")
    if event.get("$type") != MOD_EVENT_LABEL:
        raise InvalidRequest(
            f"unsupported event type {str(event.get('$type'))[:100]!r}: this labeler accepts {MOD_EVENT_LABEL}"
            " and the report-queue events modEventAcknowledge, modEventResolveAppeal, modEventComment"
        )
    create, negate = _values(event, "createLabelVals"), _values(event, "negateLabelVals")
    if not create and not negate:
        raise InvalidRequest("event has no createLabelVals or negateLabelVals")
    duration = event.get("durationInHours")
    if duration is not None and (
        not isinstance(duration, int) or isinstance(duration, bool) or not 0 < duration <= MAX_DURATION_HOURS
    ):
        raise InvalidRequest("event.durationInHours must be a positive integer")
    # The report queue's checks of the event, made now: after the labels are written nothing may be refused.
    comment = queue_action(event).note
    return create, negate, duration, comment


def _blob_cids(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_BLOB_CIDS or not all(isinstance(c, str) for c in value):
        raise InvalidRequest(f"subjectBlobCids must be an array of at most {MAX_BLOB_CIDS} CIDs")
    try:
        return [syntax.check_cid(cid) for cid in value]
    except ValueError as exc:
        raise InvalidRequest(f"subjectBlobCids: {exc}") from None


async def emit_event(request: Request) -> JSONResponse:
    actor = await authenticate_moderator(request, EMIT_EVENT)
    labeler: Labeler = request.app.state.labeler
    body = await read_json_object(request)
    if is_queue_event(body.get("event")):
        return await emit_queue_event(labeler, body, actor)
    # Every part of the request is checked before the labels are written: it is refused whole, or done whole.
    subject = parse_subject_ref(body.get("subject"))
    parse_label_event(body.get("event"))
    created_by = created_by_for(body, actor, labeler)
    mod_tool = parse_mod_tool(body.get("modTool"))
    blob_cids = _blob_cids(body.get("subjectBlobCids", []))
    logged, created_at = await apply_label_event(
        labeler, subject, body["event"], created_by=created_by, actor=actor, mod_tool=mod_tool
    )
    view: dict[str, Any] = {
        "id": logged.event.id,
        "event": body["event"],
        "subject": body["subject"],
        "subjectBlobCids": blob_cids,
        "createdBy": created_by,
        "createdAt": created_at,
    }
    if mod_tool is not None:
        view["modTool"] = mod_tool
    return JSONResponse(view)


async def apply_label_event(
    labeler: Labeler,
    subject: Subject,
    event: dict[str, Any],
    *,
    created_by: str,
    actor: str,
    mod_tool: dict[str, Any] | None = None,
) -> tuple[ActionResult, str]:
    """What a modEventLabel does, for emitEvent and the console: write the labels, reverse the pipeline's
    decisions behind negated values, audit the event and close the subject's open reports. Returns the audit
    result and the labels' `cts`. InvalidRequest (nothing done) if the event is not a valid label event."""
    create, negate, duration, comment = parse_label_event(event)
    exp = None
    if duration is not None:
        exp = syntax.format_datetime(datetime.now(UTC) + timedelta(hours=duration))
    requests = [
        LabelRequest(uri=subject.uri, cid=subject.cid, val=val, neg=neg, exp=None if neg else exp,
                     actor=f"{actor}:{created_by}", via="emitEvent", reason=comment)
        for vals, neg in ((create, False), (negate, True))
        for val in vals
    ]  # fmt: skip
    try:
        stored = await labeler.writer.write(requests)
    except InvalidLabel as exc:
        raise InvalidRequest(str(exc)) from None
    if negate:
        await labeler.pipeline.decisions.label_negated(subject.uri, subject.cid, negate, actor=created_by, note=comment)
    logged = await labeler.reports.act(subject, event, created_by=created_by, actor=actor, mod_tool=mod_tool)
    return logged, stored[0].label.cts
