"""Query-string parameters for XRPC queries: typed, bounded, and failing as InvalidRequest."""

from __future__ import annotations

from starlette.datastructures import QueryParams

from labeler.protocol.errors import InvalidRequest

MAX_PARAM_LENGTH = 8 * 1024


def get_list(params: QueryParams, name: str, *, max_items: int) -> list[str]:
    values = params.getlist(name)
    if len(values) > max_items:
        raise InvalidRequest(f"{name}: at most {max_items} values")
    for value in values:
        if len(value) > MAX_PARAM_LENGTH:
            raise InvalidRequest(f"{name}: value too long")
    return values


def get_int(params: QueryParams, name: str, *, default: int | None, minimum: int, maximum: int) -> int | None:
    values = params.getlist(name)
    if not values:
        return default
    if len(values) > 1:
        raise InvalidRequest(f"{name}: given more than once")
    raw = values[0]
    if not raw.isascii() or not raw.lstrip("-").isdigit() or len(raw) > 20:
        raise InvalidRequest(f"{name}: must be an integer")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise InvalidRequest(f"{name}: must be between {minimum} and {maximum}")
    return value
