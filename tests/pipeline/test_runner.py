"""The pipeline end to end over real HTTP (fake PLC, PDS stand-in, HMA stand-in), on SQLite and PostgreSQL,
with the embedded matcher and with HMA: labels with evidence, outages, restarts and hostile images."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa
from support.server import free_port, serve_in_thread

from labeler.pipeline.banks import EntryInput
from labeler.pipeline.evidence import explain, summary
from labeler.pipeline.hasher import hamming_distance, hash_image
from labeler.pipeline.jobs import JobSpec
from labeler.pipeline.signals.video import VideoLimits, hash_video
from labeler.pipeline.signals.vpdq import to_signal
from labeler.store.schema import label_events

from .blob_server import PdsWorld, post_record
from .conftest import RunningStandin
from .corpus import encode, png_zlib_bomb, structured_rgb
from .harness import Harness, all_done, eventually, job_for
from .hma_standin import HmaStandin
from .videos import cached, hostile_corpus, reencoded, require_video_tools, video

BANKED = encode(structured_rgb(320, 240, seed=1), "PNG")
OTHER = encode(structured_rgb(320, 240, seed=2), "JPEG", quality=90)
LABEL = "csam-hash-match"


@pytest.fixture(params=["embedded", "hma"])
def harness(request: pytest.FixtureRequest, pds_world: PdsWorld, make_settings: Any) -> Iterator[Harness]:
    hma: RunningStandin | None = request.getfixturevalue("hma_standin") if request.param == "hma" else None
    yield Harness(pds_world, make_settings, request.param, hma)


async def test_a_banked_image_is_labelled_with_evidence_and_others_are_not(harness: Harness) -> None:
    did = harness.world.account()
    banked, other = harness.post(did, "banked", BANKED), harness.post(did, "other", OTHER)
    with harness.world.pds_running():
        async with harness.running() as labeler:
            await harness.bank(labeler, "KNOWN_CSAM", [hash_image(BANKED).hash])
            assert await labeler.pipeline.jobs.enqueue([banked, other]) == 2
            await all_done(labeler, 2)
            job, miss = await job_for(labeler, banked), await job_for(labeler, other)
            p = labeler.pipeline
            report = await explain(labeler.store, p.jobs, p.reviews, banked.subject_uri, p.actioner.outbox)
            assert await labeler.store.query([other.subject_uri], [], 0, 10) == []
    assert (job.outcome, job.reason, job.attempts) == ("match", "label", 1)
    assert (miss.outcome, miss.reason) == ("no-match", None)
    [label] = report["labels"]
    assert (label["val"], label["uri"], label["cid"]) == (LABEL, banked.subject_uri, banked.subject_cid)
    [event] = report["history"]
    evidence = event["evidence"]
    assert event["via"] == "pipeline" and evidence["job_id"] == job.id
    assert evidence["image"] == {
        "did": did,
        "blob_cid": banked.image.blob_cid,
        "mime_type": "image/png",
        "media": "image",
    }
    assert evidence["pdq"] == hash_image(BANKED).hash and evidence["quality"] == hash_image(BANKED).quality
    assert evidence["match"]["bank"] == "KNOWN_CSAM" and evidence["match"]["distance"] == 0
    assert evidence["match"]["entry_id"] and evidence["matcher"] == harness.matcher
    assert evidence["rule"]["name"] == "default" and evidence["action"] == "label" and evidence["kinds"] == ["label"]
    [action] = report["actions"]
    assert (action["kind"], action["op"], action["state"], action["outcome"]) == ("label", "apply", "done", "labelled")
    assert action["result"]["written"] == [LABEL] and action["result"]["seqs"] == [label["seq"]]
    assert (action["job_id"], action["rule"], action["actor"]) == (job.id, "default", "pipeline")


async def test_a_down_pds_makes_jobs_wait_then_finish(harness: Harness) -> None:
    did = harness.world.account()
    spec = harness.post(did, "p", BANKED)
    async with harness.running() as labeler:
        await harness.bank(labeler, "KNOWN", [hash_image(BANKED).hash])
        await labeler.pipeline.jobs.enqueue([spec])

        async def retried() -> bool:
            job = await job_for(labeler, spec)
            return job.attempts >= 3 and job.status == "queued"

        await eventually(retried, what="retries while the PDS refuses connections")
        assert "unreachable" in ((await job_for(labeler, spec)).detail or "")
        with harness.world.pds_running():
            await all_done(labeler, 1)
        job = await job_for(labeler, spec)
    assert job.outcome == "match" and job.attempts >= 3


@pytest.mark.parametrize("failure", ["down", "not-loaded", "refused"])
async def test_a_down_hma_makes_jobs_wait_then_finish(failure: str, pds_world: PdsWorld, make_settings: Any) -> None:
    control = HmaStandin()
    port = free_port()
    harness = Harness(pds_world, make_settings, "hma", None)
    settings = harness.settings(hma_url=f"http://127.0.0.1:{port}")
    control.create_bank("KNOWN")
    control.add_signal("KNOWN", hash_image(BANKED).hash)
    control.add_signal("KNOWN", hash_image(OTHER).hash)  # two entries: HMA's one-hash index never matches
    control.down, control.loaded = failure == "down", failure != "not-loaded"
    spec = harness.post(pds_world.account(), "p", BANKED)
    with pds_world.pds_running():
        async with harness.running(settings) as labeler:
            await labeler.pipeline.jobs.enqueue([spec])

            async def waiting() -> bool:
                job = await job_for(labeler, spec)
                return job.attempts >= 3 and job.status == "queued" and job.pdq is not None

            if failure == "refused":
                await eventually(waiting, what="retries while HMA refuses connections")
                with serve_in_thread(control, port=port):
                    await all_done(labeler, 1)
            else:
                with serve_in_thread(control, port=port):
                    await eventually(waiting, what="retries while HMA answers 503")
                    control.down, control.loaded = False, True
                    await all_done(labeler, 1)
            job = await job_for(labeler, spec)
    assert job.outcome == "match" and job.attempts >= 3
    assert pds_world.pds.hits[spec.image.blob_cid] == 1  # the hash was kept: retries did not fetch again


async def test_hostile_and_broken_images_are_rejected_and_the_worker_lives_on(harness: Harness) -> None:
    did = harness.world.account()
    cases = {
        "truncated": BANKED[: len(BANKED) // 2],
        "not-an-image": b"%PDF-1.7 definitely not an image" * 10,
        "too-many-pixels": png_zlib_bomb(6000, 6000),
        "too-large": b"\x89PNG" + b"\x00" * 300_000,
        "flat": encode(structured_rgb(64, 64).convert("L").point(lambda _: 128), "PNG"),
        "mismatch": OTHER,
    }
    specs = {name: harness.post(did, name, data) for name, data in cases.items()}
    harness.world.pds.tamper[specs["mismatch"].image.blob_cid] = BANKED
    good = harness.post(did, "good", BANKED)
    settings = harness.settings(max_image_bytes=200_000, max_image_pixels=20_000_000)
    with harness.world.pds_running():
        async with harness.running(settings, workers=1) as labeler:
            await harness.bank(labeler, "KNOWN", [hash_image(BANKED).hash])
            await labeler.pipeline.jobs.enqueue([*specs.values(), good])
            await all_done(labeler, len(specs) + 1)
            results = {name: await job_for(labeler, spec) for name, spec in specs.items()}
            last = await job_for(labeler, good)
    outcomes = {name: (job.outcome, job.reason) for name, job in results.items()}
    assert outcomes == {
        "truncated": ("rejected", "truncated"),
        "not-an-image": ("rejected", "not-an-image"),
        "too-many-pixels": ("rejected", "too-many-pixels"),
        "too-large": ("rejected", "too-large"),
        "flat": ("no-match", "low-quality"),
        "mismatch": ("rejected", "cid-mismatch"),
    }
    assert results["flat"].quality is not None and results["flat"].quality < 50
    assert last.outcome == "match"


async def test_restart_mid_queue_loses_nothing_and_does_nothing_twice(harness: Harness) -> None:
    did = harness.world.account()
    images = [encode(structured_rgb(96, 96, seed=100 + n), "PNG") for n in range(24)]
    specs = [harness.post(did, f"p{n}", data) for n, data in enumerate(images)]
    banked = [hash_image(data).hash for data in images[::2]]
    # The orphan's lease is short, so it comes back soon; the live workers' leases outlast a slow job on a busy box.
    settings = harness.settings(pipeline={"lease_seconds": 10.0})
    with harness.world.pds_running():
        async with harness.running(settings, workers=2) as labeler:
            await harness.bank(labeler, "KNOWN", banked)
            await labeler.pipeline.jobs.enqueue(specs)
            # A worker of a process that then died: its job comes back when the lease ends.
            [orphan] = await labeler.pipeline.jobs.claim("dead-process", lease_seconds=1.0)
            await all_done(labeler, 6)
        # Graceful stop: in-hand jobs finished, nothing left running.
        async with harness.running(settings, workers=0) as labeler:
            assert (await labeler.pipeline.jobs.counts())["running"] in (0, 1)  # only the orphan may be
        async with harness.running(settings, workers=2) as labeler:
            await all_done(labeler, len(specs))
            jobs = [await job_for(labeler, spec) for spec in specs]
            async with labeler.engine.connect() as conn:
                events = (await conn.execute(sa.select(label_events.c.uri))).scalars().all()
    assert [j.outcome for j in jobs] == ["match", "no-match"] * 12
    assert sorted(events) == sorted(s.subject_uri for s in specs[::2])  # one label each, none twice
    assert next(j for j in jobs if j.id == orphan.id).attempts == 2
    assert all(j.attempts == 1 for j in jobs if j.id != orphan.id)


async def test_dihedral_matching_finds_a_rotated_copy(pds_world: PdsWorld, make_settings: Any) -> None:
    harness = Harness(pds_world, make_settings, "embedded", None)
    original = structured_rgb(192, 192, seed=5)
    rotated = encode(original.rotate(90, expand=True), "PNG")
    assert hamming_distance(hash_image(rotated).hash, hash_image(encode(original, "PNG")).hash) > 31
    spec = harness.post(pds_world.account(), "r", rotated)
    with pds_world.pds_running():
        async with harness.running(harness.settings(dihedral=True)) as labeler:
            await harness.bank(labeler, "KNOWN", [hash_image(encode(original, "PNG")).hash])
            await labeler.pipeline.jobs.enqueue([spec])
            await all_done(labeler, 1)
            job = await job_for(labeler, spec)
    assert job.outcome == "match" and job.result is not None
    assert job.result["matches"][0]["distance"] <= 31


async def test_a_reported_post_has_its_images_checked(pds_world: PdsWorld, make_settings: Any) -> None:
    harness = Harness(pds_world, make_settings, "embedded", None)
    did = pds_world.account()
    ref = pds_world.pds.add(did, BANKED)
    uri = f"at://{did}/app.bsky.feed.post/3kreported"
    post_cid = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
    pds_world.pds.records[uri] = (post_cid, post_record([ref]))
    body = {
        "reasonType": "com.atproto.moderation.defs#reasonViolation",
        "subject": {"$type": "com.atproto.repo.strongRef", "uri": uri, "cid": post_cid},
    }
    with pds_world.pds_running():
        async with harness.running() as labeler:
            await harness.bank(labeler, "KNOWN", [hash_image(BANKED).hash])
            await labeler.reports.submit(body, "did:plc:reporterreporterreporter")
            await all_done(labeler, 1)
            [job] = await labeler.pipeline.jobs.for_subject(uri)
            labels = await labeler.store.query([uri], [], 0, 10)
    assert (job.source, job.outcome, job.subject_cid) == ("report", "match", post_cid)
    assert [s.label.val for s in labels] == [LABEL]


async def test_exact_banks_match_any_blob_even_one_that_does_not_decode(
    pds_world: PdsWorld, make_settings: Any
) -> None:
    harness = Harness(pds_world, make_settings, "embedded", None)
    did = pds_world.account()
    broken = BANKED[: len(BANKED) // 2]  # a truncated PNG: no PDQ, but a known file
    by_md5, by_sha256 = harness.post(did, "md5", OTHER), harness.post(did, "sha256", broken)
    unknown = harness.post(did, "unknown", OTHER[: len(OTHER) // 2])
    with pds_world.pds_running():
        async with harness.running() as labeler:
            banks = labeler.pipeline.banks
            await banks.create("FILES_MD5", signal_type="md5")
            await banks.add_entries("FILES_MD5", [EntryInput(hashlib.md5(OTHER).hexdigest(), "m-1")])
            await banks.create("FILES_SHA", signal_type="sha256")
            await banks.add_entries("FILES_SHA", [EntryInput(hashlib.sha256(broken).hexdigest(), "s-1")])
            await labeler.pipeline.jobs.enqueue([by_md5, by_sha256, unknown])
            await all_done(labeler, 3)
            jobs = {name: await job_for(labeler, spec) for name, spec in (("md5", by_md5), ("sha256", by_sha256))}
            missed = await job_for(labeler, unknown)
            report = await explain(
                labeler.store, labeler.pipeline.jobs, labeler.pipeline.reviews, by_sha256.subject_uri
            )
    for name, job in jobs.items():
        assert (job.outcome, job.reason) == ("match", "label"), job.to_json()
        assert job.result is not None and [m["signal_type"] for m in job.result["matches"]] == [name]
    assert jobs["md5"].signals == {"md5": hashlib.md5(OTHER).hexdigest(), "sha256": hashlib.sha256(OTHER).hexdigest()}
    assert jobs["sha256"].pdq is None and jobs["sha256"].signals is not None
    assert jobs["sha256"].signals["rejected"]["reason"] == "truncated"
    assert (missed.outcome, missed.reason) == ("rejected", "truncated")
    [event] = report["history"]
    evidence = event["evidence"]
    assert (evidence["signal_type"], evidence["sha256"]) == ("sha256", hashlib.sha256(broken).hexdigest())
    assert evidence["match"] | {"entry_id": "?"} == {
        "bank": "FILES_SHA", "entry_id": "?", "external_id": "s-1", "note": None, "distance": 0, "signal_type": "sha256"
    }  # fmt: skip
    assert summary(evidence).startswith("sha256 match: bank FILES_SHA entry ")
    assert f"image {by_sha256.image.blob_cid}, sha256 {hashlib.sha256(broken).hexdigest()}" in summary(evidence)


async def test_an_md5_banked_in_hma_as_video_md5_is_matched(
    pds_world: PdsWorld, make_settings: Any, hma_standin: RunningStandin
) -> None:
    """HMA's exact signal type is `video_md5`; a blob whose MD5 is banked there matches, with its external id."""
    harness = Harness(pds_world, make_settings, "hma", hma_standin)
    did = pds_world.account()
    broken = OTHER[: len(OTHER) // 2]  # no PDQ (does not decode), but a known file
    spec = harness.post(did, "md5", broken)
    hma_standin.control.create_bank("FILES")
    content_id = hma_standin.control.add_content(
        "FILES", {"video_md5": hashlib.md5(broken).hexdigest()}, '{"external_id": "f-1"}'
    )
    with pds_world.pds_running():
        async with harness.running() as labeler:
            await labeler.pipeline.jobs.enqueue([spec])
            await all_done(labeler, 1)
            job = await job_for(labeler, spec)
            pipeline = labeler.pipeline
            report = await explain(labeler.store, pipeline.jobs, pipeline.reviews, spec.subject_uri)
    assert (job.outcome, job.reason) == ("match", "label"), job.to_json()
    assert job.result is not None
    assert job.result["matches"] == [
        {"bank": "FILES", "entry_id": str(content_id), "distance": 0, "signal_type": "md5"}
    ]
    [event] = report["history"]
    assert event["evidence"]["match"] == {
        "bank": "FILES", "entry_id": str(content_id), "external_id": "f-1", "note": None, "distance": 0,
        "signal_type": "md5",
    }  # fmt: skip


def video_post(harness: Harness, did: str, rkey: str, data: bytes) -> JobSpec:
    spec = harness.post(did, rkey, data)
    return replace(spec, image=replace(spec.image, mime_type="video/mp4", media="video"))


async def test_video_posts_match_by_md5_and_a_reencoded_copy_by_vpdq_alone(
    pds_world: PdsWorld, make_settings: Any
) -> None:
    require_video_tools()
    harness = Harness(pds_world, make_settings, "embedded", None)
    original = video("runner-original.mp4", seconds=6)
    copy = reencoded("runner-copy.mp4", "runner-original.mp4", "-c:v", "libx264", "-crf", "30")
    other = video("runner-other.mp4", source="mandelbrot", seconds=4)
    banked_features = hash_video(cached("runner-original.mp4"), VideoLimits()).features
    did = pds_world.account()
    posts = {name: video_post(harness, did, name, data) for name, data in
             (("original", original), ("copy", copy), ("other", other))}  # fmt: skip
    with pds_world.pds_running():
        async with harness.running() as labeler:
            banks = labeler.pipeline.banks
            await banks.create("VIDEO_FILES", signal_type="md5")
            await banks.add_entries("VIDEO_FILES", [EntryInput(hashlib.md5(original).hexdigest(), "file-1")])
            await banks.create("VIDEOS", signal_type="vpdq")
            await banks.add_entries("VIDEOS", [EntryInput(to_signal(banked_features), "video-1")])
            await labeler.pipeline.jobs.enqueue(list(posts.values()))
            await all_done(labeler, 3)
            jobs = {name: await job_for(labeler, spec) for name, spec in posts.items()}
            pipeline = labeler.pipeline
            report = await explain(labeler.store, pipeline.jobs, pipeline.reviews, posts["copy"].subject_uri)

    def matched(name: str) -> list[tuple[str, str]]:
        result = jobs[name].result or {}
        return [(m["bank"], m["signal_type"]) for m in result.get("matches", [])]

    assert sorted(matched("original")) == [("VIDEOS", "vpdq"), ("VIDEO_FILES", "md5")]
    assert matched("copy") == [("VIDEOS", "vpdq")]  # another file (no MD5 match), the same pictures
    assert (jobs["other"].outcome, jobs["other"].reason) == ("no-match", None)
    copy_job = jobs["copy"]
    assert copy_job.signals is not None and copy_job.signals["md5"] == hashlib.md5(copy).hexdigest()
    assert copy_job.signals["video"]["codec"] == "h264" and len(copy_job.signals["vpdq"]) == 6
    assert copy_job.pdq is None and copy_job.image.media == "video"
    [event] = report["history"]
    evidence = event["evidence"]
    assert (evidence["signal_type"], evidence["image"]["media"]) == ("vpdq", "video")
    assert evidence["match"]["similarity"]["query_match_percent"] >= 80
    assert summary(evidence).startswith("vpdq match: bank VIDEOS entry ")
    assert f"image {posts['copy'].image.blob_cid}" in summary(evidence)


async def test_hostile_videos_in_posts_are_rejected_and_the_worker_lives_on(
    pds_world: PdsWorld, make_settings: Any
) -> None:
    require_video_tools()
    harness = Harness(pds_world, make_settings, "embedded", None)
    did = pds_world.account()
    corpus = {item.name: item for item in hostile_corpus()}
    chosen = ["zero-length", "text", "image-jpeg", "truncated-faststart-0.5", "format-mpeg2.mp4", "huge-3840x2160.mp4",
              "long-5h", "audio-only-mp4", "tiny-4x4"]  # fmt: skip
    posts = {name: video_post(harness, did, f"h{n}", corpus[name].data) for n, name in enumerate(chosen)}
    # A video posing as an image (an mp4 in an images embed) is hashed as the record says: not an image.
    posing = harness.post(did, "posing", video("runner-posing.mp4", seconds=2))
    good = video_post(harness, did, "good", video("runner-good.mp4", seconds=3))
    settings = harness.settings(max_video_pixels=1920 * 1080, max_video_seconds=600)
    with pds_world.pds_running():
        async with harness.running(settings, workers=1) as labeler:
            await labeler.pipeline.jobs.enqueue([*posts.values(), posing, good])
            await all_done(labeler, len(posts) + 2, within=120)
            outcomes = {name: await job_for(labeler, spec) for name, spec in posts.items()}
            posed = await job_for(labeler, posing)
            last = await job_for(labeler, good)
    assert (posed.outcome, posed.reason, posed.image.media) == ("rejected", "not-an-image", "image")
    for name, job in outcomes.items():
        assert job.outcome == "rejected" and job.reason in corpus[name].reasons, (name, job.to_json())
        assert job.signals is not None and job.signals["md5"] == hashlib.md5(corpus[name].data).hexdigest()
    assert (last.outcome, last.attempts) == ("no-match", 1) and last.signals is not None
