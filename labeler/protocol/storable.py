"""What a client may hand us to store and serve back: text of Unicode scalar values without NUL, and JSON values
of such text, nested at most `MAX_JSON_DEPTH` deep, whose numbers are finite.

Why each rule: a lone surrogate (a JSON `\\ud800` escape) is not text, so it cannot be encoded as UTF-8 to be
stored (SQLite) or served (every JSON response); a NUL cannot be stored in PostgreSQL text; NaN and ±Infinity
are not JSON, so a stored one breaks every later response that includes it; and deep nesting exhausts the
recursion of whoever walks the value next (the JSON encoder, a database driver). The atproto data model already
asks this of strings (valid UTF-8) and numbers (integers only). Nothing here does I/O: callers turn
`Unstorable` into their own error (an XRPC `InvalidRequest`, a CLI message).
"""

from __future__ import annotations

import math
import re
from typing import Any, Final

#: How deep a JSON value may nest (the top-level object or array is depth 1). Our lexicons need about 4; modTool
#: `meta` and extra fields of an event are stored as given, and 32 leaves them room.
MAX_JSON_DEPTH: Final = 32

_NOT_TEXT: Final = re.compile("[\x00\ud800-\udfff]")


class Unstorable(ValueError):
    """A value from a client that the labeler cannot store or serve back; the message names where and why."""


def check_text(value: str, what: str) -> str:
    """`value` unless it holds a NUL or a lone surrogate; `what` names it in the error."""
    found = _NOT_TEXT.search(value)
    if found is not None:
        raise Unstorable(f"{what}: {_problem(found.group())}")
    return value


def check_json(value: Any, what: str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """`value` (as `json.loads` builds it) unless a string or key in it fails `check_text`, a number is not finite,
    or it nests deeper than `max_depth`. Walked with a stack, so no input can exhaust the recursion limit here."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            check_text(item, what)
        elif isinstance(item, dict | list):
            if depth > max_depth:
                raise Unstorable(f"{what}: nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        raise Unstorable(f"{what}: object keys must be strings")
                    check_text(key, what)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise Unstorable(f"{what}: numbers must be finite")
        elif item is not None and not isinstance(item, bool | int | float):
            raise Unstorable(f"{what}: {type(item).__name__} is not a JSON value")
    return value


def _problem(char: str) -> str:
    if char == "\x00":
        return "must not contain NUL characters"
    return "is not valid Unicode text (a lone surrogate)"
