"""The stand-in itself speaks HMA 1.1.7's wire format (hma.md §1), checked with raw HTTP."""

from __future__ import annotations

import asyncio

import httpx

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
    hma_standin.control.index_lag = 0.3
    hma_standin.control.create_bank("B")
    h = random_hashes(1, seed=53)[0]
    hma_standin.control.add_signal("B", h)
    params = {"signal_type": "pdq", "signal": h}
    async with httpx.AsyncClient(base_url=hma_standin.url) as client:
        assert (await client.get("/m/lookup", params=params)).json() == {}
        await asyncio.sleep(0.35)
        assert list((await client.get("/m/lookup", params=params)).json()) == ["B"]
