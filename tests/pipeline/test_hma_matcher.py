"""HmaMatcher against the HMA stand-in over real HTTP: results, error mapping, readiness, bank helpers."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from support.server import free_port

from labeler.config import ConfigError, load_settings
from labeler.pipeline.match.base import Match, Matcher, MatcherError, MatcherUnavailable
from labeler.pipeline.match.hma import (
    FILLER_BANK,
    FILLER_PDQ,
    HmaBank,
    HmaMatcher,
    HmaStatus,
    decode_note,
    encode_note,
)
from labeler.pipeline.signals import MD5, PDQ, SHA256

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
        assert await matcher.lookup(h) == [Match("CSAM_HASHES", str(content_id), 0, note="from test")]
        paused = await matcher.add_signal("PAUSED", h)
        assert paused != content_id
        assert [m.bank for m in await matcher.lookup(h)] == ["CSAM_HASHES"]  # ratio 0 → never returned
        with pytest.raises(MatcherError, match="not found") as info:
            await matcher.add_signal("NO_SUCH_BANK", h)
        assert info.value.status == 404
        with pytest.raises(MatcherError, match="Invalid pdq signal"):
            await matcher.add_signal("CSAM_HASHES", h.upper())
        long_note = await matcher.add_signal("CSAM_HASHES", h, note="x" * 256)  # shortened to HMA's 255
        stored = {cid: note for cid, _, _, note in hma_standin.control.contents("CSAM_HASHES")}[long_note]
        assert stored is not None and len(stored) == 255
    finally:
        await matcher.aclose()


async def test_a_single_hash_is_matched_despite_hma_1318(hma_standin: RunningStandin) -> None:
    """The first hash we bank goes in after the reserved filler, so HMA's index never holds exactly one."""
    h = random_hashes(1, seed=46)[0]
    matcher = HmaMatcher(hma_standin.url)
    try:
        await matcher.create_bank("ONLY")
        content_id = await matcher.add_signal("ONLY", h, external_id="case-7", note="the one")
        assert await matcher.lookup(h) == [Match("ONLY", str(content_id), 0, "case-7", "the one")]
        assert HmaBank(FILLER_BANK, 0.0) in await matcher.list_banks()
        assert await matcher.lookup(FILLER_PDQ) == []  # the filler itself is never reported
        assert len(hma_standin.control.contents(FILLER_BANK)) == 1
        await matcher.add_signal("ONLY", random_hashes(1, seed=47)[0])
        assert len(hma_standin.control.contents(FILLER_BANK)) == 1  # checked once, added once
    finally:
        await matcher.aclose()


async def test_first_lookup_adds_the_filler_for_a_hash_banked_elsewhere(hma_standin: RunningStandin) -> None:
    """One hash put into HMA by someone else (its UI, an exchange) would be missed; the matcher's first lookup
    (or readiness check) adds the filler first."""
    h = random_hashes(1, seed=48)[0]
    hma_standin.control.create_bank("ELSEWHERE")
    content_id = hma_standin.control.add_signal("ELSEWHERE", h)
    async with httpx.AsyncClient(base_url=hma_standin.url) as client:
        raw = await client.get("/m/lookup", params={"signal_type": "pdq", "signal": h})
        assert raw.json() == {}  # HMA #1318, as HMA does it
    matcher = HmaMatcher(hma_standin.url)
    try:
        assert await matcher.lookup(h) == [Match("ELSEWHERE", str(content_id), 0)]
        status = await matcher.status()
        assert status == HmaStatus(
            "I-AM-ALIVE", True, [HmaBank("ELSEWHERE", 1.0), HmaBank(FILLER_BANK, 0.0)], {"pdq": 2, "video_md5": 0}
        )
    finally:
        await matcher.aclose()


async def test_lookups_made_while_the_filler_goes_in_wait_for_it(hma_standin: RunningStandin) -> None:
    """Jobs look up concurrently: a lookup that did not wait for the first one's filler met a one-hash index."""
    h = random_hashes(1, seed=49)[0]
    hma_standin.control.create_bank("ELSEWHERE")
    content_id = hma_standin.control.add_signal("ELSEWHERE", h)
    matcher = HmaMatcher(hma_standin.url)
    try:
        found = await asyncio.gather(*(matcher.lookup(h) for _ in range(4)))
        assert found == [[Match("ELSEWHERE", str(content_id), 0)]] * 4
    finally:
        await matcher.aclose()


async def test_md5_through_video_md5(hma_standin: RunningStandin) -> None:
    md5, other = "9e107d9d372bb6826bd81d3542a419d6", "e4d909c290d0fb1ca068ffaddf22cbd0"
    matcher = HmaMatcher(hma_standin.url)
    try:
        assert {PDQ, MD5} == matcher.signal_types
        await matcher.create_bank("VIDEOS")
        content_id = await matcher.add_signal("VIDEOS", md5, signal_type=MD5, external_id="v-1")
        assert hma_standin.control.contents("VIDEOS")[0][2] == {"video_md5": md5}
        expected = Match("VIDEOS", str(content_id), 0, "v-1", signal_type=MD5)
        assert await matcher.lookup_exact(MD5, md5) == [expected]
        assert await matcher.lookup_exact(MD5, other) == []
        with pytest.raises(MatcherError, match="not supported"):
            await matcher.lookup_exact(SHA256, "0" * 64)
        with pytest.raises(MatcherError, match="do not take"):
            await matcher.add_signal("VIDEOS", "0" * 64, signal_type=SHA256)
        with pytest.raises(MatcherError, match="not a valid MD5"):
            await matcher.lookup_exact(MD5, "zz")
    finally:
        await matcher.aclose()


def test_notes_carry_the_external_id_within_hmas_limit() -> None:
    assert encode_note(None, None) is None
    assert decode_note(encode_note("case-1", "a note")) == ("case-1", "a note")
    assert decode_note(encode_note("case-1", None)) == ("case-1", None)
    assert decode_note(encode_note(None, "only a note")) == (None, "only a note")
    long = encode_note("case-2", "é" * 400)
    assert long is not None and len(long) <= 255 and decode_note(long)[0] == "case-2"
    with pytest.raises(MatcherError, match="too long"):
        encode_note("x" * 300, None)
    assert decode_note("written in HMA's UI") == (None, "written in HMA's UI")
    assert decode_note('{"other": 1}') == (None, '{"other": 1}')
    assert decode_note(None) == (None, None)


def test_match_distance_above_hmas_threshold_is_refused() -> None:
    env = {"LABELER_MATCHER": "hma", "LABELER_HMA_URL": "http://127.0.0.1:5100"}
    assert load_settings(env={**env, "LABELER_MATCH_DISTANCE": "31"}).match_distance == 31
    with pytest.raises(ConfigError, match="LABELER_MATCH_DISTANCE=40 is above 31"):
        load_settings(env={**env, "LABELER_MATCH_DISTANCE": "40"})
    assert load_settings(env={"LABELER_MATCH_DISTANCE": "40"}).match_distance == 40  # embedded matches farther
    with pytest.raises(ConfigError, match="from 0 to 256"):
        load_settings(env={"LABELER_MATCH_DISTANCE": "-1"})
