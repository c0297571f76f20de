"""The repo firehose source against a local subscribeRepos stand-in sending real `#commit` frames."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from labeler.config import ConfigError
from labeler.pipeline.cursors import CursorStore
from labeler.pipeline.jobs import JobQueue
from labeler.pipeline.sources.base import Backoff, StreamSource
from labeler.pipeline.sources.firehose import FirehoseSource, firehose_base_uri
from labeler.service import Labeler

from .stream_standins import (
    MemoryCursors,
    MemoryJobs,
    Op,
    StreamStandin,
    blob_cid,
    commit_frame,
    eventually,
    message_frame,
    post_record,
)

ALICE = "did:plc:alicealicealicealice1"
BOB = "did:plc:bobbobbobbobbobbobbob12"
IMG1, IMG2 = b"image one", b"image two"


def make_source(url: str, jobs: Any, cursors: Any, **kw: Any) -> FirehoseSource:
    kw.setdefault("flush_interval", 0.05)
    return FirehoseSource(url, jobs, cursors, backoff=Backoff(initial=0.05, maximum=0.2), **kw)


@contextlib.asynccontextmanager
async def running(source: StreamSource) -> AsyncIterator[StreamSource]:
    task = asyncio.create_task(source.run())
    try:
        yield source
    finally:
        await source.stop()
        await asyncio.wait_for(task, 10)


def publish_sample(control: StreamStandin) -> dict[str, str]:
    """seq 1 identity; 2 a commit (image post, text post, like); 3 delete; 4 image post update by bob."""
    control.publish(1, message_frame(1, "#identity", {"did": ALICE, "time": "2026-01-01T00:00:00Z"}))
    frame, cids = commit_frame(
        2,
        ALICE,
        [
            Op("create", "app.bsky.feed.post/3kaaa", post_record(IMG1, IMG2)),
            Op("create", "app.bsky.feed.post/3kbbb", post_record(text="no images")),
            Op("create", "app.bsky.feed.like/3kccc", {"$type": "app.bsky.feed.like"}),
        ],
        extra_blocks=3,
    )
    control.publish(2, frame)
    control.publish(3, commit_frame(3, ALICE, [Op("delete", "app.bsky.feed.post/3kbbb")])[0])
    frame, bob_cids = commit_frame(4, BOB, [Op("update", "app.bsky.feed.post/3kddd", post_record(IMG1))])
    control.publish(4, frame)
    return cids | bob_cids


def test_base_uri_forms() -> None:
    for url in (
        "wss://bsky.network",
        "wss://bsky.network/xrpc",
        "https://bsky.network/xrpc/com.atproto.sync.subscribeRepos",
    ):
        assert firehose_base_uri(url) == "wss://bsky.network/xrpc"
    assert firehose_base_uri("http://127.0.0.1:2583/") == "ws://127.0.0.1:2583/xrpc"
    with pytest.raises(ValueError):
        firehose_base_uri("ftp://x")


async def test_image_posts_become_jobs_and_the_cursor_is_saved(standin: tuple[StreamStandin, str]) -> None:
    control, url = standin
    cids = publish_sample(control)
    jobs, cursors = MemoryJobs(), MemoryCursors()
    source = make_source(url, jobs, cursors)
    cursors.values[source.name] = "0"
    async with running(source):
        await eventually(lambda: cursors.values[source.name] == "4", what="cursor 4 saved")
    got = [
        (s.source, s.subject_uri, s.subject_cid, s.image.did, s.image.blob_cid, s.image.mime_type) for s in jobs.specs
    ]
    assert got == [
        ("firehose", f"at://{ALICE}/app.bsky.feed.post/3kaaa", cids["app.bsky.feed.post/3kaaa"], ALICE,
         blob_cid(IMG1), "image/png"),
        ("firehose", f"at://{ALICE}/app.bsky.feed.post/3kaaa", cids["app.bsky.feed.post/3kaaa"], ALICE,
         blob_cid(IMG2), "image/png"),
        ("firehose", f"at://{BOB}/app.bsky.feed.post/3kddd", cids["app.bsky.feed.post/3kddd"], BOB,
         blob_cid(IMG1), "image/png"),
    ]  # fmt: skip
    assert control.connections == [{"cursor": "0"}]
    assert source.stats.events == 4


async def test_restart_resumes_from_the_saved_cursor(standin: tuple[StreamStandin, str]) -> None:
    control, url = standin
    publish_sample(control)
    jobs, cursors = MemoryJobs(), MemoryCursors()
    source = make_source(url, jobs, cursors)
    cursors.values[source.name] = "0"
    async with running(source):
        await eventually(lambda: cursors.values[source.name] == "4")
    control.publish(5, commit_frame(5, BOB, [Op("create", "app.bsky.feed.post/3keee", post_record(IMG2))])[0])
    again = make_source(url, jobs, cursors)
    async with running(again):
        await eventually(lambda: cursors.values[source.name] == "5")
    assert control.connections[-1] == {"cursor": "4"}
    assert [s.subject_uri.rsplit("/", 1)[1] for s in jobs.specs] == ["3kaaa", "3kaaa", "3kddd", "3keee"]


@pytest.mark.parametrize("fault", ["close_after", "garbage_after"])
async def test_normal_close_and_bad_frames_reconnect_from_the_cursor(
    standin: tuple[StreamStandin, str], fault: str
) -> None:
    """The SDK returns on a normal close and dies on a non-CBOR frame (sdk-notes §5); we go on either way."""
    control, url = standin
    publish_sample(control)
    setattr(control, fault, 2)
    jobs, cursors = MemoryJobs(), MemoryCursors()
    source = make_source(url, jobs, cursors)
    cursors.values[source.name] = "0"
    async with running(source):
        await eventually(lambda: cursors.values[source.name] == "4")
    assert control.connections == [{"cursor": "0"}, {"cursor": "2"}]
    assert len(jobs.specs) == 3


async def test_future_cursor_goes_live(standin: tuple[StreamStandin, str]) -> None:
    control, url = standin
    publish_sample(control)
    jobs, cursors = MemoryJobs(), MemoryCursors()
    source = make_source(url, jobs, cursors)
    cursors.values[source.name] = "999"  # e.g. the PDS was reset
    async with running(source):
        await eventually(lambda: len(control.connections) == 2, what="a live reconnect")
        await asyncio.sleep(0.1)
        control.publish(5, commit_frame(5, BOB, [Op("create", "app.bsky.feed.post/3keee", post_record(IMG2))])[0])
        await eventually(lambda: cursors.values[source.name] == "5")
    assert control.connections == [{"cursor": "999"}, {}]
    assert [s.subject_uri.rsplit("/", 1)[1] for s in jobs.specs] == ["3keee"]


async def test_cursor_is_saved_in_batches_not_per_event(standin: tuple[StreamStandin, str]) -> None:
    control, url = standin
    for seq in range(1, 301):
        control.publish(
            seq, commit_frame(seq, ALICE, [Op("create", f"app.bsky.feed.post/3k{seq:04d}", post_record())])[0]
        )
    jobs, cursors = MemoryJobs(), MemoryCursors()
    source = make_source(url, jobs, cursors, flush_interval=30.0)
    cursors.values[source.name] = "0"
    async with running(source):
        await eventually(lambda: source.stats.events == 300)
        assert cursors.writes == 0
    assert cursors.values[source.name] == "300"  # written once, on stop
    assert cursors.writes == 1
    assert jobs.calls == 0


async def test_enqueue_failures_are_retried_and_nothing_is_lost(standin: tuple[StreamStandin, str]) -> None:
    control, url = standin
    publish_sample(control)
    jobs, cursors = MemoryJobs(), MemoryCursors()
    jobs.fail = 2
    source = make_source(url, jobs, cursors, max_batch=1)
    cursors.values[source.name] = "0"
    async with running(source):
        await eventually(lambda: cursors.values[source.name] == "4", timeout=15)
    assert len(jobs.specs) == 3
    assert source.stats.errors >= 2


async def test_an_unreadable_cursor_at_start_is_retried_not_skipped(standin: tuple[StreamStandin, str]) -> None:
    control, url = standin
    publish_sample(control)
    jobs, cursors = MemoryJobs(), MemoryCursors()
    source = make_source(url, jobs, cursors)
    cursors.values[source.name] = "2"
    cursors.fail_reads = 2
    async with running(source):
        await eventually(lambda: cursors.values[source.name] == "4", timeout=15)
    assert control.connections == [{"cursor": "2"}]  # never started live by mistake
    assert [s.subject_uri.rsplit("/", 1)[1] for s in jobs.specs] == ["3kddd"]


async def test_stop_while_the_database_is_down_keeps_the_old_cursor(standin: tuple[StreamStandin, str]) -> None:
    control, url = standin
    publish_sample(control)
    jobs, cursors = MemoryJobs(), MemoryCursors()
    jobs.fail = 10**6
    source = make_source(url, jobs, cursors, max_batch=1)
    cursors.values[source.name] = "0"
    async with running(source):
        await eventually(lambda: jobs.calls >= 2)
    assert cursors.values[source.name] == "0"  # replayed on the next start
    assert jobs.specs == []


async def test_jobs_reach_the_real_queue_and_cursor_store(standin: tuple[StreamStandin, str], labeler: Labeler) -> None:
    control, url = standin
    publish_sample(control)
    queue, cursors = JobQueue(labeler.engine), CursorStore(labeler.engine)
    source = make_source(url, queue, cursors)
    await cursors.set(source.name, "0")
    async with running(source):
        await eventually(lambda: source.stats.saved_cursor == "4")
    assert await cursors.get(source.name) == "4"
    jobs = await queue.for_subject(f"at://{ALICE}/app.bsky.feed.post/3kaaa")
    assert sorted(j.image.blob_cid for j in jobs) == sorted([blob_cid(IMG1), blob_cid(IMG2)])
    assert {j.status for j in jobs} == {"queued"}
    # A replay of the same events adds nothing (idempotent per subject + blob).
    await cursors.set(source.name, "0")
    again = make_source(url, queue, cursors)
    async with running(again):
        await eventually(lambda: again.stats.saved_cursor == "4")
    assert (await queue.counts())["queued"] == 3


async def test_the_labeler_runs_configured_sources(standin: tuple[StreamStandin, str], make_settings: Any) -> None:
    control, url = standin
    service = Labeler(make_settings(firehose_url=url))
    await service.start(sources=True)
    try:
        [source] = service.sources.sources
        await eventually(lambda: len(control.connections) == 1)
        assert control.connections == [{}]  # first start: live
        publish_sample(control)
        await eventually(lambda: source.stats.saved_cursor == "4")
        assert (await service.pipeline.jobs.counts())["queued"] == 3
    finally:
        await service.aclose()


def test_a_bad_source_url_is_a_config_error(make_settings: Any) -> None:
    with pytest.raises(ConfigError, match="LABELER_JETSTREAM_URL"):
        Labeler(make_settings(jetstream_url="jetstream.example.com"))


@pytest.mark.slow
async def test_ingest_command_queues_jobs_and_saves_the_cursor_on_sigint(
    standin: tuple[StreamStandin, str], settings: Any, tmp_path: Any
) -> None:
    """`labeler ingest` as its own process: it follows the stream and stops cleanly on Ctrl-C."""
    control, url = standin
    publish_sample(control)
    env = {
        **os.environ,
        "LABELER_DATABASE_URL": settings.database_url,
        "LABELER_KEYS_DIR": str(settings.keys_dir),
        "LABELER_FIREHOSE_URL": url,
    }
    migrate = await asyncio.create_subprocess_exec(sys.executable, "-m", "labeler", "db", "upgrade", env=env)
    assert await migrate.wait() == 0
    service = Labeler(settings, with_hub=False)
    try:
        source_name = FirehoseSource(url, MemoryJobs(), MemoryCursors()).name
        await service.pipeline.cursors.set(source_name, "0")
        output, returncode = await run_ingest(env, control)
        assert returncode == 0, output
        assert await service.pipeline.cursors.get(source_name) == "4"
        assert (await service.pipeline.jobs.counts())["queued"] == 3
    finally:
        await service.aclose()


async def run_ingest(env: dict[str, str], control: StreamStandin) -> tuple[str, int | None]:
    """Start `labeler ingest`, let it read the stand-in's events, then Ctrl-C it; its output and exit code."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "labeler", "ingest", env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    seen = b""
    try:
        assert proc.stdout is not None
        while b"ingesting from firehose" not in seen:
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line, seen
            seen += line
        await eventually(lambda: len(control.connections) == 1, timeout=20)
        await asyncio.sleep(0.5)  # the sample is sent at once; well under the 1 s flush interval
    finally:
        proc.send_signal(signal.SIGINT)
        rest = (await asyncio.wait_for(proc.communicate(), 30))[0]
    return (seen + rest).decode(), proc.returncode
