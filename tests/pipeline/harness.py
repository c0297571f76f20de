"""A pipeline under test: settings pointing at the fake PLC + PDS, banks on either matcher, and waiting helpers.

`Harness.bank()` puts hashes in an embedded bank (our database) or in the HMA stand-in, so one test body runs
against both matchers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from labeler.config import Settings
from labeler.pipeline.banks import EntryInput
from labeler.pipeline.jobs import Job, JobSpec
from labeler.service import Labeler

from .blob_server import PdsWorld
from .conftest import FAST_PIPELINE, RunningStandin


class Harness:
    def __init__(
        self, world: PdsWorld, make_settings: Callable[..., Settings], matcher: str, hma: RunningStandin | None
    ) -> None:
        self.world = world
        self.make_settings = make_settings
        self.matcher = matcher
        self.hma = hma

    def settings(
        self, *, pipeline: dict[str, Any] | None = None, extra: dict[str, Any] | None = None, **over: Any
    ) -> Settings:
        values: dict[str, Any] = {
            "plc_url": self.world.plc_url,
            "allow_private_fetch": True,
            "matcher": self.matcher,
            "extra": {"pipeline": {**FAST_PIPELINE, **(pipeline or {})}, **(extra or {})},
        }
        if self.hma is not None:
            values["hma_url"] = self.hma.url
        values.update(over)
        return self.make_settings(**values)

    @contextlib.asynccontextmanager
    async def running(self, settings: Settings | None = None, *, workers: int = 2) -> AsyncIterator[Labeler]:
        labeler = Labeler(settings or self.settings())
        await labeler.start(workers=workers)
        try:
            yield labeler
        finally:
            await labeler.aclose()

    async def bank(self, labeler: Labeler, name: str, hashes: list[str]) -> None:
        if self.hma is not None:
            self.hma.control.create_bank(name)
            for pdq in hashes:
                self.hma.control.add_signal(name, pdq)
            return
        existing = {b.name for b in await labeler.pipeline.banks.all_banks()}
        if name not in existing:
            await labeler.pipeline.banks.create(name)
        await labeler.pipeline.banks.add_entries(name, [EntryInput(h, external_id=f"ext-{h[:6]}") for h in hashes])

    def post(self, did: str, rkey: str, data: bytes, source: str = "firehose") -> JobSpec:
        ref = self.world.pds.add(did, data)
        return JobSpec(source, f"at://{did}/app.bsky.feed.post/{rkey}", ref.blob_cid, ref)


def pipeline_toml(pipeline: dict[str, Any]) -> str:
    """A labeler.toml with these `[pipeline]` options, for a labeler run as its own process (LABELER_CONFIG)."""
    lines = ["[pipeline]"] + [f"{key} = {value!r}" for key, value in pipeline.items()]
    return "\n".join(lines).replace("True", "true").replace("False", "false") + "\n"


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def all_done(labeler: Labeler, count: int, within: float = 30.0) -> None:
    async def check() -> bool:
        return (await labeler.pipeline.jobs.counts())["done"] >= count

    await eventually(check, within=within, what=f"{count} jobs done")


async def job_for(labeler: Labeler, spec: JobSpec) -> Job:
    [job] = [j for j in await labeler.pipeline.jobs.for_subject(spec.subject_uri) if j.image == spec.image]
    return job
