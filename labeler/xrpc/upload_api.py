"""The upload-time check API for apps: a PDS or app checks an image before publishing it.

    POST /api/v1/hash   image bytes                     → {"hash", "quality", "md5", "sha256"}
    POST /api/v1/match  image bytes | {"hash"|"md5"|…}  → {…, "matches": [{bank, distance, entry_id, signal_type, …}]}

Synchronous, and nothing is stored: unlike the firehose, the caller decides what to do with the answer.
Callers present `Authorization: Bearer <token>` for one of `LABELER_UPLOAD_TOKENS`; with none configured the
API is closed. Bodies may be up to `max_image_bytes` (the app-wide body limit is lifted for these paths only).
Hashing runs in the pipeline's process pool, with the same limits, reduced decoding and dihedral variants as
the pipeline, and a match follows the pipeline's rules (quality threshold, match distance), so the answer here
is the answer the labeler would give for the same image on the network: that includes matching the exact hashes
(MD5, SHA-256) of bytes that do not decode, which are refused only when nothing matched them. Matches of
disabled bank entries are left out, and an allow-listed image answers no matches with `"allow_listed": true`.

Nothing queues without bound: at most MAX_CONCURRENT checks are in flight (more are answered 503 at once), a
check waits at most `upload_max_wait` for a hashing process (ahead of pipeline jobs), and hashing one image is
cut off at `hash_timeout` (400 ImageRejected, reason too-slow).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from labeler.config import Settings
from labeler.pipeline.hasher import TOO_LARGE, ImageRejected, PdqResult, validate_pdq_hex
from labeler.pipeline.hashing import HasherBusy, HasherCrashed
from labeler.pipeline.match.base import MatcherUnavailable, MatchFailure, lookup_signals
from labeler.pipeline.signals import EXACT_SIGNALS
from labeler.pipeline.signals.exact import digests_of, validate_exact
from labeler.protocol.errors import AuthRequired, InvalidRequest, PayloadTooLarge, XrpcError
from labeler.service import Labeler
from labeler.xrpc.body import parse_json
from labeler.xrpc.errors import error_response

HASH_PATH: Final = "/api/v1/hash"
MATCH_PATH: Final = "/api/v1/match"
# Checks in flight at once; more are refused before their body is read, so memory and waiting stay bounded.
MAX_CONCURRENT: Final = 16
RETRY_AFTER_S: Final = "5"


class ImageNotAccepted(InvalidRequest):
    """The body is not an image we can hash; `reason` is the hasher's stable code (truncated, not-an-image, …)."""

    name = "ImageRejected"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "reason": self.reason}


class ServiceUnavailable(XrpcError):
    """The hasher or the matcher cannot answer now (every hashing process busy, HMA down or still loading its
    index); try again later."""

    status: ClassVar[int] = 503
    name: ClassVar[str] = "ServiceUnavailable"


class UpstreamFailure(XrpcError):
    """The matcher refused the lookup or answered nonsense."""

    status: ClassVar[int] = 502
    name: ClassVar[str] = "UpstreamFailure"


def upload_routes() -> list[Route]:
    return [Route(HASH_PATH, hash_image, methods=["POST"]), Route(MATCH_PATH, match_image, methods=["POST"])]


def upload_body_limits(settings: Settings) -> dict[str, int]:
    """Per-path body limits for BodyLimitMiddleware: an image may be as large as the pipeline accepts."""
    return {HASH_PATH: settings.max_image_bytes, MATCH_PATH: settings.max_image_bytes}


def _checked(handler: Callable[[Request, Labeler], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Authenticate, bound concurrency, and add the headers a 401 (Bearer challenge) or 503 (Retry-After) needs."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            labeler = _authorize(request)
            slots = _slots(request)
            if slots.locked():
                raise ServiceUnavailable(f"{MAX_CONCURRENT} checks are in progress; try again later")
            async with slots:
                return await handler(request, labeler)
        except AuthRequired as exc:
            return error_response(exc, {"WWW-Authenticate": 'Bearer realm="upload"'})
        except ServiceUnavailable as exc:
            return error_response(exc, {"Retry-After": RETRY_AFTER_S})

    return endpoint


@_checked
async def hash_image(request: Request, labeler: Labeler) -> Response:
    if _is_json(request):
        raise InvalidRequest("send the image bytes as the body (Content-Type: image/* or application/octet-stream)")
    data = await _image_body(request)
    exact = await asyncio.to_thread(digests_of, data)
    result = await _hash(labeler, data)
    return JSONResponse({"hash": result.hash, "quality": result.quality, **exact.as_signals()})


@_checked
async def match_image(request: Request, labeler: Labeler) -> Response:
    settings = labeler.settings
    rejected: ImageNotAccepted | None = None
    if _is_json(request):
        given = _hashes_from_json(await request.body())
        pdq, quality, variants = given.pop("hash", None), None, None
        exact = given
    else:
        data = await _image_body(request)
        exact = (await asyncio.to_thread(digests_of, data)).as_signals()
        pdq = quality = variants = None
        try:
            result = await _hash(labeler, data)
            pdq, quality, variants = result.hash, result.quality, result.variants
        except ImageNotAccepted as exc:
            rejected = exc  # its exact hashes may still match, as in the pipeline
    body: dict[str, Any] = {"hash": pdq, "quality": quality, **exact, "matches": []}
    low_quality = quality is not None and quality < settings.pdq_quality_threshold
    if low_quality:
        body["skipped"] = "low-quality"  # as in the pipeline: recorded, not matched
    looked_up = [] if pdq is None or low_quality else list(variants or [pdq])
    try:
        matches = await lookup_signals(
            labeler.pipeline.matcher, pdq=looked_up, exact=exact, max_distance=settings.match_distance
        )
    except MatcherUnavailable as exc:
        raise ServiceUnavailable(f"matcher unavailable: {exc.message}") from None
    except MatchFailure as exc:
        raise UpstreamFailure(f"matcher error: {exc.message}") from None
    screened = await labeler.pipeline.screen.screen("", matches, record=False)  # as the pipeline would act
    matches = screened.matches
    if screened.allowed_by is not None:
        body["allow_listed"] = True
    if rejected is not None and not matches:
        raise rejected
    body["matches"] = [
        {"bank": m.bank, "distance": m.distance, "entry_id": m.entry_id, "signal_type": m.signal_type}
        | ({"external_id": m.external_id} if m.external_id is not None else {})
        for m in matches
    ]
    if rejected is not None:
        body["rejected"] = rejected.reason
    return JSONResponse(body)


def _authorize(request: Request) -> Labeler:
    """Bearer token against every configured token in constant time; closed when none are configured."""
    labeler: Labeler = request.app.state.labeler
    tokens = [t.strip() for t in labeler.settings.upload_tokens.split(",") if t.strip()]
    scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
    if not tokens:
        raise AuthRequired("the upload API is disabled: set LABELER_UPLOAD_TOKENS")
    if scheme.lower() != "bearer" or not given.strip():
        raise AuthRequired("send Authorization: Bearer <upload token>")
    digest = hashlib.sha256(given.strip().encode()).digest()
    ok = False
    for token in tokens:  # every token compared, equal-length digests: no early exit to time
        ok |= hmac.compare_digest(digest, hashlib.sha256(token.encode()).digest())
    if not ok:
        raise AuthRequired("invalid upload token")
    return labeler


def _is_json(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"


async def _image_body(request: Request) -> bytes:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type.startswith("multipart/"):
        raise InvalidRequest("send the raw image bytes as the body, not a multipart form")
    data = await request.body()
    if not data:
        raise InvalidRequest("empty body: send the image bytes")
    return data


_JSON_HASHES: Final = ("hash", *EXACT_SIGNALS)
_JSON_SHAPE: Final = '{"hash": "<PDQ, 64 hex>", "md5": "<32 hex>", "sha256": "<64 hex>"} (at least one)'


def _hashes_from_json(raw: bytes) -> dict[str, str]:
    """The hashes a JSON body names, validated: `hash` (PDQ) and the exact signal types by name."""
    value = parse_json(raw)
    if not isinstance(value, dict) or not value or set(value) - set(_JSON_HASHES):
        raise InvalidRequest(f"expected {_JSON_SHAPE}")
    hashes = {}
    for key, given in value.items():
        normalised = given.strip().lower() if isinstance(given, str) else given
        try:
            hashes[key] = validate_pdq_hex(normalised) if key == "hash" else validate_exact(key, normalised)
        except ValueError:
            raise InvalidRequest(f"{key}: not a well-formed hash; expected {_JSON_SHAPE}") from None
    return hashes


async def _hash(labeler: Labeler, data: bytes) -> PdqResult:
    try:
        return await labeler.pipeline.hash_image(data)
    except ImageRejected as exc:
        if exc.reason == TOO_LARGE:
            raise PayloadTooLarge(f"image larger than {labeler.settings.max_image_bytes} bytes") from None
        raise ImageNotAccepted(exc.reason, f"image rejected ({exc.reason}): {exc.detail}") from None
    except HasherCrashed:
        raise ServiceUnavailable("the hasher restarted; try again") from None
    except HasherBusy:
        raise ServiceUnavailable("every hashing process is busy; try again later") from None


def _slots(request: Request) -> asyncio.Semaphore:
    slots: asyncio.Semaphore | None = getattr(request.app.state, "upload_slots", None)
    if slots is None:
        slots = request.app.state.upload_slots = asyncio.Semaphore(MAX_CONCURRENT)
    return slots
