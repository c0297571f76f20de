"""The review queue over HTTP (operator Basic auth, or a moderator's service token), the API twin of
`labeler review …`:

    GET  /api/v1/review?status=pending|confirmed|rejected|all&after=<id>&limit=1..100   → {"items": [...], "cursor"}
    GET  /api/v1/review/<id>                                                           → item with evidence
    POST /api/v1/review/<id>/confirm   {"note": "…"}  → item + "actions" (labels published, takedown, report…)
    POST /api/v1/review/<id>/reject    {"note": "…", "false_positive": "disable-entry" | "allow-list"}
                                       → item + "actions" (the reversals of what the match did)

Moderator tokens are checked against Ozone's method names: reading needs `lxm`
`tools.ozone.moderation.queryStatuses`, deciding needs `tools.ozone.moderation.emitEvent` (the same rights as
the rest of the moderation API). Errors use the XRPC error shape.
"""

from __future__ import annotations

from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from labeler.admin.auth import authenticate_moderator
from labeler.admin.moderation import EMIT_EVENT, QUERY_STATUSES
from labeler.pipeline.actions.decisions import FALSE_POSITIVE
from labeler.pipeline.banks import BankError
from labeler.pipeline.match.base import MatchFailure
from labeler.pipeline.review import STATUSES, ReviewError
from labeler.protocol.errors import InvalidRequest, NotFound, ServiceUnavailable
from labeler.service import Labeler
from labeler.xrpc.body import parse_json
from labeler.xrpc.params import get_int, get_str, path_id
from labeler.xrpc.upload_api import UpstreamFailure

PATH: Final = "/api/v1/review"
_MAX_NOTE: Final = 2000


async def list_items(request: Request) -> JSONResponse:
    await authenticate_moderator(request, QUERY_STATUSES)
    labeler: Labeler = request.app.state.labeler
    params = request.query_params
    status = get_str(params, "status") or "pending"
    if status not in (*STATUSES, "all"):
        raise InvalidRequest(f"status must be one of {', '.join(STATUSES)}, all")
    limit = get_int(params, "limit", default=50, minimum=1, maximum=100) or 50
    after = get_int(params, "after", default=0, minimum=0, maximum=2**62) or 0
    items = await labeler.pipeline.reviews.list(status=None if status == "all" else status, after=after, limit=limit)
    cursor = items[-1].id if len(items) == limit else None
    return JSONResponse({"items": [i.to_json() for i in items], "cursor": cursor})


async def show_item(request: Request) -> JSONResponse:
    await authenticate_moderator(request, QUERY_STATUSES)
    labeler: Labeler = request.app.state.labeler
    try:
        item = await labeler.pipeline.reviews.get(path_id(request, "item_id"))
    except ReviewError as exc:
        raise NotFound(str(exc)) from None
    return JSONResponse(item.to_json())


async def confirm_item(request: Request) -> JSONResponse:
    return await _decide(request, confirm=True)


async def reject_item(request: Request) -> JSONResponse:
    return await _decide(request, confirm=False)


async def _decide(request: Request, *, confirm: bool) -> JSONResponse:
    actor = await authenticate_moderator(request, EMIT_EVENT)
    labeler: Labeler = request.app.state.labeler
    item_id = path_id(request, "item_id")
    note, false_positive = _body(await request.body())
    if confirm and false_positive is not None:
        raise InvalidRequest("false_positive applies to a rejection")
    try:
        await labeler.pipeline.reviews.get(item_id)
    except ReviewError as exc:
        raise NotFound(str(exc)) from None
    decisions = labeler.pipeline.decisions
    try:
        if confirm:
            verdict = await decisions.confirm(item_id, actor=actor, note=note, via="api")
        else:
            verdict = await decisions.reject(item_id, actor=actor, note=note, false_positive=false_positive, via="api")
    except (ReviewError, BankError) as exc:
        raise InvalidRequest(str(exc)) from None
    except MatchFailure as exc:
        if exc.retryable:
            raise ServiceUnavailable(f"the matcher cannot take the allow-list entry now: {exc.message}") from None
        raise UpstreamFailure(f"the matcher refused the allow-list entry: {exc.message}") from None
    return JSONResponse(verdict.to_json())


def _body(body: bytes) -> tuple[str | None, str | None]:
    """(note, false_positive) from an optional JSON body."""
    if not body.strip():
        return None, None
    data = parse_json(body)
    if not isinstance(data, dict):
        raise InvalidRequest("body must be a JSON object")
    note, false_positive = data.get("note"), data.get("false_positive")
    if note is not None and (not isinstance(note, str) or len(note) > _MAX_NOTE):
        raise InvalidRequest(f"note must be a string of at most {_MAX_NOTE} characters")
    if false_positive is not None and false_positive not in FALSE_POSITIVE:
        raise InvalidRequest(f"false_positive must be one of {', '.join(FALSE_POSITIVE)}")
    return note, false_positive


def review_routes() -> list[Route]:
    return [
        Route(PATH, list_items, methods=["GET"]),
        # Ids are read by path_id, not Starlette's `:int`, whose int() of any run of digits fails or overflows.
        Route(PATH + "/{item_id}", show_item, methods=["GET"]),
        Route(PATH + "/{item_id}/confirm", confirm_item, methods=["POST"]),
        Route(PATH + "/{item_id}/reject", reject_item, methods=["POST"]),
    ]
