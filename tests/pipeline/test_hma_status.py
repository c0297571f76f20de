"""The matcher's state where operators look: `/xrpc/_health` and `labeler doctor`'s `matcher` check, on both
backends, including HMA's silent failure (an index of exactly one PDQ hash, HMA #1318)."""

from __future__ import annotations

from typing import Any

import httpx
from support.server import free_port

from labeler.config import Settings, load_settings
from labeler.pipeline.banks import BankStore, EntryInput
from labeler.pipeline.match.doctor import matcher_findings
from labeler.pipeline.match.hma import FILLER_BANK, HmaMatcher
from labeler.service import Labeler
from labeler.store.engine import create_engine
from labeler.testing import serve_labeler

from .conftest import RunningStandin
from .corpus import random_hashes


async def test_health_reports_the_hma_matcher(make_settings: Any, hma_standin: RunningStandin) -> None:
    labeler = Labeler(make_settings(matcher="hma", hma_url=hma_standin.url))
    await labeler.start()
    try:
        async with serve_labeler(labeler) as live, httpx.AsyncClient(base_url=live.url) as client:
            body = (await client.get("/xrpc/_health")).json()
            assert body["status"] == "ok" and body["matcher"] == {"kind": "hma", "ready": True}
            hma_standin.control.loaded = False
            r = await client.get("/xrpc/_health")
            assert r.status_code == 200 and r.json()["matcher"] == {"kind": "hma", "ready": False}
    finally:
        await labeler.aclose()


def _hma_settings(url: str) -> Settings:
    return load_settings(env={}, matcher="hma", hma_url=url, public_url="http://localhost:8080")


async def test_doctor_on_hma(hma_standin: RunningStandin) -> None:
    settings = _hma_settings(hma_standin.url)
    control = hma_standin.control
    [finding] = await matcher_findings(settings)
    assert (finding.status, "0 banks" in finding.message) == ("warn", True)
    control.create_bank("ELSEWHERE")
    control.add_signal("ELSEWHERE", random_hashes(1, seed=60)[0])  # one hash, banked without us
    [finding] = await matcher_findings(settings)
    assert finding.status == "fail" and "HMA #1318" in finding.message and FILLER_BANK in (finding.fix or "")
    matcher = HmaMatcher(hma_standin.url)
    await matcher.ready()  # what the running service does first: adds the filler
    await matcher.aclose()
    [finding] = await matcher_findings(settings)
    assert finding.status == "ok", finding
    assert "1 banks, pdq 2 hashes, video_md5 0 hashes" in finding.message
    control.loaded = False
    [finding] = await matcher_findings(settings)
    assert finding.status == "warn" and "INDEX-NOT-LOADED" in finding.message
    control.down = True
    down = _hma_settings(f"http://127.0.0.1:{free_port()}")
    [finding] = await matcher_findings(down)
    assert finding.status == "fail" and "LABELER_HMA_URL" in (finding.fix or "")


async def test_doctor_on_embedded(make_settings: Any) -> None:
    settings = make_settings()
    labeler = Labeler(settings)
    await labeler.start()
    await labeler.aclose()
    [finding] = await matcher_findings(settings)
    assert (finding.status, finding.message) == ("warn", "embedded: no banks, nothing can match")
    engine = create_engine(settings.database_url)
    try:
        store = BankStore(engine)
        await store.create("PHOTOS")
        await store.add_entries("PHOTOS", [EntryInput(h) for h in random_hashes(3, seed=61)])
    finally:
        await engine.dispose()
    [finding] = await matcher_findings(settings)
    assert (finding.status, finding.message) == ("ok", "embedded: 1 banks, pdq 3 hashes")
