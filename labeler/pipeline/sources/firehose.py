"""The repo firehose (`com.atproto.sync.subscribeRepos`) from a relay or a PDS, as a job source.

The SDK's `AsyncFirehoseSubscribeReposClient` does the socket and frame decoding, and reconnects by itself on
network errors; we keep its cursor param current. Its quirks (sdk-notes §5) are handled by the loop in
`base.StreamSource`: a normal close makes `start()` return and a bad frame makes it raise, so we reconnect
from our cursor either way. A `FutureCursor` error (the PDS was reset) makes us reconnect live.

Commits are read from the raw frame body, not through the SDK's pydantic models: cheaper at relay rates, and
one odd op cannot make the whole commit unreadable. The CAR is decoded only when an op is a create or update
in a wanted collection. Commit signatures and MST proofs are not verified (the SDK cannot; the fetcher checks
blob bytes against their CID, which is what a match is about).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit, urlunsplit

import libipld

from labeler.pipeline.jobs import JobSpec
from labeler.pipeline.sources.base import Cursors, JobSink, StreamSource
from labeler.pipeline.sources.records import jobs_for_record, wanted_collections

if TYPE_CHECKING:
    from atproto import AsyncFirehoseSubscribeReposClient
    from atproto_subscription.frames import MessageFrame

log = logging.getLogger(__name__)

SUBSCRIBE_REPOS: Final = "com.atproto.sync.subscribeRepos"
# No frame for this long: the SDK drops the connection and redials (websocket pings catch dead peers sooner).
RECV_TIMEOUT_S: Final = 300.0
_WRITE_ACTIONS: Final = frozenset({"create", "update"})


def firehose_base_uri(url: str) -> str:
    """`wss://host`, `https://host/xrpc` or the full subscribeRepos URL → the SDK's `ws(s)://host/xrpc`."""
    parts = urlsplit(url.strip())
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"firehose URL must be ws(s):// or http(s)://host: {url!r}")
    path = parts.path.rstrip("/").removesuffix("/" + SUBSCRIBE_REPOS).removesuffix("/xrpc")
    return urlunsplit((scheme, parts.netloc, path + "/xrpc", "", ""))


def event_time(value: Any) -> float | None:
    """A frame's `time` (when the relay or PDS sequenced the event, RFC 3339) as epoch seconds; None if absent or
    not a time with a zone. Every sequenced frame (#commit, #sync, #identity, #account) carries one."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.timestamp() if parsed.tzinfo is not None else None


class FirehoseSource(StreamSource):
    """Posts (and, with `profiles`, profile avatars and banners) with images from a repo firehose become jobs."""

    kind = "firehose"

    def __init__(
        self,
        url: str,
        jobs: JobSink,
        cursors: Cursors,
        *,
        profiles: bool = False,
        recv_timeout: float = RECV_TIMEOUT_S,
        **options: Any,
    ) -> None:
        self.base_uri = firehose_base_uri(url)
        super().__init__(f"firehose {self.base_uri}", jobs, cursors, **options)
        self.profiles = profiles
        self.collections = wanted_collections(profiles=profiles)
        self.recv_timeout = recv_timeout
        self._client: AsyncFirehoseSubscribeReposClient | None = None

    async def _stream(self, cursor: str | None) -> None:
        # The SDK's client package (~0.5 s to import) is loaded by the first firehose connection, not by every
        # process that builds the service.
        from atproto import AsyncFirehoseSubscribeReposClient
        from atproto_client.models.common import XrpcError
        from atproto_subscription.exceptions import SubscriptionError

        params = {"cursor": int(cursor)} if cursor else None
        client = AsyncFirehoseSubscribeReposClient(params, base_uri=self.base_uri, recv_timeout=self.recv_timeout)
        self._client = client
        try:
            await client.start(self._on_frame, self._on_callback_error)
        except SubscriptionError as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, XrpcError) and error.error == "FutureCursor":
                log.warning("%s: cursor %s is ahead of the server (reset?); going live", self.name, cursor)
                self.forget_cursor()
            raise
        finally:
            self._client = None

    async def _interrupt(self) -> None:
        if self._client is not None:
            await self._client.stop()

    async def _on_frame(self, frame: MessageFrame) -> None:
        body = frame.body
        seq = body.get("seq")
        cursor = str(seq) if isinstance(seq, int) and not isinstance(seq, bool) else None
        if frame.type == "#commit":
            specs = self._commit_jobs(body)
        else:
            if frame.type == "#info":
                log.info("%s: info %s: %s", self.name, body.get("name"), body.get("message"))
                if body.get("name") == "OutdatedCursor":
                    self.stats.outdated_cursor += 1
            specs = []
        if cursor is not None and self._client is not None:
            self._client.update_params({"cursor": seq})  # so the SDK's own redials resume here
        await self.emit(cursor, specs, event_time(body.get("time")))

    async def _on_callback_error(self, exc: BaseException) -> None:
        log.error("%s: event handler failed: %r", self.name, exc)

    def _commit_jobs(self, body: Mapping[str, Any]) -> list[JobSpec]:
        repo, ops, blocks = body.get("repo"), body.get("ops"), body.get("blocks")
        if not isinstance(repo, str) or not isinstance(ops, list) or not isinstance(blocks, bytes):
            return []
        wanted = [op for op in ops if self._wanted(op)]
        if not wanted:
            return []
        try:
            _, records = libipld.decode_car(blocks)
        except Exception as exc:  # libipld raises ValueError and friends for broken CARs
            log.debug("%s: undecodable CAR in commit by %s: %s", self.name, repo, exc)
            return []
        specs: list[JobSpec] = []
        for op in wanted:
            collection, _, rkey = op["path"].partition("/")
            cid = op["cid"]
            record = records.get(cid)
            if record is not None:
                cid_text = str(libipld.encode_cid(cid))
                specs += jobs_for_record(self.kind, repo, collection, rkey, cid_text, record, profiles=self.profiles)
        return specs

    def _wanted(self, op: Any) -> bool:
        if not isinstance(op, Mapping) or op.get("action") not in _WRITE_ACTIONS:
            return False
        path, cid = op.get("path"), op.get("cid")
        return isinstance(path, str) and isinstance(cid, bytes) and path.partition("/")[0] in self.collections
