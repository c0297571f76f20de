"""The upload-time check API over real HTTP: auth, hashing, matching, limits and errors."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from labeler.config import Settings
from labeler.pipeline.banks import EntryInput
from labeler.pipeline.hasher import hash_image
from labeler.pipeline.match.base import MatcherError, MatcherUnavailable
from labeler.pipeline.signals.video import VideoLimits, hash_video
from labeler.pipeline.signals.vpdq import to_signal
from labeler.service import Labeler
from labeler.testing import serve_labeler

from .corpus import encode, flip_bits, png_header_only, png_zlib_bomb, structured_rgb
from .harness import eventually
from .videos import cached, reencoded, require_video_tools, video

TOKEN = "tok-b"
AUTH = {"authorization": f"Bearer {TOKEN}"}
MAX_IMAGE = 300_000
BANKED = encode(structured_rgb(320, 240, seed=1), "PNG")
OTHER = encode(structured_rgb(320, 240, seed=2), "JPEG", quality=90)


@pytest.fixture
def settings(make_settings: Any) -> Settings:
    # A tiny app-wide body limit proves the upload paths have their own (max_image_bytes).
    return make_settings(upload_tokens=f"tok-a, {TOKEN}", max_body_bytes=1024, max_image_bytes=MAX_IMAGE)


@pytest.fixture
async def bank(labeler: Labeler) -> str:
    """Bank "KNOWN" holds BANKED's hash as external id "case-17"."""
    banks = labeler.pipeline.banks
    await banks.create("KNOWN")
    await banks.add_entries("KNOWN", [EntryInput(hash_image(BANKED).hash, external_id="case-17")])
    return hash_image(BANKED).hash


def assert_error(response: httpx.Response, status: int, name: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == name and body["message"], body
    return body


async def test_hash_returns_the_pipelines_hash_and_quality(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/hash", content=BANKED, headers=AUTH | {"content-type": "image/png"})
    assert response.status_code == 200, response.text
    expected = hash_image(BANKED)
    assert response.json() == {
        "media": "image",
        "hash": expected.hash,
        "quality": expected.quality,
        "md5": hashlib.md5(BANKED).hexdigest(),
        "sha256": hashlib.sha256(BANKED).hexdigest(),
    }
    assert expected.quality >= 50


async def test_match_by_image(client: httpx.AsyncClient, bank: str) -> None:
    response = await client.post("/api/v1/match", content=BANKED, headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["hash"] == bank
    assert body["matches"] == [
        {
            "bank": "KNOWN",
            "distance": 0,
            "entry_id": body["matches"][0]["entry_id"],
            "signal_type": "pdq",
            "external_id": "case-17",
        }
    ]
    other = (await client.post("/api/v1/match", content=OTHER, headers=AUTH)).json()
    assert other["matches"] == [] and other["quality"] >= 50


async def test_match_by_hash(client: httpx.AsyncClient, bank: str) -> None:
    near = flip_bits(bank, 7, seed=3)
    response = await client.post("/api/v1/match", json={"hash": near.upper()}, headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["hash"], body["quality"]) == (near, None)
    assert [(m["bank"], m["distance"]) for m in body["matches"]] == [("KNOWN", 7)]
    far = flip_bits(bank, 40, seed=3)
    assert (await client.post("/api/v1/match", json={"hash": far}, headers=AUTH)).json()["matches"] == []
    for bad in ({"hash": "abc"}, {"pdq": bank}, ["x"], {}, {"md5": bank}, {"sha256": "0" * 63}, {"hash": 7}):
        assert_error(await client.post("/api/v1/match", json=bad, headers=AUTH), 400, "InvalidRequest")
    bad_json = await client.post("/api/v1/match", content=b"{", headers=AUTH | {"content-type": "application/json"})
    assert_error(bad_json, 400, "InvalidRequest")


async def test_match_by_exact_hashes_even_for_bytes_that_do_not_decode(
    client: httpx.AsyncClient, labeler: Labeler
) -> None:
    broken = BANKED[: len(BANKED) // 2]  # a truncated PNG: no PDQ, but its bytes are a known file
    await labeler.pipeline.banks.create("FILES", signal_type="md5")
    await labeler.pipeline.banks.add_entries("FILES", [EntryInput(hashlib.md5(broken).hexdigest(), "file-9")])
    body = (await client.post("/api/v1/match", content=broken, headers=AUTH)).json()
    assert [(m["bank"], m["signal_type"], m["external_id"]) for m in body["matches"]] == [("FILES", "md5", "file-9")]
    assert (body["hash"], body["rejected"], body["sha256"]) == (None, "truncated", hashlib.sha256(broken).hexdigest())
    by_json = await client.post("/api/v1/match", json={"md5": hashlib.md5(broken).hexdigest().upper()}, headers=AUTH)
    assert [m["bank"] for m in by_json.json()["matches"]] == ["FILES"]
    # Undecodable and unknown: refused as before, with the hasher's reason.
    other = OTHER[: len(OTHER) // 2]
    assert assert_error(await client.post("/api/v1/match", content=other, headers=AUTH), 400, "ImageRejected")


async def test_low_quality_images_are_not_matched(client: httpx.AsyncClient) -> None:
    flat = encode(structured_rgb(64, 64).point(lambda _: 128), "PNG")
    body = (await client.post("/api/v1/match", content=flat, headers=AUTH)).json()
    assert body["quality"] < 50 and body["matches"] == [] and body["skipped"] == "low-quality"


@pytest.mark.parametrize("path", ["/api/v1/hash", "/api/v1/match"])
@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Bearer"),
        ({"authorization": "Bearer nope"}, "invalid upload token"),
        ({"authorization": "Basic dG9rLWI6"}, "Bearer"),
        ({"authorization": "Bearer tok-"}, "invalid upload token"),
    ],
)
async def test_auth_is_required(client: httpx.AsyncClient, path: str, headers: dict[str, str], message: str) -> None:
    response = await client.post(path, content=BANKED, headers=headers)
    assert message in assert_error(response, 401, "AuthRequired")["message"]
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_closed_without_configured_tokens(make_settings: Any) -> None:
    service = Labeler(make_settings(upload_tokens=" , "))
    await service.start()
    try:
        async with serve_labeler(service) as live, httpx.AsyncClient(base_url=live.url) as http:
            response = await http.post("/api/v1/hash", content=BANKED, headers=AUTH)
            assert "disabled" in assert_error(response, 401, "AuthRequired")["message"]
    finally:
        await service.aclose()


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        (b"definitely not an image", "not-an-image"),
        (BANKED[: len(BANKED) // 2], "truncated"),
        (png_header_only(30_000, 30_000), "too-many-pixels"),
    ],
    ids=["not-an-image", "truncated", "bomb"],
)
@pytest.mark.parametrize("path", ["/api/v1/hash", "/api/v1/match"])
async def test_bad_images_are_400_with_the_reason(
    client: httpx.AsyncClient, path: str, image: bytes, reason: str
) -> None:
    body = assert_error(await client.post(path, content=image, headers=AUTH), 400, "ImageRejected")
    assert body["reason"] == reason


async def test_bad_requests(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/api/v1/hash", content=b"", headers=AUTH), 400, "InvalidRequest")
    assert_error(await client.post("/api/v1/hash", json={"hash": "0" * 64}, headers=AUTH), 400, "InvalidRequest")
    multipart = await client.post("/api/v1/hash", files={"file": ("a.png", BANKED[:500])}, headers=AUTH)
    assert_error(multipart, 400, "InvalidRequest")
    assert_error(await client.get("/api/v1/hash", headers=AUTH), 405, "MethodNotSupported")


async def test_size_limits(client: httpx.AsyncClient) -> None:
    big = b"\x89PNG" + b"\x00" * MAX_IMAGE
    declared = await client.post("/api/v1/hash", content=big, headers=AUTH)
    assert_error(declared, 413, "PayloadTooLarge")

    async def chunks() -> AsyncIterator[bytes]:  # no content-length: counted as it streams
        for _ in range(10):
            yield b"\x00" * (MAX_IMAGE // 5)

    assert_error(await client.post("/api/v1/match", content=chunks(), headers=AUTH), 413, "PayloadTooLarge")
    # Under the image limit but over the app-wide limit: fine here, refused everywhere else.
    assert len(BANKED) > 1024
    assert (await client.post("/api/v1/hash", content=BANKED, headers=AUTH)).status_code == 200
    elsewhere = await client.post("/xrpc/com.atproto.moderation.createReport", content=BANKED)
    assert_error(elsewhere, 413, "PayloadTooLarge")


class _FailingMatcher:
    signal_types = frozenset({"pdq"})

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    async def lookup(self, pdq_hex: str, *, max_distance: int = 31) -> list[Any]:
        raise self.exc


@pytest.fixture
def swap_matcher(labeler: Labeler) -> Iterator[Any]:
    original = labeler.pipeline.matcher

    def swap(exc: Exception) -> None:
        labeler.pipeline.matcher = _FailingMatcher(exc)  # type: ignore[assignment]

    yield swap
    labeler.pipeline.matcher = original


async def test_matcher_unavailable_is_503(client: httpx.AsyncClient, swap_matcher: Any) -> None:
    swap_matcher(MatcherUnavailable("HMA index not loaded", status=503))
    response = await client.post("/api/v1/match", content=BANKED, headers=AUTH)
    assert "index not loaded" in assert_error(response, 503, "ServiceUnavailable")["message"]
    assert response.headers["retry-after"] == "5"
    hashed = await client.post("/api/v1/hash", content=BANKED, headers=AUTH)
    assert hashed.status_code == 200  # hashing does not need the matcher


async def test_matcher_error_is_502(client: httpx.AsyncClient, swap_matcher: Any) -> None:
    swap_matcher(MatcherError("bad request", status=400))
    response = await client.post("/api/v1/match", json={"hash": "a" * 64}, headers=AUTH)
    assert_error(response, 502, "UpstreamFailure")


async def test_sixteen_png_bombs_at_once_are_answered_without_queueing_without_bound(make_settings: Any) -> None:
    """Issue 15 item 17: sixteen 194 KB PNG bombs under the pixel limit waited up to 146 s for one process. Now
    each check waits at most `upload_max_wait` for a hashing process and is answered 503 with Retry-After after
    that, or is hashed within `hash_timeout`."""
    bomb = png_zlib_bomb(7000, 7000, colour_type=6)
    settings = make_settings(
        upload_tokens=TOKEN, max_image_bytes=MAX_IMAGE, upload_max_wait=0.5, hash_timeout=20.0,
        extra={"pipeline": {"hash_processes": 1}},
    )  # fmt: skip
    service = Labeler(settings)
    await service.start(hashing=True)
    try:
        async with serve_labeler(service) as live, httpx.AsyncClient(base_url=live.url, timeout=60) as http:
            answers = await asyncio.gather(*(http.post("/api/v1/hash", content=bomb, headers=AUTH) for _ in range(16)))
            statuses = sorted(a.status_code for a in answers)
            assert set(statuses) <= {200, 400, 503}, statuses
            refused = [a for a in answers if a.status_code == 503]
            assert refused, "every check queued for the one hashing process"
            for answer in refused:
                assert_error(answer, 503, "ServiceUnavailable")
                assert answer.headers["retry-after"] == "5"
            # The bombs are gone: once a process that ran out of memory is replaced, checks are hashed as usual.
            pool = service.pipeline.hasher.pool

            async def ready() -> bool:
                return pool.idle == 1

            await eventually(ready, what="a hashing process ready again")
            after = await http.post("/api/v1/hash", content=BANKED, headers=AUTH)
            assert after.status_code == 200, (statuses, after.text)
            assert after.json()["hash"] == hash_image(BANKED).hash
    finally:
        await service.aclose()


@pytest.fixture
def video_settings(make_settings: Any) -> Settings:
    return make_settings(
        upload_tokens=TOKEN, max_body_bytes=1024, max_image_bytes=MAX_IMAGE, max_video_bytes=3_000_000,
        max_video_pixels=1920 * 1080,
    )  # fmt: skip


async def test_videos_hash_to_every_signal_and_match_by_vpdq(video_settings: Settings) -> None:
    require_video_tools()
    clip = video("upload-clip.mp4", seconds=4)
    copy = reencoded("upload-copy.webm", "upload-clip.mp4", "-c:v", "libvpx-vp9")
    features = hash_video(cached("upload-clip.mp4"), VideoLimits()).features
    labeler = Labeler(video_settings)
    await labeler.start()
    try:
        await labeler.pipeline.banks.create("VIDEOS", signal_type="vpdq")
        await labeler.pipeline.banks.add_entries("VIDEOS", [EntryInput(to_signal(features), "case-v")])
        async with serve_labeler(labeler) as live, httpx.AsyncClient(base_url=live.url, timeout=60) as http:
            hashed = await http.post("/api/v1/hash", content=clip, headers=AUTH | {"content-type": "video/mp4"})
            assert hashed.status_code == 200, hashed.text
            body = hashed.json()
            assert (body["media"], body["md5"], body["sha256"]) == (
                "video",
                hashlib.md5(clip).hexdigest(),
                hashlib.sha256(clip).hexdigest(),
            )
            assert body["vpdq"] == [str(f) for f in features] and body["video"]["codec"] == "h264"
            assert "hash" not in body
            matched = (await http.post("/api/v1/match", content=copy, headers=AUTH)).json()
            [match] = matched["matches"]
            assert (match["bank"], match["signal_type"], match["external_id"]) == ("VIDEOS", "vpdq", "case-v")
            assert match["similarity"]["query_match_percent"] >= 80 and matched["video"]["codec"] == "vp9"
            by_json = await http.post("/api/v1/match", json={"vpdq": to_signal(features)}, headers=AUTH)
            assert [m["entry_id"] for m in by_json.json()["matches"]] == [match["entry_id"]]
            truncated = clip[: len(clip) // 2]
            refused = await http.post("/api/v1/match", content=truncated, headers=AUTH)
            assert assert_error(refused, 400, "VideoRejected")["reason"] == "truncated"
            too_long = video("upload-long.mp4", seconds=2, rate="1", extra=("-vf", "setpts=3600*PTS", "-r", "1/3600"))
            refused = await http.post("/api/v1/hash", content=too_long, headers=AUTH)
            assert assert_error(refused, 400, "VideoRejected")["reason"] == "too-long"
            big = clip[:12] + b"\x00" * 3_000_000  # a video by its first bytes, over the video limit
            assert_error(await http.post("/api/v1/hash", content=big, headers=AUTH), 413, "PayloadTooLarge")
            for bad in ({"vpdq": []}, {"vpdq": "[1]"}, {"vpdq": 5}):
                assert_error(await http.post("/api/v1/match", json=bad, headers=AUTH), 400, "InvalidRequest")
    finally:
        await labeler.aclose()
