"""HmaMatcher against the HMA stand-in over real HTTP: results, error mapping, readiness, bank helpers."""

from __future__ import annotations

import httpx
import pytest
from support.server import free_port

from labeler.pipeline.match.base import Match, Matcher, MatcherError, MatcherUnavailable
from labeler.pipeline.match.hma import HmaBank, HmaMatcher

from .conftest import RunningStandin
from .corpus import flip_bits, random_hashes


async def test_match_and_no_match(hma_standin: RunningStandin) -> None:
    anchor, other = random_hashes(2, seed=40)
    hma_standin.control.create_bank("KNOWN_BAD")
    hma_standin.control.create_bank("ALSO_BAD")
    near = hma_standin.control.add_signal("KNOWN_BAD", flip_bits(anchor, 6, seed=1))
    far = hma_standin.control.add_signal("ALSO_BAD", flip_bits(anchor, 31, seed=2))
    hma_standin.control.add_signal("ALSO_BAD", flip_bits(anchor, 32, seed=3))
    matcher = HmaMatcher(hma_standin.url)
    assert isinstance(matcher, Matcher)
    try:
        assert await matcher.lookup(anchor) == [Match("KNOWN_BAD", str(near), 6), Match("ALSO_BAD", str(far), 31)]
        assert await matcher.lookup(anchor, max_distance=10) == [Match("KNOWN_BAD", str(near), 6)]
        assert await matcher.lookup(other) == []
        assert await matcher.ready()
    finally:
        await matcher.aclose()


async def test_index_not_loaded_is_unavailable(hma_standin: RunningStandin) -> None:
    hma_standin.control.loaded = False
    async with httpx.AsyncClient() as client:
        matcher = HmaMatcher(hma_standin.url, client=client)
        assert not await matcher.ready()
        with pytest.raises(MatcherUnavailable) as info:
            await matcher.lookup(random_hashes(1, seed=41)[0])
        assert info.value.status == 503 and info.value.retryable
        assert "index not yet ready" in str(info.value)
        hma_standin.control.loaded = True
        assert await matcher.ready()
        assert await matcher.lookup(random_hashes(1, seed=41)[0]) == []
        await matcher.aclose()
        assert not client.is_closed  # a caller's client is the caller's to close


async def test_down_is_unavailable(hma_standin: RunningStandin) -> None:
    hma_standin.control.down = True
    matcher = HmaMatcher(hma_standin.url)
    try:
        assert not await matcher.ready()
        with pytest.raises(MatcherUnavailable):
            await matcher.lookup(random_hashes(1, seed=42)[0])
        with pytest.raises(MatcherUnavailable):
            await matcher.list_banks()
    finally:
        await matcher.aclose()


async def test_connection_refused_is_unavailable() -> None:
    matcher = HmaMatcher(f"http://127.0.0.1:{free_port()}")
    try:
        assert not await matcher.ready()
        with pytest.raises(MatcherUnavailable) as info:
            await matcher.lookup(random_hashes(1, seed=43)[0])
        assert info.value.status is None
    finally:
        await matcher.aclose()


async def test_timeout_is_unavailable(hma_standin: RunningStandin) -> None:
    hma_standin.control.delay = 0.5
    matcher = HmaMatcher(hma_standin.url, timeout=0.1)
    try:
        with pytest.raises(MatcherUnavailable, match="timed out"):
            await matcher.lookup(random_hashes(1, seed=44)[0])
        assert not await matcher.ready()
    finally:
        await matcher.aclose()


@pytest.mark.parametrize("bad", ["A" * 64, "a" * 63, "not-a-hash"])
async def test_bad_hash_is_matcher_error(hma_standin: RunningStandin, bad: str) -> None:
    matcher = HmaMatcher(hma_standin.url)
    try:
        with pytest.raises(MatcherError) as info:
            await matcher.lookup(bad)
        assert info.value.status == 400 and not info.value.retryable
        assert "invalid PDQ hash" in str(info.value)
    finally:
        await matcher.aclose()


async def test_unexpected_answers_are_matcher_errors() -> None:
    answers = {
        "/m/lookup": httpx.Response(200, text="<html>captive portal</html>"),
        "/c/banks": httpx.Response(200, json={"not": "a list"}),
    }

    def handler(request: httpx.Request) -> httpx.Response:
        return answers.get(request.url.path, httpx.Response(200, json={"B": [{"id": 1}]}))

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        matcher = HmaMatcher("http://hma.invalid", client=client)
        with pytest.raises(MatcherError, match="not JSON"):
            await matcher.lookup("a" * 64)
        with pytest.raises(MatcherError, match="expected a list"):
            await matcher.list_banks()
        answers["/m/lookup"] = httpx.Response(200, json={"B": [{"bank_content_id": 1}]})
        with pytest.raises(MatcherError, match="unexpected answer"):
            await matcher.lookup("a" * 64)
        answers["/m/lookup"] = httpx.Response(500, json={"message": "The server encountered an internal error"})
        with pytest.raises(MatcherUnavailable, match="internal error"):
            await matcher.lookup("a" * 64)
        answers["/m/lookup"] = httpx.Response(404, text="<!doctype html><title>404 Not Found</title>")
        with pytest.raises(MatcherError, match="404"):
            await matcher.lookup("a" * 64)


async def test_bank_helpers(hma_standin: RunningStandin) -> None:
    matcher = HmaMatcher(hma_standin.url + "/")
    try:
        assert await matcher.list_banks() == []
        assert await matcher.create_bank("CSAM_HASHES") == HmaBank("CSAM_HASHES", 1.0)
        assert await matcher.create_bank("PAUSED", enabled_ratio=0.0) == HmaBank("PAUSED", 0.0)
        assert await matcher.list_banks() == [HmaBank("CSAM_HASHES", 1.0), HmaBank("PAUSED", 0.0)]
        with pytest.raises(MatcherError, match="Bank already exists") as info:
            await matcher.create_bank("CSAM_HASHES")
        assert info.value.status == 403
        with pytest.raises(MatcherError, match="UPPER_WITH_UNDERSCORE"):
            await matcher.create_bank("lower-case")
        h = random_hashes(1, seed=45)[0]
        content_id = await matcher.add_signal("CSAM_HASHES", h, note="from test")
        assert await matcher.lookup(h) == [Match("CSAM_HASHES", str(content_id), 0)]
        paused = await matcher.add_signal("PAUSED", h)
        assert paused != content_id
        assert [m.bank for m in await matcher.lookup(h)] == ["CSAM_HASHES"]  # ratio 0 → never returned
        with pytest.raises(MatcherError, match="not found") as info:
            await matcher.add_signal("NO_SUCH_BANK", h)
        assert info.value.status == 404
        with pytest.raises(MatcherError, match="Invalid pdq signal"):
            await matcher.add_signal("CSAM_HASHES", h.upper())
        with pytest.raises(MatcherError, match="at most 255"):
            await matcher.add_signal("CSAM_HASHES", h, note="x" * 256)
    finally:
        await matcher.aclose()
