"""Videos and galleries on Bluesky's real PDS: posts made with uploadBlob + createRecord, followed over the PDS's
firehose, fetched, hashed (MD5, SHA-256, PDQ, vPDQ), matched against embedded banks, labelled, and explained.

The videos are made by FFmpeg here; `explain` runs as an operator runs it, in another process.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import httpx
import pytest
from pipeline.corpus import encode, structured_rgb
from pipeline.videos import cached, reencoded, require_video_tools, video

from labeler.config import Settings
from labeler.pipeline.banks import EntryInput
from labeler.pipeline.hasher import hash_image
from labeler.pipeline.signals.video import VideoLimits, hash_video
from labeler.pipeline.signals.vpdq import to_signal
from labeler.service import Labeler
from labeler.testing import serve_labeler

from .harness import Devnet, create_session
from .test_pipeline_e2e import explain, finished_jobs, query_labels

pytestmark = pytest.mark.devnet
LABEL = "csam-hash-match"


@pytest.fixture
def settings(make_settings: Any, devnet: Devnet) -> Settings:
    return make_settings(
        firehose_url=devnet.firehose_url,
        plc_url=devnet.plc_url,
        allow_private_fetch=True,  # the PDS is on loopback
        workers=1,
        did="",
    )


class Poster:
    """Posts as one seeded account through the PDS's own XRPC methods, the way a client does."""

    def __init__(self, devnet: Devnet, account: str) -> None:
        self.devnet = devnet
        self.did = devnet.account(account).did
        self.auth = {"authorization": f"Bearer {create_session(devnet, account)['accessJwt']}"}

    def upload(self, data: bytes, mime_type: str) -> dict[str, Any]:
        response = httpx.post(
            f"{self.devnet.pds_url}/xrpc/com.atproto.repo.uploadBlob",
            content=data,
            headers=self.auth | {"content-type": mime_type},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        blob: dict[str, Any] = response.json()["blob"]
        return blob

    def post(self, text: str, embed: dict[str, Any]) -> tuple[str, str]:
        record = {"$type": "app.bsky.feed.post", "text": text, "createdAt": "2026-12-02T00:00:00.000Z", "embed": embed}
        response = httpx.post(
            f"{self.devnet.pds_url}/xrpc/com.atproto.repo.createRecord",
            json={"repo": self.did, "collection": "app.bsky.feed.post", "record": record},
            headers=self.auth,
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return response.json()["uri"], response.json()["cid"]

    def video_post(self, text: str, data: bytes) -> tuple[str, str, str]:
        blob = self.upload(data, "video/mp4")
        uri, cid = self.post(text, {"$type": "app.bsky.embed.video", "video": blob, "alt": text})
        return uri, cid, blob["ref"]["$link"]


async def started(settings: Settings) -> Labeler:
    labeler = Labeler(settings)
    await labeler.start(workers=1, sources=False)
    [source] = labeler.sources.sources
    await labeler.pipeline.cursors.set(source.name, "0")  # replay the PDS from its start: no race with the posts
    return labeler


async def test_a_banked_video_is_labelled_by_md5_and_a_reencoded_copy_by_vpdq(
    devnet: Devnet, settings: Settings
) -> None:
    require_video_tools()
    original = video("e2e-original.mp4", seconds=6, extra=("-movflags", "+faststart"))
    copy = reencoded("e2e-copy.mp4", "e2e-original.mp4", "-c:v", "libx264", "-crf", "28", "-movflags", "+faststart")
    assert hashlib.md5(copy).digest() != hashlib.md5(original).digest()
    features = hash_video(cached("e2e-original.mp4"), VideoLimits()).features
    labeler = await started(settings)
    try:
        banks = labeler.pipeline.banks
        await banks.create("E2E_VIDEO_FILES", signal_type="md5")
        await banks.add_entries("E2E_VIDEO_FILES", [EntryInput(hashlib.md5(original).hexdigest(), "file-1")])
        await banks.create("E2E_VIDEOS", signal_type="vpdq")
        await banks.add_entries("E2E_VIDEOS", [EntryInput(to_signal(features), "video-1")])
        labeler.sources.start()
        poster = await asyncio.to_thread(Poster, devnet, "bob")
        banked = await asyncio.to_thread(poster.video_post, "a banked video", original)
        recoded = await asyncio.to_thread(poster.video_post, "the same video, encoded again", copy)

        [banked_job] = await finished_jobs(labeler, banked[0])
        [copy_job] = await finished_jobs(labeler, recoded[0])
        for job, (_, cid, blob_cid) in ((banked_job, banked), (copy_job, recoded)):
            assert (job.image.media, job.image.blob_cid, job.subject_cid) == ("video", blob_cid, cid), job.to_json()
            assert job.outcome == "match", job.to_json()
        matched = {name: {(m["bank"], m["signal_type"]) for m in (job.result or {})["matches"]}
                   for name, job in (("banked", banked_job), ("copy", copy_job))}  # fmt: skip
        assert matched["banked"] == {("E2E_VIDEO_FILES", "md5"), ("E2E_VIDEOS", "vpdq")}
        assert matched["copy"] == {("E2E_VIDEOS", "vpdq")}  # not by MD5: another file

        async with serve_labeler(labeler) as live, httpx.AsyncClient(base_url=live.url, timeout=10) as http:
            assert [lb["val"] for lb in await query_labels(http, banked[0])] == [LABEL]
        # `explain`: the label's evidence (one rule acts once, on its nearest match) and every match of the job.
        why_banked = await explain(settings, banked[0])
        for fact in (LABEL, f"video {banked[2]}", f"md5 {hashlib.md5(original).hexdigest()}", "vpdq 6 frames",
                     "by md5 at distance 0", "by vpdq at distance 0"):  # fmt: skip
            assert fact in why_banked, why_banked
        why_copy = await explain(settings, recoded[0])
        for fact in ("evidence: vpdq match: bank E2E_VIDEOS", f"image {recoded[2]}", "% of 6 frames matched",
                     f"md5 {hashlib.md5(copy).hexdigest()}"):  # fmt: skip
            assert fact in why_copy, why_copy
        assert "by md5" not in why_copy
    finally:
        await labeler.aclose()


async def test_a_gallery_of_ten_images_whose_seventh_is_banked_is_labelled(devnet: Devnet, settings: Settings) -> None:
    images = [encode(structured_rgb(320, 240, seed=700 + n), "PNG") for n in range(10)]
    seventh = hash_image(images[6]).hash
    labeler = await started(settings)
    try:
        await labeler.pipeline.banks.create("E2E_GALLERY")
        await labeler.pipeline.banks.add_entries("E2E_GALLERY", [EntryInput(seventh, "seventh")])
        labeler.sources.start()
        poster = await asyncio.to_thread(Poster, devnet, "alice")
        blobs = [await asyncio.to_thread(poster.upload, data, "image/png") for data in images]
        items = [
            {"$type": "app.bsky.embed.gallery#image", "image": blob, "alt": f"picture {n + 1}",
             "aspectRatio": {"width": 320, "height": 240}}
            for n, blob in enumerate(blobs)
        ]  # fmt: skip
        uri, cid = await asyncio.to_thread(
            poster.post, "ten pictures", {"$type": "app.bsky.embed.gallery", "items": items}
        )

        jobs = await finished_jobs(labeler, uri)
        assert [j.image.blob_cid for j in jobs] == [b["ref"]["$link"] for b in blobs]
        assert [j.outcome for j in jobs] == ["no-match"] * 6 + ["match"] + ["no-match"] * 3
        assert jobs[6].pdq == seventh and jobs[6].subject_cid == cid
        async with serve_labeler(labeler) as live, httpx.AsyncClient(base_url=live.url, timeout=10) as http:
            labels = await query_labels(http, uri)
        assert [(lb["uri"], lb["cid"], lb["val"]) for lb in labels] == [(uri, cid, LABEL)]
        why = await explain(settings, uri)
        for fact in ("pdq match: bank E2E_GALLERY", "at distance 0", blobs[6]["ref"]["$link"], f"job {jobs[6].id}"):
            assert fact in why, why
    finally:
        await labeler.aclose()
