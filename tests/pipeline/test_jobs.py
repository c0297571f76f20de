"""The durable job queue on SQLite and PostgreSQL: idempotent enqueue, exclusive claims, leases, backoff."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from labeler.pipeline.cursors import CursorStore
from labeler.pipeline.jobs import ImageRef, JobQueue, JobSpec, backoff_delay
from labeler.store.engine import create_engine
from labeler.store.migrate import upgrade

from .blob_server import blob_cid

DID = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"


def spec(n: int, *, image: int | None = None, source: str = "firehose") -> JobSpec:
    cid = blob_cid(f"image {n if image is None else image}".encode())
    return JobSpec(source, f"at://{DID}/app.bsky.feed.post/{n}", blob_cid(f"post {n}".encode()), ImageRef(DID, cid))


@pytest.fixture
async def queue(database_url: str) -> AsyncIterator[JobQueue]:
    engine = create_engine(database_url)
    await upgrade(engine)
    try:
        yield JobQueue(engine)
    finally:
        await engine.dispose()


async def test_enqueue_is_idempotent_per_subject_and_image(queue: JobQueue) -> None:
    specs = [spec(n) for n in range(5)]
    assert await queue.enqueue(specs) == 5
    assert await queue.enqueue(specs) == 0
    # Another source reporting the same post + image adds nothing; a second image of a post is a new job.
    assert await queue.enqueue([spec(1, source="report"), spec(1, image=99), spec(1, image=99)]) == 1
    assert (await queue.counts())["queued"] == 6


def test_specs_are_checked_when_built() -> None:
    good = ImageRef(DID, blob_cid(b"x"))
    with pytest.raises(ValueError, match="source"):
        JobSpec("carrier-pigeon", "at://x", None, good)
    with pytest.raises(ValueError, match="CID"):
        JobSpec("manual", "at://x", None, ImageRef(DID, "not-a-cid"))
    with pytest.raises(ValueError, match="DID"):
        JobSpec("manual", "at://x", None, ImageRef("alice", good.blob_cid))


async def test_concurrent_claimers_never_get_the_same_job(database_url: str, queue: JobQueue) -> None:
    await queue.enqueue([spec(n) for n in range(120)])
    # Four claimers with their own engines, like four processes.
    engines = [create_engine(database_url) for _ in range(4)]
    claimed: dict[str, list[int]] = {}

    async def claimer(name: str, q: JobQueue) -> None:
        mine = claimed.setdefault(name, [])
        while jobs := await q.claim(name, limit=3):
            mine += [j.id for j in jobs]
            await asyncio.sleep(0)

    try:
        await asyncio.gather(*(claimer(f"w{i}", JobQueue(e)) for i, e in enumerate(engines)))
    finally:
        for engine in engines:
            await engine.dispose()
    every = [job_id for ids in claimed.values() for job_id in ids]
    assert len(every) == len(set(every)) == 120
    assert sum(1 for ids in claimed.values() if ids) >= 2, claimed  # the work was actually shared


async def test_an_expired_lease_is_claimed_again_and_the_old_owner_loses_it(queue: JobQueue) -> None:
    await queue.enqueue([spec(1)])
    [first] = await queue.claim("crashed", lease_seconds=0.2)
    assert await queue.claim("other") == []  # leased
    await asyncio.sleep(0.3)
    [again] = await queue.claim("other", lease_seconds=30)
    assert again.id == first.id and again.attempts == 2 and again.lease_owner == "other"
    assert not await queue.finish(first, "crashed", "no-match")  # the crashed worker's late write is refused
    assert await queue.finish(again, "other", "no-match")
    done = await queue.get(first.id)
    assert done is not None and done.status == "done" and done.outcome == "no-match"


async def test_retry_waits_for_its_backoff(queue: JobQueue) -> None:
    await queue.enqueue([spec(1)])
    [job] = await queue.claim("w")
    assert await queue.retry(job, "w", delay=0.3, detail="fetch: unreachable")
    assert await queue.claim("w") == []
    assert (await queue.counts())["due"] == 0
    await asyncio.sleep(0.35)
    [again] = await queue.claim("w")
    assert again.attempts == 2 and again.detail == "fetch: unreachable"


async def test_release_gives_the_attempt_back(queue: JobQueue) -> None:
    await queue.enqueue([spec(1)])
    [job] = await queue.claim("w")
    assert await queue.release(job, "w")
    [again] = await queue.claim("w")
    assert again.attempts == 1


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(n, base=1.0, cap=60.0, rng=rng) for n in range(1, 10)]
    assert 0.8 <= delays[0] <= 1.2 and 3.2 <= delays[2] <= 4.8
    assert all(d <= 60.0 for d in delays) and delays[-1] >= 48.0


async def test_cursors_persist(database_url: str, queue: JobQueue) -> None:
    cursors = CursorStore(queue.engine)
    assert await cursors.get("firehose") is None
    await cursors.set("firehose", "10")
    await cursors.set("firehose", "42")
    assert await cursors.get("firehose") == "42"
