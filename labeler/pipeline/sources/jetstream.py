"""Jetstream v1 (`/subscribe?wantedCollections=…`, JSON events) as a lightweight job source.

The SDK's Jetstream client speaks only v2 (`network.bsky.jetstream.subscribeEvents`), which the public v1
hosts (`jetstream1.us-east.bsky.network`, …) do not serve, so this is a small client of our own on
`websockets`. Events are plain JSON with no signatures and no CAR: cheap to read, but it trusts the Jetstream
host. The cursor is the event's `time_us`; reconnects rewind it a little (as Jetstream's docs advise), which
the idempotent enqueue makes harmless. zstd compression stays off.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect

from labeler.pipeline.jobs import JobSpec
from labeler.pipeline.sources.base import Cursors, JobSink, StreamSource
from labeler.pipeline.sources.records import jobs_for_record, wanted_collections

log = logging.getLogger(__name__)

# Jetstream events are small JSON; a post with a long facet list is a few KB.
MAX_MESSAGE_BYTES: Final = 1024 * 1024
REWIND_US: Final = 2_000_000
_WRITE_OPERATIONS: Final = frozenset({"create", "update"})


def jetstream_subscribe_url(url: str, collections: frozenset[str], cursor: int | None) -> str:
    """`wss://host` or `wss://host/subscribe` → the full v1 subscribe URL with collections and cursor."""
    parts = urlsplit(url.strip())
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"Jetstream URL must be ws(s):// or http(s)://host: {url!r}")
    path = parts.path.rstrip("/").removesuffix("/subscribe") + "/subscribe"
    query: list[tuple[str, str]] = [("wantedCollections", c) for c in sorted(collections)]
    if cursor is not None:
        query.append(("cursor", str(cursor)))
    return urlunsplit((scheme, parts.netloc, path, urlencode(query), ""))


class JetstreamSource(StreamSource):
    """Posts (and, with `profiles`, profiles) with images from a Jetstream v1 host become jobs."""

    kind = "jetstream"

    def __init__(
        self,
        url: str,
        jobs: JobSink,
        cursors: Cursors,
        *,
        profiles: bool = False,
        rewind_us: int = REWIND_US,
        **options: Any,
    ) -> None:
        self.url = url
        self.collections = wanted_collections(profiles=profiles)
        jetstream_subscribe_url(url, self.collections, None)  # fail fast on a bad URL
        super().__init__(f"jetstream {url.rstrip('/')}", jobs, cursors, **options)
        self.profiles = profiles
        self.rewind_us = rewind_us
        self._socket: ClientConnection | None = None

    async def _stream(self, cursor: str | None) -> None:
        start = max(0, int(cursor) - self.rewind_us) if cursor else None
        url = jetstream_subscribe_url(self.url, self.collections, start)
        socket = await connect(url, max_size=MAX_MESSAGE_BYTES, open_timeout=15, close_timeout=1)
        self._socket = socket
        try:
            async for message in socket:
                if self._stopping.is_set():  # not the messages already buffered: `stop()` means soon
                    break
                await self._on_message(message)
        finally:
            self._socket = None
            try:
                await socket.close()
            finally:
                socket.transport.abort()  # a close cancelled midway would leave the socket open

    async def _interrupt(self) -> None:
        if self._socket is not None:
            await self._socket.close()

    async def _on_message(self, message: str | bytes) -> None:
        try:
            event = json.loads(message)
        except ValueError:
            log.debug("%s: skipping a non-JSON message", self.name)
            return
        if not isinstance(event, dict):
            return
        time_us = event.get("time_us")
        cursor = str(time_us) if isinstance(time_us, int) and not isinstance(time_us, bool) and time_us > 0 else None
        await self.emit(cursor, self._event_jobs(event), int(cursor) / 1e6 if cursor is not None else None)

    def _event_jobs(self, event: Mapping[str, Any]) -> list[JobSpec]:
        commit = event.get("commit")
        did = event.get("did")
        if event.get("kind") != "commit" or not isinstance(commit, Mapping) or not isinstance(did, str):
            return []
        collection, rkey, cid = commit.get("collection"), commit.get("rkey"), commit.get("cid")
        if commit.get("operation") not in _WRITE_OPERATIONS or collection not in self.collections:
            return []
        if not isinstance(rkey, str) or not (cid is None or isinstance(cid, str)):
            return []
        return jobs_for_record(self.kind, did, collection, rkey, cid, commit.get("record"), profiles=self.profiles)
