"""An in-memory DID document cache that is bounded and tolerant (sdk-notes.md §6).

It implements the SDK's `AsyncDidBaseCache`, so it also plugs into the SDK's own resolvers, but fixes two
things about `DidInMemoryCache`: `delete` of an absent DID is a no-op instead of a `KeyError` (which is what
made resolving an unknown DID crash), and the number of entries is capped (LRU), because the DIDs we resolve
come from untrusted input (JWT issuers, label sources).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from atproto_core.did_doc import DidDocument
from atproto_identity.cache.base_cache import AsyncDidBaseCache, AsyncGetDocCallback
from atproto_identity.cache.models import CachedDidResult

DEFAULT_STALE_TTL: Final = 60 * 60  # re-fetch in the background of a hit after an hour
DEFAULT_MAX_TTL: Final = 24 * 60 * 60  # never serve a document older than a day
DEFAULT_MAX_ENTRIES: Final = 50_000


class BoundedDidCache(AsyncDidBaseCache):
    """LRU cache of DID documents with the SDK's stale/expired semantics; `clock` is injectable for tests."""

    def __init__(
        self,
        *,
        stale_ttl: int = DEFAULT_STALE_TTL,
        max_ttl: int = DEFAULT_MAX_TTL,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(stale_ttl, max_ttl)
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[DidDocument, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, did: object) -> bool:
        return did in self._entries

    async def get(self, did: str) -> CachedDidResult | None:
        entry = self._entries.get(did)
        if entry is None:
            return None
        self._entries.move_to_end(did)
        document, updated_at = entry
        age = self._clock() - updated_at
        return CachedDidResult(
            did=did,
            document=document,
            updated_at=datetime.fromtimestamp(updated_at, UTC),
            stale=age > self.stale_ttl,
            expired=age > self.max_ttl,
        )

    async def set(self, did: str, document: DidDocument) -> None:
        self._entries[did] = (document, self._clock())
        self._entries.move_to_end(did)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def refresh(self, did: str, get_doc_callback: AsyncGetDocCallback) -> None:
        """Re-fetch; a DID that no longer resolves is dropped rather than served stale."""
        document = await get_doc_callback()
        if document is None:
            await self.delete(did)
        else:
            await self.set(did, document)

    async def delete(self, did: str) -> None:
        self._entries.pop(did, None)

    async def clear(self) -> None:
        self._entries.clear()
