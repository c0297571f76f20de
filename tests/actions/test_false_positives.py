"""False positives and floods: rejecting a match as a false positive disables its bank entry or allow-lists the
image, and an entry that suddenly matches many distinct images is switched to review-only by itself."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pipeline.blob_server import PdsWorld
from pipeline.conftest import RunningStandin, hma_standin, pds_world  # noqa: F401 (fixtures)
from pipeline.corpus import encode, flip_bits, structured_rgb
from pipeline.harness import Harness, all_done, eventually, job_for

from labeler.pipeline.banks import EntryInput
from labeler.pipeline.hasher import hash_image
from labeler.service import Labeler
from labeler.testing import serve_labeler

from .cli_helpers import operator_shell, succeeds

BANK = "KNOWN"
ALLOW = "ALLOW_LIST"


def variants(seed: int, count: int) -> list[bytes]:
    """Distinct files of one picture (JPEG at several qualities): distinct blobs, near-identical PDQ hashes."""
    picture = structured_rgb(200, 150, seed=seed)
    return [encode(picture, "JPEG", quality=95 - 7 * n) for n in range(count)]


@pytest.fixture(params=["embedded", "hma"])
def harness(request: pytest.FixtureRequest, pds_world: PdsWorld, make_settings: Any) -> Iterator[Harness]:  # noqa: F811
    hma: RunningStandin | None = request.getfixturevalue("hma_standin") if request.param == "hma" else None
    yield Harness(pds_world, make_settings, request.param, hma)


async def review_item_for(labeler: Labeler, uri: str) -> int:
    [item] = await labeler.pipeline.reviews.list(status="pending", subject_uri=uri)
    return item.id


async def test_flood_control_switches_an_entry_to_review_only(
    pds_world: PdsWorld,  # noqa: F811
    make_settings: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    harness = Harness(pds_world, make_settings, "embedded", None)
    did = pds_world.account()
    files = variants(seed=7, count=5)
    specs = [harness.post(did, f"p{n}", data) for n, data in enumerate(files)]
    settings = harness.settings(extra={"actions": {"flood_matches": 3, "flood_window_seconds": 3600}})
    with pds_world.pds_running(), caplog.at_level(logging.WARNING):
        async with harness.running(settings, workers=1) as labeler:
            await harness.bank(labeler, BANK, [hash_image(files[0]).hash])
            assert await labeler.pipeline.screen.states() == []
            for n, spec in enumerate(specs):  # one at a time: the order decides which images tip it over
                await labeler.pipeline.jobs.enqueue([spec])
                await all_done(labeler, n + 1)
            jobs = [await job_for(labeler, spec) for spec in specs]
            [state] = await labeler.pipeline.screen.states()
            metric = labeler.metrics.registry.get_sample_value("labeler_entries_review_only_total", {"bank": BANK})
            held = await labeler.pipeline.reviews.list(status="pending")
    assert len({s.image.blob_cid for s in specs}) == 5  # five distinct images (blobs), one picture
    assert [j.reason for j in jobs] == ["label", "label", "review", "review", "review"]
    assert (state.bank, state.mode, state.actor) == (BANK, "review-only", "flood-control")
    assert "3 distinct images" in (state.reason or "") and metric == 1.0
    assert [i.subject_uri for i in held] == [s.subject_uri for s in specs[2:]]
    assert "review-only" in held[0].evidence["held_for_review"]
    [warning] = [r.getMessage() for r in caplog.records if "switched to review-only" in r.getMessage()]
    assert f"bank {BANK} entry {state.entry_id} matched 3 distinct images" in warning


async def test_rejecting_as_false_positive_disables_the_entry(pds_world: PdsWorld, make_settings: Any) -> None:  # noqa: F811
    harness = Harness(pds_world, make_settings, "embedded", None)
    did = pds_world.account()
    image = encode(structured_rgb(160, 120, seed=31), "PNG")
    first, again = harness.post(did, "first", image), harness.post(did, "again", image)
    with pds_world.pds_running():
        async with harness.running(workers=1) as labeler:
            await harness.bank(labeler, BANK, [flip_bits(hash_image(image).hash, 15, seed=3)])
            await labeler.pipeline.jobs.enqueue([first])
            await all_done(labeler, 1)
            item = await review_item_for(labeler, first.subject_uri)
            verdict = await labeler.pipeline.decisions.reject(
                item, actor="did:plc:moderator", note="a sunset", false_positive="disable-entry"
            )
            await labeler.pipeline.jobs.enqueue([again])
            await all_done(labeler, 2)
            later = await job_for(labeler, again)
            [state] = await labeler.pipeline.screen.states()
    assert verdict.item.status == "rejected"
    assert (later.outcome, later.reason) == ("no-match", "disabled-entries")
    assert (state.mode, state.actor) == ("disabled", "did:plc:moderator") and "a sunset" in (state.reason or "")


async def test_rejecting_as_false_positive_allow_lists_that_image_only(harness: Harness) -> None:
    did = harness.world.account()
    wrong, right = encode(structured_rgb(160, 120, seed=41), "PNG"), encode(structured_rgb(160, 120, seed=42), "PNG")
    specs = [harness.post(did, "wrong", wrong), harness.post(did, "right", right)]
    again = [harness.post(did, "wrong-again", wrong), harness.post(did, "right-again", right)]
    settings = harness.settings(extra={"actions": {"allow_list_bank": ALLOW}})
    with harness.world.pds_running():
        async with harness.running(settings, workers=1) as labeler:
            banked = [flip_bits(hash_image(wrong).hash, 15, seed=4), flip_bits(hash_image(right).hash, 15, seed=5)]
            await harness.bank(labeler, BANK, banked)
            await labeler.pipeline.jobs.enqueue(specs)
            await all_done(labeler, 2)
            item = await review_item_for(labeler, specs[0].subject_uri)
            await labeler.pipeline.decisions.reject(item, actor="cli", false_positive="allow-list")
            await asyncio.sleep(0.3)  # embedded: the bank change log is replayed into the index every 0.1 s here
            await labeler.pipeline.jobs.enqueue(again)
            await all_done(labeler, 4)
            wrong_again, right_again = [await job_for(labeler, spec) for spec in again]
    assert (wrong_again.outcome, wrong_again.reason) == ("no-match", "allow-listed")
    assert (right_again.outcome, right_again.reason) == ("match", "review")


def test_false_positive_and_entry_commands(
    pds_world: PdsWorld,  # noqa: F811
    make_settings: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    harness = Harness(pds_world, make_settings, "embedded", None)
    did = pds_world.account()
    image = encode(structured_rgb(160, 120, seed=51), "PNG")
    spec = harness.post(did, "p", image)

    async def queue() -> None:
        async with harness.running(workers=1) as labeler:
            await harness.bank(labeler, BANK, [flip_bits(hash_image(image).hash, 15, seed=6)])
            await labeler.pipeline.jobs.enqueue([spec])
            await all_done(labeler, 1)

    with pds_world.pds_running():
        asyncio.run(queue())
    shell = operator_shell(harness.settings(), tmp_path, monkeypatch)

    def ok(*args: str) -> str:
        return succeeds(shell, *args)

    [item] = json.loads(ok("review", "list", "--json"))
    refused = shell("review", "reject", str(item["id"]), "--false-positive", "allow-list")
    assert refused.exit_code == 1 and "allow_list_bank" in refused.output  # nothing configured: nothing done
    assert "rejected" in ok("review", "reject", str(item["id"]), "--false-positive", "disable-entry")
    entry = item["evidence"]["match"]["entry_id"]
    assert f"{BANK} {entry}: disabled" in ok("entries", "list") and "by cli" in ok("entries", "list")
    assert "review-only" in ok("entries", "review-only", BANK, entry, "--reason", "looks at it later")
    assert "matching as usual" in ok("entries", "clear", BANK, entry)
    assert ok("entries", "list") == "no entries held back (none disabled or review-only)\n"
    assert shell("entries", "clear", BANK, entry).exit_code == 1


async def test_the_upload_check_answers_as_the_pipeline_would_act(make_settings: Any) -> None:
    image = encode(structured_rgb(160, 120, seed=61), "PNG")
    pdq = hash_image(image).hash
    extra = {"actions": {"allow_list_bank": ALLOW}, "pipeline": {"bank_poll_seconds": 0.1}}
    settings = make_settings(upload_tokens="t0ken-for-tests", extra=extra)
    labeler = Labeler(settings)
    await labeler.start()
    try:
        await labeler.pipeline.banks.create(BANK)
        await labeler.pipeline.banks.add_entries(BANK, [EntryInput(flip_bits(pdq, 12, seed=1), external_id="e")])
        async with serve_labeler(labeler) as live, httpx.AsyncClient(base_url=live.url) as http:
            headers = {"authorization": "Bearer t0ken-for-tests"}

            async def check() -> dict[str, Any]:
                answer = await http.post("/api/v1/match", content=image, headers=headers)
                assert answer.status_code == 200, answer.text
                return dict(answer.json())

            [found] = (await check())["matches"]
            await labeler.pipeline.screen.set_state(
                BANK, found["entry_id"], "disabled", reason="fp", actor="t", via="cli"
            )
            assert (await check())["matches"] == []
            await labeler.pipeline.screen.clear(BANK, found["entry_id"], actor="t", via="cli")
            logged = [(c.entry_id, c.mode, c.actor, c.via, c.reason) for c in await labeler.pipeline.screen.changes()]
            assert logged == [
                (found["entry_id"], "clear", "t", "cli", None),
                (found["entry_id"], "disabled", "t", "cli", "fp"),
            ]
            await labeler.pipeline.banks.create(ALLOW)
            await labeler.pipeline.banks.add_entries(ALLOW, [EntryInput(pdq)])

            async def allow_listed() -> bool:
                return (await check()).get("allow_listed") is True

            await eventually(allow_listed, what="the allow-list entry to be matchable")
            assert (await check())["matches"] == []
            assert await labeler.pipeline.screen.states() == []  # a check records nothing
    finally:
        await labeler.aclose()


async def test_reject_as_false_positive_over_http(pds_world: PdsWorld, make_settings: Any) -> None:  # noqa: F811
    harness = Harness(pds_world, make_settings, "embedded", None)
    did = pds_world.account()
    image = encode(structured_rgb(160, 120, seed=71), "PNG")
    spec = harness.post(did, "p", image)
    admin = ("admin", "test-admin-password")
    with pds_world.pds_running():
        async with harness.running(workers=1) as labeler, serve_labeler(labeler) as live:
            await harness.bank(labeler, BANK, [flip_bits(hash_image(image).hash, 15, seed=8)])
            await labeler.pipeline.jobs.enqueue([spec])
            await all_done(labeler, 1)
            item = await review_item_for(labeler, spec.subject_uri)
            async with httpx.AsyncClient(base_url=live.url, auth=admin) as http:
                path = f"/api/v1/review/{item}"
                bad = [
                    await http.post(f"{path}/reject", json={"false_positive": "forget-it"}),
                    await http.post(f"{path}/confirm", json={"false_positive": "disable-entry"}),
                    await http.post(f"{path}/reject", json={"false_positive": "allow-list"}),  # none configured
                    await http.post(f"{path}/reject", content=b"[1, 2]"),
                ]
                assert [(r.status_code, r.json()["error"]) for r in bad] == [(400, "InvalidRequest")] * 4
                assert (await labeler.pipeline.reviews.get(item)).status == "pending"  # refused whole
                done = await http.post(f"{path}/reject", json={"note": "a cat", "false_positive": "disable-entry"})
                assert done.status_code == 200, done.text
                assert done.json()["status"] == "rejected"
            [state] = await labeler.pipeline.screen.states()
    assert (state.mode, state.actor) == ("disabled", "admin") and "a cat" in (state.reason or "")
