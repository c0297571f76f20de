"""Images small on the wire but expensive to hash (issue 15 item 17), each sent exactly as reported:
a 94 KB progressive JPEG with 1,000 scans, a 631-byte JPEG declaring 7000×7000, and 194 KB PNG bombs under the
pixel limit. Every one ends as a result or a rejection with a reason, in bounded time and memory, and the hashing
processes keep serving the next image."""

from __future__ import annotations

import asyncio
import functools
import io

import pytest
from PIL import Image

from labeler.pipeline import jpeg_scans
from labeler.pipeline.hasher import (
    DEFAULT_MAX_JPEG_SCANS,
    TOO_MANY_SCANS,
    TOO_MUCH_MEMORY,
    TOO_SLOW,
    ImageRejected,
    hash_image,
)
from labeler.pipeline.hashing import HashPool
from labeler.pipeline.procpool.pool import Limits

from .corpus import encode, jpeg_declaring, png_zlib_bomb, progressive_jpeg_with_scans, structured_rgb

THOUSAND_SCANS = functools.cache(lambda: progressive_jpeg_with_scans(4000, 4000, 1000))
DECLARES_7000 = jpeg_declaring(7000, 7000)
NORMAL = encode(structured_rgb(640, 480, seed=3), "JPEG", quality=85)
MAX_PIXELS = 50_000_000  # the service's default (LABELER_MAX_IMAGE_PIXELS)


def pool(
    *, time_limit: float = 30.0, memory_mb: int = 1024, scans: int = DEFAULT_MAX_JPEG_SCANS, reduced: bool
) -> HashPool:
    return HashPool(
        processes=1,
        limits=Limits(timeout=time_limit, memory_bytes=memory_mb << 20),
        max_bytes=20 << 20,
        max_pixels=MAX_PIXELS,
        max_jpeg_scans=scans,
        reduced_decode=reduced,
    )


def test_the_inputs_are_the_reported_ones() -> None:
    assert 90_000 < len(THOUSAND_SCANS()) < 100_000
    assert jpeg_scans.count_scans(THOUSAND_SCANS(), stop_after=10_000) == 1000
    assert len(DECLARES_7000) < 700 and Image.open(io.BytesIO(DECLARES_7000)).size == (7000, 7000)
    bomb = png_zlib_bomb(7000, 7000, colour_type=6)
    assert len(bomb) < 200_000 and MAX_PIXELS > 7000 * 7000


def test_scans_are_counted_from_the_markers() -> None:
    progressive = encode(structured_rgb(300, 200), "JPEG", progressive=True)
    assert jpeg_scans.count_scans(progressive, stop_after=100) == 10  # libjpeg's progressive script, colour
    assert jpeg_scans.count_scans(NORMAL, stop_after=100) == 1
    assert jpeg_scans.count_scans(THOUSAND_SCANS(), stop_after=100) == 101  # stops counting past the limit
    assert jpeg_scans.count_scans(progressive[: len(progressive) // 2], stop_after=100) < 10  # truncated: no crash


@pytest.mark.parametrize("reduced", [False, True], ids=["exact", "reduced"])
def test_a_thousand_scan_jpeg_is_refused_before_it_is_decoded(reduced: bool) -> None:
    with pytest.raises(ImageRejected) as info:
        hash_image(THOUSAND_SCANS(), max_pixels=MAX_PIXELS, reduced_decode=reduced)
    assert info.value.reason == TOO_MANY_SCANS
    hash_image(encode(structured_rgb(300, 200), "JPEG", progressive=True), reduced_decode=reduced)  # 10 are fine


async def test_an_image_past_the_time_limit_is_too_slow_and_its_process_is_replaced() -> None:
    hasher = pool(time_limit=1.0, scans=10_000, reduced=True)  # no scan limit: only the clock stops it
    try:
        await hasher.start()
        before = hasher.pool.pids
        with pytest.raises(ImageRejected) as info:
            await hasher.hash(THOUSAND_SCANS())
        assert info.value.reason == TOO_SLOW
        assert (await hasher.hash(NORMAL)).hash == hash_image(NORMAL, reduced_decode=True).hash
        assert hasher.pool.pids != before and hasher.pool.restarts["timeout"] == 1
    finally:
        await hasher.aclose()


async def test_a_631_byte_jpeg_declaring_7000x7000() -> None:
    # Reduced decoding reads it at 1/8 scale: a small, quick hash (of flat grey, so quality 0).
    assert hash_image(DECLARES_7000, max_pixels=MAX_PIXELS, reduced_decode=True).quality == 0
    # The exact hash needs ~1.7 GB for 49 megapixels (pdqhash's float buffers): the memory limit stops it.
    hasher = pool(memory_mb=1024, reduced=False)
    try:
        with pytest.raises(ImageRejected) as info:
            await hasher.hash(DECLARES_7000)
        assert info.value.reason == TOO_MUCH_MEMORY
        assert (await hasher.hash(NORMAL)).hash == hash_image(NORMAL).hash
        assert hasher.pool.restarts["memory"] == 1
    finally:
        await hasher.aclose()


async def test_png_bombs_under_the_pixel_limit_are_answered_in_bounded_time() -> None:
    bomb = png_zlib_bomb(7000, 7000, colour_type=6)
    hasher = pool(reduced=True)
    try:
        results = await asyncio.gather(*(hasher.hash(bomb) for _ in range(2)), return_exceptions=True)
        assert all(not isinstance(r, BaseException) and r.quality == 0 for r in results), results
        assert (await hasher.hash(NORMAL)).hash == hash_image(NORMAL, reduced_decode=True).hash
    finally:
        await hasher.aclose()
