"""The few DAG-CBOR pieces the hot encoders write by hand (label bodies, stream frames): shortest-form heads and
text strings. Everything else goes through cbor2."""

from __future__ import annotations

import functools
import struct
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


_PACK_16: Final = struct.Struct(">BH").pack
_PACK_32: Final = struct.Struct(">BI").pack
_PACK_64: Final = struct.Struct(">BQ").pack


def head(major: int, n: int) -> bytes:
    """Shortest head for `major` (UINT, BYTES, TEXT, ARRAY) with argument `n`, as DAG-CBOR requires. Every stream
    frame's seq (microseconds since 1970, so above 2^32) takes the last branch."""
    if n < 0x100:
        return _SMALL[major][n]
    if n < 0x10000:
        return _PACK_16(major | 25, n)
    if n < 0x100000000:
        return _PACK_32(major | 26, n)
    return _PACK_64(major | 27, n)


def text(value: str) -> bytes:
    if type(value) is not str:
        raise TypeError("not a str")
    raw = value.encode("utf-8")
    return head(TEXT, len(raw)) + raw


# For values that repeat across labels (the labeler's DID, label values): encoded once each.
repeated_text = functools.lru_cache(maxsize=1024)(text)
