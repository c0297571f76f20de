"""The embedded matcher: our own banks in an in-memory `PdqIndex`, with HMA's match semantics (≤ 31 inclusive).

Lookups are CPU work (under a millisecond at a million hashes), so they run in a worker thread and the
event loop stays free. Writes go straight to the index (cheap appends); when they have piled up, the index is
compacted in a worker thread too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from labeler.pipeline.match.base import DEFAULT_MAX_DISTANCE, Match, MatcherError
from labeler.pipeline.match.index import PdqIndex


class EmbeddedMatcher:
    """`Matcher` over a `PdqIndex` that someone else fills (bank storage loads it at start and on changes)."""

    def __init__(self, index: PdqIndex) -> None:
        self.index = index
        self._compacting: asyncio.Task[None] | None = None
        self._closed = False

    async def lookup(self, pdq_hex: str, *, max_distance: int = DEFAULT_MAX_DISTANCE) -> list[Match]:
        """Entries within `max_distance`, nearest first; a malformed hash or threshold is a MatcherError."""
        if self._closed:
            raise MatcherError("matcher is closed")
        try:
            return await asyncio.to_thread(self.index.query, pdq_hex, max_distance)
        except ValueError as e:
            raise MatcherError(str(e)) from e

    async def ready(self) -> bool:
        return not self._closed

    async def aclose(self) -> None:
        self._closed = True
        if self._compacting is not None:
            await self._compacting

    async def add_many(self, entries: Iterable[Sequence[str | None]]) -> int:
        """Add `(pdq_hex, bank, entry_id[, external_id[, note]])` rows; see `PdqIndex.add_many`.

        Runs on the event loop (about 10 µs a row). For a start-up load of whole banks, build the index with
        `PdqIndex.build` in a worker thread instead.
        """
        added = self.index.add_many(entries)
        self._maybe_compact()
        return added

    async def remove(self, bank: str, entry_id: str) -> bool:
        removed = self.index.remove(bank, entry_id)
        self._maybe_compact()
        return removed

    async def remove_bank(self, bank: str) -> int:
        removed = self.index.remove_bank(bank)
        self._maybe_compact()
        return removed

    async def compacted(self) -> None:
        """Wait for a compaction in progress (tests, orderly shutdown)."""
        if self._compacting is not None:
            await self._compacting

    def _maybe_compact(self) -> None:
        if self.index.needs_compaction and (self._compacting is None or self._compacting.done()):
            self._compacting = asyncio.create_task(asyncio.to_thread(self.index.compact))
