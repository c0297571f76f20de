"""JSON request bodies: the one reader every route with a JSON body uses.

A body is UTF-8 JSON (RFC 8259) whose every string is storable text, whose numbers are finite and which nests at
most `MAX_JSON_DEPTH` levels (`labeler.protocol.storable`); anything else is `InvalidRequest` before the route
looks at it, so no handler, store or response ever meets a lone surrogate, a NUL, NaN or a 100,000-deep array.
The size limit is `BodyLimitMiddleware`'s.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from labeler.protocol.errors import InvalidRequest
from labeler.protocol.storable import MAX_JSON_DEPTH, Unstorable, check_json


class _NotJson(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not JSON")


def parse_json(raw: bytes, what: str = "request body") -> Any:
    """Decode and check a JSON body; `InvalidRequest` naming the problem."""
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except RecursionError:  # the C scanner's own guard, hit long before a deep body is read whole
        raise InvalidRequest(f"{what}: nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError:  # not UTF-8, not JSON, NaN/Infinity, an integer of more than 4300 digits
        raise InvalidRequest(f"{what} must be JSON") from None
    try:
        return check_json(value, what)
    except Unstorable as exc:
        raise InvalidRequest(str(exc)) from None


async def read_json(request: Request) -> Any:
    """The request's JSON body, checked (see the module docstring)."""
    return parse_json(await request.body())


async def read_json_object(request: Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    return body
