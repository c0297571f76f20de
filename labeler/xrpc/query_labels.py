"""`com.atproto.label.queryLabels` (protocol.md §2): exact and `prefix*` URI patterns, sources, cursor paging.

Results are current-state rows in seq order; the cursor is the last seq returned, and the last page has none.
Rows signed by a retired key are re-signed on the way out.
"""

from __future__ import annotations

from collections.abc import Sequence
from json.encoder import encode_basestring  # the C string encoder json.dumps uses
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from labeler.protocol import syntax
from labeler.protocol.errors import InvalidRequest
from labeler.protocol.ipld_json import bytes_to_b64
from labeler.protocol.label import LABEL_VER
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


async def query_labels(request: Request) -> Response:
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
    rows = await labeler.store.query_rows(patterns, sources, cursor, limit + 1)
    page = await labeler.resigner.current_rows(rows[:limit])
    next_cursor = page[-1][0] if len(rows) > limit else None
    return Response(encode_page(page, next_cursor), media_type="application/json")


def encode_page(rows: Sequence[Any], cursor: int | None) -> bytes:
    """The response body `{"labels": [...], "cursor"?: "<seq>"}` straight from rows of the store's label columns
    (seq, src, uri, cid, val, neg, cts, exp, sig, key_id; cid '' when absent).

    Writes exactly `Label.to_json()` through `json.dumps` (UTF-8, no ASCII escaping), key order included,
    without building a Label and a dict per row first: that was most of the CPU time of a 250-label page.
    """
    quote = encode_basestring
    parts: list[str] = []
    append = parts.append
    for _seq, src, uri, cid, val, neg, cts, exp, sig, _key_id in rows:
        head = f'{{"ver":{LABEL_VER},"src":{quote(src)},"uri":{quote(uri)},"val":{quote(val)},"cts":{quote(cts)}'
        if cid:
            head += f',"cid":{quote(cid)}'
        if neg:
            head += ',"neg":true'
        if exp is not None:
            head += f',"exp":{quote(exp)}'
        append(f'{head},"sig":{{"$bytes":"{bytes_to_b64(sig)}"}}}}')
    tail = "]}" if cursor is None else f'],"cursor":"{cursor}"}}'
    return ('{"labels":[' + ",".join(parts) + tail).encode("utf-8")
