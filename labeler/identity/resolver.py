"""DID resolution for the whole service: did:plc via a PLC directory, did:web via `/.well-known/did.json`.

Built on the `atproto` SDK's identity pieces (`DidDocument`, its cache interface, `get_did_key` for both
Multikey and the legacy `EcdsaSecp256{k1,r1}VerificationKey2019` forms), but not on `AsyncIdResolver` itself:
its per-method httpx clients can be neither bounded, injected nor closed, and its did:web is https-only with
no ports (sdk-notes.md §6). Here one owned client does every fetch with a timeout, no redirects and a body cap.
did:web documents are fetched only from public addresses (`labeler.outbound`): a DID names its own host, so
`did:web:vm` or `did:web:0x7f000001` would otherwise make us connect to our own loopback. The PLC directory is
the operator's choice and is trusted wherever it is.

Errors leave this module only as `IdentityError` subclasses (`DidNotFound`, `ResolutionError` and its `DidRefused`),
never as raw httpx or pydantic errors. Key lookups follow protocol.md §1.3: exact `#atproto` / `#atproto_label` ids,
relative or absolute, never a fallback to another key.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit

import httpx
from atproto_core.did_doc import DidDocument
from atproto_crypto.did import get_did_key
from atproto_identity.cache.base_cache import AsyncDidBaseCache
from pydantic import ValidationError

from labeler.identity.cache import BoundedDidCache
from labeler.outbound import RefusedAddress, public_transport
from labeler.protocol.crypto import key_curve

DEFAULT_PLC_URL: Final = "https://plc.directory"
DEFAULT_TIMEOUT: Final = 3.0
#: Largest DID document accepted; a PLC operation is at most 7500 bytes, so real documents are far smaller.
MAX_DOCUMENT_BYTES: Final = 64 * 1024
#: A forced refresh within this many seconds of the last fetch reuses that fetch (see `DidResolver`).
DEFAULT_REFRESH_COOLDOWN: Final = 1.0

ATPROTO_KEY_ID: Final = "atproto"
LABEL_KEY_ID: Final = "atproto_label"
LABELER_SERVICE_ID: Final = "#atproto_labeler"
LABELER_SERVICE_TYPE: Final = "AtprotoLabeler"

_DID_PLC_RE: Final = re.compile(r"did:plc:[a-z2-7]{24}")
_DID_WEB_RE: Final = re.compile(r"did:web:([A-Za-z0-9.-]+)(?:%3[Aa]([0-9]{1,5}))?")
_HOSTNAME_RE: Final = re.compile(r"(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9-]{1,63})*")
_INSECURE_HOSTS: Final = frozenset({"localhost"})


class IdentityError(Exception):
    """Base of every error this package raises."""


class DidNotFound(IdentityError):
    """The DID's method says it does not exist (PLC 404/410, did:web 404)."""


class ResolutionError(IdentityError):
    """The DID could not be resolved: bad or unsupported DID, network failure, bad status, bad document."""


class DidRefused(ResolutionError):
    """A DID we will not resolve, now or later: malformed, an unsupported method, a did:web we may not fetch
    (localhost or a port without the insecure flag, a host that is not public). Not an outage."""


class DidResolver:
    """Resolves DIDs to documents, with a shared cache, and answers the key and endpoint questions we ask.

    Concurrent resolutions of one DID share a single fetch. A forced refresh within `refresh_cooldown`
    seconds of the last successful fetch returns that result instead of fetching again, so a stream of
    badly signed tokens naming one issuer cannot turn into a stream of PLC requests. A stale entry is
    re-fetched on the next hit, and served as-is if the re-fetch fails.

    `allow_insecure_did_web` (tests and dev only) resolves `did:web:localhost%3APORT` over plain http;
    without it did:web is https only, with no port and no localhost. `allow_private` (tests, private networks:
    `LABELER_ALLOW_PRIVATE_FETCH`) lets did:web hosts resolve to addresses that are not public.
    """

    def __init__(
        self,
        *,
        plc_url: str = DEFAULT_PLC_URL,
        timeout: float = DEFAULT_TIMEOUT,
        cache: AsyncDidBaseCache | None = None,
        allow_insecure_did_web: bool = False,
        allow_private: bool = False,
        max_document_bytes: int = MAX_DOCUMENT_BYTES,
        refresh_cooldown: float = DEFAULT_REFRESH_COOLDOWN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.plc_url = plc_url.rstrip("/")
        self.allow_insecure_did_web = allow_insecure_did_web
        self.max_document_bytes = max_document_bytes
        self.refresh_cooldown = refresh_cooldown
        self.cache: AsyncDidBaseCache = cache if cache is not None else BoundedDidCache()
        self._clock = clock
        trusted = httpx.AsyncHTTPTransport(trust_env=False)
        plc = urlsplit(self.plc_url)
        mounts = {f"{plc.scheme}://{plc.netloc}": trusted}
        if allow_insecure_did_web:
            mounts["http://localhost"] = trusted  # the only did:web host the flag allows (document_url)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            transport=public_transport(allow_private=allow_private),
            mounts=mounts,
            headers={"accept": "application/did+ld+json, application/json"},
            trust_env=False,
        )
        self._inflight: dict[str, asyncio.Task[DidDocument | None]] = {}

    async def aclose(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        self._inflight.clear()
        await self._client.aclose()

    async def __aenter__(self) -> DidResolver:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def resolve(self, did: str, force_refresh: bool = False) -> DidDocument | None:
        """The DID document, or None if the DID does not exist. Raises `ResolutionError`."""
        self.document_url(did)  # refuse bad or unsupported DIDs before touching the cache
        cached = await self.cache.get(did)
        if cached is not None and not cached.expired:
            age = self._clock() - cached.updated_at.timestamp()
            if force_refresh and age < self.refresh_cooldown:
                return cached.document
            if not force_refresh:
                if not cached.stale:
                    return cached.document
                try:
                    return await self._fetch_shared(did)
                except ResolutionError:
                    return cached.document  # a stale document beats none while the directory is down
        return await self._fetch_shared(did)

    async def ensure_resolve(self, did: str, force_refresh: bool = False) -> DidDocument:
        """Like `resolve`, but a missing DID raises `DidNotFound`."""
        document = await self.resolve(did, force_refresh)
        if document is None:
            raise DidNotFound(f"DID not found: {did}")
        return document

    async def atproto_key(self, did: str, force_refresh: bool = False) -> str | None:
        """did:key of the `#atproto` (repo/account) key, or None if the document declares no usable one."""
        return verification_key(await self.ensure_resolve(did, force_refresh), ATPROTO_KEY_ID)

    async def label_key(self, did: str, force_refresh: bool = False) -> str | None:
        """did:key of the `#atproto_label` key, or None; never falls back to `#atproto` (SPEC-LABEL)."""
        return verification_key(await self.ensure_resolve(did, force_refresh), LABEL_KEY_ID)

    async def pds_endpoint(self, did: str, force_refresh: bool = False) -> str | None:
        """The `#atproto_pds` service URL, e.g. to fetch a blob from the author's PDS."""
        return (await self.ensure_resolve(did, force_refresh)).get_pds_endpoint()

    async def labeler_endpoint(self, did: str, force_refresh: bool = False) -> str | None:
        """The `#atproto_labeler` / `AtprotoLabeler` service URL."""
        document = await self.ensure_resolve(did, force_refresh)
        return document.get_service_endpoint(LABELER_SERVICE_ID, LABELER_SERVICE_TYPE)

    async def service_auth_key(self, iss: str, force_refresh: bool) -> str | None:
        """`get_key` for `labeler.protocol.service_auth.verify_service_jwt`: an unknown DID has no key.

        `ResolutionError` still propagates: a directory outage is our failure, not the caller's bad token.
        """
        try:
            return await self.atproto_key(iss, force_refresh)
        except DidNotFound:
            return None

    def document_url(self, did: str) -> str:
        """Where the DID's document lives; `ResolutionError` for DIDs we cannot or will not resolve."""
        if _DID_PLC_RE.fullmatch(did):
            return f"{self.plc_url}/{did}"
        if not did.startswith("did:web:"):
            raise DidRefused(f"unsupported or malformed DID: {did[:100]!r}")
        match = _DID_WEB_RE.fullmatch(did)
        if match is None:
            raise DidRefused(f"unsupported did:web (paths are not allowed in atproto): {did[:100]!r}")
        host, port = match.group(1).lower(), match.group(2)
        if not _HOSTNAME_RE.fullmatch(host) or host.replace(".", "").isdigit():
            raise DidRefused(f"did:web host is not a hostname: {did[:100]!r}")
        if host in _INSECURE_HOSTS or port is not None:
            # atproto allows ports only for localhost development; refusing localhost otherwise keeps
            # attacker-chosen DIDs (a JWT's iss) from making us fetch from our own loopback.
            if not (self.allow_insecure_did_web and host in _INSECURE_HOSTS):
                raise DidRefused(f"did:web on localhost or with a port needs the insecure dev flag: {did}")
            return f"http://{host}{':' + port if port else ''}/.well-known/did.json"
        return f"https://{host}/.well-known/did.json"

    async def _fetch_shared(self, did: str) -> DidDocument | None:
        task = self._inflight.get(did)
        if task is None:
            task = asyncio.ensure_future(self._fetch_and_store(did))
            self._inflight[did] = task
            task.add_done_callback(lambda t: self._fetch_done(did, t))
        return await asyncio.shield(task)

    def _fetch_done(self, did: str, task: asyncio.Task[DidDocument | None]) -> None:
        if self._inflight.get(did) is task:
            del self._inflight[did]
        if not task.cancelled():
            task.exception()  # retrieved here so an abandoned fetch does not log "never retrieved"

    async def _fetch_and_store(self, did: str) -> DidDocument | None:
        document = await self._fetch(did)
        if document is None:
            await self.cache.delete(did)
        else:
            await self.cache.set(did, document)
        return document

    async def _fetch(self, did: str) -> DidDocument | None:
        url = self.document_url(did)
        try:
            async with self._client.stream("GET", url) as response:
                if response.status_code in (404, 410):  # PLC answers 410 for a tombstoned DID
                    return None
                if response.status_code != 200:
                    raise ResolutionError(f"resolving {did}: HTTP {response.status_code}")
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > self.max_document_bytes:
                    raise ResolutionError(f"resolving {did}: document too large")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > self.max_document_bytes:
                        raise ResolutionError(f"resolving {did}: document too large")
        except RefusedAddress as exc:
            raise DidRefused(f"resolving {did}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise ResolutionError(f"resolving {did}: {type(exc).__name__}") from exc
        return parse_document(did, bytes(body))


def parse_document(did: str, body: bytes) -> DidDocument:
    """Parse and sanity-check a DID document fetched for `did`; `ResolutionError` if it is not one."""
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ResolutionError(f"resolving {did}: document is not JSON") from exc
    if not isinstance(raw, dict):
        raise ResolutionError(f"resolving {did}: document is not a JSON object")
    try:
        document = DidDocument.from_dict(raw)
    except (ValidationError, TypeError) as exc:
        raise ResolutionError(f"resolving {did}: malformed DID document") from exc
    if document.id != did:
        raise ResolutionError(f"resolving {did}: document is for another DID")
    return document


def verification_key(document: DidDocument, key_id: str) -> str | None:
    """did:key of the verification method `#<key_id>` (relative or absolute id), or None.

    Accepts `Multikey` and the legacy `EcdsaSecp256k1/r1VerificationKey2019` forms (the local PLC writes
    the legacy one with an uncompressed point, devnet.md item 4). A key of another curve counts as absent.
    """
    wanted = {f"#{key_id}", f"{document.id}#{key_id}"}
    for method in document.verification_method or ():
        if method.id not in wanted:
            continue
        if not method.public_key_multibase:
            return None
        try:
            did_key = get_did_key(method.type, method.public_key_multibase)
            if did_key is None:
                return None
            key_curve(did_key)  # ValueError unless k256 or p256
        except Exception:  # the SDK raises assorted errors on malformed keys; all mean "no usable key"
            return None
        return did_key
    return None
