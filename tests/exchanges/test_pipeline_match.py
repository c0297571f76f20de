"""A hash fetched from an exchange by another process reaches a labeler that is already running, within seconds,
through the bank change log: an image with that PDQ in a post is labelled by the pipeline with the exchange's
entry as evidence, and the upload API matches it. One exchange type is enough (how entries reach the bank is the
same for all of them); Tech Against Terrorism's stand-in serves it."""

from __future__ import annotations

from typing import Any

import httpx
from pipeline.blob_server import PdsWorld
from pipeline.conftest import pds_world  # noqa: F401 (a fixture)
from pipeline.corpus import encode, structured_rgb
from pipeline.harness import Harness, all_done, eventually, job_for
from support.server import serve_in_thread

from labeler.exchanges.tat import TYPE as TAT
from labeler.pipeline.evidence import explain
from labeler.pipeline.hasher import hash_image
from labeler.testing import serve_labeler

from .harness import world as exchange_world
from .tat_standin import Record, TatStandin

FETCHED = encode(structured_rgb(320, 240, seed=41), "PNG")
OTHER = encode(structured_rgb(320, 240, seed=42), "JPEG", quality=90)
T0 = 1_704_901_040.0


async def test_a_fetched_hash_labels_a_post_through_the_pipeline_and_matches_over_the_upload_api(
    pds_world: PdsWorld,  # noqa: F811
    make_settings: Any,
) -> None:
    pdq = hash_image(FETCHED).hash
    standin = TatStandin(records=[Record(301, hash_image(OTHER).hash, T0, deleted=True), Record(302, pdq, T0 + 1)])
    harness = Harness(pds_world, make_settings, "embedded", None)
    settings = harness.settings(upload_tokens="tok", pipeline={"exchange_fetch_seconds": 0})  # fetched on demand
    did = pds_world.account()
    fetched, other = harness.post(did, "fetched", FETCHED), harness.post(did, "other", OTHER)
    with serve_in_thread(standin.app()) as server, pds_world.pds_running():
        async with harness.running(settings, workers=1) as labeler:
            assert await labeler.pipeline.matcher.lookup(pdq) == []
            async with exchange_world(  # its own engine, as `labeler exchange fetch` in another process
                settings.database_url, settings.keys_dir, standin=standin, url=server.url, type_="tat",
                carries=TAT.signal_types, name="tat", bank="TAT", now=T0 + 100,
            ) as world:  # fmt: skip
                report = await world.fetch()
            assert (report.error, report.added) == (None, 1)

            async def matchable() -> bool:
                return bool(await labeler.pipeline.matcher.lookup(pdq))

            await eventually(matchable, within=5, what="the fetched hash in the running labeler's matcher")
            assert await labeler.pipeline.jobs.enqueue([fetched, other]) == 2
            await all_done(labeler, 2)
            job, miss = await job_for(labeler, fetched), await job_for(labeler, other)
            labels = await labeler.store.query([fetched.subject_uri, other.subject_uri], [], 0, 10)
            p = labeler.pipeline
            report = await explain(labeler.store, p.jobs, p.reviews, fetched.subject_uri, p.actioner.outbox)
            async with serve_labeler(labeler) as live, httpx.AsyncClient(base_url=live.url) as client:
                answer = await client.post("/api/v1/match", json={"hash": pdq}, headers={"authorization": "Bearer tok"})
    assert (job.outcome, job.reason, miss.outcome) == ("match", "label", "no-match")
    assert [(s.label.uri, s.label.val) for s in labels] == [(fetched.subject_uri, "csam-hash-match")]
    [event] = report["history"]
    match = event["evidence"]["match"]
    assert (match["bank"], match["external_id"], match["note"], match["distance"]) == ("TAT", "302", "exchange:tat", 0)
    assert answer.status_code == 200, answer.text
    assert [(m["bank"], m["external_id"]) for m in answer.json()["matches"]] == [("TAT", "302")]
