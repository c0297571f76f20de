"""Blob fetcher: DID → PDS endpoint → `com.atproto.sync.getBlob`, bounded, verified against the blob CID.

Limits (design.md invariant 8): `max_image_bytes` (declared length and bytes actually read), `fetch_timeout` for
the whole fetch including redirects, at most 3 redirects; a video has its own size and time limits, and its bytes
go to a temporary file as they arrive (a 300 MB video is never held in memory). Outside addresses only: every
connection, redirects included, goes through `labeler.outbound.public_transport`, which resolves the host, checks
every address (no loopback, private, link-local, multicast, reserved, NAT64 or 6to4 of those, …) and connects to a
checked address itself, so a DNS answer that changes between the check and the connect (rebinding) cannot steer us
inward. `allow_private_fetch` (tests, private deployments) turns the check off.

MD5 and SHA-256 are computed while the bytes stream in (`signals.exact.DigestingSink`, in a worker thread); the
SHA-256 is the CID check, so no byte is hashed twice.

Errors: `FetchUnavailable` (retryable: the PDS or the directory is down, slow, 5xx/429) and `FetchRejected`
(permanent: no such blob or repo, too large, CID mismatch, refused address). Each carries a stable `reason`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final
from urllib.parse import urljoin, urlsplit

import httpx
import libipld

from labeler.identity.resolver import DidNotFound, DidRefused, DidResolver, ResolutionError
from labeler.outbound import RefusedAddress, public_transport
from labeler.pipeline.jobs import ImageRef
from labeler.pipeline.signals.exact import DigestingSink, ExactDigests

_RAW_CODEC: Final = 0x55
_SHA256: Final = 0x12
_MAX_REDIRECTS: Final = 3
_MAX_RECORD_BYTES: Final = 256 * 1024
# getBlob error names (XRPC `error`) that mean the blob will not come back by retrying.
_GONE: Final = frozenset({"BlobNotFound", "RepoNotFound", "RepoTakendown", "RepoSuspended", "RepoDeactivated"})


class FetchError(Exception):
    """A blob could not be fetched; `reason` is a stable code, the message says more."""

    retryable: ClassVar[bool] = False

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class FetchUnavailable(FetchError):
    """Worth trying again later: connection refused, timeout, 5xx/429, DID directory down."""

    retryable = True


class FetchRejected(FetchError):
    """Will fail the same way again: missing blob or repo, too large, CID mismatch, forbidden address."""


@dataclass(frozen=True)
class FetchedBlob:
    """A blob verified against its CID, with the exact signals computed on the way in: an image's bytes in
    memory (`data`), a video's in a temporary file (`path`) that `discard()` removes."""

    digests: ExactDigests
    data: bytes = b""
    path: Path | None = None

    def discard(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def blob_cid_digest(cid: str) -> bytes:
    """The SHA-256 a blob CID names; FetchRejected unless it is CIDv1, raw codec, sha2-256."""
    try:
        decoded = libipld.decode_cid(cid)
    except Exception as e:
        raise FetchRejected("bad-cid", f"not a CID: {cid[:100]!r}") from e
    digest = decoded["hash"]
    if decoded["codec"] != _RAW_CODEC or digest["code"] != _SHA256:
        raise FetchRejected("bad-cid", f"blob CID is not raw/sha2-256: codec {decoded['codec']:#x}")
    return bytes(digest["digest"])


class BlobFetcher:
    def __init__(
        self,
        resolver: DidResolver,
        *,
        max_bytes: int,
        timeout: float,
        max_video_bytes: int = 300_000_000,
        video_timeout: float = 120.0,
        allow_private: bool = False,
        user_agent: str = "atproto-hma-labeler",
    ) -> None:
        self.resolver = resolver
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.max_video_bytes = max_video_bytes
        self.video_timeout = video_timeout
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            trust_env=False,
            headers={"user-agent": user_agent},
            transport=public_transport(allow_private=allow_private),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def fetch(self, image: ImageRef) -> FetchedBlob:
        """The blob, verified against its CID, with its MD5 and SHA-256; a video lands in a temporary file."""
        expected = blob_cid_digest(image.blob_cid)  # a malformed CID is refused before any request
        video = image.media == "video"
        limit, timeout = (self.max_video_bytes, self.video_timeout) if video else (self.max_bytes, self.timeout)
        body = bytearray()
        path: Path | None = None
        spool: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if video:
            fd, name = tempfile.mkstemp(prefix="labeler-video-")
            path, spool = Path(name), os.fdopen(fd, "wb")
        try:
            with spool as file:
                sink = DigestingSink(file.write if file is not None else body.extend)
                try:
                    async with asyncio.timeout(timeout):
                        pds = await self._pds(image.did)
                        url = f"{pds.rstrip('/')}/xrpc/com.atproto.sync.getBlob"
                        await self._get(url, {"did": image.did, "cid": image.blob_cid}, limit, sink.add)
                        digests = await sink.finish()
                except TimeoutError:
                    raise FetchUnavailable("timeout", f"fetching {image.blob_cid} took over {timeout:g}s") from None
                except BaseException:
                    await sink.abandon()  # before the file closes under its last batch
                    raise
            if sink.digests.sha256_digest() != expected:
                raise FetchRejected("cid-mismatch", f"the bytes served do not hash to {image.blob_cid}")
        except BaseException:  # nothing is handed over: the temporary file goes
            if path is not None:
                path.unlink(missing_ok=True)
            raise
        return FetchedBlob(digests, bytes(body), path)

    async def get_record(self, did: str, collection: str, rkey: str) -> tuple[str | None, Any]:
        """(cid, value) of a record from its repo's PDS (`com.atproto.repo.getRecord`), within the same limits."""
        try:
            async with asyncio.timeout(self.timeout):
                pds = await self._pds(did)
                url = f"{pds.rstrip('/')}/xrpc/com.atproto.repo.getRecord"
                params = {"repo": did, "collection": collection, "rkey": rkey}
                body = bytearray()

                async def keep(chunk: bytes) -> None:
                    body.extend(chunk)

                await self._get(url, params, _MAX_RECORD_BYTES, keep)
                data = bytes(body)
        except TimeoutError:
            raise FetchUnavailable("timeout", f"getRecord took over {self.timeout:g}s") from None
        try:
            body = json.loads(data)
            cid, value = body.get("cid"), body["value"]
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise FetchRejected("bad-record", "getRecord answered something that is not a record") from e
        return (cid if isinstance(cid, str) else None), value

    async def _pds(self, did: str) -> str:
        try:
            self.resolver.document_url(did)  # an unsupported DID is permanent, not an outage
        except ResolutionError as e:
            raise FetchRejected("bad-did", str(e)) from e
        try:
            endpoint = await self.resolver.pds_endpoint(did)
        except DidNotFound as e:
            raise FetchRejected("did-not-found", str(e)) from e
        except DidRefused as e:  # the DID itself passed above: its did:web host is not public
            raise FetchRejected("private-address", str(e)) from e
        except ResolutionError as e:
            raise FetchUnavailable("did-unresolved", str(e)) from e
        if not endpoint or urlsplit(endpoint).scheme not in ("http", "https"):
            raise FetchRejected("no-pds", f"{did} declares no usable #atproto_pds endpoint")
        return endpoint

    async def _get(
        self,
        url: str,
        params: dict[str, str] | None,
        max_bytes: int,
        sink: Callable[[bytes], Awaitable[None]],
    ) -> None:
        """GET `url` (following up to 3 redirects) and hand the body to `sink` chunk by chunk."""
        for _ in range(_MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise FetchRejected("bad-url", f"cannot fetch {url[:200]!r}")
            where = parts.hostname
            try:
                response = await self._client.send(self._client.build_request("GET", url, params=params), stream=True)
                try:
                    if response.is_redirect and "location" in response.headers:
                        url, params = urljoin(url, response.headers["location"]), None
                        continue
                    await self._check_status(response, where)
                    return await self._read(response, max_bytes, sink)
                finally:
                    await response.aclose()
            except RefusedAddress as e:
                raise FetchRejected("private-address", str(e)) from e
            except httpx.TimeoutException as e:
                raise FetchUnavailable("timeout", f"{where}: {type(e).__name__}") from e
            except httpx.TransportError as e:
                raise FetchUnavailable("unreachable", f"{where}: {type(e).__name__}: {e}") from e
            except httpx.DecodingError as e:
                raise FetchRejected("bad-encoding", f"{where}: {e}") from e
        raise FetchRejected("too-many-redirects", f"more than {_MAX_REDIRECTS} redirects")

    async def _check_status(self, response: httpx.Response, where: str) -> None:
        status = response.status_code
        if status == 200:
            return
        if status == 429 or status >= 500:
            raise FetchUnavailable("pds-unavailable", f"{where} answered {status}")
        error = ""
        if status == 400 and int(response.headers.get("content-length") or 0) <= 4096:
            try:
                body = json.loads(await response.aread())
                error = str(body.get("error", "")) if isinstance(body, dict) else ""
            except ValueError:
                pass
        if status == 404 or error in _GONE:
            raise FetchRejected("blob-not-found", f"{where} answered {status} {error}".strip())
        raise FetchRejected("pds-refused", f"{where} answered {status} {error}".strip())

    async def _read(self, response: httpx.Response, max_bytes: int, sink: Callable[[bytes], Awaitable[None]]) -> None:
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise FetchRejected("too-large", f"{declared} bytes > limit {max_bytes}")
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise FetchRejected("too-large", f"over the limit of {max_bytes} bytes")
            await sink(chunk)
