"""The log says what the labeler did (issue 16, item 7): one INFO line per job that matched or was refused (and
why) and per action taken (a label emitted, a review item queued), each naming the subject; a no-match only at
DEBUG. Real pipeline over the PDS stand-in, embedded matcher, SQLite."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from labeler.pipeline.hasher import hash_image

from .blob_server import PdsWorld
from .corpus import encode, structured_rgb
from .harness import Harness, all_done, job_for

BANKED = encode(structured_rgb(320, 240, seed=1), "PNG")
NEAR = encode(structured_rgb(320, 240, seed=3), "PNG")
OTHER = encode(structured_rgb(320, 240, seed=2), "JPEG", quality=90)


def flip_bits(pdq: str, count: int) -> str:
    """The hash with its first `count` bits inverted: a bank entry at exactly that distance."""
    value = int(pdq, 16) ^ (((1 << count) - 1) << (256 - count))
    return f"{value:064x}"


@pytest.fixture
def harness(pds_world: PdsWorld, make_settings: Any) -> Iterator[Harness]:
    yield Harness(pds_world, make_settings, "embedded", None)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_each_outcome_and_action_is_one_info_line_naming_its_subject(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    did = harness.world.account()
    banked, near = harness.post(did, "banked", BANKED), harness.post(did, "near", NEAR)
    other, broken = harness.post(did, "other", OTHER), harness.post(did, "broken", b"%PDF-1.7 not an image" * 10)
    caplog.set_level(logging.DEBUG, logger="labeler")
    with harness.world.pds_running():
        async with harness.running(workers=1) as labeler:
            # Conservative default policy: distance <= 10 is labelled, 11-31 goes to review.
            await harness.bank(labeler, "KNOWN", [hash_image(BANKED).hash, flip_bits(hash_image(NEAR).hash, 20)])
            await labeler.pipeline.jobs.enqueue([banked, near, other, broken])
            await all_done(labeler, 4)
            jobs = {name: await job_for(labeler, spec) for name, spec in
                    {"banked": banked, "near": near, "other": other, "broken": broken}.items()}  # fmt: skip
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO and r.name.startswith("labeler")]
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG and r.name.startswith("labeler")]

    def one(prefix: str, lines: list[str]) -> str:
        found = [line for line in lines if line.startswith(prefix)]
        assert len(found) == 1, (prefix, info)
        return found[0]

    assert one(f"job {jobs['banked'].id} match label: {banked.subject_uri} ", info)
    assert one(f"job {jobs['near'].id} match review: {near.subject_uri} ", info)
    assert one(f"job {jobs['broken'].id} rejected not-an-image: {broken.subject_uri} ", info)
    assert not [line for line in info if line.startswith(f"job {jobs['other'].id} ")]
    assert one(f"job {jobs['other'].id} no-match: {other.subject_uri} ", debug)
    labelled = [line for line in info if f"(label apply on {banked.subject_uri})" in line]
    assert len(labelled) == 1 and labelled[0].endswith("done labelled: csam-hash-match"), info
    queued = [line for line in info if f"(review apply on {near.subject_uri})" in line]
    assert len(queued) == 1 and "done queued (review item " in queued[0], info
