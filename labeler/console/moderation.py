"""The console's report queue and labels: act on reports (acknowledge, resolve an appeal, comment, label) and
search and negate labels, through the code emitEvent runs (`labeler.reports` for queue events,
`labeler.admin.emit_event.apply_label_event` for labels), so the audit log, the reports' states and the
pipeline's reversals are the same whichever front end a moderator uses.

Events are created by our own DID (as the operator's emitEvent calls are by default) and audited with the
session's name as the actor and MOD_TOOL as the event's `modTool` (atproto's "which tool made this event"), so the
audit log and queryEvents tell the console's events from emitEvent calls made with the same admin password.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from labeler.admin.emit_event import apply_label_event
from labeler.console.auth import VIA, actor, console_auth
from labeler.console.web import ConsoleError, Redirect, page, query_text, render
from labeler.protocol.errors import InvalidRequest
from labeler.reports.models import EVENT_ACKNOWLEDGE, EVENT_COMMENT, EVENT_LABEL, EVENT_RESOLVE_APPEAL
from labeler.reports.subject import REPO_REF, STRONG_REF, Subject, parse_subject_ref
from labeler.service import Labeler
from labeler.xrpc.params import get_int
from labeler.xrpc.query_labels import MAX_CURSOR, check_pattern

REPORTS_PATH: Final = "/console/reports"
LABELS_PATH: Final = "/console/labels"
EVENTS: Final = {
    "acknowledge": EVENT_ACKNOWLEDGE,
    "resolve-appeal": EVENT_RESOLVE_APPEAL,
    "comment": EVENT_COMMENT,
    "label": EVENT_LABEL,
}
MOD_TOOL: Final = {"name": f"atproto-hma-labeler/{VIA}"}
SHOWN: Final = 50
LABELS_PAGE: Final = 100
REPORTS_PER_SUBJECT: Final = 20
MAX_VALUES: Final = 20


def _labeler(request: Request) -> Labeler:
    labeler: Labeler = request.app.state.labeler
    return labeler


def _event(kind: str, form: dict[str, str]) -> dict[str, Any]:
    event: dict[str, Any] = {"$type": EVENTS[kind]}
    comment = form.get("comment", "").strip()
    if comment:
        event["comment"] = comment
    return event


@page
async def reports(request: Request) -> Response:
    """Subjects with open reports, newest report first, each with its open reports (reason types, appeals)."""
    session = await console_auth(request).require(request)
    store = _labeler(request).reports.store
    statuses = await store.statuses(review_open=True, limit=SHOWN)
    groups = [
        (status, await store.list_reports(status="open", subject_uri=status.subject.uri, limit=REPORTS_PER_SUBJECT))
        for status in statuses
    ]
    done = request.query_params.get("done")
    context = {"session": session, "actor": actor(session), "groups": groups, "done": done if done in EVENTS else None}
    return render(request, "reports.html", context)


@page
async def act_on_report(request: Request) -> Response:
    session, form = await console_auth(request).posted(request)
    labeler = _labeler(request)
    kind, uri = form.get("action", ""), form.get("subject", "")
    if kind not in EVENTS:
        raise ConsoleError(400, f"action must be one of {', '.join(EVENTS)}")
    found = await labeler.reports.store.statuses(subject_uri=uri, limit=1) if uri else []
    if not found:
        raise ConsoleError(404, "no reported subject by that name")
    subject, event = found[0].subject, _event(kind, form)
    who, created_by = actor(session), labeler.settings.did
    if kind == "label":
        event["createLabelVals"] = _values(form.get("labels", ""))
        await apply_label_event(labeler, subject, event, created_by=created_by, actor=who, mod_tool=MOD_TOOL)
    else:
        await labeler.reports.act(subject, event, created_by=created_by, actor=who, mod_tool=MOD_TOOL)
    raise Redirect(f"{REPORTS_PATH}?done={kind}")


def _values(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise ConsoleError(400, "name at least one label value (several: separated by commas)")
    if len(values) > MAX_VALUES:
        raise ConsoleError(400, f"at most {MAX_VALUES} label values at once")
    return values


@page
async def labels(request: Request) -> Response:
    """Labels on a subject or a `prefix*` pattern, as queryLabels answers them: oldest first, LABELS_PAGE a page,
    `cursor` the last seq of the page before (queryLabels' cursor)."""
    session = await console_auth(request).require(request)
    query = query_text(request, "q")
    cursor = get_int(request.query_params, "cursor", default=0, minimum=0, maximum=MAX_CURSOR) or 0
    found = []
    if query:
        try:
            pattern = check_pattern(query)
        except InvalidRequest as exc:
            raise ConsoleError(400, exc.message) from None
        found = await _labeler(request).store.query([pattern], [], cursor, LABELS_PAGE + 1)
    context = {
        "session": session,
        "actor": actor(session),
        "query": query,
        "labels": found[:LABELS_PAGE],
        "page_size": LABELS_PAGE,
        "cursor": cursor,
        "next": found[LABELS_PAGE - 1].seq if len(found) > LABELS_PAGE else None,
        "negated": request.query_params.get("negated"),
    }
    return render(request, "labels.html", context)


@page
async def negate_label(request: Request) -> Response:
    session, form = await console_auth(request).posted(request)
    labeler = _labeler(request)
    uri, cid, value = form.get("uri", ""), form.get("cid", "") or None, form.get("val", "")
    subject = _subject(uri, cid)
    event = {**_event("label", form), "negateLabelVals": [value]}
    await apply_label_event(
        labeler, subject, event, created_by=labeler.settings.did, actor=actor(session), mod_tool=MOD_TOOL
    )
    raise Redirect(f"{LABELS_PATH}?q={_quote(uri)}&negated={_quote(value)}")


def _subject(uri: str, cid: str | None) -> Subject:
    """The label's subject as emitEvent would name it: an account, or a record with its CID."""
    if uri.startswith("did:"):
        return parse_subject_ref({"$type": REPO_REF, "did": uri})
    if cid is None:
        raise ConsoleError(400, "a label on a record without a CID cannot be negated here: use labeler label negate")
    return parse_subject_ref({"$type": STRONG_REF, "uri": uri, "cid": cid})


def _quote(value: str) -> str:
    return quote(value, safe="")
