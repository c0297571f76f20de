"""Exact signals: MD5 and SHA-256 of a blob's bytes, computed chunk by chunk as the bytes arrive.

A 300 MB video is hashed while it streams to disk, never held in memory, and the SHA-256 doubles as the CID check
(a blob CID is raw codec + sha2-256, so its digest *is* the blob's SHA-256). `hashlib` releases the GIL for
chunks over 2 KiB, so other threads run meanwhile. Values are lowercase hex, as HMA and exchange lists use.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Final

from labeler.pipeline.signals import MD5, SHA256

_HEX_LENGTH: Final = {MD5: 32, SHA256: 64}
_PATTERNS: Final = {name: re.compile(f"[0-9a-f]{{{n}}}") for name, n in _HEX_LENGTH.items()}


@dataclass(frozen=True, slots=True)
class ExactDigests:
    """The exact signals of one blob, lowercase hex."""

    md5: str
    sha256: str
    size: int

    def as_signals(self) -> dict[str, str]:
        return {MD5: self.md5, SHA256: self.sha256}


class StreamDigests:
    """MD5 and SHA-256 over bytes fed in order; `done()` gives the result."""

    def __init__(self) -> None:
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sha256 = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        self._md5.update(chunk)
        self._sha256.update(chunk)
        self.size += len(chunk)

    def sha256_digest(self) -> bytes:
        return self._sha256.digest()

    def done(self) -> ExactDigests:
        return ExactDigests(self._md5.hexdigest(), self._sha256.hexdigest(), self.size)


def digests_of(data: bytes) -> ExactDigests:
    """The exact signals of bytes already in memory (the upload API's body)."""
    stream = StreamDigests()
    stream.update(data)
    return stream.done()


def validate_exact(signal_type: str, value: object) -> str:
    """`value` if it is a well-formed `signal_type` hash (lowercase hex of the right length), else ValueError."""
    pattern = _PATTERNS.get(signal_type)
    if pattern is None:
        raise ValueError(f"{signal_type!r} is not an exact signal type")
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise ValueError(f"invalid {signal_type} hash: {value!r:.80} (want {_HEX_LENGTH[signal_type]} lowercase hex)")
    return value
