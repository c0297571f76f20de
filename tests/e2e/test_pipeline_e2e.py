"""The whole pipeline on Bluesky's real PDS: an image post → firehose → job → fetch → hash → match → signed label.

Our labeler follows the PDS's own `subscribeRepos` (no relay), fetches blobs from the PDS over loopback
(`allow_private_fetch`), resolves DIDs on the devnet PLC, and matches against an embedded bank. The label is
checked as a consumer would: queryLabels over HTTP, signature verified with the key from our DID document.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import httpx
import pytest
from atproto_crypto.did import get_did_key
from pipeline.corpus import encode, structured_rgb

from labeler.config import Settings
from labeler.pipeline.banks import EntryInput
from labeler.pipeline.hasher import hash_image
from labeler.pipeline.jobs import Job
from labeler.protocol.label import verify_received
from labeler.service import Labeler
from labeler.testing import serve_labeler

from .harness import Devnet, Post, post_image

pytestmark = pytest.mark.devnet

BANK = "E2E_KNOWN"
BANKED = encode(structured_rgb(400, 300, seed=41), "PNG")
UNKNOWN = encode(structured_rgb(400, 300, seed=42), "JPEG", quality=90)
TIMEOUT_S = 60.0


@pytest.fixture
def settings(make_settings: Any, devnet: Devnet) -> Settings:
    return make_settings(
        firehose_url=devnet.firehose_url,
        plc_url=devnet.plc_url,
        allow_private_fetch=True,  # the PDS is on loopback
        workers=1,
        did="",  # our did:web for public_url, so /.well-known/did.json carries the label key
    )


async def finished_jobs(labeler: Labeler, uri: str) -> list[Job]:
    """The post's jobs once all are done (polling the queue)."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT_S
    while True:
        jobs = await labeler.pipeline.jobs.for_subject(uri)
        if jobs and all(j.status == "done" for j in jobs):
            return jobs
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"jobs for {uri} not done in {TIMEOUT_S:.0f} s: {[j.to_json() for j in jobs]}")
        await asyncio.sleep(0.1)


async def explain(settings: Settings, uri: str) -> str:
    """`labeler explain <uri>` as an operator runs it: a separate process on the same database."""
    env = dict(os.environ)
    env.update(
        LABELER_DATABASE_URL=settings.database_url,
        LABELER_KEYS_DIR=str(settings.keys_dir),
        LABELER_DID=settings.did,
        LABELER_PUBLIC_URL=settings.public_url,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "labeler",
        "explain",
        uri,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 0, text
    return text


async def test_banked_image_post_gets_a_signed_label_and_others_do_not(devnet: Devnet, settings: Settings) -> None:
    banked_hash = hash_image(BANKED).hash
    labeler = Labeler(settings)
    await labeler.start(workers=1, sources=False)
    try:
        await labeler.pipeline.banks.create(BANK)
        await labeler.pipeline.banks.add_entries(BANK, [EntryInput(banked_hash, external_id="e2e-1", note="test")])
        [source] = labeler.sources.sources
        await labeler.pipeline.cursors.set(source.name, "0")  # replay the PDS from its start: no race with the posts
        labeler.sources.start()

        hit: Post = await asyncio.to_thread(post_image, devnet, "bob", BANKED, "banked image")
        miss: Post = await asyncio.to_thread(post_image, devnet, "alice", UNKNOWN, "other image")

        [hit_job] = await finished_jobs(labeler, hit.uri)
        assert (hit_job.source, hit_job.subject_cid, hit_job.image.blob_cid) == ("firehose", hit.cid, hit.blob_cid)
        assert (hit_job.outcome, hit_job.pdq) == ("match", banked_hash), hit_job.to_json()
        [miss_job] = await finished_jobs(labeler, miss.uri)
        assert (miss_job.outcome, miss_job.image.blob_cid) == ("no-match", miss.blob_cid), miss_job.to_json()

        async with serve_labeler(labeler) as live, httpx.AsyncClient(base_url=live.url, timeout=10) as http:
            labels = await query_labels(http, hit.uri)
            assert [(lb["uri"], lb["cid"], lb["src"], lb["val"]) for lb in labels] == [
                (hit.uri, hit.cid, settings.did, "csam-hash-match")
            ]
            did_key = await label_key(http)
            assert verify_received(labels[0], did_key)
            assert await query_labels(http, miss.uri) == []

        why = await explain(settings, hit.uri)
        for fact in ("csam-hash-match", f"bank {BANK}", "distance 0", hit.blob_cid, banked_hash, f"job {hit_job.id}"):
            assert fact in why, why
        assert "no-match" in await explain(settings, miss.uri)
    finally:
        await labeler.aclose()
    assert source.stats.saved_cursor is not None and int(source.stats.saved_cursor) > 0


async def query_labels(http: httpx.AsyncClient, uri: str) -> list[dict[str, Any]]:
    response = await http.get("/xrpc/com.atproto.label.queryLabels", params={"uriPatterns": uri})
    assert response.status_code == 200, response.text
    labels: list[dict[str, Any]] = response.json()["labels"]
    return labels


async def label_key(http: httpx.AsyncClient) -> str:
    """The did:key of `#atproto_label` in the DID document we serve, as a consumer would find it."""
    document = (await http.get("/.well-known/did.json")).json()
    [method] = [m for m in document["verificationMethod"] if m["id"].endswith("#atproto_label")]
    return str(get_did_key(method["type"], method["publicKeyMultibase"]))
