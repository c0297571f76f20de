"""A source's lag is visible: `/metrics` (scraped over HTTP from a serving labeler that follows a stand-in
stream) shows how far behind the events' own time it is, its position and the queue's backlog; `labeler doctor`'s
lag check reads the same from the database and warns when the source or the queue falls behind."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from labeler.identity.doctor import Finding
from labeler.pipeline.lag_doctor import JOB_WAIT_WARN_S, lag_findings
from labeler.pipeline.sources.firehose import event_time
from labeler.service import Labeler
from labeler.testing import serve_labeler

from .stream_standins import (
    Op,
    StreamStandin,
    commit_frame,
    eventually,
    info_frame,
    jetstream_event,
    post_record,
    serve_standin,
)
from .test_metrics_scrape import samples, value

BEHIND_S = 400.0  # the events were sequenced this long ago: past the doctor's 300 s


@pytest.fixture
def standin() -> Iterator[tuple[StreamStandin, str]]:
    control = StreamStandin()
    with serve_standin(control) as url:
        yield control, url


def publish(control: StreamStandin, kind: str, first: int, count: int, at: float) -> None:
    """`count` posts with one image each, sequenced at epoch time `at`; cursors from `first`."""
    for n in range(first, first + count):
        did, rkey, image = f"did:plc:lagging{n:017d}", f"3k{n:08d}", f"image {n}".encode()
        if kind == "firehose":
            stamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            op = Op("create", f"app.bsky.feed.post/{rkey}", post_record(image))
            frame, _ = commit_frame(n, did, [op], time=stamp)
            control.publish(n, frame)
        else:
            time_us = int(at * 1e6) + n  # distinct cursors, microseconds apart
            control.publish(time_us, jetstream_event(time_us, did, rkey, post_record(image, link_form=True)))


def checks(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


@pytest.mark.parametrize("kind", ["firehose", "jetstream"])
async def test_source_lag_and_backlog_are_scraped_and_the_doctor_warns(
    kind: str, standin: tuple[StreamStandin, str], make_settings: Any
) -> None:
    control, url = standin
    settings = make_settings(**{f"{kind}_url": url, "workers": 0})
    if kind == "firehose":
        control.publish(1, info_frame("OutdatedCursor", "Requested cursor exceeded limit. Possibly missing events"))
    publish(control, kind, 2, 20, time.time() - BEHIND_S)
    labeler = Labeler(settings)
    await labeler.start()
    try:
        source = labeler.sources.sources[0]
        await labeler.pipeline.cursors.set(source.name, "0")  # from the start, not live
        labeler.sources.start()
        async with serve_labeler(labeler) as live:
            head = str(control.head)
            await eventually(lambda: source.stats.saved_cursor == head, what="every event saved")
            await labeler.pipeline.backlog.refresh()  # what its 5 s timer does
            async with httpx.AsyncClient(base_url=live.url) as client:
                scraped = samples((await client.get("/metrics")).text)
        await labeler.sources.aclose()
    finally:
        await labeler.aclose()
    key = {"source": source.name, "kind": kind}
    assert BEHIND_S <= value(scraped, "labeler_source_lag_seconds", **key) < BEHIND_S + 120
    assert value(scraped, "labeler_source_saved_cursor", **key) == value(scraped, "labeler_source_cursor", **key)
    assert value(scraped, "labeler_source_cursor", **key) == int(head)
    assert value(scraped, "labeler_source_events_total", **key) == 20 + (kind == "firehose")
    assert value(scraped, "labeler_source_jobs_total", **key) == 20
    assert value(scraped, "labeler_source_outdated_cursor_total", **key) == (kind == "firehose")
    assert value(scraped, "labeler_pipeline_jobs", status="queued") == 20
    assert value(scraped, "labeler_pipeline_jobs", status="due") == 20
    assert value(scraped, "labeler_pipeline_oldest_due_job_age_seconds") > 0

    found = checks(await lag_findings(settings))
    assert found["source-lag"].status == "warn" and "behind the network" in found["source-lag"].message
    assert found["job-queue"].status == "ok" and "20 queued (20 due)" in found["job-queue"].message
    later = checks(await lag_findings(settings, clock=lambda: time.time() + JOB_WAIT_WARN_S + 60))
    assert later["job-queue"].status == "warn"

    publish(control, kind, 22, 1, time.time())  # the source catches up with the present
    labeler = Labeler(settings)
    await labeler.start(sources=True)
    try:
        source = labeler.sources.sources[0]
        head = str(control.head)
        await eventually(lambda: source.stats.saved_cursor == head, what="the new event saved")
    finally:
        await labeler.aclose()
    assert checks(await lag_findings(settings))["source-lag"].status == "ok"


def test_a_frame_time_is_read_only_when_it_names_its_zone() -> None:
    assert event_time("2026-01-01T00:00:00.000Z") == datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert event_time("2026-01-01T01:00:00+01:00") == datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    for bad in ("2026-01-01T00:00:00", "yesterday", 1767225600, None, "2026-01-01T00:00:00Z" + " " * 100):
        assert event_time(bad) is None


async def test_the_doctor_names_a_source_url_it_cannot_follow(make_settings: Any, labeler: Labeler) -> None:
    found = checks(await lag_findings(make_settings(firehose_url="ftp://relay.example")))
    assert found["source-lag"].status == "fail" and "LABELER_FIREHOSE_URL" in found["source-lag"].message
    assert found["job-queue"].status == "ok"
