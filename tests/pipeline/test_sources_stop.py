"""Stopping a stream source at any moment never leaves its saved cursor past an event whose jobs are not committed.

Each trial publishes fresh image posts, runs a source (resuming from the previous trial's cursor) into the real
job queue behind a slow sink, and ends it at a random moment: `stop()` (what SIGTERM does), a cancel of its task
(what `Sources.aclose` does after its timeout, and `asyncio.run` at exit), or a stop followed by a cancel. Then
every job of every event up to the saved cursor must be in the database. Seeded: the choices replay, the
timing cannot.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import sqlalchemy as sa

from labeler.pipeline.cursors import CursorStore
from labeler.pipeline.jobs import JobQueue, JobSpec
from labeler.pipeline.sources.base import Backoff, StreamSource
from labeler.pipeline.sources.firehose import FirehoseSource
from labeler.pipeline.sources.jetstream import JetstreamSource
from labeler.service import Labeler
from labeler.store.pipeline_schema import image_jobs

from .stream_standins import (
    Op,
    StreamStandin,
    blob_cid,
    commit_frame,
    eventually,
    jetstream_event,
    post_record,
    serve_standin,
)

TRIALS = 10
EVENTS_PER_TRIAL = 200
T0 = 1_725_000_000_000_000
Key = tuple[str, str]  # (subject URI, blob CID)


class SlowJobs:
    """The real queue, slowed before and after each commit, so a stop often lands while an enqueue is in flight."""

    def __init__(self, queue: JobQueue, rng: random.Random) -> None:
        self.queue = queue
        self.rng = rng

    async def enqueue(self, specs: Sequence[JobSpec]) -> int:
        await asyncio.sleep(self.rng.uniform(0, 0.01))
        added = await self.queue.enqueue(specs)
        await asyncio.sleep(self.rng.uniform(0, 0.005))  # committed, but the caller does not know yet
        return added


class Feed:
    """Publishes image posts in one protocol and remembers which jobs each event's cursor stands for."""

    def __init__(self, kind: str, control: StreamStandin) -> None:
        self.kind = kind
        self.control = control
        self.jobs_at: dict[int, list[Key]] = {}
        self.next = 1

    def publish(self, count: int) -> None:
        for _ in range(count):
            n, self.next = self.next, self.next + 1
            did = f"did:plc:stopper{n % 7:016d}"
            images = [f"image {n}.{i}".encode() for i in range(1 + n % 3)]
            rkey = f"3k{n:08d}"
            uri = f"at://{did}/app.bsky.feed.post/{rkey}"
            if self.kind == "firehose":
                cursor = n
                frame, _ = commit_frame(n, did, [Op("create", f"app.bsky.feed.post/{rkey}", post_record(*images))])
                self.control.publish(cursor, frame)
            else:
                cursor = T0 + n * 1_000_000  # a second apart, so the reconnect rewind replays a couple
                self.control.publish(cursor, jetstream_event(cursor, did, rkey, post_record(*images, link_form=True)))
            self.jobs_at[cursor] = [(uri, blob_cid(data)) for data in images]

    def source(self, url: str, jobs: SlowJobs, cursors: CursorStore, rng: random.Random) -> StreamSource:
        options: dict[str, Any] = {
            "max_batch": rng.choice([5, 50, 500]),
            "flush_interval": rng.choice([0.005, 0.02, 0.1]),
            "backoff": Backoff(initial=0.02, maximum=0.1),
        }
        if self.kind == "firehose":
            return FirehoseSource(url, jobs, cursors, **options)
        return JetstreamSource(url, jobs, cursors, **options)

    def expected(self, saved: str | None) -> set[Key]:
        upto = int(saved) if saved else 0
        return {key for cursor, keys in self.jobs_at.items() if cursor <= upto for key in keys}


async def committed(labeler: Labeler) -> set[Key]:
    query = sa.select(image_jobs.c.subject_uri, image_jobs.c.blob_cid)
    async with labeler.engine.connect() as conn:
        return {(uri, cid) for uri, cid in await conn.execute(query)}


async def run_and_stop(source: StreamSource, rng: random.Random) -> str:
    """Run `source` until it has read a random number of events, end it one of three ways; which one."""
    task = asyncio.create_task(source.run())
    target = rng.randrange(EVENTS_PER_TRIAL)  # a point of progress, not of time: the machine may be busy
    await eventually(lambda: source.stats.events >= target, timeout=30, what=f"{target} events read")
    await asyncio.sleep(rng.uniform(0, 0.05))
    how = rng.choice(["stop", "cancel", "stop then cancel"])
    if how in ("stop", "stop then cancel"):
        await source.stop()
    if how == "stop then cancel":
        await asyncio.sleep(rng.uniform(0, 0.03))
    while how != "stop" and not task.done():
        # Again until it ends: Python 3.11's wait_for (inside the SDK's read loop) can swallow a cancel.
        task.cancel()
        await asyncio.wait([task], timeout=0.5)
    await asyncio.gather(task, return_exceptions=True)
    return how


@pytest.fixture
def standin() -> Iterator[tuple[StreamStandin, str]]:
    control = StreamStandin()
    with serve_standin(control) as url:
        yield control, url


@pytest.mark.parametrize("kind", ["firehose", "jetstream"])
async def test_a_source_stopped_at_random_moments_keeps_every_job_up_to_its_saved_cursor(
    kind: str, standin: tuple[StreamStandin, str], labeler: Labeler
) -> None:
    control, url = standin
    rng = random.Random(f"stop {kind}")
    feed = Feed(kind, control)
    jobs, cursors = SlowJobs(JobQueue(labeler.engine), rng), CursorStore(labeler.engine)
    saved: list[str | None] = []
    for trial in range(TRIALS):
        feed.publish(EVENTS_PER_TRIAL)
        source = feed.source(url, jobs, cursors, rng)
        if trial == 0:
            await cursors.set(source.name, "0")  # from the start, not live
        how = await run_and_stop(source, rng)
        cursor = await cursors.get(source.name)
        missing = feed.expected(cursor) - await committed(labeler)
        assert not missing, f"trial {trial} ({how}): cursor {cursor} saved past {len(missing)} uncommitted jobs"
        saved.append(cursor)
    # The trials did read and save (a test whose cursor never moves would prove nothing).
    assert len(set(saved)) >= 3 and len(feed.expected(saved[-1])) > EVENTS_PER_TRIAL, saved
