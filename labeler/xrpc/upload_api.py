"""The upload-time check API for apps: a PDS or app checks an image or a video before publishing it.

    POST /api/v1/hash   image or video bytes          → every signal: {"media", "md5", "sha256", "hash", "quality"}
                                                         (an image's PDQ) or {…, "vpdq", "video"} (a video's)
    POST /api/v1/match  bytes | {"hash"|"md5"|"sha256"|"vpdq"} → {…, "matches": [{bank, distance, entry_id,
                                                         signal_type, …}]}

Synchronous, and nothing is stored: unlike the firehose, the caller decides what to do with the answer.
Callers present `Authorization: Bearer <token>` for one of `LABELER_UPLOAD_TOKENS`; with none configured the
API is closed. The first bytes say whether a body is a video (`upload_body`); an image may be up to
`max_image_bytes`, a video up to `max_video_bytes` (streamed to a temporary file; the app-wide body limit is
lifted for these paths only). Hashing runs in the pipeline's process pool with the pipeline's limits, and a match
follows the pipeline's rules (quality threshold, match distance, vPDQ thresholds), so the answer here is the one
the labeler would give for the same blob on the network: that includes matching the exact hashes (MD5, SHA-256)
of bytes that do not decode, which are refused only when nothing matched them. Matches of
disabled bank entries are left out, and an allow-listed blob answers no matches with `"allow_listed": true`.

Nothing queues without bound: at most MAX_CONCURRENT checks are in flight (more are answered 503 at once), of them
at most MAX_CONCURRENT_VIDEOS videos, a check waits at most `upload_max_wait` for a hashing process (ahead of
pipeline jobs), and hashing one image is cut off at `hash_timeout`, one video at `video_hash_timeout` (400
ImageRejected or VideoRejected, reason too-slow).
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
from labeler.pipeline.hashing import HasherBusy, HasherCrashed
from labeler.pipeline.match.base import MatcherUnavailable, MatchFailure, lookup_signals
from labeler.pipeline.signals import EXACT_SIGNALS, PDQ, VIDEO, VPDQ
from labeler.pipeline.signals.blob import BlobSignals, lookup_from
from labeler.pipeline.signals.values import normalised_hash
from labeler.pipeline.signals.video import VideoRejected
from labeler.protocol.errors import AuthRequired, InvalidRequest, ServiceUnavailable, XrpcError
from labeler.service import Labeler
from labeler.xrpc.body import parse_json
from labeler.xrpc.errors import error_response
from labeler.xrpc.failed_logins import FailureLimiter
from labeler.xrpc.upload_body import read_upload

HASH_PATH: Final = "/api/v1/hash"
MATCH_PATH: Final = "/api/v1/match"
# Checks in flight at once; more are refused before their body is read, so memory and waiting stay bounded.
MAX_CONCURRENT: Final = 16
# Videos among them (each up to max_video_bytes on disk and seconds of hashing); more get 503 at once.
MAX_CONCURRENT_VIDEOS: Final = 2
RETRY_AFTER_S: Final = 5


class ImageNotAccepted(InvalidRequest):
    """The body is not an image we can hash; `reason` is the hasher's stable code (truncated, not-an-image, …)."""

    name = "ImageRejected"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "reason": self.reason}


class VideoNotAccepted(ImageNotAccepted):
    """The body is a video we cannot hash; `reason` as the video hasher says (truncated, too-long, unsupported, …)."""

    name = "VideoRejected"


class UpstreamFailure(XrpcError):
    """The matcher refused the lookup or answered nonsense."""

    status: ClassVar[int] = 502
    name: ClassVar[str] = "UpstreamFailure"


def upload_routes() -> list[Route]:
    return [Route(HASH_PATH, hash_image, methods=["POST"]), Route(MATCH_PATH, match_image, methods=["POST"])]


def upload_body_limits(settings: Settings) -> dict[str, int]:
    """Per-path body limits for BodyLimitMiddleware: a blob may be as large as the pipeline accepts (the body's
    kind, known from its first bytes, then sets its own limit)."""
    limit = max(settings.max_image_bytes, settings.max_video_bytes)
    return {HASH_PATH: limit, MATCH_PATH: limit}


def _checked(handler: Callable[[Request, Labeler], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Authenticate, bound concurrency, and add the Bearer challenge a 401 needs (a 503 carries its Retry-After)."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            labeler = await _authorize(request)
            slots = _slots(request)
            if slots.locked():
                raise ServiceUnavailable(
                    f"{MAX_CONCURRENT} checks are in progress; try again later", retry_after=RETRY_AFTER_S
                )
            async with slots:
                return await handler(request, labeler)
        except AuthRequired as exc:
            return error_response(exc, {"WWW-Authenticate": 'Bearer realm="upload"'})

    return endpoint


@_checked
async def hash_image(request: Request, labeler: Labeler) -> Response:
    if _is_json(request):
        raise InvalidRequest("send the image or video bytes as the body (Content-Type: image/*, video/*, …)")
    media, hashed = await _hash_body(request, labeler)
    if hashed.rejected is not None:
        raise _not_accepted(media, hashed.rejected)
    return JSONResponse({"media": media, **_signals(media, hashed)})


@_checked
async def match_image(request: Request, labeler: Labeler) -> Response:
    settings = labeler.settings
    hashed: BlobSignals | None = None
    if _is_json(request):
        given = _hashes_from_json(await request.body())
        frames = given.pop(VPDQ, None)
        pdq = given.pop("hash", None)
        kept = given | ({VPDQ: frames} if frames else {})
        ask = lookup_from(pdq=pdq, kept=kept, quality_threshold=0)
        body: dict[str, Any] = {"hash": pdq, "quality": None, **given}
    else:
        media, hashed = await _hash_body(request, labeler)
        ask = lookup_from(quality_threshold=settings.pdq_quality_threshold, kept=hashed.kept(), **hashed.pdq_columns())
        body = {"media": media, **_signals(media, hashed)}
        if ask.low_quality:
            body["skipped"] = "low-quality"  # as in the pipeline: recorded, not matched
    try:
        matches = await lookup_signals(
            labeler.pipeline.matcher, pdq=ask.pdq, exact=ask.exact, vpdq=ask.vpdq, max_distance=settings.match_distance
        )
    except MatcherUnavailable as exc:
        raise ServiceUnavailable(f"matcher unavailable: {exc.message}", retry_after=RETRY_AFTER_S) from None
    except MatchFailure as exc:
        raise UpstreamFailure(f"matcher error: {exc.message}") from None
    screened = await labeler.pipeline.screen.screen("", matches, record=False)  # as the pipeline would act
    matches = screened.matches
    if screened.allowed_by is not None:
        body["allow_listed"] = True
    if hashed is not None and hashed.rejected is not None:
        if not matches:
            raise _not_accepted(body["media"], hashed.rejected)
        body["rejected"] = hashed.rejected.reason
    body["matches"] = [
        {"bank": m.bank, "distance": m.distance, "entry_id": m.entry_id, "signal_type": m.signal_type}
        | ({"external_id": m.external_id} if m.external_id is not None else {})
        | ({"similarity": m.similarity.to_json()} if m.similarity is not None else {})
        for m in matches
    ]
    return JSONResponse(body)


async def _authorize(request: Request) -> Labeler:
    """Bearer token against every configured token in constant time; closed when none are configured."""
    labeler: Labeler = request.app.state.labeler
    tokens = [t.strip() for t in labeler.settings.upload_tokens.split(",") if t.strip()]
    scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
    if not tokens:
        raise AuthRequired("the upload API is disabled: set LABELER_UPLOAD_TOKENS")
    if scheme.lower() != "bearer" or not given.strip():
        raise AuthRequired("send Authorization: Bearer <upload token>")
    failed_logins: FailureLimiter = request.app.state.failed_logins
    attempt = await failed_logins.check_client(request)  # a token is a password: guesses are limited per client
    digest = hashlib.sha256(given.strip().encode()).digest()
    ok = False
    for token in tokens:  # every token compared, equal-length digests: no early exit to time
        ok |= hmac.compare_digest(digest, hashlib.sha256(token.encode()).digest())
    if not ok:
        await attempt.failed()
        raise AuthRequired("invalid upload token")
    await attempt.succeeded()
    return labeler


def _is_json(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"


async def _hash_body(request: Request, labeler: Labeler) -> tuple[str, BlobSignals]:
    """Read the body (an image or a video) and compute every signal of it in the pipeline's hashing pool."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type.startswith("multipart/"):
        raise InvalidRequest("send the raw image or video bytes as the body, not a multipart form")
    settings = labeler.settings
    slots: _VideoSlots = request.app.state.upload_video_slots
    taken = False

    def take_a_video_slot() -> None:
        nonlocal taken
        taken = slots.take()

    try:
        media, blob = await read_upload(
            request.stream(),
            max_image_bytes=settings.max_image_bytes,
            max_video_bytes=settings.max_video_bytes,
            before_video=take_a_video_slot,
        )
        try:
            return media, await labeler.pipeline.hash_upload(blob, media)
        except HasherCrashed:
            raise ServiceUnavailable("the hasher restarted; try again", retry_after=RETRY_AFTER_S) from None
        except HasherBusy:
            raise ServiceUnavailable(
                "every hashing process is busy; try again later", retry_after=RETRY_AFTER_S
            ) from None
        finally:
            blob.discard()
    finally:
        if taken:
            slots.release()


def _signals(media: str, hashed: BlobSignals) -> dict[str, Any]:
    """Every signal of a blob as the API shows it: exact hashes, and PDQ (`hash`, `quality`) or vPDQ."""
    shown: dict[str, Any] = dict(hashed.exact.as_signals())
    if media != VIDEO:  # an image: its PDQ, or nulls when it could not be hashed
        shown.update(hash=None, quality=None)
    if hashed.pdq is not None:
        shown.update(hash=hashed.pdq.hash, quality=hashed.pdq.quality)
    if hashed.video is not None:
        shown.update({VPDQ: [str(f) for f in hashed.video.features], "video": hashed.video.info.to_json()})
    return shown


def _not_accepted(media: str, rejected: Exception) -> ImageNotAccepted:
    reason, detail = getattr(rejected, "reason", "corrupt"), getattr(rejected, "detail", str(rejected))
    if isinstance(rejected, VideoRejected) or media == VIDEO:
        return VideoNotAccepted(reason, f"video rejected ({reason}): {detail}")
    return ImageNotAccepted(reason, f"image rejected ({reason}): {detail}")


_JSON_HASHES: Final = ("hash", *EXACT_SIGNALS, VPDQ)
_JSON_SHAPE: Final = (
    '{"hash": "<PDQ, 64 hex>", "md5": "<32 hex>", "sha256": "<64 hex>", "vpdq": ["<hex>,<quality>,<time>", …]}'
    " (at least one)"
)


def _hashes_from_json(raw: bytes) -> dict[str, str]:
    """The hashes a JSON body names, validated: `hash` (PDQ), the exact signal types and `vpdq` by name (a vPDQ
    hash as pytx's signal string or the list it encodes, returned as the signal string)."""
    value = parse_json(raw)
    if not isinstance(value, dict) or not value or set(value) - set(_JSON_HASHES):
        raise InvalidRequest(f"expected {_JSON_SHAPE}")
    hashes = {}
    for key, given in value.items():
        try:
            hashes[key] = normalised_hash(PDQ if key == "hash" else key, given)
        except ValueError:
            raise InvalidRequest(f"{key}: not a well-formed hash; expected {_JSON_SHAPE}") from None
    return hashes


class _VideoSlots:
    """Videos checked at once. A video waits for no slot (its hashing takes seconds): none free is a 503."""

    def __init__(self, size: int) -> None:
        self.free = size

    def take(self) -> bool:
        if self.free <= 0:
            raise ServiceUnavailable(
                f"{MAX_CONCURRENT_VIDEOS} videos are being checked; try again shortly", retry_after=RETRY_AFTER_S
            )
        self.free -= 1
        return True

    def release(self) -> None:
        self.free += 1


def _slots(request: Request) -> asyncio.Semaphore:
    state = request.app.state
    slots: asyncio.Semaphore | None = getattr(state, "upload_slots", None)
    if slots is None:
        slots = state.upload_slots = asyncio.Semaphore(MAX_CONCURRENT)
        state.upload_video_slots = _VideoSlots(MAX_CONCURRENT_VIDEOS)
    return slots
