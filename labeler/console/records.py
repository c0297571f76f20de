"""Read-only console pages: the hash banks (with entries switched off or held for review), the audit log of
moderation events (who, through which credential, what, why), and one subject's history (as `labeler explain`)."""

from __future__ import annotations

from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from labeler.console.auth import actor, console_auth
from labeler.console.web import ConsoleError, page, render
from labeler.pipeline.evidence import explain, summary
from labeler.reports.subject import parse_subject_param
from labeler.service import Labeler
from labeler.xrpc.params import get_int

AUDIT_PAGE: Final = 100


@page
async def banks(request: Request) -> Response:
    session = await console_auth(request).require(request)
    labeler: Labeler = request.app.state.labeler
    context = {
        "session": session,
        "actor": actor(session),
        "banks": await labeler.pipeline.banks.all_banks(),
        "states": await labeler.pipeline.screen.states(),
    }
    return render(request, "banks.html", context)


@page
async def audit(request: Request) -> Response:
    """Moderation events newest first, 100 a page (`before` = the last id seen)."""
    session = await console_auth(request).require(request)
    labeler: Labeler = request.app.state.labeler
    before = get_int(request.query_params, "before", default=None, minimum=1, maximum=2**62)
    events = await labeler.reports.store.events(limit=AUDIT_PAGE, cursor=before)
    context = {
        "session": session,
        "actor": actor(session),
        "events": events,
        "next": events[-1].id if len(events) == AUDIT_PAGE else None,
    }
    return render(request, "audit.html", context)


@page
async def history(request: Request) -> Response:
    """Why a subject carries labels, as `labeler explain` tells it: current labels, label history with evidence,
    review items with their decisions, and every action with its outcome and reversal."""
    session = await console_auth(request).require(request)
    labeler: Labeler = request.app.state.labeler
    raw = request.query_params.get("uri", "").strip()
    if not raw:
        raise ConsoleError(400, "name a subject: ?uri=<at:// URI or DID>")
    uri = parse_subject_param(raw)
    p = labeler.pipeline
    report = await explain(labeler.store, p.jobs, p.reviews, uri, p.actioner.outbox)
    context = {"session": session, "actor": actor(session), "report": report, "summary": summary}
    return render(request, "history.html", context)
