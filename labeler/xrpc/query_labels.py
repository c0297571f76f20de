"""`com.atproto.label.queryLabels` (protocol.md §2): exact and `prefix*` URI patterns, sources, cursor paging.

Results are current-state rows in seq order; the cursor is the last seq returned, and the last page has none.
Rows signed by a retired key are re-signed on the way out.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from labeler.protocol import syntax
from labeler.protocol.errors import InvalidRequest
from labeler.service import Labeler
from labeler.xrpc.params import get_int, get_list

MAX_LIMIT = 250
DEFAULT_LIMIT = 50
MAX_CURSOR = 2**53


def check_pattern(pattern: str) -> str:
    if not pattern:
        raise InvalidRequest("uriPatterns: empty pattern")
    if "*" in pattern[:-1]:
        raise InvalidRequest(f"uriPatterns: invalid pattern {pattern!r} ('*' is only allowed at the end)")
    return pattern


async def query_labels(request: Request) -> JSONResponse:
    labeler: Labeler = request.app.state.labeler
    settings = labeler.settings
    params = request.query_params
    patterns = [check_pattern(p) for p in get_list(params, "uriPatterns", max_items=settings.max_query_patterns)]
    if not patterns:
        raise InvalidRequest("uriPatterns: at least one pattern is required")
    sources = get_list(params, "sources", max_items=settings.max_query_sources)
    for source in sources:
        if not syntax.is_did(source):
            raise InvalidRequest(f"sources: not a DID: {source!r}")
    limit = get_int(params, "limit", default=DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
    assert limit is not None
    try:
        cursor = get_int(params, "cursor", default=0, minimum=0, maximum=MAX_CURSOR)
    except InvalidRequest:
        raise InvalidRequest("invalid cursor") from None
    assert cursor is not None
    rows = await labeler.store.query(patterns, sources, cursor, limit + 1)
    page = await labeler.resigner.current(rows[:limit])
    body: dict[str, object] = {"labels": [row.label.to_json() for row in page]}
    if len(rows) > limit:
        body["cursor"] = str(page[-1].seq)
    return JSONResponse(body)
