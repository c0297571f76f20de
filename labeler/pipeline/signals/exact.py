"""Exact signals: MD5 and SHA-256 of a blob's bytes, computed chunk by chunk as the bytes arrive.

A 300 MB video is hashed while it streams to disk, never held in memory, and the SHA-256 doubles as the CID check
(a blob CID is raw codec + sha2-256, so its digest *is* the blob's SHA-256). `DigestingSink` hashes (and stores)
batches of about 1 MiB in a worker thread while the event loop receives the next one: `hashlib` releases the GIL,
so on two cores receiving and hashing overlap, and the loop spends on a 300 MB video only the receiving. Values are
lowercase hex, as HMA and exchange lists use.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import Callable
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


class DigestingSink:
    """Where a streamed body goes: chunks gathered into ~1 MiB batches; each batch is hashed and handed to `store`
    in a worker thread while the next one is gathered. At most one batch is in the thread and one gathering, so
    memory stays at about 2 MiB whatever the body's size."""

    BATCH: Final = 1 << 20

    def __init__(self, store: Callable[[bytearray], object]) -> None:
        self.digests = StreamDigests()
        self._store = store
        self._batch = bytearray()
        self._in_thread: asyncio.Future[None] | None = None

    async def add(self, chunk: bytes) -> None:
        self._batch += chunk
        if len(self._batch) >= self.BATCH:
            await self._hand_over()

    async def finish(self) -> ExactDigests:
        """Hash and store what is left; the digests of everything added."""
        await self._hand_over()
        if self._in_thread is not None:
            await self._in_thread
        return self.digests.done()

    async def abandon(self) -> None:
        """Wait for the batch in the worker thread (its store may be closed next), ignoring how it ended."""
        if self._in_thread is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._in_thread)

    async def _hand_over(self) -> None:
        if self._in_thread is not None:
            await self._in_thread
            self._in_thread = None
        if self._batch:
            batch, self._batch = self._batch, bytearray()
            self._in_thread = asyncio.ensure_future(asyncio.to_thread(self._consume, batch))

    def _consume(self, batch: bytearray) -> None:
        self.digests.update(batch)
        self._store(batch)


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
