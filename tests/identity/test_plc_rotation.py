"""Writing to a PLC directory (an in-memory one that checks operations like the real one) and key rotation.

Rotation must never leave the keyring ahead of the DID document: the new key is activated only once the
document, resolved afresh, names it. Each failure below leaves the old key active and the new one inactive.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from support.memory_plc import MemoryPlc, labeler_did

from labeler.identity.plc import PlcError
from labeler.identity.plc_directory import PlcDirectory, update_did
from labeler.identity.resolver import DidResolver
from labeler.identity.rotation import RotationError, rotate_label_key
from labeler.keys import Keyring
from labeler.protocol.crypto import SigningKey

ENDPOINT = "https://labeler.example.com"


@pytest.fixture
def ring(tmp_path: Path) -> Keyring:
    ring = Keyring.open(tmp_path / "keys")
    ring.generate()
    return ring


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def new_did(directory: PlcDirectory, rotation: SigningKey, label_did_key: str) -> str:
    return await labeler_did(directory, rotation, label_did_key, ENDPOINT)


async def test_create_and_update_resolve(directory: PlcDirectory, resolver: DidResolver, plc: MemoryPlc) -> None:
    rotation, first, second = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    did = await new_did(directory, rotation, first.did_key)
    assert await resolver.label_key(did, force_refresh=True) == first.did_key
    assert await resolver.labeler_endpoint(did) == ENDPOINT
    await update_did(directory, did, rotation, lambda s: s.with_labeler(second.did_key, "https://new.example.com"))
    await update_did(directory, did, rotation, lambda s: s)  # prev must chain again
    assert len(plc.logs[did]) == 3
    assert await resolver.label_key(did, force_refresh=True) == second.did_key
    assert await resolver.labeler_endpoint(did) == "https://new.example.com"


async def test_update_refusals_are_clear(directory: PlcDirectory, plc: MemoryPlc) -> None:
    rotation = SigningKey.generate()
    did = await new_did(directory, rotation, SigningKey.generate().did_key)
    with pytest.raises(PlcError, match="is not a rotation key of"):
        await update_did(directory, did, SigningKey.generate(), lambda s: s)
    plc.refuse = "Operation too large"
    with pytest.raises(PlcError, match=r"refused the operation.*HTTP 400 Operation too large"):
        await update_did(directory, did, rotation, lambda s: s)
    with pytest.raises(PlcError, match="DID not registered"):
        await directory.data("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa")
    async with PlcDirectory(closed_port_url()) as down:
        with pytest.raises(PlcError, match="cannot reach the PLC directory"):
            await down.data(did)
    assert len(plc.logs[did]) == 1


async def test_rotation_activates_only_after_the_document_shows_the_key(
    directory: PlcDirectory, resolver: DidResolver, ring: Keyring
) -> None:
    old, rotation = ring.active()[0], SigningKey.generate()
    did = await new_did(directory, rotation, old.did_key)

    async def publish(did_key: str, before_submit: Callable[[], Awaitable[None]]) -> None:
        assert ring.active_id == old.id  # nothing activated before the document changes
        await update_did(
            directory, did, rotation, lambda s: s.with_labeler(did_key, ENDPOINT), before_submit=before_submit
        )

    result = await rotate_label_key(ring, did, resolver, publish=publish)
    assert result.old == old and ring.active_id == result.new.id != old.id
    assert await resolver.label_key(did, force_refresh=True) == result.new.did_key
    retired = ring.info(old.id)
    assert retired.retired_at is not None and (ring.directory / retired.file).exists()
    assert Keyring.open(ring.directory).active_id == result.new.id  # persisted


async def test_refused_update_leaves_the_new_key_inactive_and_retry_works(
    directory: PlcDirectory, resolver: DidResolver, ring: Keyring, plc: MemoryPlc
) -> None:
    old, rotation = ring.active()[0], SigningKey.generate()
    did = await new_did(directory, rotation, old.did_key)

    async def publish(did_key: str, before_submit: Callable[[], Awaitable[None]]) -> None:
        await update_did(
            directory, did, rotation, lambda s: s.with_labeler(did_key, ENDPOINT), before_submit=before_submit
        )

    plc.refuse = "Invalid signature"
    with pytest.raises(RotationError, match=r"Invalid signature.*NOT activated.*--key") as failed:
        await rotate_label_key(ring, did, resolver, publish=publish)
    pending = [k for k in ring.all_keys() if k.id != old.id]
    assert ring.active_id == old.id and len(pending) == 1 and pending[0].retired_at is None
    assert pending[0].id in str(failed.value)
    assert await resolver.label_key(did, force_refresh=True) == old.did_key
    plc.refuse = None
    result = await rotate_label_key(ring, did, resolver, publish=publish, key_id=pending[0].id)
    assert result.new.id == pending[0].id == ring.active_id


async def test_unconfirmed_update_is_not_activated(
    directory: PlcDirectory, resolver: DidResolver, ring: Keyring
) -> None:
    old, rotation = ring.active()[0], SigningKey.generate()
    did = await new_did(directory, rotation, old.did_key)

    async def publish_nothing(did_key: str, before_submit: Callable[[], Awaitable[None]]) -> None:
        return None

    with pytest.raises(RotationError, match="still does not name"):
        await rotate_label_key(ring, did, resolver, publish=publish_nothing, confirm_timeout=0.5)
    assert ring.active_id == old.id


async def test_directory_down_is_a_clear_rotation_error(resolver: DidResolver, ring: Keyring) -> None:
    old = ring.active()[0]

    async def publish(did_key: str, before_submit: Callable[[], Awaitable[None]]) -> None:
        async with PlcDirectory(closed_port_url()) as down:
            await update_did(down, "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", SigningKey.generate(), lambda s: s)

    with pytest.raises(RotationError, match=r"cannot reach the PLC directory.*NOT activated"):
        await rotate_label_key(ring, "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", resolver, publish=publish)
    assert ring.active_id == old.id


async def test_rotating_to_the_active_key_is_refused(resolver: DidResolver, ring: Keyring) -> None:
    with pytest.raises(RotationError, match="already the active key"):
        await rotate_label_key(ring, "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", resolver, publish=None, key_id=ring.active_id)


class RecordingHold:
    """What the rotation asks of the signing hold, and what the keyring and the document were at each step."""

    def __init__(self, ring: Keyring, plc: MemoryPlc, did: str) -> None:
        self.ring, self.plc, self.did = ring, plc, did
        self.calls: list[tuple[str, bool | None, str | None, str]] = []

    def _note(self, what: str, rotated: bool | None) -> None:
        named = self.plc.state(self.did).verification_methods["atproto_label"]
        self.calls.append((what, rotated, self.ring.active_id, named))

    async def start(self, seconds: float) -> None:
        assert seconds > 0
        self._note("start", None)

    async def end(self, *, rotated: bool) -> None:
        self._note("end", rotated)


async def test_signing_is_held_from_submission_until_activation(
    directory: PlcDirectory, resolver: DidResolver, ring: Keyring, plc: MemoryPlc
) -> None:
    old, rotation = ring.active()[0], SigningKey.generate()
    did = await new_did(directory, rotation, old.did_key)
    hold = RecordingHold(ring, plc, did)

    async def publish(did_key: str, before_submit: Callable[[], Awaitable[None]]) -> None:
        await update_did(
            directory, did, rotation, lambda s: s.with_labeler(did_key, ENDPOINT), before_submit=before_submit
        )

    result = await rotate_label_key(ring, did, resolver, publish=publish, hold=hold)
    # Held while the old key is active and still named; released once the new key is both named and active.
    assert hold.calls == [("start", None, old.id, old.did_key), ("end", True, result.new.id, result.new.did_key)]

    hold.calls.clear()
    plc.refuse = "Invalid signature"
    with pytest.raises(RotationError):
        await rotate_label_key(ring, did, resolver, publish=publish, hold=hold)
    current = result.new
    assert hold.calls == [("start", None, current.id, current.did_key), ("end", False, current.id, current.did_key)]
