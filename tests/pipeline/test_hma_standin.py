"""The stand-in itself speaks HMA 1.1.7's wire format (hma.md §1), checked with raw HTTP."""

from __future__ import annotations

import asyncio
import io
import time

import httpx
from threatexchange.signal_type.pdq.pdq_index import PDQIndex

from .conftest import RunningStandin
from .corpus import flip_bits, random_hashes


async def test_status_endpoints(hma_standin: RunningStandin) -> None:
    async with httpx.AsyncClient(base_url=hma_standin.url) as client:
        hma_standin.control.loaded = False
        r = await client.get("/status")
        assert (r.status_code, r.text) == (503, "INDEX-NOT-LOADED")
        assert r.headers["content-type"].startswith("text/plain")
        r = await client.get("/status/live")
        assert (r.status_code, r.text) == (200, "I-AM-ALIVE")
        hma_standin.control.loaded = True
        r = await client.get("/status")
        assert (r.status_code, r.text) == (200, "I-AM-ALIVE")


async def test_lookup_wire_format(hma_standin: RunningStandin) -> None:
    anchor = random_hashes(1, seed=50)[0]
    hma_standin.control.create_bank("B")
    cid = hma_standin.control.add_signal("B", flip_bits(anchor, 6, seed=1))
    hma_standin.control.add_signal("B", random_hashes(1, seed=54)[0])  # two hashes: see the HMA #1318 test
    params = {"signal_type": "pdq", "signal": anchor}
    async with httpx.AsyncClient(base_url=hma_standin.url) as client:
        r = await client.get("/m/lookup", params=params)
        assert r.json() == {"B": [{"bank_content_id": cid, "distance": "6"}]}
        r = await client.get("/m/lookup", params={**params, "signal": random_hashes(1, seed=51)[0]})
        assert (r.status_code, r.json()) == (200, {})
        r = await client.get("/m/lookup", params={**params, "signal": anchor.upper()})
        assert (r.status_code, r.json()) == (400, {"message": "invalid signal: invalid PDQ hash"})
        r = await client.get("/m/lookup", params={"signal": anchor})
        assert r.status_code == 400 and "Either url or both" in r.json()["message"]
        r = await client.get("/m/raw_lookup", params=params)
        assert r.json() == {"matches": [cid]}
        r = await client.get("/m/raw_lookup", params={**params, "include_distance": "true"})
        assert r.json() == {"matches": [{"bank_content_id": cid, "distance": "6"}]}
        r = await client.get("/m/raw_lookup", params={"signal": anchor})
        assert r.status_code == 422 and isinstance(r.json(), list)
        assert r.json()[0]["loc"] == ["signal_type"] and r.json()[0]["type"] == "missing"
        hma_standin.control.loaded = False
        r = await client.get("/m/lookup", params=params)
        assert (r.status_code, r.json()) == (503, {"message": "index not yet ready"})


async def test_curation_wire_format(hma_standin: RunningStandin) -> None:
    async with httpx.AsyncClient(base_url=hma_standin.url) as client:
        r = await client.post("/c/banks", json={"name": "MY_BANK"})
        assert (r.status_code, r.json()) == (201, {"matching_enabled_ratio": 1.0, "name": "MY_BANK"})
        r = await client.post("/c/banks", json={"name": "MY_BANK"})
        assert (r.status_code, r.json()) == (403, {"message": "Bank already exists"})
        r = await client.post("/c/banks", json={"name": "9BAD"})
        assert r.status_code == 400
        r = await client.post("/c/banks", content=b"")
        assert r.status_code == 422 and isinstance(r.json(), list)
        r = await client.get("/c/banks")
        assert r.json() == [{"name": "MY_BANK", "matching_enabled_ratio": 1.0}]
        h = random_hashes(1, seed=52)[0]
        r = await client.post("/c/bank/MY_BANK/signal", json={"pdq": h, "note": "n"})
        assert (r.status_code, r.json()) == (200, {"id": 1, "signals": {"pdq": h}})
        r = await client.post("/c/bank/MY_BANK/signal", json={"note": "n"})
        assert (r.status_code, r.json()) == (400, {"message": "No signals given"})


async def test_index_lag(hma_standin: RunningStandin) -> None:
    """A new signal is not matchable until `index_lag` has passed since it was added, then it is. The lag is an
    hour while the test looks for the signal too early, so no delay of a loaded machine reaches it; then it is cut
    to 0.3 s and the test waits for the match to appear (bounded), as HMA's own clients must."""
    hma_standin.control.index_lag = 3600
    hma_standin.control.create_bank("B")
    h, other = random_hashes(2, seed=53)
    hma_standin.control.add_signal("B", other)
    hma_standin.control.add_signal("B", h)
    params = {"signal_type": "pdq", "signal": h}
    async with httpx.AsyncClient(base_url=hma_standin.url) as client:
        assert (await client.get("/m/lookup", params=params)).json() == {}
        hma_standin.control.index_lag = 0.3
        deadline = time.monotonic() + 30
        while not (found := (await client.get("/m/lookup", params=params)).json()):
            assert time.monotonic() < deadline, "not matchable 30 s after its lag of 0.3 s"
            await asyncio.sleep(0.05)
        assert list(found) == ["B"]


def test_pytx_pdq_index_of_one_hash_matches_nothing_once_stored() -> None:
    """HMA #1318 at its root: HMA stores its index serialized and loads it back."""
    h = random_hashes(1, seed=55)[0]
    index = PDQIndex.build([(h, 1)])
    assert [m.metadata for m in index.query(h)] == [1]
    stored = io.BytesIO()
    index.serialize(stored)
    stored.seek(0)
    assert PDQIndex.deserialize(stored).query(h) == []


async def test_one_hash_index_matches_nothing_as_in_hma(hma_standin: RunningStandin) -> None:
    """The stand-in shows HMA #1318: one PDQ hash in the whole index is never matched; a second one fixes it."""
    h, other = random_hashes(2, seed=56)
    hma_standin.control.create_bank("B")
    cid = hma_standin.control.add_signal("B", h)
    params = {"signal_type": "pdq", "signal": h}
    async with httpx.AsyncClient(base_url=hma_standin.url) as client:
        assert (await client.get("/m/lookup", params=params)).json() == {}
        assert (await client.get("/m/raw_lookup", params=params)).json() == {"matches": []}
        hma_standin.control.add_signal("B", other)
        assert (await client.get("/m/lookup", params=params)).json() == {
            "B": [{"bank_content_id": cid, "distance": "0"}]
        }


async def test_enabled_ratio_coin_is_drawn_once_per_request(hma_standin: RunningStandin) -> None:
    """HMA draws one number per lookup and keeps every bank whose ratio is at least that number."""
    h = random_hashes(1, seed=57)[0]
    for name, ratio in (("LOW", 0.3), ("HIGH", 0.7), ("ALSO_HIGH", 0.7)):
        hma_standin.control.create_bank(name, enabled_ratio=ratio)
        hma_standin.control.add_signal(name, h)
    seen = set()
    async with httpx.AsyncClient(base_url=hma_standin.url) as client:
        for seed in range(60):
            r = await client.get("/m/lookup", params={"signal_type": "pdq", "signal": h, "seed": str(seed)})
            seen.add(frozenset(r.json()))
    assert seen == {frozenset(), frozenset({"HIGH", "ALSO_HIGH"}), frozenset({"LOW", "HIGH", "ALSO_HIGH"})}


async def test_video_md5_wire_format(hma_standin: RunningStandin) -> None:
    md5 = "d41d8cd98f00b204e9800998ecf8427e"
    async with httpx.AsyncClient(base_url=hma_standin.url) as client:
        await client.post("/c/banks", json={"name": "VIDEOS"})
        r = await client.post("/c/bank/VIDEOS/signal", json={"video_md5": md5.upper(), "note": "n"})
        assert (r.status_code, r.json()) == (200, {"id": 1, "signals": {"video_md5": md5}})
        r = await client.post("/c/bank/VIDEOS/signal", json={"video_md5": "zz"})
        assert (r.status_code, r.json()) == (400, {"message": "Invalid video_md5 signal: 'zz' is not a valid MD5 hash"})
        r = await client.post("/c/bank/VIDEOS/signal", json={"tmk": "x"})
        assert (r.status_code, r.json()) == (400, {"message": "No such signal type tmk"})
        params = {"signal_type": "video_md5", "signal": md5}
        r = await client.get("/m/lookup", params=params)
        assert r.json() == {"VIDEOS": [{"bank_content_id": 1, "distance": "-"}]}  # exact types have no distance
        r = await client.get("/m/lookup", params={**params, "signal": "zz"})
        assert (r.status_code, r.json()) == (400, {"message": "invalid signal: 'zz' is not a valid MD5 hash"})
        r = await client.get("/m/lookup", params={**params, "signal_type": "tmk"})
        assert (r.status_code, r.json()) == (400, {"message": "No such SignalType 'tmk'"})
        r = await client.get("/m/index/status")
        assert r.json()["video_md5"]["size"] == 1 and r.json()["pdq"] == {"present": False, "built_to": -1, "size": 0}


async def test_content_wire_format(hma_standin: RunningStandin) -> None:
    h = random_hashes(1, seed=58)[0]
    hma_standin.control.create_bank("A")
    hma_standin.control.create_bank("OTHER")
    cid = hma_standin.control.add_signal("A", h, "a note")
    async with httpx.AsyncClient(base_url=hma_standin.url) as client:
        r = await client.get(f"/c/bank/A/content/{cid}", params={"include_signals": "true"})
        assert r.json() == {
            "id": cid,
            "disable_until_ts": 1,
            "original_media_uri": None,
            "bank": {"name": "A", "matching_enabled_ratio": 1.0},
            "signals": {"pdq": h},
            "note": "a note",
        }
        r = await client.get(f"/c/bank/OTHER/content/{cid}")  # HMA only checks that the bank exists
        assert r.json()["bank"]["name"] == "A" and "signals" not in r.json()
        r = await client.get(f"/c/bank/NONE/content/{cid}")
        assert (r.status_code, r.json()) == (404, {"message": "bank 'NONE' not found"})
        r = await client.get("/c/bank/A/content/99")
        assert (r.status_code, r.json()) == (404, {"message": "content '99' not found"})
