"""The few DAG-CBOR pieces the hot encoders write by hand (label bodies, stream frames): shortest-form heads and
text strings. Everything else goes through cbor2."""

from __future__ import annotations

import functools
from typing import Final

UINT: Final = 0x00
BYTES: Final = 0x40
TEXT: Final = 0x60
ARRAY: Final = 0x80

# Heads for arguments below 256, which is nearly every length written: one lookup instead of building bytes.
_SMALL: Final = {
    major: tuple(bytes((major | n,)) if n < 24 else bytes((major | 24, n)) for n in range(256))
    for major in (UINT, BYTES, TEXT, ARRAY)
}


def head(major: int, n: int) -> bytes:
    """Shortest head for `major` (UINT, BYTES, TEXT, ARRAY) with argument `n`, as DAG-CBOR requires."""
    if n < 0x100:
        return _SMALL[major][n]
    if n < 0x10000:
        return bytes((major | 25,)) + n.to_bytes(2, "big")
    if n < 0x100000000:
        return bytes((major | 26,)) + n.to_bytes(4, "big")
    return bytes((major | 27,)) + n.to_bytes(8, "big")


def text(value: str) -> bytes:
    if type(value) is not str:
        raise TypeError("not a str")
    raw = value.encode("utf-8")
    return head(TEXT, len(raw)) + raw


# For values that repeat across labels (the labeler's DID, label values): encoded once each.
repeated_text = functools.lru_cache(maxsize=1024)(text)
