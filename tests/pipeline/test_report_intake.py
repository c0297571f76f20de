"""Report intake is durable: a report whose record cannot be fetched yet (PDS down, restart) is not lost."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from labeler.pipeline.hasher import hash_image
from labeler.service import Labeler
from labeler.store.pipeline_schema import report_intake

from .blob_server import PdsWorld, post_record
from .corpus import encode, structured_rgb
from .harness import Harness, all_done, eventually

BANKED = encode(structured_rgb(320, 240, seed=1), "PNG")
POST_CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
REPORTER = "did:plc:reporterreporterreporter"


def reported_post(world: PdsWorld, rkey: str, *, publish: bool = True) -> tuple[str, dict[str, Any]]:
    """A post with one banked image on the PDS (unless not `publish`ed), and a createReport body for it."""
    did = world.account()
    uri = f"at://{did}/app.bsky.feed.post/{rkey}"
    if publish:
        world.pds.records[uri] = (POST_CID, post_record([world.pds.add(did, BANKED)]))
    body = {
        "reasonType": "com.atproto.moderation.defs#reasonViolation",
        "subject": {"$type": "com.atproto.repo.strongRef", "uri": uri, "cid": POST_CID},
    }
    return uri, body


async def intake_row(labeler: Labeler, uri: str) -> Any:
    async with labeler.engine.connect() as conn:
        return (await conn.execute(sa.select(report_intake).where(report_intake.c.subject_uri == uri))).one()


async def test_a_report_while_the_pds_is_down_is_scanned_once_it_is_up(pds_world: PdsWorld, make_settings: Any) -> None:
    harness = Harness(pds_world, make_settings, "embedded", None)
    uri, body = reported_post(pds_world, "3kdown")
    async with harness.running() as labeler:
        await harness.bank(labeler, "KNOWN", [hash_image(BANKED).hash])
        await labeler.reports.submit(body, REPORTER)

        async def retried() -> bool:
            return (await intake_row(labeler, uri)).attempts >= 2

        await eventually(retried, what="intake retried while the PDS is down")
        row = await intake_row(labeler, uri)
        assert row.status == "queued" and "unreachable" in row.detail
        assert await labeler.pipeline.jobs.for_subject(uri) == []
        with pds_world.pds_running():
            await all_done(labeler, 1)
        [job] = await labeler.pipeline.jobs.for_subject(uri)
        row = await intake_row(labeler, uri)
        labels = await labeler.store.query([uri], [], 0, 10)
    assert (job.source, job.outcome, job.subject_cid) == ("report", "match", POST_CID)
    assert (row.status, row.reason) == ("done", "queued")
    assert [s.label.val for s in labels] == ["csam-hash-match"]


async def test_a_report_survives_a_restart_before_its_record_is_fetched(
    pds_world: PdsWorld, make_settings: Any
) -> None:
    harness = Harness(pds_world, make_settings, "embedded", None)
    uri, body = reported_post(pds_world, "3krestart")
    async with harness.running(workers=0) as labeler:  # a process that stops before any worker fetched it
        await labeler.reports.submit(body, REPORTER)
        assert (await intake_row(labeler, uri)).status == "queued"
    with pds_world.pds_running():
        async with harness.running() as labeler:
            await harness.bank(labeler, "KNOWN", [hash_image(BANKED).hash])
            await all_done(labeler, 1)
            [job] = await labeler.pipeline.jobs.for_subject(uri)
            row = await intake_row(labeler, uri)
    assert (job.source, job.outcome) == ("report", "match")
    assert (row.status, row.reason, row.attempts) == ("done", "queued", 1)


async def test_a_missing_record_ends_the_intake_and_a_new_report_queues_it_again(
    pds_world: PdsWorld, make_settings: Any
) -> None:
    harness = Harness(pds_world, make_settings, "embedded", None)
    uri, body = reported_post(pds_world, "3kgone", publish=False)
    did = uri.removeprefix("at://").split("/")[0]
    with pds_world.pds_running():
        async with harness.running() as labeler:
            await labeler.reports.submit(body, REPORTER)

            async def finished() -> bool:
                return (await intake_row(labeler, uri)).status == "done"

            await eventually(finished, what="intake of a missing record done")
            gone = await intake_row(labeler, uri)
            assert await labeler.pipeline.jobs.for_subject(uri) == []
            pds_world.pds.records[uri] = (POST_CID, post_record([pds_world.pds.add(did, BANKED)]))
            await labeler.reports.submit(body, REPORTER)
            await all_done(labeler, 1)
            again = await intake_row(labeler, uri)
    assert gone.reason not in ("queued", "no-images", "gave-up") and gone.attempts == 1
    assert (again.id, again.status, again.reason) == (gone.id, "done", "queued")
