"""The Jetstream v1 source against a local stand-in speaking v1 JSON events on `/subscribe`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from labeler.pipeline.sources.base import Backoff
from labeler.pipeline.sources.jetstream import JetstreamSource, jetstream_subscribe_url

from .stream_standins import (
    MemoryCursors,
    MemoryJobs,
    StreamStandin,
    blob_cid,
    eventually,
    jetstream_event,
    post_record,
    serve_standin,
)
from .test_sources_firehose import ALICE, BOB, IMG1, IMG2, running

T0 = 1_725_000_000_000_000


@pytest.fixture
def standin() -> Iterator[tuple[StreamStandin, str]]:
    control = StreamStandin()
    with serve_standin(control) as url:
        yield control, url


def make_source(url: str, jobs: Any, cursors: Any, **kw: Any) -> JetstreamSource:
    return JetstreamSource(url, jobs, cursors, flush_interval=0.05, backoff=Backoff(initial=0.05, maximum=0.2), **kw)


def publish_sample(control: StreamStandin) -> None:
    control.publish(T0 + 1, jetstream_event(T0 + 1, ALICE, "3kaaa", post_record(IMG1, IMG2, link_form=True)))
    control.publish(T0 + 2, jetstream_event(T0 + 2, ALICE, "3kbbb", post_record(text="words", link_form=True)))
    control.publish(T0 + 3, jetstream_event(T0 + 3, ALICE, "3kaaa", None, operation="delete"))
    control.publish(T0 + 4, '{"did": "' + BOB + '", "time_us": ' + str(T0 + 4) + ', "kind": "identity"}')
    control.publish(T0 + 5, "not json at all")
    control.publish(
        T0 + 6, jetstream_event(T0 + 6, BOB, "3kddd", post_record(IMG1, link_form=True), operation="update")
    )


def test_subscribe_url() -> None:
    posts = frozenset({"app.bsky.feed.post"})
    assert jetstream_subscribe_url("wss://jetstream2.us-east.bsky.network", posts, None) == (
        "wss://jetstream2.us-east.bsky.network/subscribe?wantedCollections=app.bsky.feed.post"
    )
    assert jetstream_subscribe_url("http://127.0.0.1:6008/subscribe/", posts, 5) == (
        "ws://127.0.0.1:6008/subscribe?wantedCollections=app.bsky.feed.post&cursor=5"
    )
    with pytest.raises(ValueError):
        jetstream_subscribe_url("jetstream.example", posts, None)


async def test_image_posts_become_jobs_and_time_us_is_the_cursor(standin: tuple[StreamStandin, str]) -> None:
    control, url = standin
    publish_sample(control)
    jobs, cursors = MemoryJobs(), MemoryCursors()
    source = make_source(url, jobs, cursors, rewind_us=0)
    cursors.values[source.name] = str(T0)
    async with running(source):
        await eventually(lambda: cursors.values[source.name] == str(T0 + 6), what="cursor saved")
    assert [(s.source, s.subject_uri, s.image.blob_cid) for s in jobs.specs] == [
        ("jetstream", f"at://{ALICE}/app.bsky.feed.post/3kaaa", blob_cid(IMG1)),
        ("jetstream", f"at://{ALICE}/app.bsky.feed.post/3kaaa", blob_cid(IMG2)),
        ("jetstream", f"at://{BOB}/app.bsky.feed.post/3kddd", blob_cid(IMG1)),
    ]
    assert all(s.subject_cid and s.subject_cid.startswith("bafyrei") for s in jobs.specs)
    assert control.connections == [{"wantedCollections": "app.bsky.feed.post", "cursor": str(T0)}]


async def test_reconnect_rewinds_the_cursor_and_duplicates_are_harmless(standin: tuple[StreamStandin, str]) -> None:
    control, url = standin
    publish_sample(control)
    control.close_after = 1
    jobs, cursors = MemoryJobs(), MemoryCursors()
    source = make_source(url, jobs, cursors, rewind_us=1)
    cursors.values[source.name] = str(T0)
    async with running(source):
        await eventually(lambda: cursors.values[source.name] == str(T0 + 6))
    assert [c["cursor"] for c in control.connections] == [str(T0 - 1), str(T0)]
    assert len(jobs.specs) == 3  # the replayed first event added nothing


async def test_no_cursor_means_live_and_profiles_are_optional(standin: tuple[StreamStandin, str]) -> None:
    control, url = standin
    jobs, cursors = MemoryJobs(), MemoryCursors()
    source = make_source(url, jobs, cursors, profiles=True)
    avatar = post_record(IMG2, link_form=True)["embed"]["images"][0]["image"]
    async with running(source):
        await eventually(lambda: len(control.connections) == 1)
        profile = {"$type": "app.bsky.actor.profile", "avatar": avatar}
        control.publish(T0 + 1, jetstream_event(T0 + 1, BOB, "self", profile, collection="app.bsky.actor.profile"))
        await eventually(lambda: cursors.values.get(source.name) == str(T0 + 1))
    assert control.connections == [{"wantedCollections": "app.bsky.actor.profile,app.bsky.feed.post"}]
    assert [(s.subject_uri, s.image.blob_cid) for s in jobs.specs] == [
        (f"at://{BOB}/app.bsky.actor.profile/self", blob_cid(IMG2))
    ]
