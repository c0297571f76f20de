"""Records → jobs: which blobs in a post (or profile) record are images or videos to check.

A post's media come from its embed, directly or as the `media` of `app.bsky.embed.recordWithMedia`:
`app.bsky.embed.images` (up to 4 images), `app.bsky.embed.gallery` (up to 20 items, each `#image`), or
`app.bsky.embed.video` (one mp4 `video` blob, up to 300 MB). Lexicons: bluesky-social/atproto
`lexicons/app/bsky/embed/` (gallery added 2026-06). The video lexicon defines no thumbnail blob (the AppView makes
one), but records are open: a `thumbnail` blob beside the video is checked as an image. The SDK knows these NSIDs
but records are read as plain data here either way, so no SDK model is needed.

Works on the record as decoded from either wire form: DAG-CBOR from a repo CAR (blob `ref` is raw CID bytes)
or Jetstream's JSON (`ref` is `{"$link": …}`), plus the legacy `{cid, mimeType}` blob. Records come from anyone,
so nothing here trusts their shape: anything odd yields no job, never an exception, and a record yields at most
MAX_IMAGES_PER_RECORD blobs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any, Final

import libipld

from labeler.pipeline.jobs import ImageRef, JobSpec
from labeler.pipeline.signals import IMAGE, VIDEO
from labeler.protocol.syntax import check_cid, check_did, check_nsid, check_record_key

log = logging.getLogger(__name__)

# Lexicon NSIDs (the SDK's `atproto_client.models.ids` has the same strings, but importing it loads the SDK's
# whole client package, ~0.5 s, into every process and CLI command that builds the service).
POST: Final = "app.bsky.feed.post"
PROFILE: Final = "app.bsky.actor.profile"
EMBED_IMAGES: Final = "app.bsky.embed.images"
EMBED_GALLERY: Final = "app.bsky.embed.gallery"
EMBED_VIDEO: Final = "app.bsky.embed.video"
EMBED_RECORD_WITH_MEDIA: Final = "app.bsky.embed.recordWithMedia"
# A gallery holds at most 20 items, an images embed 4, a profile 2. Anything past this is junk, not work.
MAX_IMAGES_PER_RECORD: Final = 20
_MAX_MIME: Final = 100


def wanted_collections(*, profiles: bool) -> frozenset[str]:
    """The collections a source should read records from."""
    return frozenset({POST, PROFILE}) if profiles else frozenset({POST})


def jobs_for_record(
    source: str, did: str, collection: str, rkey: str, cid: str | None, record: Any, *, profiles: bool = False
) -> list[JobSpec]:
    """One JobSpec per distinct media blob the record carries; [] for anything else or anything malformed."""
    if collection == POST:
        blobs = _post_media(record)
    elif collection == PROFILE and profiles:
        blobs = _profile_images(record)
    else:
        return []
    refs: dict[str, ImageRef] = {}
    try:
        for blob, media in blobs:
            parsed = parse_blob(blob)
            if parsed is not None and parsed[0] not in refs:
                refs[parsed[0]] = ImageRef(did, parsed[0], parsed[1], media)
            if len(refs) >= MAX_IMAGES_PER_RECORD:
                break
        if not refs:
            return []
        uri = subject_uri(did, collection, rkey)
        subject_cid = check_cid(cid) if cid is not None else None
        return [JobSpec(source=source, subject_uri=uri, subject_cid=subject_cid, image=ref) for ref in refs.values()]
    except (ValueError, TypeError) as exc:
        log.debug("skipping odd record at %s/%s/%s: %s", did, collection, rkey, exc)
        return []


def subject_uri(did: str, collection: str, rkey: str) -> str:
    """`at://did/collection/rkey`, each part checked (ValueError otherwise)."""
    return f"at://{check_did(did)}/{check_nsid(collection)}/{check_record_key(rkey)}"


def parse_blob(value: Any) -> tuple[str, str | None] | None:
    """(blob CID, mime type) of a blob object in either wire form, or None if it is not one."""
    if not isinstance(value, Mapping):
        return None
    if "ref" in value:
        cid = cid_string(value["ref"])
    elif isinstance(value.get("cid"), str):  # legacy blob: {cid, mimeType}
        cid = cid_string(value["cid"])
    else:
        return None
    if cid is None:
        return None
    mime = value.get("mimeType")
    return cid, mime if isinstance(mime, str) and 0 < len(mime) <= _MAX_MIME else None


def cid_string(ref: Any) -> str | None:
    """A CID link as its string form: raw bytes (DAG-CBOR tag 42), `{"$link": str}`, a str or a CID object."""
    try:
        if isinstance(ref, bytes):
            return str(libipld.encode_cid(ref))
        if isinstance(ref, Mapping):
            ref = ref.get("$link")
        if not isinstance(ref, str):
            ref = getattr(ref, "encode", lambda: None)()  # atproto_core.cid.CID
        return check_cid(ref) if isinstance(ref, str) else None
    except (ValueError, TypeError):
        return None


def _post_media(record: Any) -> Iterator[tuple[Any, str]]:
    """(blob, media) pairs of the post's embed; blobs may be anything (parse_blob decides)."""
    embed = _get(record, "embed")
    if _get(embed, "$type") == EMBED_RECORD_WITH_MEDIA:
        embed = _get(embed, "media")
    kind = _get(embed, "$type")
    if kind == EMBED_VIDEO:
        yield _get(embed, "video"), VIDEO
        yield _get(embed, "thumbnail"), IMAGE
        return
    items = _get(embed, "images") if kind == EMBED_IMAGES else _get(embed, "items") if kind == EMBED_GALLERY else None
    if isinstance(items, list):
        # Gallery items are a union whose only member today is `#image`; whatever the item's $type, an `image`
        # blob in it is an image the post shows.
        for item in items[:MAX_IMAGES_PER_RECORD]:
            yield _get(item, "image"), IMAGE


def _profile_images(record: Any) -> Iterator[tuple[Any, str]]:
    yield _get(record, "avatar"), IMAGE
    yield _get(record, "banner"), IMAGE


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, Mapping) else None
