"""One contract, two servers: HmaMatcher against the stand-in always, and against a real HMA 2.0 when
LABELER_TEST_HMA_URL points at one (e.g. http://127.0.0.1:5100; needs the matcher and curator roles).

Against a real HMA this creates a bank named LABELER_TEST_<random> and deletes it afterwards; it passes against a
fresh, empty HMA, because the matcher adds the reserved filler bank first (HMA #1318; it stays). A new signal
only becomes matchable after HMA's indexer and cache refresh, so the test polls for up to
LABELER_TEST_HMA_WAIT seconds (default 150). The MD5 goes in as HMA's `video_md5`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from labeler.pipeline.match.base import Match, MatcherError
from labeler.pipeline.match.hma import HmaMatcher
from labeler.pipeline.signals import MD5

from .corpus import flip_bits
from .hma_standin import HmaStandin, serve

REAL_HMA_URL = os.environ.get("LABELER_TEST_HMA_URL")


@pytest.fixture(params=["standin", "real"])
async def hma_url(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, float]]:
    """(base URL, seconds to wait for a new signal to become matchable)."""
    if request.param == "real":
        if not REAL_HMA_URL:
            pytest.skip("set LABELER_TEST_HMA_URL to a running HMA 2.0 to run the contract against it")
        yield REAL_HMA_URL, float(os.environ.get("LABELER_TEST_HMA_WAIT", "150"))
    else:
        with serve(HmaStandin(index_lag=0.3)) as url:
            yield url, 5.0


async def _wait_matchable(lookup: Callable[[], Awaitable[list[Match]]], bank: str, wait: float) -> list[Match]:
    deadline = time.monotonic() + wait
    while True:
        found = [m for m in await lookup() if m.bank == bank]
        if found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.25)


async def test_contract(hma_url: tuple[str, float]) -> None:
    url, wait = hma_url
    bank = f"LABELER_TEST_{secrets.token_hex(4).upper()}"
    anchor, md5 = secrets.token_hex(32), secrets.token_hex(16)
    matcher = HmaMatcher(url, timeout=10)
    try:
        assert await matcher.ready(), "HMA /status is not I-AM-ALIVE"
        created = await matcher.create_bank(bank)
        assert created.name == bank and created.matching_enabled_ratio == 1.0
        assert bank in [b.name for b in await matcher.list_banks()]
        with pytest.raises(MatcherError) as info:
            await matcher.create_bank(bank)
        assert info.value.status == 403

        # The first PDQ hash in a fresh HMA: matchable only thanks to the reserved filler (HMA #1318).
        content_id = await matcher.add_signal(bank, anchor, external_id="case-1", note="labeler contract test")
        md5_id = await matcher.add_signal(bank, md5, signal_type=MD5, external_id="video-1")
        found = await _wait_matchable(lambda: matcher.lookup(anchor), bank, wait)
        assert found == [Match(bank, str(content_id), 0, "case-1", "labeler contract test")], (
            f"not matchable after {wait}s"
        )
        at31 = [m.distance for m in await matcher.lookup(flip_bits(anchor, 31, seed=1)) if m.bank == bank]
        assert at31 == [31]
        at32 = [m for m in await matcher.lookup(flip_bits(anchor, 32, seed=2)) if m.bank == bank]
        assert at32 == []

        with pytest.raises(MatcherError) as info:
            await matcher.lookup(anchor.upper())
        assert info.value.status == 400

        md5_found = await _wait_matchable(lambda: matcher.lookup_exact(MD5, md5), bank, wait)
        assert md5_found == [Match(bank, str(md5_id), 0, "video-1", signal_type=MD5)]
        assert [m for m in await matcher.lookup_exact(MD5, secrets.token_hex(16)) if m.bank == bank] == []
        status = await matcher.status()
        assert status.ready and status.index_sizes["pdq"] >= 2 and status.index_sizes["video_md5"] >= 1
    finally:
        async with httpx.AsyncClient(base_url=url) as client:
            await client.delete(f"/c/bank/{bank}")  # 200 even if absent
        await matcher.aclose()
