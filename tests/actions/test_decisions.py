"""Reversal of labels: a value comes down only when no live decision stands behind it any more, a moderator's own
label is never taken down by a reversal, and `labeler label negate` reverses the matches that published it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pipeline.blob_server import PdsWorld
from pipeline.conftest import pds_world  # noqa: F401 (fixture)
from pipeline.corpus import encode, structured_rgb
from pipeline.harness import Harness, all_done

from labeler.labels.writer import LabelRequest
from labeler.pipeline.hasher import hash_image
from labeler.pipeline.jobs import JobSpec
from labeler.service import Labeler

from .cli_helpers import operator_shell, succeeds

BANK = "KNOWN"
LABEL = "csam-hash-match"


def two_images_of_one_post(harness: Harness, did: str, seed: int) -> tuple[list[JobSpec], list[str]]:
    images = [encode(structured_rgb(160, 120, seed=seed + n), "PNG") for n in range(2)]
    uri = f"at://{did}/app.bsky.feed.post/two"
    specs = []
    for data in images:
        ref = harness.world.pds.add(did, data)
        specs.append(JobSpec("firehose", uri, "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm", ref))
    return specs, [hash_image(data).hash for data in images]


async def current(labeler: Labeler, uri: str) -> list[tuple[str, bool]]:
    return [(s.label.val, s.label.neg) for s in await labeler.store.query([uri], [], 0, 10)]


async def test_a_label_two_matches_stand_behind_comes_down_with_the_second_reversal(
    pds_world: PdsWorld,  # noqa: F811
    make_settings: Any,
) -> None:
    harness = Harness(pds_world, make_settings, "embedded", None)
    specs, hashes = two_images_of_one_post(harness, pds_world.account(), seed=80)
    uri = specs[0].subject_uri
    with pds_world.pds_running():
        async with harness.running(workers=1) as labeler:
            await harness.bank(labeler, BANK, hashes)
            await labeler.pipeline.jobs.enqueue(specs)
            await all_done(labeler, 2)
            first, second = await labeler.pipeline.actioner.outbox.list(kind="label", subject_uri=uri)
            assert [(a.outcome, a.result["written"]) for a in (first, second)] == [
                ("labelled", [LABEL]),
                ("already", []),
            ]
            decisions = labeler.pipeline.decisions
            [undo] = await decisions.reverse(first.decision or "", actor="test", reason="one image was wrong")
            assert (undo.state, undo.outcome, undo.result["kept"]) == ("skipped", "still-justified", [LABEL])
            assert await current(labeler, uri) == [(LABEL, False)]
            [undo] = await decisions.reverse(second.decision or "", actor="test", reason="so was the other")
            assert (undo.state, undo.outcome, undo.result["negated"]) == ("done", "negated", [LABEL])
            assert await current(labeler, uri) == [(LABEL, True)]
            [event] = [e for e in await labeler.store.events_for(uri) if e["neg"]]
            assert (event["actor"], event["via"], event["reason"]) == ("test", "reversal", "so was the other")


async def test_a_moderators_own_label_is_not_taken_down(pds_world: PdsWorld, make_settings: Any) -> None:  # noqa: F811
    harness = Harness(pds_world, make_settings, "embedded", None)
    specs, hashes = two_images_of_one_post(harness, pds_world.account(), seed=90)
    uri = specs[0].subject_uri
    with pds_world.pds_running():
        async with harness.running(workers=1) as labeler:
            await labeler.writer.write_one(LabelRequest(uri=uri, cid=specs[0].subject_cid, val=LABEL, actor="mod"))
            await harness.bank(labeler, BANK, hashes[:1])
            await labeler.pipeline.jobs.enqueue(specs[:1])
            await all_done(labeler, 1)
            [action] = await labeler.pipeline.actioner.outbox.list(kind="label", subject_uri=uri)
            assert action.outcome == "already"
            [undo] = await labeler.pipeline.decisions.reverse(action.decision or "", actor="test", reason="wrong")
            assert (undo.state, undo.outcome) == ("skipped", "nothing-to-reverse")
            assert await current(labeler, uri) == [(LABEL, False)]


def test_label_negate_from_the_cli_reverses_the_match(
    pds_world: PdsWorld,  # noqa: F811
    make_settings: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    harness = Harness(pds_world, make_settings, "embedded", None)
    specs, hashes = two_images_of_one_post(harness, pds_world.account(), seed=95)
    uri, cid = specs[0].subject_uri, specs[0].subject_cid

    async def queue() -> None:
        async with harness.running(workers=1) as labeler:
            await harness.bank(labeler, BANK, hashes[:1])
            await labeler.pipeline.jobs.enqueue(specs[:1])
            await all_done(labeler, 1)

    with pds_world.pds_running():
        asyncio.run(queue())
    shell = operator_shell(harness.settings(), tmp_path, monkeypatch)
    succeeds(shell, "label", "negate", uri, LABEL, "--cid", str(cid), "--reason", "not it")
    lines = [line for line in succeeds(shell, "explain", uri).splitlines() if " label " in line and "#" in line]
    assert any("label apply: done (labelled)" in line and "reversed by #" in line for line in lines), lines
    assert any("label reverse: skipped (nothing-to-reverse) by cli" in line for line in lines), lines
