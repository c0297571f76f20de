"""The JSON form of IPLD bytes: `{"$bytes": base64}` (SPEC data model; sdk-notes.md §3).

The SDK has no converter. Output uses standard base64 without padding, like the reference implementations;
input accepts padding or none. Labels carry no CID links, so `$link` is not handled here.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any


def bytes_to_b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def b64_to_bytes(value: str) -> bytes:
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("invalid $bytes: not standard base64") from None


def to_json(value: Any) -> Any:
    """IPLD value (bytes, dicts, lists, scalars) → JSON-ready value."""
    if isinstance(value, bytes):
        return {"$bytes": bytes_to_b64(value)}
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


def from_json(value: Any) -> Any:
    """JSON value → IPLD value; a `{"$bytes": …}` object must have no other keys."""
    if isinstance(value, dict):
        if "$bytes" in value and len(value) == 1:
            if not isinstance(value["$bytes"], str):
                raise ValueError("invalid $bytes: not a string")
            return b64_to_bytes(value["$bytes"])
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value
