"""Records → jobs: image posts and profiles become one job per distinct image; anything odd becomes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from labeler.pipeline.jobs import ImageRef
from labeler.pipeline.sources.records import MAX_IMAGES_PER_RECORD, cid_string, jobs_for_record, parse_blob

from .stream_standins import RAW, blob_cid, cid_bytes, cid_str, post_record

DID = "did:plc:alicealicealicealice1"
POST_CID = cid_str(cid_bytes(b"post"))
PNG, JPEG = b"png-bytes", b"jpeg-bytes"


def jobs(record: Any, collection: str = "app.bsky.feed.post", **kw: Any) -> list[Any]:
    return jobs_for_record("firehose", DID, collection, "3kabc", POST_CID, record, **kw)


@pytest.mark.parametrize("link_form", [False, True], ids=["dag-cbor-bytes", "json-link"])
def test_image_post_gives_one_job_per_distinct_image(link_form: bool) -> None:
    specs = jobs(post_record(PNG, JPEG, PNG, link_form=link_form))
    assert [s.image for s in specs] == [
        ImageRef(DID, blob_cid(PNG), "image/png"),
        ImageRef(DID, blob_cid(JPEG), "image/png"),
    ]
    assert {(s.source, s.subject_uri, s.subject_cid) for s in specs} == {
        ("firehose", f"at://{DID}/app.bsky.feed.post/3kabc", POST_CID)
    }


def test_record_with_media_images_are_found() -> None:
    images = post_record(PNG)["embed"]
    record = {
        "$type": "app.bsky.feed.post",
        "text": "quote",
        "embed": {"$type": "app.bsky.embed.recordWithMedia", "record": {"record": {}}, "media": images},
    }
    assert [s.image.blob_cid for s in jobs(record)] == [blob_cid(PNG)]


def gallery_embed(*blobs: bytes) -> dict[str, Any]:
    """An `app.bsky.embed.gallery` carrying the images of `post_record`'s images embed as `#image` items."""
    images = post_record(*blobs)["embed"]["images"]
    items = [{"$type": "app.bsky.embed.gallery#image", "aspectRatio": {"width": 4, "height": 3}, **i} for i in images]
    return {"$type": "app.bsky.embed.gallery", "items": items}


def test_gallery_post_gives_one_job_per_distinct_image_in_order() -> None:
    blobs = [b"gallery-%d" % i for i in range(10)]
    record = {"$type": "app.bsky.feed.post", "text": "ten", "embed": gallery_embed(*blobs, blobs[3])}
    assert [s.image.blob_cid for s in jobs(record)] == [blob_cid(b) for b in blobs]


def test_gallery_as_record_with_media_is_found() -> None:
    media = gallery_embed(PNG, JPEG)
    record = {"embed": {"$type": "app.bsky.embed.recordWithMedia", "record": {"record": {}}, "media": media}}
    assert [s.image.blob_cid for s in jobs(record)] == [blob_cid(PNG), blob_cid(JPEG)]


def test_gallery_items_without_an_image_blob_are_skipped() -> None:
    good = gallery_embed(PNG)["items"][0]
    items = [None, "x", {"$type": "app.bsky.embed.gallery#image"}, {"image": {"ref": 5}}, good]
    assert [s.image.blob_cid for s in jobs({"embed": {"$type": "app.bsky.embed.gallery", "items": items}})] == [
        blob_cid(PNG)
    ]


def video_embed(data: bytes, *, thumbnail: bytes | None = None) -> dict[str, Any]:
    """An `app.bsky.embed.video` whose `video` blob is `data` (and an extra `thumbnail` blob, if given)."""
    [item] = post_record(data, mime="video/mp4")["embed"]["images"]
    embed: dict[str, Any] = {"$type": "app.bsky.embed.video", "video": item["image"], "alt": "a clip"}
    if thumbnail is not None:
        embed["thumbnail"] = post_record(thumbnail)["embed"]["images"][0]["image"]
    return embed


def test_a_video_post_gives_a_video_job_and_its_thumbnail_an_image_job() -> None:
    VIDEO = b"mp4-bytes"
    [video] = jobs({"embed": video_embed(VIDEO)})
    assert video.image == ImageRef(DID, blob_cid(VIDEO), "video/mp4", "video")
    specs = jobs({"embed": video_embed(VIDEO, thumbnail=PNG)})
    assert [(s.image.blob_cid, s.image.media) for s in specs] == [(blob_cid(VIDEO), "video"), (blob_cid(PNG), "image")]
    quoted = {"$type": "app.bsky.embed.recordWithMedia", "record": {"record": {}}, "media": video_embed(VIDEO)}
    assert [s.image.media for s in jobs({"embed": quoted})] == ["video"]
    # The same blob as video and thumbnail is one job (the first kind seen).
    assert [s.image.media for s in jobs({"embed": video_embed(VIDEO, thumbnail=VIDEO)})] == ["video"]


def test_profile_images_only_when_enabled() -> None:
    avatar = post_record(PNG)["embed"]["images"][0]["image"]
    banner = post_record(JPEG)["embed"]["images"][0]["image"]
    record = {"$type": "app.bsky.actor.profile", "avatar": avatar, "banner": banner}
    assert jobs(record, "app.bsky.actor.profile") == []
    specs = jobs(record, "app.bsky.actor.profile", profiles=True)
    assert [s.image.blob_cid for s in specs] == [blob_cid(PNG), blob_cid(JPEG)]
    assert specs[0].subject_uri == f"at://{DID}/app.bsky.actor.profile/3kabc"


def test_legacy_blob_and_cid_forms() -> None:
    cid = blob_cid(PNG)
    assert parse_blob({"cid": cid, "mimeType": "image/jpeg"}) == (cid, "image/jpeg")
    assert parse_blob({"$type": "blob", "ref": {"$link": cid}, "mimeType": 7}) == (cid, None)
    assert cid_string(cid_bytes(PNG, RAW)) == cid


@pytest.mark.parametrize(
    "record",
    [
        None,
        "text",
        {"text": "no embed"},
        {"embed": {"$type": "app.bsky.embed.external", "external": {"thumb": {}}}},
        {"embed": {"$type": "app.bsky.embed.images", "images": "nope"}},
        {"embed": {"$type": "app.bsky.embed.images", "images": [None, 3, {"image": "x"}]}},
        {"embed": {"$type": "app.bsky.embed.images", "images": [{"image": {"ref": b"\x01garbage"}}]}},
        {"embed": {"$type": "app.bsky.embed.images", "images": [{"image": {"ref": {"$link": "bafy-nope"}}}]}},
        {"embed": {"$type": "app.bsky.embed.images", "images": [{"image": {"ref": 12}}]}},
        {"embed": {"$type": "app.bsky.embed.recordWithMedia", "media": "x"}},
        {"embed": {"$type": "app.bsky.embed.gallery", "items": {"0": {}}}},
        {"embed": {"$type": "app.bsky.embed.video", "video": "x", "thumbnail": 7}},
        {"embed": {"$type": "app.bsky.embed.video", "video": {"ref": {"$link": "bafy-nope"}}}},
        {"embed": {"$type": "app.bsky.embed.video"}},
        {"embed": {"$type": "app.bsky.embed.gallery", "images": post_record(PNG)["embed"]["images"]}},
    ],
)
def test_odd_records_give_no_jobs(record: Any) -> None:
    assert jobs(record) == []


@pytest.mark.parametrize(
    ("did", "collection", "rkey", "cid"),
    [
        ("not-a-did", "app.bsky.feed.post", "3kabc", POST_CID),
        (DID, "app.bsky.feed.post", "a/b", POST_CID),
        (DID, "app.bsky.feed.post", "3kabc", "not-a-cid"),
        (DID, "app.bsky.feed.like", "3kabc", POST_CID),
    ],
)
def test_bad_subjects_give_no_jobs(did: str, collection: str, rkey: str, cid: str) -> None:
    assert jobs_for_record("firehose", did, collection, rkey, cid, post_record(PNG)) == []


def test_images_per_record_are_capped() -> None:
    record = post_record(*(b"img%d" % i for i in range(50)))
    assert len(jobs(record)) == MAX_IMAGES_PER_RECORD == 20  # a gallery's lexicon maximum
    gallery = {"embed": gallery_embed(*(b"img%d" % i for i in range(50)))}
    assert len(jobs(gallery)) == MAX_IMAGES_PER_RECORD
