"""HMA bank imports: stopped by HMA going away, what landed is counted and kept and a re-run finishes the rest with
every hash once; the lower bound for new content ids is found past deleted items."""

from __future__ import annotations

from pathlib import Path

from labeler.pipeline.banks import EntryInput
from labeler.pipeline.hma_banks import CHUNK, HmaBanks
from labeler.pipeline.match.hma import HmaMatcher
from labeler.store.engine import create_engine
from labeler.store.migrate import upgrade

from .conftest import RunningStandin
from .corpus import random_hashes


async def test_an_import_stopped_by_an_unavailable_hma_resumes(hma_standin: RunningStandin, tmp_path: Path) -> None:
    hashes = random_hashes(CHUNK + 20, seed=9)
    entries = [EntryInput(h, f"ext-{i}") for i, h in enumerate(hashes)]
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/labeler.db")
    await upgrade(engine)
    matcher = HmaMatcher(hma_standin.url)
    banks = HmaBanks(matcher, engine)
    done = 0

    def goes_down_midway(n: int) -> None:
        nonlocal done
        done += n
        if done >= CHUNK + 5:
            hma_standin.control.down = True  # HMA (or its proxy) answers 503 from now on

    try:
        report = await banks.import_entries("B", "pdq", entries, create=True, concurrency=1, progress=goes_down_midway)
        assert report.stopped is not None and "503" in report.stopped
        first = len(hma_standin.control.contents("B"))
        assert report.landed == first and CHUNK <= first < len(hashes)
        hma_standin.control.down = False
        again = await banks.import_entries("B", "pdq", entries)
        assert (again.stopped, again.failed, again.skipped) == (None, [], first)
        assert again.landed == len(hashes) - first
        assert sorted(s["pdq"] for _, _, s, _ in hma_standin.control.contents("B")) == sorted(hashes)
    finally:
        await matcher.aclose()
        await engine.dispose()


async def test_the_newest_content_id_is_found_past_deleted_items(hma_standin: RunningStandin, tmp_path: Path) -> None:
    control = hma_standin.control
    control.create_bank("B")
    ids = [control.add_signal("B", h) for h in random_hashes(300, seed=10)]
    for content_id in (1, 2, 64, 128, 256, 257):  # deleted items at powers of two
        control.delete_content(content_id)
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/labeler.db")
    matcher = HmaMatcher(hma_standin.url)
    try:
        newest = await HmaBanks(matcher, engine).newest_content_id("B")
        assert ids[-1] - 16 < newest <= ids[-1]
    finally:
        await matcher.aclose()
        await engine.dispose()
