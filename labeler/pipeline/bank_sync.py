"""The embedded `Matcher` of a running process: our banks loaded into memory (PDQ banks into a `PdqIndex`, exact
banks into an `ExactIndex`, vPDQ banks into a `VpdqIndex`), kept in sync with the database.

The index loads on the first lookup (CLI commands that never match never pay for it), then a background task
replays `bank_changes` every `poll_interval` seconds, so a bank changed by another process (`labeler bank
import` while the server runs) is matchable here within that time. Replays are idempotent: re-adding an entry
replaces it, removing a missing one is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Sequence

from labeler.pipeline.banks import BankChange, BankStore, IndexRow
from labeler.pipeline.match.base import DEFAULT_MAX_DISTANCE, Match, MatcherError, MatcherUnavailable
from labeler.pipeline.match.embedded import EmbeddedMatcher
from labeler.pipeline.match.exact import ExactIndex
from labeler.pipeline.match.index import PdqIndex
from labeler.pipeline.match.vpdq_index import VpdqIndex
from labeler.pipeline.signals import PDQ, SIGNAL_TYPES, VPDQ
from labeler.pipeline.signals.vpdq import Thresholds, VpdqFeature, parse_signal
from labeler.store.engine import StoreError

log = logging.getLogger(__name__)
LOAD_BATCH = 50_000  # PDQ entries read from the database at a time when the banks load


class SyncedBanks:
    """`Matcher` over the database banks; see the module docstring."""

    signal_types = frozenset(SIGNAL_TYPES)

    def __init__(self, store: BankStore, *, poll_interval: float = 2.0, vpdq: Thresholds | None = None) -> None:
        self.store = store
        self.poll_interval = poll_interval
        self.vpdq = vpdq or Thresholds()
        self._matcher: EmbeddedMatcher | None = None
        self._seen = 0
        self._lock = asyncio.Lock()
        self._poller: asyncio.Task[None] | None = None
        self._closed = False

    async def lookup(self, pdq_hex: str, *, max_distance: int = DEFAULT_MAX_DISTANCE) -> list[Match]:
        matcher = await self._loaded()
        return await matcher.lookup(pdq_hex, max_distance=max_distance)

    async def lookup_exact(self, signal_type: str, value: str) -> list[Match]:
        matcher = await self._loaded()
        return await matcher.lookup_exact(signal_type, value)

    async def lookup_vpdq(self, features: Sequence[VpdqFeature]) -> list[Match]:
        matcher = await self._loaded()
        return await matcher.lookup_vpdq(features)

    async def ready(self) -> bool:
        return not self._closed

    async def aclose(self) -> None:
        self._closed = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._matcher is not None:
            await self._matcher.aclose()

    async def _loaded(self) -> EmbeddedMatcher:
        if self._closed:
            raise MatcherError("matcher is closed")
        if self._matcher is not None:
            return self._matcher
        async with self._lock:
            if self._matcher is None:
                try:
                    seen = await self.store.head()  # read first: later changes are replayed over the rows below
                    index = await _build_index(self.store)
                    signal_rows = await self.store.signal_rows()
                except StoreError as e:
                    raise MatcherUnavailable(f"loading banks: {e}") from e
                matcher = EmbeddedMatcher(index, ExactIndex(), VpdqIndex(self.vpdq))
                await _add_signal_rows(matcher, signal_rows)
                self._seen, self._matcher = seen, matcher
                log.info(
                    "embedded banks loaded: %d PDQ entries, %d exact, %d videos",
                    len(index), len(matcher.exact), len(matcher.videos),
                )  # fmt: skip
                self._poller = asyncio.create_task(self._poll(), name="bank-sync")
        return self._matcher

    async def refresh(self) -> int:
        """Apply every change made since the last refresh; returns how many were applied."""
        if self._matcher is None:
            return 0  # not loaded yet: the first lookup loads the current state
        async with self._lock:
            applied = 0
            while changes := await self.store.changes_after(self._seen):
                for change in changes:
                    await self._apply(self._matcher, change)
                    self._seen = change.id
                applied += len(changes)
            return applied

    async def _apply(self, matcher: EmbeddedMatcher, change: BankChange) -> None:
        if change.op == "drop":
            await matcher.remove_bank(change.bank)
        elif change.op == "remove" and change.first_id is not None:
            await matcher.remove(change.bank, str(change.first_id))
        elif change.op == "add" and change.first_id is not None and change.signal_type == PDQ:
            rows = await self.store.index_rows(change.bank, change.first_id, change.last_id)
            await matcher.add_many(rows)
        elif change.op == "add" and change.first_id is not None:
            await _add_signal_rows(matcher, await self.store.signal_rows(change.bank, change.first_id, change.last_id))

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.refresh()
            except Exception:
                log.exception("bank sync failed; retrying in %.1fs", self.poll_interval)


async def _build_index(store: BankStore) -> PdqIndex:
    """`PdqIndex.build` in a worker thread, fed from the database a batch at a time as it consumes the rows, so
    that the rows of a large bank never all exist as Python objects at once (10M would be ~2.5 GB of tuples)."""
    loop = asyncio.get_running_loop()
    batches = store.index_row_batches(size=LOAD_BATCH)

    async def next_batch() -> list[IndexRow] | None:
        return await anext(batches, None)

    def rows() -> Iterator[IndexRow]:
        while (batch := asyncio.run_coroutine_threadsafe(next_batch(), loop).result()) is not None:
            yield from batch

    try:
        return await asyncio.to_thread(PdqIndex.build, rows())
    finally:
        await batches.aclose()


async def _add_signal_rows(matcher: EmbeddedMatcher, rows: Sequence[tuple[str, IndexRow]]) -> None:
    """Entries of exact and vPDQ banks into their indexes. A stored vPDQ value that no longer parses (it was
    validated on import) is logged and skipped rather than stopping the whole load."""
    exact: dict[str, list[IndexRow]] = {}
    videos = []
    for signal_type, (value, bank, entry_id, external_id, note) in rows:
        if signal_type != VPDQ:
            exact.setdefault(signal_type, []).append((value, bank, entry_id, external_id, note))
            continue
        try:
            videos.append((parse_signal(value), bank, entry_id, external_id, note))
        except ValueError as exc:
            log.warning("bank %s entry %s: unreadable vPDQ hash skipped (%s)", bank, entry_id, exc)
    for signal_type, entries in exact.items():  # one call per type (a bank holds one type: order per entry kept)
        await matcher.add_exact(signal_type, entries)
    if videos:
        await matcher.add_videos(videos)
