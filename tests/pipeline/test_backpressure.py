"""Backpressure: with a tiny bound on jobs not done, a source following a stand-in stream pauses (metric and
log), reads nothing while paused, never saves its cursor past an unwritten job, and resumes once the queue is
drained, until every event is in."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from labeler.config import ConfigError
from labeler.pipeline.cursors import CursorStore
from labeler.pipeline.jobs import JobQueue
from labeler.pipeline.lag_doctor import lag_findings
from labeler.pipeline.sources import Sources
from labeler.pipeline.sources.backpressure import Backpressure
from labeler.pipeline.sources.base import Backoff
from labeler.pipeline.sources.firehose import FirehoseSource
from labeler.pipeline.sources.jetstream import JetstreamSource
from labeler.pipeline.sources.telemetry import SourceCollector
from labeler.service import Labeler

from .stream_standins import StreamStandin, eventually
from .test_sources_stop import Feed, committed

BOUND = 6
EVENTS = 40  # 1-3 images each: ~80 jobs, many times the bound


def scraped(source: Any) -> dict[str, float]:
    return {s.name: s.value for family in SourceCollector(lambda: [source]).collect() for s in family.samples}


async def drain(queue: JobQueue) -> None:
    """What workers do, without the work: claim the jobs due now (not those queued meanwhile) and finish them."""
    for job in await queue.claim("drainer", limit=1000):
        await queue.finish(job, "drainer", "no-match")


@pytest.mark.parametrize("kind", ["firehose", "jetstream"])
async def test_a_full_queue_pauses_ingest_at_a_saved_cursor_and_draining_resumes_it(
    kind: str,
    standin: tuple[StreamStandin, str],
    labeler: Labeler,
    make_settings: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="labeler.pipeline.sources")
    control, url = standin
    feed = Feed(kind, control)
    feed.publish(EVENTS)
    queue, cursors = JobQueue(labeler.engine), CursorStore(labeler.engine)
    gate = Backpressure(queue, BOUND, check_interval=0.0, poll=0.05)
    options: dict[str, Any] = {"max_batch": 2, "flush_interval": 0.02, "backoff": Backoff(0.02, 0.1)}
    source_kind = FirehoseSource if kind == "firehose" else JetstreamSource
    source = source_kind(url, queue, cursors, backpressure=gate, **options)
    await cursors.set(source.name, "0")
    task = asyncio.create_task(source.run())
    try:
        await eventually(lambda: source.stats.paused_since is not None, what="backpressure engaged")
        assert scraped(source)["labeler_source_backpressure"] == 1
        assert "backpressure" in caplog.text and "pausing at cursor" in caplog.text
        pending = await queue.pending(1000)
        assert BOUND <= pending < BOUND + 2 + 3  # at most one batch and one event's images over the bound
        read, saved = source.stats.events, await cursors.get(source.name)
        assert saved == source.cursor  # everything read is saved, with its jobs
        assert not feed.expected(saved) - await committed(labeler)
        doctor = {f.check: f for f in await lag_findings(make_settings(ingest_max_pending_jobs=BOUND))}
        assert doctor["job-queue"].status == "warn" and "sources pause" in doctor["job-queue"].message
        await asyncio.sleep(0.3)  # six polls: still full, so still paused and reading nothing
        assert source.stats.events == read and source.stats.paused_since is not None

        head = str(control.head)
        while source.stats.saved_cursor != head:  # drain, resume, pause again, … until all is in
            pauses = source.stats.pauses
            await drain(queue)
            await eventually(
                lambda before=pauses: source.stats.pauses > before or source.stats.saved_cursor == head,
                what="paused again",
            )
    finally:
        await source.stop()
        await task
    assert not feed.expected(head) - await committed(labeler)
    assert source.stats.pauses >= 2 and source.stats.paused_since is None
    figures = scraped(source)
    assert figures["labeler_source_backpressure"] == 0
    assert figures["labeler_source_backpressure_pauses_total"] == source.stats.pauses
    assert figures["labeler_source_backpressure_seconds_total"] > 0
    assert "queue drained; resuming" in caplog.text


def test_the_bound_comes_from_settings_and_zero_turns_it_off(make_settings: Any, labeler: Labeler) -> None:
    queue, cursors = labeler.pipeline.jobs, labeler.pipeline.cursors
    bounded = Sources.from_settings(make_settings(jetstream_url="ws://127.0.0.1:1"), queue, cursors)
    gate = bounded.sources[0].backpressure
    assert gate is not None and (gate.bound, gate.resume_at) == (200_000, 180_000)
    unbounded = make_settings(jetstream_url="ws://127.0.0.1:1", ingest_max_pending_jobs=0)
    assert Sources.from_settings(unbounded, queue, cursors).sources[0].backpressure is None
    with pytest.raises(ConfigError):
        make_settings(ingest_max_pending_jobs=-1)
