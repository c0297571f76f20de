"""Query-string and path parameters: typed, bounded, and failing as InvalidRequest (a path id as NotFound).

Integers are plain decimal (`-?[0-9]+`, at most 20 characters) and in range before `int()` ever sees them;
strings are storable text (`labeler.protocol.storable`: no NUL, which PostgreSQL refuses in any text parameter)
of at most `MAX_PARAM_LENGTH` characters. Every route reads its parameters through these functions.
"""

from __future__ import annotations

import re
from typing import Final

from starlette.datastructures import QueryParams
from starlette.requests import HTTPConnection

from labeler.protocol.errors import InvalidRequest, NotFound
from labeler.protocol.storable import Unstorable, check_text

MAX_PARAM_LENGTH: Final = 8 * 1024
#: Database ids are signed 64-bit on both databases.
MAX_ID: Final = 2**63 - 1
_INTEGER: Final = re.compile(r"-?[0-9]{1,19}")


def parse_int(raw: str, name: str, *, minimum: int, maximum: int) -> int:
    """A decimal integer within [minimum, maximum]; InvalidRequest otherwise."""
    if not _INTEGER.fullmatch(raw):
        raise InvalidRequest(f"{name}: must be an integer")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise InvalidRequest(f"{name}: must be between {minimum} and {maximum}")
    return value


def get_int(params: QueryParams, name: str, *, default: int | None, minimum: int, maximum: int) -> int | None:
    raw = get_str(params, name)
    return default if raw is None else parse_int(raw, name, minimum=minimum, maximum=maximum)


def get_str(params: QueryParams, name: str) -> str | None:
    """A parameter given at most once."""
    values = params.getlist(name)
    if len(values) > 1:
        raise InvalidRequest(f"{name}: given more than once")
    return _checked(name, values[0]) if values else None


def get_list(params: QueryParams, name: str, *, max_items: int) -> list[str]:
    values = params.getlist(name)
    if len(values) > max_items:
        raise InvalidRequest(f"{name}: at most {max_items} values")
    return [_checked(name, value) for value in values]


def path_id(conn: HTTPConnection, name: str) -> int:
    """A database id from the path (routed as a plain segment); NotFound unless it is one."""
    try:
        return parse_int(conn.path_params[name], name, minimum=1, maximum=MAX_ID)
    except InvalidRequest:
        raise NotFound(f"no such {name.replace('_', ' ')}: not an id") from None


def _checked(name: str, value: str) -> str:
    if len(value) > MAX_PARAM_LENGTH:
        raise InvalidRequest(f"{name}: value too long")
    try:
        return check_text(value, name)
    except Unstorable as exc:
        raise InvalidRequest(str(exc)) from None
