"""The blob fetcher over real HTTP: DID → PDS → getBlob, CID verification, limits, and outward-only addresses."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from labeler.identity import DidResolver
from labeler.pipeline.fetcher import BlobFetcher, FetchRejected, FetchUnavailable
from labeler.pipeline.jobs import ImageRef
from labeler.pipeline.signals.exact import ExactDigests

from .blob_server import PdsWorld, blob_cid
from .corpus import encode, structured_rgb

IMAGE = encode(structured_rgb(64, 48, seed=3), "PNG")


@pytest.fixture
async def resolver(pds_world: PdsWorld) -> AsyncIterator[DidResolver]:
    async with DidResolver(plc_url=pds_world.plc_url) as resolver:
        yield resolver


@pytest.fixture
async def fetcher(resolver: DidResolver) -> AsyncIterator[Callable[..., BlobFetcher]]:
    """Build fetchers over the fake PLC (allowed to reach loopback unless told otherwise); closed at the end."""
    made: list[BlobFetcher] = []

    def make(*, allow_private: bool = True, max_bytes: int = 1_000_000, timeout: float = 2.0) -> BlobFetcher:
        made.append(BlobFetcher(resolver, max_bytes=max_bytes, timeout=timeout, allow_private=allow_private))
        return made[-1]

    yield make
    for f in made:
        await f.aclose()


async def test_fetches_and_verifies_a_blob(pds_world: PdsWorld, fetcher: Callable[..., BlobFetcher]) -> None:
    ref = pds_world.pds.add(pds_world.account(), IMAGE)
    with pds_world.pds_running():
        blob = await fetcher().fetch(ref)
    assert blob.data == IMAGE
    # The exact signals are hashlib's over the same bytes, computed as they streamed in.
    assert blob.digests == ExactDigests(hashlib.md5(IMAGE).hexdigest(), hashlib.sha256(IMAGE).hexdigest(), len(IMAGE))


async def test_bytes_that_do_not_match_the_cid_are_rejected(
    pds_world: PdsWorld, fetcher: Callable[..., BlobFetcher]
) -> None:
    ref = pds_world.pds.add(pds_world.account(), IMAGE)
    pds_world.pds.tamper[ref.blob_cid] = IMAGE[:-1] + b"\x00"
    with pds_world.pds_running(), pytest.raises(FetchRejected) as caught:
        await fetcher().fetch(ref)
    assert caught.value.reason == "cid-mismatch"


async def test_size_limit(pds_world: PdsWorld, fetcher: Callable[..., BlobFetcher]) -> None:
    ref = pds_world.pds.add(pds_world.account(), IMAGE)
    with pds_world.pds_running(), pytest.raises(FetchRejected) as caught:
        await fetcher(max_bytes=len(IMAGE) - 1).fetch(ref)
    assert caught.value.reason == "too-large"


async def test_missing_blob_and_unknown_did_are_permanent(
    pds_world: PdsWorld, fetcher: Callable[..., BlobFetcher]
) -> None:
    did = pds_world.account()
    with pds_world.pds_running():
        with pytest.raises(FetchRejected) as caught:
            await fetcher().fetch(ImageRef(did, blob_cid(b"never uploaded")))
        assert caught.value.reason == "blob-not-found"
        with pytest.raises(FetchRejected) as caught:
            await fetcher().fetch(ImageRef("did:plc:zzzzzzzzzzzzzzzzzzzzzzzz", blob_cid(b"x")))
        assert caught.value.reason == "did-not-found"


async def test_a_down_pds_is_retryable(pds_world: PdsWorld, fetcher: Callable[..., BlobFetcher]) -> None:
    ref = pds_world.pds.add(pds_world.account(), IMAGE)
    with pytest.raises(FetchUnavailable) as caught:  # nothing listens: connection refused
        await fetcher().fetch(ref)
    assert caught.value.reason == "unreachable"
    pds_world.pds.status = 503
    with pds_world.pds_running(), pytest.raises(FetchUnavailable) as caught:
        await fetcher().fetch(ref)
    assert caught.value.reason == "pds-unavailable"


async def test_slow_pds_times_out(pds_world: PdsWorld, fetcher: Callable[..., BlobFetcher]) -> None:
    ref = pds_world.pds.add(pds_world.account(), IMAGE)
    pds_world.pds.delay = 3.0
    with pds_world.pds_running(), pytest.raises(FetchUnavailable) as caught:
        await fetcher(timeout=0.5).fetch(ref)
    assert caught.value.reason == "timeout"


async def test_private_addresses_are_refused_without_the_flag(
    pds_world: PdsWorld, fetcher: Callable[..., BlobFetcher]
) -> None:
    ref = pds_world.pds.add(pds_world.account(), IMAGE)
    with pds_world.pds_running():
        with pytest.raises(FetchRejected) as caught:
            await fetcher(allow_private=False).fetch(ref)
        assert caught.value.reason == "private-address"
        assert pds_world.pds.hits[ref.blob_cid] == 0  # refused before connecting
        localhost = pds_world.account()
        pds_world.plc.documents[localhost]["service"][0]["serviceEndpoint"] = f"http://localhost:{pds_world.pds_port}"
        with pytest.raises(FetchRejected) as caught:
            await fetcher(allow_private=False).fetch(ImageRef(localhost, ref.blob_cid))
        assert caught.value.reason == "private-address"


async def test_an_author_whose_did_web_host_is_loopback_is_refused(
    pds_world: PdsWorld, fetcher: Callable[..., BlobFetcher]
) -> None:
    """Issue #15.12: an image author `did:web:0x7f000001` names a host that resolves to 127.0.0.1."""
    with pytest.raises(FetchRejected) as caught:
        await fetcher(allow_private=False).fetch(ImageRef("did:web:0x7f000001", blob_cid(IMAGE)))
    assert caught.value.reason == "private-address"


async def test_a_video_streams_to_a_temporary_file_that_never_outlives_its_use(
    pds_world: PdsWorld, fetcher: Callable[..., BlobFetcher], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the fetcher spools, for this test
    data = bytes(range(256)) * 4096  # 1 MiB: over the image limit, under the video limit
    did = pds_world.account()
    ref = replace(pds_world.pds.add(did, data), media="video")
    tampered = replace(pds_world.pds.add(did, data + b"x"), media="video")
    pds_world.pds.tamper[tampered.blob_cid] = data
    with pds_world.pds_running():
        with pytest.raises(FetchRejected) as too_large:
            await fetcher(max_bytes=1000).fetch(replace(ref, media="image"))
        video = fetcher(max_bytes=1000)
        blob = await video.fetch(ref)
        assert blob.path is not None and blob.data == b""
        assert blob.digests == ExactDigests(hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest(), len(data))
        assert spooled(tmp_path) == {blob.path: (data, 0o600)}
        blob.discard()
        with pytest.raises(FetchRejected) as mismatch:
            await video.fetch(tampered)
        video.max_video_bytes = len(data) - 1
        with pytest.raises(FetchRejected) as too_large_video:
            await video.fetch(ref)
    assert (too_large.value.reason, mismatch.value.reason, too_large_video.value.reason) == (
        "too-large", "cid-mismatch", "too-large",
    )  # fmt: skip
    assert spooled(tmp_path) == {}  # refused or discarded, no file stays behind


def spooled(folder: Path) -> dict[Path, tuple[bytes, int]]:
    """The files in `folder`: their bytes and permission bits."""
    return {path: (path.read_bytes(), path.stat().st_mode & 0o777) for path in folder.iterdir()}
