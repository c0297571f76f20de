"""The signing hold (labeler.store.signing_state) on both databases: no label is committed while a rotation holds
signing; after the hold, labels signed under the old key generation are re-signed with the key now active, though
this process's keyring has not reloaded yet; a hold past its deadline (a rotation that died) no longer holds."""

from __future__ import annotations

import asyncio

from labeler.keys import Keyring
from labeler.labels.writer import LabelRequest
from labeler.service import Labeler
from labeler.store.signing_state import SigningHold, current_generation


def request(n: int) -> LabelRequest:
    return LabelRequest(uri=f"did:plc:holdtest{n:016d}", val="spam")


async def test_held_commits_wait_and_are_resigned_after_a_rotation(labeler: Labeler) -> None:
    hold = SigningHold(labeler.engine)
    old = labeler.keyring.active()[0]
    await hold.start(60)
    writes = [asyncio.create_task(labeler.writer.write_one(request(n))) for n in range(3)]
    await asyncio.sleep(0.3)  # several commit attempts, all refused
    assert not any(w.done() for w in writes)
    assert await labeler.store.head() == 0

    new = Keyring.open(labeler.keyring.directory).generate(activate=True)  # `keys rotate`, another process
    assert labeler.keyring.active_id == old.id  # this process has not re-read the keyring
    await hold.end(rotated=True)
    stored = await asyncio.gather(*writes)
    assert all(s.key_id == new.id and s.label.verify(new.did_key) for s in stored)
    assert await current_generation(labeler.engine) == 1
    later = await labeler.writer.write_one(request(9))
    assert later.key_id == new.id


async def test_a_failed_rotation_releases_without_a_key_change(labeler: Labeler) -> None:
    hold = SigningHold(labeler.engine)
    old = labeler.keyring.active()[0]
    await hold.start(60)
    write = asyncio.create_task(labeler.writer.write_one(request(1)))
    await asyncio.sleep(0.2)
    assert not write.done()
    await hold.end(rotated=False)
    assert (await write).key_id == old.id
    assert await current_generation(labeler.engine) == 0


async def test_an_expired_hold_does_not_hold(labeler: Labeler) -> None:
    await SigningHold(labeler.engine).start(-1)  # its deadline has passed: the rotation that set it died
    assert (await labeler.writer.write_one(request(1))).seq > 0
