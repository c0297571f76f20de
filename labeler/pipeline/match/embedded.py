"""The embedded matcher: our own banks in memory. PDQ in a `PdqIndex` with HMA's match semantics (≤ 31
inclusive); MD5 and SHA-256 in an `ExactIndex`; videos by vPDQ in a `VpdqIndex` (pytx's semantics).

PDQ and vPDQ lookups are CPU work (under a millisecond per hash at a million hashes), so they run in a worker
thread and the event loop stays free; exact lookups are one dictionary probe and run in place. Writes go
straight to the indexes (cheap appends); when PDQ writes have piled up, the index is compacted in a worker thread
too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from labeler.pipeline.match.base import DEFAULT_MAX_DISTANCE, Match, MatcherError
from labeler.pipeline.match.exact import ExactIndex
from labeler.pipeline.match.index import PdqIndex
from labeler.pipeline.match.vpdq_index import VideoRow, VpdqIndex
from labeler.pipeline.signals import SIGNAL_TYPES
from labeler.pipeline.signals.vpdq import VpdqFeature


class EmbeddedMatcher:
    """`Matcher` over indexes that someone else fills (bank storage loads them at start and on changes)."""

    signal_types = frozenset(SIGNAL_TYPES)

    def __init__(self, index: PdqIndex, exact: ExactIndex | None = None, videos: VpdqIndex | None = None) -> None:
        self.index = index
        self.exact = exact if exact is not None else ExactIndex()
        self.videos = videos if videos is not None else VpdqIndex()
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

    async def lookup_exact(self, signal_type: str, value: str) -> list[Match]:
        if self._closed:
            raise MatcherError("matcher is closed")
        return self.exact.query(signal_type, value)

    async def lookup_vpdq(self, features: Sequence[VpdqFeature]) -> list[Match]:
        if self._closed:
            raise MatcherError("matcher is closed")
        return await asyncio.to_thread(self.videos.query, features)

    async def ready(self) -> bool:
        return not self._closed

    async def aclose(self) -> None:
        self._closed = True
        if self._compacting is not None:
            await self._compacting

    async def add_many(self, entries: Iterable[Sequence[str | None]]) -> int:
        """Add `(pdq_hex, bank, entry_id[, external_id[, note]])` rows; see `PdqIndex.add_many`.

        Runs in a worker thread: a few µs a row, and when the index's arrays are full it copies them (about a
        second at 10 M entries). For a start-up load of whole banks, build the index with `PdqIndex.build`.
        """
        added = await asyncio.to_thread(self.index.add_many, entries)
        self._maybe_compact()
        return added

    async def add_exact(self, signal_type: str, entries: Iterable[Sequence[str | None]]) -> int:
        """Add `(hash, bank, entry_id[, external_id[, note]])` rows of an exact signal type; see `ExactIndex`."""
        return self.exact.add_many(signal_type, entries)

    async def add_videos(self, entries: Iterable[VideoRow]) -> int:
        """Add `(features, bank, entry_id, external_id, note)` rows of banked videos; see `VpdqIndex`."""
        return await asyncio.to_thread(self.videos.add_many, entries)

    async def remove(self, bank: str, entry_id: str) -> bool:
        removed = self.index.remove(bank, entry_id) | self.exact.remove(bank, entry_id)
        removed |= self.videos.remove(bank, entry_id)
        self._maybe_compact()
        return removed

    async def remove_bank(self, bank: str) -> int:
        removed = self.index.remove_bank(bank) + self.exact.remove_bank(bank) + self.videos.remove_bank(bank)
        self._maybe_compact()
        return removed

    async def compacted(self) -> None:
        """Wait for a compaction in progress (tests, orderly shutdown)."""
        if self._compacting is not None:
            await self._compacting

    def _maybe_compact(self) -> None:
        if self.index.needs_compaction and (self._compacting is None or self._compacting.done()):
            self._compacting = asyncio.create_task(asyncio.to_thread(self.index.compact))
