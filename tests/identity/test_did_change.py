"""A labeler that moved to another DID, then rotated its key (issue 14 item 1): every label it serves verifies
against its own `src` DID document. Labels issued under the former DID keep their original signatures (by the key
that DID names); only labels of the current DID are re-signed with the new key. And `label reissue` issues the
former DID's labels again under the current one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from support.memory_plc import MemoryPlc, labeler_did
from support.served_labels import query_all, rejected, stream_until
from support.server import RunningServer

from labeler.config import Settings
from labeler.identity.plc_directory import PlcDirectory, update_did
from labeler.identity.resolver import DidResolver
from labeler.identity.rotation import rotate_label_key
from labeler.labels.reissue import Reissued, reissue
from labeler.labels.resign import resign_backlog
from labeler.labels.writer import LabelRequest
from labeler.protocol.crypto import SigningKey
from labeler.service import Labeler
from labeler.store.signing_state import SigningHold
from labeler.testing import serve_labeler

ENDPOINT = "https://labeler.example.com"


def requests(tag: str, count: int) -> list[LabelRequest]:
    return [LabelRequest(uri=f"did:plc:{tag}{i:016d}", val="spam") for i in range(count)]


async def started(settings: Settings) -> Labeler:
    labeler = Labeler(settings)
    await labeler.start()
    return labeler


async def test_labels_of_a_former_did_keep_verifying_after_a_rotation(
    make_settings: Any, plc_server: tuple[MemoryPlc, RunningServer], directory: PlcDirectory, resolver: DidResolver
) -> None:
    plc_url = plc_server[1].url
    first = make_settings(did="did:plc:placeholderplaceholder1", plc_url=plc_url)
    labeler = await started(first)  # makes the label key K1
    k1 = labeler.keyring.active()[0]
    old_did = await labeler_did(directory, SigningKey.generate(), k1.did_key, ENDPOINT)  # `did create`
    await labeler.aclose()

    labeler = await started(make_settings(did=old_did, plc_url=plc_url))
    await labeler.writer.write(requests("subjecta", 30) + requests("subjectd", 5))  # subjecta: under both DIDs
    await labeler.writer.write(
        [
            LabelRequest(uri="did:plc:subjecta0000000000000000", val="spam", neg=True),
            LabelRequest(uri="did:plc:subjecte0000000000000000", val="spam", exp="2001-01-01T00:00:00.000Z"),
        ]
    )
    await labeler.aclose()

    # `did link-pds`: an account's DID now names K1 and our endpoint, and the labeler moves to it.
    account_rotation = SigningKey.generate()
    new = await labeler_did(directory, account_rotation, k1.did_key, ENDPOINT)
    labeler = await started(make_settings(did=new, plc_url=plc_url))
    try:
        await labeler.writer.write(requests("subjecta", 30) + requests("subjectb", 10))

        async def publish(did_key: str, before_submit: Callable[[], Awaitable[None]]) -> None:
            await update_did(
                directory,
                new,
                account_rotation,
                lambda s: s.with_labeler(did_key, ENDPOINT),
                before_submit=before_submit,
            )

        hold = SigningHold(labeler.engine)
        rotation = await rotate_label_key(labeler.keyring, new, resolver, publish=publish, hold=hold)
        assert await resolver.label_key(old_did, force_refresh=True) == k1.did_key != rotation.new.did_key
        last = await labeler.writer.write(requests("subjectc", 10))
        async with serve_labeler(labeler) as live:
            queried = await query_all(live.url)
            streamed = [label for _seq, label in await stream_until(live.ws_url, last[-1].seq)]
        assert len(queried) == len(streamed) == 86
        assert sum(label["src"] == old_did for label in queried) == 36
        assert await rejected(resolver, queried) == []
        assert await rejected(resolver, streamed) == []

        # The whole backlog: only the current DID's labels are re-signed.
        assert await resign_backlog(labeler.store, labeler.resigner) == 0  # reads above already re-signed them
        rows = await labeler.store.after(0, 1000)
        assert {(r.label.src, r.key_id) for r in rows} == {(old_did, k1.id), (new, rotation.new.id)}

        # Re-issuing under the current DID: what is in force and not carried yet, once.
        assert await reissue(labeler.store, labeler.writer, old_did) == Reissued(5, 29, 2)
        assert await reissue(labeler.store, labeler.writer, old_did) == Reissued(0, 34, 2)
        async with serve_labeler(labeler) as live:
            queried = await query_all(live.url)
        assert sum(label["src"] == new for label in queried) == 55
        assert await rejected(resolver, queried) == []
    finally:
        await labeler.aclose()
